//! Command-line arguments and their validation into typed settings. Every flag also reads
//! `MAILFERRY_<FLAG>` (the flag wins); secrets come only from the environment or a file. All bad
//! values are reported at once.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailferry_coordinator::folders::FolderRules;
use mailferry_coordinator::options::OptionsSpec;
use mailferry_coordinator::plan::PlanOptions;
use mailferry_fleet::{Credentials, Secret};
use mailferry_proto::task::{AuthMechanism, CaFile, Endpoint, TlsMode};

use crate::auth;
use crate::endpoint::{self, EndpointUrl};
use crate::input::{shown, shown_path};

/// mailferry: exact IMAP-to-IMAP mailbox migration.
#[derive(Debug, Parser)]
#[command(name = "mailferry", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The environment every fleet process needs (never flags: the URLs hold passwords).
macro_rules! fleet_env {
    () => {
        "Environment (never flags: the URLs hold passwords):
  MAILFERRY_AMQP_URL         RabbitMQ, e.g. amqp://user:password@rabbitmq:5672/%2f
  MAILFERRY_REDIS_URL        Redis, e.g. redis://:password@redis:6379/0
  MAILFERRY_SECRET_KEY_FILE  the fleet key file (`mailferry keygen > fleet.key`)
  MAILFERRY_NAMESPACE        prefix of every queue and key (default: mailferry)"
    };
}

/// `coordinator --help`: the environment it reads.
const COORDINATOR_ENV: &str = concat!(
    fleet_env!(),
    "
  MAILFERRY_API_TOKENS_FILE  accepted API tokens, one per line
Every bad value is reported at once, then the coordinator exits with code 2.
Every flag also reads MAILFERRY_<FLAG> (--probe-timeout: MAILFERRY_PROBE_TIMEOUT)."
);

/// `worker --help`: the environment it reads.
const WORKER_ENV: &str = concat!(
    fleet_env!(),
    "
Every bad value is reported at once, then the worker exits with code 2.
Every flag also reads MAILFERRY_<FLAG> (--concurrency: MAILFERRY_CONCURRENCY)."
);

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to both sides and report what a migration would do; copies nothing.
    Check(CommonArgs),
    /// Migrate one mailbox: every folder, message, flag and date; reruns copy only what is missing.
    Migrate(MigrateArgs),
    /// Run the fleet's coordinator: the gRPC API, planning and aggregation.
    #[command(after_help = COORDINATOR_ENV)]
    Coordinator(crate::roles::CoordinatorArgs),
    /// Run a fleet worker: takes tasks from RabbitMQ and copies IMAP to IMAP.
    #[command(after_help = WORKER_ENV)]
    Worker(crate::roles::WorkerArgs),
    /// Print a new fleet key line (`KEY_ID BASE64`) for MAILFERRY_SECRET_KEY_FILE.
    Keygen,
    /// Talk to a fleet coordinator: create, watch and steer migrations.
    Ctl(crate::ctl::CtlArgs),
}

/// Provider presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// Google Gmail / Workspace.
    Gmail,
    /// Microsoft 365 / Exchange Online.
    Office365,
    /// No provider-specific limits.
    Generic,
}

/// Connections and rates in force for a run: explicit flags, else the provider's preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections per account and side.
    pub connections: usize,
    /// Bytes per second per pair.
    pub bytes_per_second: Option<u64>,
    /// Messages per second per pair.
    pub messages_per_second: Option<u64>,
}

impl Provider {
    /// The preset. Gmail allows about 15 simultaneous IMAP connections per account (and about
    /// 500 MB of IMAP upload per day); 8 leaves room for the user's own clients. Microsoft 365
    /// throttles per mailbox and answers with "Suggested Backoff Time" hints, which are honoured;
    /// 4 connections and 10 messages/s are a conservative start, not a published limit.
    pub fn limits(self) -> Limits {
        match self {
            Provider::Gmail => Limits {
                connections: 8,
                bytes_per_second: None,
                messages_per_second: None,
            },
            Provider::Office365 => Limits {
                connections: 4,
                bytes_per_second: None,
                messages_per_second: Some(10),
            },
            Provider::Generic => Limits {
                connections: 4,
                bytes_per_second: None,
                messages_per_second: None,
            },
        }
    }
}

/// TLS mode flag values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TlsFlag {
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS, required.
    Starttls,
    /// No TLS (loopback only, unless --allow-insecure-auth).
    None,
}

