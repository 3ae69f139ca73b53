//! The embedded mode: coordinator, in-process queue, workers and the SQLite store in one process.
//! The same planner, tasks, engine and outcomes as the fleet; only the transports differ.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailferry_coordinator::migration::{self, PairSpec, RunOptions};
use mailferry_fleet::{InProcessQueue, MemoryCredentials, SqliteStore, TaskQueue};
use mailferry_proto::ErrorKind;
use mailferry_proto::report::PairStatus;
use mailferry_proto::task::Side as ProtoSide;
use mailferry_worker::engine::{Engine, EngineConfig};
use mailferry_worker::imap::ConnectOptions;
use tokio::sync::watch;

use crate::args::{CommonArgs, MigrateArgs, ProcessEnv, Settings, parse_size};
use crate::exit;
use crate::output;
use crate::progress::Printer;

fn settings(common: &CommonArgs, skip_deleted: bool) -> Result<Settings, i32> {
    match common.settings(&ProcessEnv, skip_deleted) {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            Ok(s)
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            Err(exit::USAGE)
        }
    }
}

fn wire(s: &Settings) -> (PairSpec, MemoryCredentials) {
    let pair = PairSpec::embedded(s.src.endpoint.display(), s.dst.endpoint.display());
    let creds = MemoryCredentials::default();
    creds.insert(
        &pair.pair_id,
        ProtoSide::Source,
        s.src.endpoint.clone(),
        s.src.credentials.clone(),
    );
    creds.insert(
        &pair.pair_id,
        ProtoSide::Target,
        s.dst.endpoint.clone(),
        s.dst.credentials.clone(),
    );
    (pair, creds)
}

fn engine_config(common: &CommonArgs, budget: u64) -> EngineConfig {
    EngineConfig {
        connect: ConnectOptions {
            // Idle large-message buffers kept for reuse: a quarter of the byte budget, the
            // other three quarters bound the messages in flight.
            buffers: std::sync::Arc::new(mailferry_worker::imap::buffers::BufferPool::new(
                usize::try_from(budget / 4).unwrap_or(usize::MAX),
            )),
            timeout: Duration::from_secs(common.timeout),
            ..ConnectOptions::default()
        },
        budget_bytes: budget - budget / 4,
        ..EngineConfig::default()
    }
}

/// Exit code of a failed task-level outcome.
fn code_for(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Auth => exit::AUTH,
        ErrorKind::Connect | ErrorKind::Protocol | ErrorKind::Transient | ErrorKind::Throttled => {
            exit::CONNECT
        }
        ErrorKind::Config => exit::USAGE,
        ErrorKind::Permanent => exit::FATAL,
    }
}

/// `mailferry check`.
pub async fn check(args: CommonArgs, stop: watch::Receiver<bool>) -> i32 {
    let s = match settings(&args, false) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let max_size = s.plan.max_size;
    let (pair, creds) = wire(&s);
    let store = match SqliteStore::in_memory() {
        Ok(st) => st,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    let engine = Arc::new(Engine::new(store, creds, engine_config(&args, 16 << 20)));
    let queue = Arc::new(InProcessQueue::new());
    let runner = tokio::spawn(mailferry_worker::runner::run(
        queue.clone(),
        engine,
        1,
        stopped(stop.clone()),
    ));
    let result = tokio::select! {
        r = mailferry_coordinator::check::run(queue.as_ref(), "check", &pair, &s.rules, max_size) => r,
        _ = stopped(stop) => { eprintln!("interrupted"); return exit::INTERRUPTED; }
    };
    queue.close();
    let _ = runner.await;
    match result {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", output::check_text(&report));
            }
            if report.problems.iter().any(|p| p.blocking) {
                exit::FAILURES
            } else {
                exit::OK
            }
        }
        Err(f) => {
            eprintln!("error: {}", f.message);
            code_for(f.kind)
        }
    }
}

fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("mailferry");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/mailferry"),
        None => PathBuf::from(".mailferry-state"),
    }
}

/// `mailferry migrate`.
pub async fn migrate(args: MigrateArgs, stop: watch::Receiver<bool>) -> i32 {
    let s = match settings(&args.common, args.skip_deleted) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(budget) = parse_size(&args.memory_budget).filter(|b| *b >= 1 << 20) else {
        eprintln!(
            "error: --memory-budget {:?} must be a size of at least 1M",
            args.memory_budget
        );
        return exit::USAGE;
    };
    let state_dir = args.state.clone().unwrap_or_else(default_state_dir);
    let store = match SqliteStore::open(&state_dir) {
        Ok(st) => st,
        Err(e) => {
            eprintln!("error: {e}; choose another directory with --state");
            return exit::USAGE;
        }
    };
    let (pair, creds) = wire(&s);
    let engine = Arc::new(Engine::new(
        store.clone(),
        creds,
        engine_config(&args.common, budget),
    ));
    let queue = Arc::new(InProcessQueue::new());
    let runner = tokio::spawn(mailferry_worker::runner::run(
        queue.clone(),
        engine,
        args.common.connections,
        stopped(stop.clone()),
    ));
    let opts = RunOptions {
        rules: s.rules,
        plan: s.plan,
        dry_run: args.dry_run,
        ..RunOptions::default()
    };
    let printer = Printer::new(false);
    let summaries = migration::run(
        queue.clone(),
        &store,
        "embedded",
        vec![pair],
        &opts,
        &printer,
        stopped(stop),
    )
    .await;
    printer.finish();
    queue.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), runner).await;
    let mut code = exit::OK;
    for summary in &summaries {
        // What stopped a pair also goes to stderr, so it is seen with --json and in logs.
        if let Some(e) = &summary.error {
            eprintln!("error: {e}");
        }
        if args.common.json {
            println!(
                "{}",
                serde_json::to_string_pretty(summary).unwrap_or_default()
            );
        } else {
            print!("{}", output::summary_text(summary));
        }
        code = code.max(match summary.status {
            PairStatus::Completed => exit::OK,
            PairStatus::CompletedWithFailures => exit::FAILURES,
            PairStatus::AuthFailed => exit::AUTH,
            PairStatus::ConnectFailed => exit::CONNECT,
            PairStatus::Failed => exit::FATAL,
            PairStatus::Interrupted => exit::INTERRUPTED,
        });
    }
    code
}

/// Resolves once the stop flag is raised.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
