//! `mailferry ctl`: the command-line client of the fleet's gRPC API (`mailferry.v1`). It reads
//! flags, sends one request (or follows one stream), prints the answer as text or `--json`, and
//! exits with a code scripts can rely on. No migration logic lives here: the coordinator
//! validates and decides; `ctl` only says what happened and what to do.
//!
//! Exit codes: those of `migrate` for `watch` (0, 3, 4, 5, 6, 130); otherwise 0 done, 2 usage
//! error or NOT_FOUND / INVALID_ARGUMENT, 3 FAILED_PRECONDITION, 6 other errors, 7 coordinator
//! unreachable, 8 API token refused, 130 interrupted.
//!
//! Secrets (mailbox passwords, the API token) are only ever in a request; never on argv, never
//! printed.

mod client;
#[cfg(test)]
mod fake;
mod json;
mod spec;
mod text;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use mailferry_fleet::Secret;
use mailferry_proto::grpc::v1::{
    AddPairsRequest, CreateMigrationRequest, GetMigrationRequest, ListDeadLettersRequest,
    ListFailuresRequest, ListMigrationsRequest, ListPairsRequest, Migration, MigrationRef,
    ReplayDeadLettersRequest,
};
use tokio::sync::watch::Receiver;

use crate::args::{CommonArgs, MigrateArgs, ProcessEnv, SecretEnv};
use crate::exit;
pub use client::code;
use client::{Failed, Session, Target};
use spec::WithSecrets;

/// Talk to a fleet coordinator: create, watch and steer migrations.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The coordinator's gRPC address: http://HOST:PORT, or https://HOST:PORT for TLS.
    #[arg(
        long,
        env = "MAILFERRY_COORDINATOR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub coordinator: String,
    /// Extra trusted CA certificate (PEM) for an https:// coordinator, besides the system's.
    #[arg(long, env = "MAILFERRY_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// File holding the API token (instead of MAILFERRY_API_TOKEN).
    #[arg(long, env = "MAILFERRY_API_TOKEN_FILE", global = true)]
    pub api_token_file: Option<PathBuf>,
    /// Print the answer as JSON on stdout (the API's messages, field names as in the .proto).
    #[arg(long, env = "MAILFERRY_JSON", global = true)]
    pub json: bool,
    /// Seconds to wait for the coordinator to accept the connection. (`create` and `add-pairs`
    /// share this flag with `migrate`'s IMAP timeout, whose default, 120, then applies.)
    #[arg(long, env = "MAILFERRY_TIMEOUT", default_value_t = 10, global = true)]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The subcommands of `ctl`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Create a migration from `migrate`'s flags (or --batch FILE) and start its first pass;
    /// prints its id.
    Create(Box<CreateArgs>),
    /// Add mailbox pairs (the flags of `migrate`, or --batch FILE) to a migration; they start at once.
    AddPairs(Box<AddPairsArgs>),
    /// Show a migration and its totals.
    Get(IdArg),
    /// Show every pair of a migration with its summary.
    Pairs(IdArg),
    /// List the migrations, oldest first.
    List,
    /// Follow a migration's progress until its pass ends, then print the summary and exit with
    /// `migrate`'s codes. Watching changes nothing.
    Watch(IdArg),
    /// List the messages and pairs that failed in the last pass.
    Failures(IdArg),
    /// Run another pass over the pairs that failed (nothing is copied twice).
    Retry(IdArg),
    /// Start a pass now (new mail, new folders) unless one is running.
    SyncNow(IdArg),
    /// Let the batches in hand finish and start no new ones.
    Pause(IdArg),
    /// Start a pass again after a pause.
    Resume(IdArg),
    /// Run a final pass, then drop the stored credentials; the migration cannot run again.
    /// Refused while the last pass left failures, unless --force.
    Complete(CompleteArgs),
    /// Stop the migration (batches in hand finish) and drop the stored credentials.
    Cancel(IdArg),
    /// Forget a migration that is not running: its record, summaries, credentials and cache.
    Delete(IdArg),
    /// List tasks that were dead-lettered, or run their pairs again with --replay.
    DeadLetters(DeadLettersArgs),
}

/// Flags of `ctl create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The mailboxes and options, as for `mailferry migrate`.
    #[command(flatten)]
    pub migrate: MigrateArgs,
    /// A name for people.
    #[arg(long, env = "MAILFERRY_NAME")]
    pub name: Option<String>,
    /// Makes a retry safe: the same id never creates a second migration (default: a new
    /// random id, printed on stderr).
    // No environment variable on purpose: one left set in a shell would turn every later
    // `create` into a lookup of the first migration.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Create without logging into every mailbox first (for thousands of pairs).
    #[arg(long, env = "MAILFERRY_SKIP_PROBE")]
    pub skip_probe: bool,
    /// With --batch: leave out the records that cannot be used (each named on stderr) and
    /// create the migration of the others, as `migrate --batch` runs them; without it one bad
    /// record stops the whole request and nothing is created.
    #[arg(long)]
    pub skip_bad_records: bool,
}