/// Flags shared by `check` and `migrate`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Source mailbox: imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT] (STARTTLS).
    #[arg(help_heading = "Endpoints and TLS", long, env = "MAILFERRY_SRC")]
    pub src: String,
    /// Target mailbox: imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT] (STARTTLS).
    #[arg(help_heading = "Endpoints and TLS", long, env = "MAILFERRY_DST")]
    pub dst: String,
    /// Override the source's TLS mode.
    #[arg(
        help_heading = "Endpoints and TLS",
        long,
        env = "MAILFERRY_SRC_TLS",
        value_enum
    )]
    pub src_tls: Option<TlsFlag>,
    /// Override the target's TLS mode.
    #[arg(
        help_heading = "Endpoints and TLS",
        long,
        env = "MAILFERRY_DST_TLS",
        value_enum
    )]
    pub dst_tls: Option<TlsFlag>,
    /// Allow --tls none towards a host that is not on loopback (the password crosses the network in clear).
    #[arg(
        help_heading = "Endpoints and TLS",
        long,
        env = "MAILFERRY_ALLOW_INSECURE_AUTH"
    )]
    pub allow_insecure_auth: bool,
    /// Extra trusted CA certificate (PEM) for the source.
    #[arg(help_heading = "Endpoints and TLS", long, env = "MAILFERRY_SRC_CA")]
    pub src_ca: Option<PathBuf>,
    /// Extra trusted CA certificate (PEM) for the target.
    #[arg(help_heading = "Endpoints and TLS", long, env = "MAILFERRY_DST_CA")]
    pub dst_ca: Option<PathBuf>,
    /// Do not verify the source's certificate (dangerous).
    #[arg(
        help_heading = "Endpoints and TLS",
        long,
        env = "MAILFERRY_SRC_INSECURE_SKIP_VERIFY"
    )]
    pub src_insecure_skip_verify: bool,
    /// Do not verify the target's certificate (dangerous).
    #[arg(
        help_heading = "Endpoints and TLS",
        long,
        env = "MAILFERRY_DST_INSECURE_SKIP_VERIFY"
    )]
    pub dst_insecure_skip_verify: bool,
    /// Log into the source as this administrator (master user) acting for the URL's user
    /// (SASL PLAIN with an authorization identity); the password is then the administrator's.
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_SRC_AUTHUSER"
    )]
    pub src_authuser: Option<String>,
    /// Log into the target as this administrator (master user) acting for the URL's user.
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_DST_AUTHUSER"
    )]
    pub dst_authuser: Option<String>,
    /// How to log into the source: login (the LOGIN command), plain (AUTHENTICATE PLAIN; the
    /// only one for --src-authuser), or xoauth2 / oauthbearer (with --src-oauth2-token-file).
    /// Used whatever the server advertises: the way round a server whose SASL is broken.
    /// Default: PLAIN where offered, else LOGIN; OAUTHBEARER where offered, else XOAUTH2.
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_SRC_AUTH_MECHANISM",
        value_name = "MECHANISM"
    )]
    pub src_auth_mechanism: Option<String>,
    /// How to log into the target: login, plain, xoauth2 or oauthbearer (as --src-auth-mechanism).
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_DST_AUTH_MECHANISM",
        value_name = "MECHANISM"
    )]
    pub dst_auth_mechanism: Option<String>,
    /// Log into the source with the OAuth 2.0 access token in this file (OAUTHBEARER where
    /// offered, else XOAUTH2), re-read at every connection so a refresher can rotate it
    /// (`ctl create` reads it once and sends the token; the API client refreshes it).
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_SRC_OAUTH2_TOKEN_FILE"
    )]
    pub src_oauth2_token_file: Option<PathBuf>,
    /// Log into the target with the OAuth 2.0 access token in this file.
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_DST_OAUTH2_TOKEN_FILE"
    )]
    pub dst_oauth2_token_file: Option<PathBuf>,
    /// File holding the source password (instead of MAILFERRY_SRC_PASSWORD).
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_SRC_PASSWORD_FILE"
    )]
    pub src_password_file: Option<PathBuf>,
    /// File holding the target password (instead of MAILFERRY_DST_PASSWORD).
    #[arg(
        help_heading = "Logins and secrets",
        long,
        env = "MAILFERRY_DST_PASSWORD_FILE"
    )]
    pub dst_password_file: Option<PathBuf>,
    /// Only source folders whose decoded name (with `/` separators) matches; repeatable.
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_INCLUDE")]
    pub include: Vec<String>,
    /// Leave out source folders whose decoded name (with `/` separators) matches; repeatable.
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_EXCLUDE")]
    pub exclude: Vec<String>,
    /// Map one folder: 'SOURCE=TARGET' (decoded names, `/` separators); repeatable.
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_MAP")]
    pub map: Vec<String>,
    /// Do not map special-use folders (Sent, Trash, ...) onto the target's.
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_NO_AUTOMAP")]
    pub no_automap: bool,
    /// Leave out source folders of a special-use role (junk, trash, sent, drafts, archive, all,
    /// flagged, important); repeatable.
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_EXCLUDE_FOLDER_ROLE")]
    pub exclude_folder_role: Vec<String>,
    /// Rename target folders: 's/PATTERN/REPLACEMENT/[g][i]' (Rust regex, $1 groups), applied to
    /// the decoded name with `/` separators after special-use mapping; repeatable, in order.
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_REGEX_RENAME")]
    pub regex_rename: Vec<String>,
    /// Also copy virtual folders such as Gmail's All Mail (\All, \Flagged).
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_INCLUDE_VIRTUAL")]
    pub include_virtual: bool,
    /// Leave out messages larger than this (bytes; K, M, G suffixes allowed).
    #[arg(help_heading = "Messages", long, env = "MAILFERRY_MAX_SIZE")]
    pub max_size: Option<String>,
    /// Connections per account and side (default 4, or the --provider preset).
    #[arg(help_heading = "Speed and limits", long, env = "MAILFERRY_CONNECTIONS")]
    pub connections: Option<usize>,
    /// Per mailbox pair: message bytes per second, fetched and appended together (K, M, G).
    #[arg(
        help_heading = "Speed and limits",
        long,
        env = "MAILFERRY_MAX_BYTES_PER_SECOND"
    )]
    pub max_bytes_per_second: Option<String>,
    /// Per mailbox pair: messages per second.
    #[arg(
        help_heading = "Speed and limits",
        long,
        env = "MAILFERRY_MAX_MESSAGES_PER_SECOND"
    )]
    pub max_messages_per_second: Option<u64>,
    /// Presets for a provider's limits: gmail, office365 or generic (see README, "Providers");
    /// explicit flags win.
    #[arg(
        help_heading = "Speed and limits",
        long,
        env = "MAILFERRY_PROVIDER",
        value_enum
    )]
    pub provider: Option<Provider>,
    /// Seconds of silence from a server before a wait is given up.
    #[arg(
        help_heading = "Speed and limits",
        long,
        env = "MAILFERRY_TIMEOUT",
        default_value_t = 120
    )]
    pub timeout: u64,
    /// Progress floor in bytes per second (K, M suffixes): once a server's answers to a command
    /// have been waited for longer than --timeout in all, they must have delivered this rate,
    /// or the wait is given up (a server trickling bytes never trips the inactivity timeout).
    #[arg(help_heading = "Speed and limits", long, env = "MAILFERRY_MIN_RATE", default_value = "4K", value_parser = rate_arg)]
    pub min_rate: u64,
    /// Most folders an account may list; more is refused before anything is planned (each
    /// folder costs memory and work, and a server may list any number).
    #[arg(help_heading = "Folders", long, env = "MAILFERRY_MAX_FOLDERS", default_value_t = mailferry_worker::engine::DEFAULT_MAX_FOLDERS)]
    pub max_folders: usize,
    /// Write every IMAP command and response of the run to FILE (created 0600): logins and
    /// message contents are left out, the rest (folders, flags, UIDs, the servers' answers) is
    /// what a support engineer reads first when a server misbehaves.
    #[arg(
        help_heading = "Run and output",
        long,
        env = "MAILFERRY_TRACE_IMAP",
        value_name = "FILE"
    )]
    pub trace_imap: Option<PathBuf>,
    /// Print the report or summary as one JSON document on stdout.
    #[arg(help_heading = "Run and output", long, env = "MAILFERRY_JSON")]
    pub json: bool,
    /// Many mailbox pairs from a CSV file (columns src_user, dst_user and optionally
    /// src_password, dst_password, src_host, dst_host); --src/--dst then give imaps://HOST[:PORT].
    #[arg(help_heading = "Many mailboxes", long, env = "MAILFERRY_BATCH")]
    pub batch: Option<PathBuf>,
    /// With --batch: mailbox pairs handled at once.
    #[arg(
        help_heading = "Many mailboxes",
        long,
        env = "MAILFERRY_PARALLEL",
        default_value_t = 4
    )]
    pub parallel: usize,
}

/// Flags of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Leave out messages flagged \Deleted.
    #[arg(help_heading = "Messages", long, env = "MAILFERRY_SKIP_DELETED")]
    pub skip_deleted: bool,
    /// Only messages whose INTERNALDATE is on or after this date (YYYY-MM-DD, UTC, or RFC 3339).
    #[arg(help_heading = "Messages", long, env = "MAILFERRY_SINCE")]
    pub since: Option<String>,
    /// Only messages whose INTERNALDATE is before this date (YYYY-MM-DD, UTC, or RFC 3339).
    #[arg(help_heading = "Messages", long, env = "MAILFERRY_BEFORE")]
    pub before: Option<String>,
    /// Plan and report, change nothing.
    #[arg(help_heading = "Run and output", long, env = "MAILFERRY_DRY_RUN")]
    pub dry_run: bool,
    /// State directory (a cache: deleting it never causes duplicates). Default: $XDG_STATE_HOME/mailferry.
    #[arg(help_heading = "Run and output", long, env = "MAILFERRY_STATE")]
    pub state: Option<PathBuf>,
    /// In-flight byte budget for message data held in memory (bytes; K, M, G suffixes).
    #[arg(
        help_heading = "Speed and limits",
        long,
        env = "MAILFERRY_MEMORY_BUDGET",
        default_value = "64M"
    )]
    pub memory_budget: String,
    /// Per pair, write its JSON summary and a CSV of its failures into this directory.
    #[arg(help_heading = "Run and output", long, env = "MAILFERRY_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// With --batch: write one CSV row per pair (status, copied, already present, failed,
    /// bytes, duration, first error) to this file.
    #[arg(help_heading = "Many mailboxes", long, env = "MAILFERRY_REPORT")]
    pub report: Option<PathBuf>,
    /// Keep the target in sync: after the first pass, an incremental sync every INTERVAL
    /// (`3h`, `90m`, `1d`; `off`) until interrupted. With `ctl create`: the migration's
    /// automatic sync interval (default 3h).
    #[arg(
        help_heading = "Keeping in sync",
        long,
        env = "MAILFERRY_SYNC_EVERY",
        value_name = "INTERVAL"
    )]
    pub sync_every: Option<String>,
    /// Compare every copy's flags in every pass, not only those of messages whose MODSEQ moved:
    /// the only way to follow flag changes on a source without CONDSTORE (a full inventory of
    /// every folder per pass).
    #[arg(
        help_heading = "Keeping in sync",
        long,
        env = "MAILFERRY_FULL_FLAG_SYNC"
    )]
    pub full_flag_sync: bool,
    /// Expunge copies on the target whose source message was deleted (UID EXPUNGE of copies
    /// this tool appended and recorded; never other mail; needs UIDPLUS on the target).
    #[arg(
        help_heading = "Keeping in sync",
        long,
        env = "MAILFERRY_DELETE_PROPAGATION"
    )]
    pub delete_propagation: bool,
    /// Bytes each target account may receive per UTC day (K, M, G suffixes; `0`: no limit;
    /// `--provider gmail`: 500000000, Gmail's upload limit). A mailbox that reaches it stops
    /// for the day, says so (exit code 9), and continues on the next run or sync.
    #[arg(
        help_heading = "Speed and limits",
        long,
        env = "MAILFERRY_DAILY_UPLOAD_BUDGET",
        value_name = "SIZE"
    )]
    pub daily_upload_budget: Option<String>,
}

/// The largest password file read: a password is short; a larger file is the wrong one.
const PASSWORD_FILE_LIMIT: u64 = 64 * 1024;

/// The largest `--batch` file read (100,000 records of a few hundred bytes fit well).
const BATCH_FILE_LIMIT: u64 = 64 << 20;

/// Gmail's documented IMAP upload limit per account and day.
pub const GMAIL_DAILY_UPLOAD: u64 = 500_000_000;

/// One side, validated.
pub struct Side {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Credentials.
    pub credentials: Credentials,
}

/// One mailbox pair to run.
pub struct PairInput {
    /// Its record number in the `--batch` file (`None` without `--batch`).
    pub record: Option<u64>,
    /// Source.
    pub src: Side,
    /// Target.
    pub dst: Side,
}

/// Validated settings shared by `check` and `migrate`.
pub struct Settings {
    /// The pairs to run: one, or the usable records of a batch.
    pub pairs: Vec<PairInput>,
    /// Records of the batch file that cannot be used.
    pub bad_records: Vec<mailferry_proto::report::BadRecord>,
    /// Folder rules.
    pub rules: FolderRules,
    /// Plan options.
    pub plan: PlanOptions,
    /// Warnings to show (password in URL, insecure TLS).
    pub warnings: Vec<String>,
    /// What sync passes change on copies already on the target.
    pub sync: SyncOptions,
    /// `--sync-every`: time between syncs (`None`: one pass).
    pub sync_every: Option<Duration>,
}