/// Flags of `ctl add-pairs`.
#[derive(Debug, Args)]
pub struct AddPairsArgs {
    /// The migration's id.
    pub id: String,
    /// The mailboxes, as for `mailferry migrate` (the migration's own options apply).
    #[command(flatten)]
    pub pairs: CommonArgs,
    /// Add without logging into every mailbox first.
    #[arg(long, env = "MAILFERRY_SKIP_PROBE")]
    pub skip_probe: bool,
}

/// A migration id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The migration's id (`mailferry ctl list` shows them).
    pub id: String,
}

/// Flags of `ctl complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The migration's id (`mailferry ctl list` shows them).
    pub id: String,
    /// Complete although the last pass left failures: once the credentials are dropped, what
    /// failed can only be copied by a new migration or by hand.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `ctl dead-letters`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Run the pairs of these dead letters again (all of them when no id is given).
    #[arg(long)]
    pub replay: bool,
    /// Dead-letter ids, with --replay.
    #[arg(requires = "replay")]
    pub ids: Vec<String>,
}

/// Runs `mailferry ctl`; returns the exit code.
pub async fn run(args: CtlArgs, stop: Receiver<bool>) -> i32 {
    run_with(args, &ProcessEnv, stop).await
}

async fn run_with(args: CtlArgs, env: &(dyn SecretEnv + Sync), stop: Receiver<bool>) -> i32 {
    match execute(args, env, stop).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

/// What every subcommand needs to reach the coordinator.
struct Connect {
    target: Target,
    token: Option<Secret>,
    stop: Receiver<bool>,
}

impl Connect {
    async fn open(self) -> Result<Session, Failed> {
        Session::open(&self.target, self.token.as_ref(), self.stop).await
    }
}

async fn execute(
    args: CtlArgs,
    env: &(dyn SecretEnv + Sync),
    stop: Receiver<bool>,
) -> Result<i32, Failed> {
    if args.timeout == 0 {
        return Err(Failed::usage("--timeout must be at least 1 second"));
    }
    let connect = Connect {
        target: Target {
            url: args.coordinator.clone(),
            ca: args.ca.clone(),
            connect_timeout: Duration::from_secs(args.timeout),
        },
        token: client::token(args.api_token_file.as_deref(), env)?,
        stop,
    };
    let json = args.json;
    match args.command {
        CtlCommand::Create(a) => create(*a, env, connect, json).await,
        CtlCommand::AddPairs(a) => add_pairs(*a, env, connect, json).await,
        CtlCommand::Get(IdArg { id }) => {
            let mut s = connect.open().await?;
            let mut c = s.client.clone();
            let req = GetMigrationRequest {
                migration_id: id.clone(),
            };
            let m = s
                .call(&format!("get migration {id}"), c.get_migration(req))
                .await?;
            print_migration(&m, json);
            Ok(exit::OK)
        }
        CtlCommand::Pairs(IdArg { id }) => pairs(connect.open().await?, &id, json).await,
        CtlCommand::List => list(connect.open().await?, json).await,
        CtlCommand::Watch(IdArg { id }) => watch::run(&mut connect.open().await?, &id, json).await,
        CtlCommand::Failures(IdArg { id }) => failures(connect.open().await?, &id, json).await,
        CtlCommand::Retry(IdArg { id }) => act(connect, Action::Retry, &id, json).await,
        CtlCommand::SyncNow(IdArg { id }) => act(connect, Action::SyncNow, &id, json).await,
        CtlCommand::Pause(IdArg { id }) => act(connect, Action::Pause, &id, json).await,
        CtlCommand::Resume(IdArg { id }) => act(connect, Action::Resume, &id, json).await,
        CtlCommand::Complete(CompleteArgs { id, force }) => {
            complete(connect.open().await?, &id, force, json).await
        }
        CtlCommand::Cancel(IdArg { id }) => act(connect, Action::Cancel, &id, json).await,
        CtlCommand::Delete(IdArg { id }) => {
            let mut s = connect.open().await?;
            let mut c = s.client.clone();
            let req = MigrationRef {
                migration_id: id.clone(),
            };
            s.call(&format!("delete migration {id}"), c.delete_migration(req))
                .await?;
            match json {
                true => println!("{{}}"),
                false => println!("deleted migration {id}"),
            }
            Ok(exit::OK)
        }
        CtlCommand::DeadLetters(a) => dead_letters(connect.open().await?, a, json).await,
    }
}

fn print_migration(m: &Migration, as_json: bool) {
    match as_json {
        true => println!("{}", json::pretty(&json::migration(m))),
        false => print!("{}", text::migration(m)),
    }
}

/// `ctl create`: every local problem is reported before anything is sent.
async fn create(
    a: CreateArgs,
    env: &(dyn SecretEnv + Sync),
    connect: Connect,
    as_json: bool,
) -> Result<i32, Failed> {
    let settings = spec::usable(
        a.migrate.request_settings(env),
        &a.migrate.common,
        a.skip_bad_records,
    )?;
    for flag in spec::unused_by_fleet(&a.migrate) {
        eprintln!(
            "warning: {flag} is not used by a fleet migration: the workers' configuration sets connections and rates, the coordinator keeps state and reports"
        );
    }
    let pairs = spec::pair_specs(&settings.pairs)?;
    drop(settings);
    let request_id = match a.request_id {
        Some(r) if r.trim().is_empty() => return Err(Failed::usage("--request-id is empty")),
        Some(r) => r,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let request = WithSecrets(CreateMigrationRequest {
        request_id: request_id.clone(),
        name: a.name.unwrap_or_default(),
        pairs,
        options: Some(spec::options(&a.migrate)),
        skip_probe: a.skip_probe,
    });
    let mut s = connect.open().await?;
    eprintln!(
        "request id {request_id} (to retry without creating a second migration: --request-id {request_id})"
    );
    let mut c = s.client.clone();
    let m = match s
        .call("create the migration", c.create_migration(request.0))
        .await
    {
        // The request may have arrived: only the same request id finds out safely.
        Err(f) if [code::UNREACHABLE, exit::FATAL, exit::INTERRUPTED].contains(&f.code) => {
            Err(Failed {
                message: format!(
                    "{} — it may have been created anyway: run the same command with --request-id {request_id} to find out without creating a second one",
                    f.message
                ),
                ..f
            })
        }
        other => other,
    }?;
    match as_json {
        true => println!("{}", json::pretty(&json::migration(&m))),
        false => println!("{}", m.id),
    }
    Ok(exit::OK)
}

/// `ctl add-pairs ID`.
async fn add_pairs(
    a: AddPairsArgs,
    env: &(dyn SecretEnv + Sync),
    connect: Connect,
    as_json: bool,
) -> Result<i32, Failed> {
    let settings = spec::usable(a.pairs.settings(env, false), &a.pairs, false)?;
    for flag in spec::options_given(&a.pairs) {
        eprintln!(
            "warning: {flag} is not used by add-pairs: the new pairs take the options the migration was created with"
        );
    }
    let request = WithSecrets(AddPairsRequest {
        migration_id: a.id.clone(),
        pairs: spec::pair_specs(&settings.pairs)?,
        skip_probe: a.skip_probe,
    });
    drop(settings);
    let mut s = connect.open().await?;
    let mut c = s.client.clone();
    let what = format!("add pairs to migration {}", a.id);
    let m = s.call(&what, c.add_pairs(request.0)).await?;
    print_migration(&m, as_json);
    Ok(exit::OK)
}

/// The calls that take a migration id and answer with the migration.
#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    SyncNow,
    Pause,
    Resume,
    Cancel,
}

async fn act(connect: Connect, action: Action, id: &str, as_json: bool) -> Result<i32, Failed> {
    let mut s = connect.open().await?;
    let mut c = s.client.clone();
    let r = MigrationRef {
        migration_id: id.to_owned(),
    };
    let m = match action {
        Action::Retry => {
            s.call(
                &format!("retry the failures of migration {id}"),
                c.retry_failures(r),
            )
            .await
        }
        Action::SyncNow => {
            s.call(&format!("sync migration {id} now"), c.sync_now(r))
                .await
        }
        Action::Pause => {
            s.call(&format!("pause migration {id}"), c.pause_migration(r))
                .await
        }
        Action::Resume => {
            s.call(&format!("resume migration {id}"), c.resume_migration(r))
                .await
        }
        Action::Cancel => {
            s.call(&format!("cancel migration {id}"), c.cancel_migration(r))
                .await
        }
    }?;
    print_migration(&m, as_json);
    Ok(exit::OK)
}

async fn pairs(mut s: Session, id: &str, as_json: bool) -> Result<i32, Failed> {
    let list = s
        .pages(
            &format!("list the pairs of migration {id}"),
            |mut c, page_token| {
                let req = ListPairsRequest {
                    migration_id: id.to_owned(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let r = c.list_pairs(req).await?.into_inner();
                    Ok::<_, tonic::Status>((r.pairs, r.next_page_token))
                }
            },
        )
        .await?;
    match as_json {
        true => {
            let v = json::list("pairs", list.iter().map(json::pair).collect());
            println!("{}", json::pretty(&v));
        }
        false => list.iter().for_each(|p| print!("{}", text::pair(p, true))),
    }
    Ok(exit::OK)
}

async fn list(mut s: Session, as_json: bool) -> Result<i32, Failed> {
    let list = s
        .pages("list migrations", |mut c, page_token| async move {
            let req = ListMigrationsRequest {
                page_size: 0,
                page_token,
            };
            let r = c.list_migrations(req).await?.into_inner();
            Ok::<_, tonic::Status>((r.migrations, r.next_page_token))
        })
        .await?;
    match as_json {
        true => {
            let v = json::list("migrations", list.iter().map(json::migration).collect());
            println!("{}", json::pretty(&v));
        }
        false if list.is_empty() => eprintln!("no migrations on {}", s.url),
        false => print!("{}", text::migrations(&list)),
    }
    Ok(exit::OK)
}

async fn failures(mut s: Session, id: &str, as_json: bool) -> Result<i32, Failed> {
    let list = failures_of(&mut s, id).await?;
    match as_json {
        true => {
            let v = json::list("failures", list.iter().map(json::failure).collect());
            println!("{}", json::pretty(&v));
        }
        false if list.is_empty() => eprintln!("no failures in the last pass of migration {id}"),
        false => print!("{}", text::failures(&list)),
    }
    Ok(exit::OK)
}

/// `ctl complete`: refused while the last pass left failures (listed), unless `force`.
async fn complete(mut s: Session, id: &str, force: bool, as_json: bool) -> Result<i32, Failed> {
    if !force {
        let left = failures_of(&mut s, id).await?;
        if !left.is_empty() {
            eprint!("{}", text::failures(&left));
            return Err(Failed {
                code: exit::FAILURES,
                message: format!(
                    "migration {id} has {} from its last pass (above), and completing drops its credentials, so they could then only be copied by hand: fix their cause and `ctl retry {id}`, or complete anyway with --force",
                    crate::output::count(left.len() as u64, "failure", "failures")
                ),
            });
        }
    }
    let mut c = s.client.clone();
    let r = MigrationRef {
        migration_id: id.to_owned(),
    };
    let m = s
        .call(&format!("complete migration {id}"), c.complete_migration(r))
        .await?;
    print_migration(&m, as_json);
    Ok(exit::OK)
}

/// Every failure of the last pass of migration `id`, every page.
async fn failures_of(
    s: &mut Session,
    id: &str,
) -> Result<Vec<mailferry_proto::grpc::v1::Failure>, Failed> {
    s.pages(
        &format!("list the failures of migration {id}"),
        |mut c, page_token| {
            let req = ListFailuresRequest {
                migration_id: id.to_owned(),
                page_size: 0,
                page_token,
            };
            async move {
                let r = c.list_failures(req).await?.into_inner();
                Ok::<_, tonic::Status>((r.failures, r.next_page_token))
            }
        },
    )
    .await
}

async fn dead_letters(mut s: Session, a: DeadLettersArgs, as_json: bool) -> Result<i32, Failed> {
    if a.replay {
        let mut c = s.client.clone();
        let req = ReplayDeadLettersRequest { ids: a.ids };
        let r = s
            .call("replay dead letters", c.replay_dead_letters(req))
            .await?;
        match as_json {
            true => println!(
                "{}",
                json::pretty(&serde_json::json!({ "replayed": r.replayed, "dropped": r.dropped }))
            ),
            false => println!(
                "replayed {} dead letters (their pairs run again); dropped {} (their migrations are gone or cannot run)",
                r.replayed, r.dropped
            ),
        }
        return Ok(exit::OK);
    }
    let list = s
        .pages("list dead letters", |mut c, page_token| async move {
            let req = ListDeadLettersRequest {
                page_size: 0,
                page_token,
            };
            let r = c.list_dead_letters(req).await?.into_inner();
            Ok::<_, tonic::Status>((r.dead_letters, r.next_page_token))
        })
        .await?;
    match as_json {
        true => {
            let v = json::list("dead_letters", list.iter().map(json::dead_letter).collect());
            println!("{}", json::pretty(&v));
        }
        false if list.is_empty() => eprintln!("no dead letters"),
        false => print!("{}", text::dead_letters(&list)),
    }
    Ok(exit::OK)
}