/// Where the environment's secrets come from (injectable for tests).
pub trait SecretEnv {
    /// A variable's value.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl SecretEnv for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

pub use mailferry_coordinator::options::parse_date;
use mailferry_coordinator::options::parse_interval;
use mailferry_coordinator::reconcile::SyncOptions;

impl MigrateArgs {
    /// The daily upload budget in bytes (0: none): the flag, else Gmail's limit with
    /// `--provider gmail`. An unreadable flag reads as 0 here; `settings` reports it.
    pub fn daily_upload_budget(&self) -> u64 {
        match &self.daily_upload_budget {
            Some(v) => parse_size(v).unwrap_or(0),
            None if self.common.provider == Some(Provider::Gmail) => GMAIL_DAILY_UPLOAD,
            None => 0,
        }
    }

    /// Validates everything for a run on this machine, collecting every problem: the flags (as
    /// [`MigrateArgs::request_settings`]), and what would otherwise fail only after the copy
    /// or never end (report outputs that cannot be written, a dry run repeated for ever).
    pub fn settings(&self, env: &dyn SecretEnv) -> Result<Settings, Vec<String>> {
        let mut local = Vec::new();
        let syncs = self
            .sync_every
            .as_deref()
            .is_some_and(|v| parse_interval(v).is_ok_and(|d| d.is_some()));
        if self.dry_run && syncs {
            local.push(
                "--dry-run with --sync-every would plan the same dry pass again and again, copying nothing; drop --sync-every (a dry run is one pass) or --dry-run".to_owned(),
            );
        }
        if let Some(dir) = &self.report_dir
            && let Err(e) = crate::preflight::report_dir(dir)
        {
            local.push(e);
        }
        if let Some(file) = &self.report
            && let Err(e) = crate::preflight::report_file(file)
        {
            local.push(e);
        }
        match self.request_settings(env) {
            Ok(s) if local.is_empty() => Ok(s),
            Ok(_) => Err(local),
            Err(mut e) => {
                e.extend(local);
                Err(e)
            }
        }
    }

    /// Validates the flags a migration is made of (what `ctl create` sends), collecting every
    /// problem (the shared flags' and migrate's own).
    pub fn request_settings(&self, env: &dyn SecretEnv) -> Result<Settings, Vec<String>> {
        let mut errors = Vec::new();
        let mut date = |flag: &str, v: &Option<String>| match v {
            None => None,
            Some(s) => parse_date(s).or_else(|| {
                errors.push(format!(
                    "{flag} {s:?} is not a date: write YYYY-MM-DD or an RFC 3339 time"
                ));
                None
            }),
        };
        let since = date("--since", &self.since);
        let before = date("--before", &self.before);
        if let (Some(a), Some(b)) = (since, before)
            && a >= b
        {
            errors.push("--since must be earlier than --before".into());
        }
        let budget = match self.daily_upload_budget.as_deref().map(parse_size) {
            Some(None) => {
                errors.push(format!(
                    "--daily-upload-budget {:?} is not a size: write e.g. 500M or 2G",
                    self.daily_upload_budget.as_deref().unwrap_or_default()
                ));
                0
            }
            _ => self.daily_upload_budget(),
        };
        if budget > 0 && budget < mailferry_coordinator::options::MIN_DAILY_UPLOAD_BUDGET {
            errors.push(format!(
                "--daily-upload-budget {budget} is too small: at least 64K, or 0 for no limit"
            ));
        }
        let sync_every = match &self.sync_every {
            None => None,
            Some(v) => parse_interval(v).unwrap_or_else(|e| {
                errors.push(format!("--sync-every {e}"));
                None
            }),
        };
        match self.common.settings(env, self.skip_deleted) {
            Ok(mut s) if errors.is_empty() => {
                s.plan.since = since;
                s.plan.before = before;
                s.sync = SyncOptions {
                    full_flag_sync: self.full_flag_sync,
                    delete_propagation: self.delete_propagation,
                };
                s.sync_every = sync_every;
                s.plan.daily_upload_budget = (budget > 0).then_some(budget);
                Ok(s)
            }
            Ok(_) => Err(errors),
            Err(mut e) => {
                e.extend(errors);
                Err(e)
            }
        }
    }
}

/// A rate for `--min-rate`: a size of at least one byte per second.
pub fn rate_arg(s: &str) -> Result<u64, String> {
    match parse_size(s) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a rate in bytes per second (e.g. 4096 or 4K, at least 1)"
        )),
    }
}

/// Parses `123`, `10K`, `5M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

impl CommonArgs {
    /// Connections and rates in force: explicit flags, else the `--provider` preset, else the
    /// defaults. Call after [`CommonArgs::settings`] validated the values.
    pub fn limits(&self) -> Limits {
        let preset = self.provider.unwrap_or(Provider::Generic).limits();
        Limits {
            connections: self.connections.unwrap_or(preset.connections),
            bytes_per_second: self
                .max_bytes_per_second
                .as_deref()
                .and_then(parse_size)
                .or(preset.bytes_per_second),
            messages_per_second: self.max_messages_per_second.or(preset.messages_per_second),
        }
    }

    /// Validates everything, collecting every problem.
    pub fn settings(
        &self,
        env: &dyn SecretEnv,
        skip_deleted: bool,
    ) -> Result<Settings, Vec<String>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let (pairs, bad_records) = match &self.batch {
            None => match self.single_pair(env, &mut warnings) {
                Ok(p) => (vec![p], Vec::new()),
                Err(e) => {
                    errors.extend(e);
                    (Vec::new(), Vec::new())
                }
            },
            Some(file) => match self.batch_pairs(file, env, &mut warnings) {
                Ok(v) => v,
                Err(e) => {
                    errors.extend(e);
                    (Vec::new(), Vec::new())
                }
            },
        };
        if self.parallel == 0 || self.parallel > 1000 {
            errors.push(format!(
                "--parallel {} must be between 1 and 1000",
                self.parallel
            ));
        }
        // The folder rules mean the same as the API's options and are checked by the same code;
        // its field names become flag names here.
        let mut maps = Vec::new();
        for m in &self.map {
            match m.split_once('=') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                    maps.push((a.to_owned(), b.to_owned()))
                }
                _ => errors.push(format!("--map {m:?} must be 'SOURCE=TARGET'")),
            }
        }
        let spec = OptionsSpec {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            map: maps,
            no_automap: self.no_automap,
            include_virtual: self.include_virtual,
            exclude_folder_roles: self.exclude_folder_role.clone(),
            regex_rename: self.regex_rename.clone(),
            ..OptionsSpec::default()
        };
        let rules = match spec.validate("") {
            Ok(v) => Some(v.rules),
            Err(errs) => {
                for e in errs {
                    let field = e.field.trim_start_matches('.');
                    let name = field.split('[').next().unwrap_or(field);
                    let flag = match name {
                        "exclude_folder_roles" => "--exclude-folder-role".to_owned(),
                        other => format!("--{}", other.replace('_', "-")),
                    };
                    errors.push(format!("{flag} {}", e.message));
                }
                None
            }
        };
        let max_size = match &self.max_size {
            None => None,
            Some(s) => match parse_size(s) {
                Some(v) => Some(v),
                None => {
                    errors.push(format!(
                        "--max-size {s:?} is not a size (bytes, or with K, M, G)"
                    ));
                    None
                }
            },
        };
        if let Some(c) = self.connections
            && (c == 0 || c > 64)
        {
            errors.push(format!("--connections {c} must be between 1 and 64"));
        }
        if let Some(b) = &self.max_bytes_per_second
            && parse_size(b).is_none_or(|v| v == 0)
        {
            errors.push(format!(
                "--max-bytes-per-second {b:?} is not a positive size (bytes, or with K, M, G)"
            ));
        }
        if self.max_messages_per_second == Some(0) {
            errors.push("--max-messages-per-second must be at least 1".into());
        }
        if self.timeout == 0 {
            errors.push("--timeout must be at least 1 second".into());
        }
        match rules.filter(|_| errors.is_empty()) {
            Some(rules) => Ok(Settings {
                pairs,
                bad_records,
                rules,
                plan: PlanOptions {
                    max_size,
                    skip_deleted,
                    ..PlanOptions::default()
                },
                warnings,
                sync: SyncOptions::default(),
                sync_every: None,
            }),
            None => Err(errors),
        }
    }

    fn side_flags(&self, which: Which) -> SideFlags<'_> {
        match which {
            Which::Src => SideFlags {
                flag: "--src",
                tls: self.src_tls,
                ca: &self.src_ca,
                skip_verify: self.src_insecure_skip_verify,
                password_file: &self.src_password_file,
                password_var: "MAILFERRY_SRC_PASSWORD",
                authuser: &self.src_authuser,
                token_file: &self.src_oauth2_token_file,
                mechanism: &self.src_auth_mechanism,
            },
            Which::Dst => SideFlags {
                flag: "--dst",
                tls: self.dst_tls,
                ca: &self.dst_ca,
                skip_verify: self.dst_insecure_skip_verify,
                password_file: &self.dst_password_file,
                password_var: "MAILFERRY_DST_PASSWORD",
                authuser: &self.dst_authuser,
                token_file: &self.dst_oauth2_token_file,
                mechanism: &self.dst_auth_mechanism,
            },
        }
    }

    /// Problems with one side's flags that concern every pair (usage errors), and its warnings.
    fn check_side_flags(
        &self,
        which: Which,
        host: &str,
        errors: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) {
        let f = self.side_flags(which);
        if f.skip_verify {
            warnings.push(format!(
                "{}-insecure-skip-verify: the certificate of {host} is NOT verified; anyone on the path can read the password and the mail",
                f.flag
            ));
        }
        if let Some(ca) = f.ca
            && !ca.is_file()
        {
            errors.push(format!("{}-ca {}: no such file", f.flag, shown_path(ca)));
        }
        if let Some(admin) = f.authuser
            && let Err(e) = endpoint::check_user(admin)
        {
            errors.push(format!("{}-authuser: {e}", f.flag));
        }
        if let Some(value) = f.mechanism {
            match auth::parse(value) {
                Ok(m) => errors.extend(auth::misfit(f.flag, m, f.given())),
                Err(e) => errors.push(format!("{}-auth-mechanism {e}", f.flag)),
            }
        }
    }

    /// The login mechanism of a side's flag, when it names one that fits (a bad one is
    /// reported by [`CommonArgs::check_side_flags`]).
    fn flag_mechanism(&self, which: Which) -> Option<AuthMechanism> {
        let f = self.side_flags(which);
        let m = auth::parse(f.mechanism.as_deref()?).ok()?;
        auth::misfit(f.flag, m, f.given()).is_none().then_some(m)
    }

    /// One side of a pair. `password` is one given in the URL or the batch record; otherwise the
    /// password file or the environment variable is used. `mechanism` is the login mechanism of
    /// the flag or the record, already checked against the other flags.
    fn side(
        &self,
        which: Which,
        parsed: EndpointUrl,
        password: Option<String>,
        mechanism: Option<AuthMechanism>,
        env: &dyn SecretEnv,
    ) -> Result<Side, Vec<String>> {
        let f = self.side_flags(which);
        let mut errors = Vec::new();
        let tls = match f.tls {
            Some(TlsFlag::Implicit) => TlsMode::Implicit,
            Some(TlsFlag::Starttls) => TlsMode::Starttls,
            Some(TlsFlag::None) => TlsMode::None,
            None => parsed.tls,
        };
        if tls == TlsMode::None && !endpoint::is_loopback(&parsed.host) && !self.allow_insecure_auth
        {
            errors.push(format!(
                "{}-tls none would send the password in clear to {}; use TLS, or add --allow-insecure-auth if the network is trusted",
                f.flag, parsed.host
            ));
        }
        let credentials = match f.token_file {
            Some(file) => {
                if f.authuser.is_some() {
                    errors.push(format!(
                        "{0}-oauth2-token-file and {0}-authuser exclude each other: an administrator logs in with a password",
                        f.flag
                    ));
                } else if let Err(e) = std::fs::metadata(file) {
                    errors.push(format!(
                        "{}-oauth2-token-file {}: {e}",
                        f.flag,
                        file.display()
                    ));
                }
                Some(Credentials::OAuth2 {
                    token_file: file.clone(),
                })
            }
            // A token mechanism without a token: said by `check_side_flags` (the flag concerns
            // every pair); asking for a password as well would only mislead.
            None if f
                .mechanism
                .as_deref()
                .and_then(|v| auth::parse(v).ok())
                .is_some_and(AuthMechanism::takes_token) =>
            {
                None
            }
            None => self.password(&f, password, env, &mut errors).map(|secret| {
                match f.authuser.as_deref().filter(|a| !a.is_empty()) {
                    Some(admin) => Credentials::Admin {
                        admin: admin.to_owned(),
                        secret,
                    },
                    None => Credentials::Password(secret),
                }
            }),
        };
        let Some(credentials) = credentials.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        Ok(Side {
            endpoint: Endpoint {
                host: parsed.host,
                port: parsed.port,
                user: parsed.user,
                tls,
                ca_file: f
                    .ca
                    .as_ref()
                    .map(|p| CaFile::Path(p.to_string_lossy().into_owned())),
                insecure_skip_verify: f.skip_verify,
                auth_mechanism: mechanism,
            },
            credentials,
        })
    }

    /// The password: one given in the URL or the batch record, else the password file, else
    /// the environment variable.
    fn password(
        &self,
        f: &SideFlags<'_>,
        given: Option<String>,
        env: &dyn SecretEnv,
        errors: &mut Vec<String>,
    ) -> Option<Secret> {
        if let Some(p) = given {
            return Some(Secret::new(p));
        }
        if let Some(file) = f.password_file {
            let shown = shown_path(file);
            return match crate::input::read_small(file, PASSWORD_FILE_LIMIT) {
                // Line ends are the editor's, not the password's; nothing else is taken off.
                Ok(s) => match s.trim_end_matches(['\r', '\n']) {
                    "" => {
                        errors.push(format!(
                            "{}-password-file {shown} is empty: write the password into it",
                            f.flag
                        ));
                        None
                    }
                    p => Some(Secret::new(p)),
                },
                Err(e) => {
                    errors.push(format!("{}-password-file {shown}: {e}", f.flag));
                    None
                }
            };
        }
        let p = env.var(f.password_var);
        match p.as_deref() {
            None => errors.push(format!(
                "no password for {}: set {} or use {}-password-file",
                f.flag, f.password_var, f.flag
            )),
            Some("") => {
                errors.push(format!(
                    "{} is empty: set it to the password of {}, or use {}-password-file",
                    f.password_var, f.flag, f.flag
                ));
                return None;
            }
            Some(_) => {}
        }
        p.map(Secret::new)
    }
    fn single_pair(
        &self,
        env: &dyn SecretEnv,
        warnings: &mut Vec<String>,
    ) -> Result<PairInput, Vec<String>> {
        let mut errors = Vec::new();
        let mut sides = Vec::new();
        for (which, url) in [(Which::Src, &self.src), (Which::Dst, &self.dst)] {
            let flag = self.side_flags(which).flag;
            match endpoint::parse(url, flag) {
                Ok(parsed) => {
                    self.check_side_flags(which, &parsed.host, &mut errors, warnings);
                    let password = parsed.password.clone();
                    if password.is_some() {
                        warnings.push(format!(
                            "{flag}: a password in the URL can leak through the process list and shell history; use {} or {flag}-password-file",
                            self.side_flags(which).password_var
                        ));
                    }
                    let mechanism = self.flag_mechanism(which);
                    match self.side(which, parsed, password, mechanism, env) {
                        Ok(side) => sides.push(side),
                        Err(e) => errors.extend(e),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let dst = sides.pop();
        let src = sides.pop();
        match (src, dst) {
            (Some(src), Some(dst)) if same_mailbox(&src.endpoint, &dst.endpoint) => {
                Err(vec![format!(
                    "--src and --dst are the same mailbox ({}); a mailbox cannot be migrated onto itself",
                    shown(&src.endpoint.display())
                )])
            }
            (Some(src), Some(dst)) => Ok(PairInput {
                record: None,
                src,
                dst,
            }),
            _ => Err(vec!["internal: missing side".into()]),
        }
    }

    /// The pairs of a batch file; a record that cannot be used becomes a bad record.
    fn batch_pairs(
        &self,
        file: &std::path::Path,
        env: &dyn SecretEnv,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<PairInput>, Vec<mailferry_proto::report::BadRecord>), Vec<String>> {
        let mut errors = Vec::new();
        let defaults: Vec<Option<EndpointUrl>> = [(Which::Src, &self.src), (Which::Dst, &self.dst)]
            .into_iter()
            .map(
                |(which, url)| match endpoint::parse_host(url, self.side_flags(which).flag) {
                    Ok(p) => {
                        self.check_side_flags(which, &p.host, &mut errors, warnings);
                        Some(p)
                    }
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                },
            )
            .collect();
        let text = crate::input::read_small(file, BATCH_FILE_LIMIT)
            .map_err(|e| vec![format!("--batch {}: {e}", shown_path(file))])?;
        let records = crate::batch::parse(&text)
            .map_err(|e| vec![format!("--batch {}: {e}", shown_path(file))])?;
        let (Some(Some(src_default)), Some(Some(dst_default))) =
            (defaults.first(), defaults.get(1))
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut pairs: Vec<PairInput> = Vec::new();
        let mut bad = Vec::new();
        // As the API refuses a pair twice in one request: the second record is flagged, and the
        // pair runs (and is reported) once.
        let mut seen: std::collections::HashMap<(String, String), u64> = Default::default();
        for r in records {
            let pair = self
                .record_pair(&r, src_default, dst_default, env)
                .and_then(|p| {
                    let key = (mailbox_key(&p.src.endpoint), mailbox_key(&p.dst.endpoint));
                    match seen.get(&key) {
                        Some(first) => Err(format!(
                            "record {}: the same pair as record {first} ({} → {}); it runs once, as record {first}",
                            r.number,
                            shown(&p.src.endpoint.display()),
                            shown(&p.dst.endpoint.display())
                        )),
                        None => {
                            seen.insert(key, r.number);
                            Ok(p)
                        }
                    }
                });
            match pair {
                Ok(p) => pairs.push(p),
                Err(error) => bad.push(mailferry_proto::report::BadRecord {
                    record: r.number,
                    error,
                }),
            }
        }
        Ok((pairs, bad))
    }

    fn record_pair(
        &self,
        r: &crate::batch::Record,
        src_default: &EndpointUrl,
        dst_default: &EndpointUrl,
        env: &dyn SecretEnv,
    ) -> Result<PairInput, String> {
        if let Some(extra) = r.fields.get("_extra") {
            return Err(format!("record {}: {extra}", r.number));
        }
        let mut sides = Vec::new();
        for (which, default, prefix) in [
            (Which::Src, src_default, "src"),
            (Which::Dst, dst_default, "dst"),
        ] {
            let user = r
                .get(&format!("{prefix}_user"))
                .ok_or_else(|| format!("record {}: {prefix}_user is empty", r.number))?;
            endpoint::check_user(user)
                .map_err(|e| format!("record {}: {prefix}_user: {e}", r.number))?;
            let mut parsed = default.clone();
            parsed.user = user.to_owned();
            if let Some(hp) = r.get(&format!("{prefix}_host")) {
                let (host, port) = endpoint::split_host_port(hp)
                    .filter(|(h, _)| !h.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "record {}: {prefix}_host {hp:?} is not HOST or HOST:PORT",
                            r.number
                        )
                    })?;
                endpoint::check_host(&host)
                    .map_err(|e| format!("record {}: {prefix}_host: {e}", r.number))?;
                parsed.host = host;
                if let Some(p) = port {
                    parsed.port = p;
                }
            }
            let password = r.get(&format!("{prefix}_password")).map(str::to_owned);
            let mechanism = match r.get(&format!("{prefix}_auth_mechanism")) {
                None => self.flag_mechanism(which),
                Some(v) => {
                    let f = self.side_flags(which);
                    let m = auth::parse(v)
                        .map_err(|e| format!("record {}: {prefix}_auth_mechanism {e}", r.number))?;
                    if let Some(e) = auth::misfit(f.flag, m, f.given()) {
                        return Err(format!(
                            "record {}: {prefix}_auth_mechanism {m}: {e}",
                            r.number
                        ));
                    }
                    Some(m)
                }
            };
            sides.push(
                self.side(which, parsed, password, mechanism, env)
                    .map_err(|e| format!("record {}: {}", r.number, e.join("; ")))?,
            );
        }
        let dst = sides.pop();
        let src = sides.pop();
        match (src, dst) {
            (Some(src), Some(dst)) if same_mailbox(&src.endpoint, &dst.endpoint) => Err(format!(
                "record {}: source and target are the same mailbox ({}); a mailbox cannot be migrated onto itself",
                r.number,
                shown(&src.endpoint.display())
            )),
            (Some(src), Some(dst)) => Ok(PairInput {
                record: Some(r.number),
                src,
                dst,
            }),
            _ => Err(format!("record {}: incomplete", r.number)),
        }
    }
}

/// Whether two endpoints are one mailbox, by the rule the API applies.
fn same_mailbox(a: &Endpoint, b: &Endpoint) -> bool {
    mailferry_coordinator::api::convert::same_mailbox(a, b)
}

/// What makes a pair's side unique within a batch: user, host (without case) and port.
fn mailbox_key(e: &Endpoint) -> String {
    format!("{}@{}:{}", e.user, e.host.to_ascii_lowercase(), e.port)
}

/// Which side a flag belongs to.
#[derive(Debug, Clone, Copy)]
enum Which {
    Src,
    Dst,
}

/// One side's flags.
struct SideFlags<'a> {
    flag: &'static str,
    tls: Option<TlsFlag>,
    ca: &'a Option<PathBuf>,
    skip_verify: bool,
    password_file: &'a Option<PathBuf>,
    password_var: &'static str,
    authuser: &'a Option<String>,
    token_file: &'a Option<PathBuf>,
    mechanism: &'a Option<String>,
}

impl SideFlags<'_> {
    /// How the side's credentials are given, as a login mechanism sees them.
    fn given(&self) -> auth::Given {
        match (self.token_file, self.authuser.as_deref()) {
            (Some(_), _) => auth::Given::Token,
            (None, Some(a)) if !a.is_empty() => auth::Given::Admin,
            _ => auth::Given::Password,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Env(Vec<(&'static str, &'static str)>);
    impl SecretEnv for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn args(extra: &[&str]) -> CommonArgs {
        let mut v = vec![
            "mailferry",
            "check",
            "--src",
            "imaps://a@127.0.0.1",
            "--dst",
            "imap://b@example.org",
        ];
        v.extend_from_slice(extra);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Check(c) => c,
            other => panic!("parsed as another command: {other:?}"),
        }
    }

    #[test]
    fn dates_parse() {
        assert_eq!(
            parse_date("2020-02-29").unwrap().to_rfc3339(),
            "2020-02-29T00:00:00+00:00"
        );
        assert_eq!(
            parse_date("2020-01-01T10:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2020-01-01T08:00:00+00:00"
        );
        assert!(parse_date("2021-02-29").is_none());
        assert!(parse_date("yesterday").is_none());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("10K"), Some(10240));
        assert_eq!(parse_size("2m"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let a = args(&[
            "--include",
            "(",
            "--map",
            "nope",
            "--max-size",
            "lots",
            "--dst-tls",
            "none",
            "--connections",
            "0",
        ]);
        let errs = a
            .settings(&Env(vec![("MAILFERRY_SRC_PASSWORD", "s")]), false)
            .err()
            .unwrap();
        let all = errs.join("\n");
        for needle in [
            "--include",
            "--map",
            "--max-size",
            "in clear",
            "--connections",
            "no password for --dst",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
    }

    #[test]
    fn valid_settings_carry_endpoints_and_never_print_secrets() {
        let a = args(&["--map", "Old/Sent=Sent", "--max-size", "1M"]);
        let env = Env(vec![
            ("MAILFERRY_SRC_PASSWORD", "s3cret"),
            ("MAILFERRY_DST_PASSWORD", "t0p"),
        ]);
        let s = a.settings(&env, true).ok().unwrap();
        assert_eq!(s.pairs[0].src.endpoint.port, 993);
        assert_eq!(s.pairs[0].dst.endpoint.tls, TlsMode::Starttls);
        assert_eq!(s.plan.max_size, Some(1 << 20));
        assert!(s.plan.skip_deleted);
        assert!(!format!("{:?}", s.pairs[0].src.credentials).contains("s3cret"));
    }

    #[test]
    fn auth_mechanisms_reach_the_endpoints_and_bad_ones_are_reported_at_once() {
        let env = Env(vec![
            ("MAILFERRY_SRC_PASSWORD", "s"),
            ("MAILFERRY_DST_PASSWORD", "t"),
        ]);
        let a = args(&[
            "--src-auth-mechanism",
            "LOGIN",
            "--dst-auth-mechanism",
            "plain",
        ]);
        let s = a.settings(&env, false).ok().unwrap();
        assert_eq!(
            s.pairs[0].src.endpoint.auth_mechanism,
            Some(AuthMechanism::Login)
        );
        assert_eq!(
            s.pairs[0].dst.endpoint.auth_mechanism,
            Some(AuthMechanism::Plain)
        );
        assert_eq!(
            args(&[]).settings(&env, false).ok().unwrap().pairs[0]
                .src
                .endpoint
                .auth_mechanism,
            None
        );
        let errs = args(&[
            "--src-auth-mechanism",
            "login",
            "--src-authuser",
            "admin",
            "--dst-auth-mechanism",
            "oauthbearer",
            "--max-size",
            "lots",
        ])
        .settings(&Env(vec![]), false)
        .err()
        .unwrap();
        let all = errs.join("\n");
        for needle in [
            "--src-auth-mechanism login and --src-authuser exclude each other",
            "--dst-auth-mechanism oauthbearer logs in with an OAuth 2.0 access token",
            "--max-size",
            "no password for --src",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
        assert!(
            !all.contains("no password for --dst"),
            "a token mechanism asks for no password: {all}"
        );
    }

    #[test]
    fn batch_records_may_name_their_own_mechanism() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(
            &file,
            "src_user,dst_user,src_auth_mechanism\nalice,alice, Login \nbob,bob,\ncarol,carol,cram-md5\ndave,dave,xoauth2\n",
        )
        .unwrap();
        let file = file.to_string_lossy().into_owned();
        let v = vec![
            "mailferry",
            "check",
            "--batch",
            &file,
            "--src",
            "imaps://127.0.0.1",
            "--dst",
            "imap://new.example",
            "--src-auth-mechanism",
            "plain",
        ];
        let Command::Check(a) = Cli::try_parse_from(v).unwrap().command else {
            unreachable!()
        };
        let env = Env(vec![
            ("MAILFERRY_SRC_PASSWORD", "s"),
            ("MAILFERRY_DST_PASSWORD", "t"),
        ]);
        let s = a.settings(&env, false).ok().unwrap();
        let mechanisms: Vec<_> = s
            .pairs
            .iter()
            .map(|p| p.src.endpoint.auth_mechanism)
            .collect();
        assert_eq!(
            mechanisms,
            [Some(AuthMechanism::Login), Some(AuthMechanism::Plain)],
            "the record's column wins over the flag"
        );
        let bad: Vec<(u64, &str)> = s
            .bad_records
            .iter()
            .map(|b| (b.record, b.error.as_str()))
            .collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0]
                .1
                .contains("src_auth_mechanism \"cram-md5\" is not a login mechanism"),
            "{bad:?}"
        );
        assert!(bad[1].1.contains("src_auth_mechanism xoauth2"), "{bad:?}");
    }

    #[test]
    fn batch_records_become_pairs_or_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(
            &file,
            "src_user,dst_user,src_password,dst_host\nalice,alice@new,,\nbob,bob,pw-b,other.example:1993\n,carol,,\ndave,dave,,bad:port\n",
        )
        .unwrap();
        let file = file.to_string_lossy().into_owned();
        let v = vec![
            "mailferry",
            "check",
            "--batch",
            &file,
            "--src",
            "imaps://127.0.0.1",
            "--dst",
            "imap://new.example",
        ];
        let Command::Check(a) = Cli::try_parse_from(v).unwrap().command else {
            unreachable!()
        };
        let env = Env(vec![
            ("MAILFERRY_SRC_PASSWORD", "s"),
            ("MAILFERRY_DST_PASSWORD", "t"),
        ]);
        let s = a.settings(&env, false).ok().unwrap();
        assert_eq!(s.pairs.len(), 2);
        assert_eq!(s.pairs[0].record, Some(1));
        assert_eq!(s.pairs[0].dst.endpoint.user, "alice@new");
        assert_eq!(
            (
                s.pairs[0].dst.endpoint.host.as_str(),
                s.pairs[0].dst.endpoint.port
            ),
            ("new.example", 143)
        );
        assert_eq!(
            (
                s.pairs[1].dst.endpoint.host.as_str(),
                s.pairs[1].dst.endpoint.port
            ),
            ("other.example", 1993)
        );
        let Credentials::Password(p) = &s.pairs[1].src.credentials else {
            panic!("a password login")
        };
        assert_eq!(
            p.expose(),
            "pw-b",
            "the record's password wins over the environment"
        );
        let bad: Vec<u64> = s.bad_records.iter().map(|b| b.record).collect();
        assert_eq!(bad, vec![3, 4]);
        assert!(s.bad_records[0].error.contains("src_user"));
    }
}
