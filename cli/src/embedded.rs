//! The embedded mode: coordinator, in-process queue, workers and the SQLite store in one process.
//! The same planner, tasks, engine and outcomes as the fleet; only the transports differ.
//!
//! Each mailbox pair gets its own queue, runner (`--connections` tasks at once) and driver; with
//! `--batch`, up to `--parallel` pairs run at once over one engine (one byte budget, one store).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use mailferry_coordinator::migration::{self, PairSpec, Progress, RunOptions};
use mailferry_fleet::{InProcessQueue, MemoryCredentials, SqliteStore, TaskQueue};
use mailferry_proto::ErrorKind;
use mailferry_proto::report::{
    BatchCheck, BatchCheckPair, BatchPair, BatchSummary, PairStatus, PairSummary,
};
use mailferry_proto::task::Side as ProtoSide;
use mailferry_worker::engine::{Engine, EngineConfig};
use mailferry_worker::imap::ConnectOptions;
use mailferry_worker::imap::buffers::BufferPool;
use tokio::sync::watch;

use crate::args::{CommonArgs, MigrateArgs, PairInput, ProcessEnv, Settings, parse_size};
use crate::exit;
use crate::output;
use crate::progress::Printer;

/// How long work in hand may go on after an interrupt (Ctrl-C, SIGTERM): batches that finish
/// within it are counted; whatever still waits (on a silent server, a login, a settle wait) is
/// dropped, which is safe at any moment (the next run decides from the target's contents), so a
/// run stops within a second or two whatever it waits on.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

fn settings(validated: Result<Settings, Vec<String>>) -> Result<Settings, i32> {
    match validated {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            for b in &s.bad_records {
                eprintln!("error: {}", b.error);
            }
            if s.pairs.is_empty() {
                eprintln!("error: no usable mailbox pair; nothing ran");
                return Err(exit::USAGE);
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

/// Registers every pair's endpoints and secrets (in memory only) and names the pairs.
fn wire(pairs: &[PairInput]) -> (Vec<(Option<u64>, PairSpec)>, MemoryCredentials) {
    let creds = MemoryCredentials::default();
    let specs = pairs
        .iter()
        .map(|p| {
            let spec = PairSpec::embedded(p.src.endpoint.display(), p.dst.endpoint.display());
            creds.insert(
                &spec.pair_id,
                ProtoSide::Source,
                p.src.endpoint.clone(),
                p.src.credentials.clone(),
            );
            creds.insert(
                &spec.pair_id,
                ProtoSide::Target,
                p.dst.endpoint.clone(),
                p.dst.credentials.clone(),
            );
            (p.record, spec)
        })
        .collect();
    (specs, creds)
}

/// The engine's settings from the flags; `Err` (printed) when `--trace-imap`'s file cannot be
/// created.
fn engine_config(common: &CommonArgs, budget: u64) -> Result<EngineConfig, i32> {
    let trace = match &common.trace_imap {
        None => None,
        Some(path) => match mailferry_worker::imap::trace::TraceFile::create(path) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                eprintln!(
                    "error: --trace-imap {}: {e}",
                    crate::input::shown_path(path)
                );
                return Err(exit::USAGE);
            }
        },
    };
    Ok(EngineConfig {
        connect: ConnectOptions {
            trace,
            // Idle large-message buffers kept for reuse: a quarter of the byte budget, the
            // other three quarters bound the messages in flight.
            buffers: Arc::new(BufferPool::new(
                usize::try_from(budget / 4).unwrap_or(usize::MAX),
            )),
            timeout: Duration::from_secs(common.timeout),
            min_rate: common.min_rate,
            ..ConnectOptions::default()
        },
        budget_bytes: budget - budget / 4,
        max_folders: common.max_folders.max(1),
        max_bytes_per_second: common.limits().bytes_per_second,
        max_messages_per_second: common.limits().messages_per_second,
        // `--connections` (or the provider's preset) bounds sessions per account and side,
        // idle pooled ones included.
        account_connections: u32::try_from(common.limits().connections)
            .unwrap_or(u32::MAX)
            .max(1),
        ..EngineConfig::default()
    })
}

/// Exit code of a failed task-level outcome.
fn code_for(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Auth => exit::AUTH,
        ErrorKind::Connect | ErrorKind::Protocol | ErrorKind::Transient | ErrorKind::Throttled => {
            exit::CONNECT
        }
        ErrorKind::Config => exit::USAGE,
        ErrorKind::Permanent | ErrorKind::StateLost => exit::FATAL,
    }
}

fn code_for_status(status: PairStatus) -> i32 {
    match status {
        PairStatus::Completed => exit::OK,
        PairStatus::CompletedWithFailures => exit::FAILURES,
        PairStatus::AuthFailed => exit::AUTH,
        PairStatus::ConnectFailed => exit::CONNECT,
        PairStatus::Failed => exit::FATAL,
        PairStatus::Interrupted => exit::INTERRUPTED,
        PairStatus::Deferred => exit::DEFERRED,
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `mailferry check`.
pub async fn check(args: CommonArgs, stop: watch::Receiver<bool>) -> i32 {
    let s = match settings(args.settings(&ProcessEnv, false)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let max_size = s.plan.max_size;
    let (specs, creds) = wire(&s.pairs);
    let store = match SqliteStore::in_memory() {
        Ok(st) => st,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    let config = match engine_config(&args, 16 << 20) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = Arc::new(Engine::new(store, creds, config));
    let rules = &s.rules;
    let stop_all = stop.clone();
    let checks = futures::stream::iter(specs.iter().enumerate())
        .map(|(i, (record, spec))| {
            let (engine, stop) = (engine.clone(), stop.clone());
            async move {
                let queue = Arc::new(InProcessQueue::new());
                let runner = tokio::spawn(mailferry_worker::runner::run(
                    queue.clone(),
                    engine,
                    1,
                    stopped(stop),
                    Some(INTERRUPT_GRACE),
                ));
                let r = mailferry_coordinator::check::run(
                    queue.as_ref(),
                    "check",
                    spec,
                    rules,
                    max_size,
                )
                .await;
                queue.close();
                let _ = runner.await;
                (i, *record, spec, r)
            }
        })
        .buffer_unordered(args.parallel);
    let mut results = tokio::select! {
        r = checks.collect::<Vec<_>>() => r,
        _ = stopped(stop_all) => { eprintln!("interrupted"); return exit::INTERRUPTED; }
    };
    results.sort_by_key(|(i, ..)| *i);
    let mut code = if s.bad_records.is_empty() {
        exit::OK
    } else {
        exit::FAILURES
    };
    let mut batch = BatchCheck {
        pairs: Vec::new(),
        bad_records: s.bad_records.clone(),
        finished_at: Utc::now(),
    };
    for (_, record, spec, result) in results {
        let (report, error) = match result {
            Ok(report) => {
                if report.problems.iter().any(|p| p.blocking) {
                    code = code.max(exit::FAILURES);
                }
                (Some(report), None)
            }
            Err(f) => {
                eprintln!("error: {}", f.message);
                code = code.max(code_for(f.kind));
                (None, Some(f.message))
            }
        };
        if args.batch.is_none() {
            if let Some(r) = &report {
                if args.json {
                    println!("{}", json(r));
                } else {
                    print!("{}", output::check_text(r));
                }
            }
        } else {
            if !args.json {
                match &report {
                    Some(r) => print!(
                        "== record {}\n{}",
                        record.unwrap_or(0),
                        output::check_text(r)
                    ),
                    None => println!(
                        "== record {}: {} -> {}: {}",
                        record.unwrap_or(0),
                        spec.source,
                        spec.target,
                        error.clone().unwrap_or_default()
                    ),
                }
            }
            batch.pairs.push(BatchCheckPair {
                record: record.unwrap_or(0),
                source: spec.source.clone(),
                target: spec.target.clone(),
                report,
                error,
            });
        }
    }
    if args.batch.is_some() && args.json {
        println!("{}", json(&batch));
    }
    code
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

/// Runs one pair to its summary: its own queue, runner and driver over the shared engine.
async fn run_pair(
    engine: Arc<Engine<SqliteStore, MemoryCredentials>>,
    store: SqliteStore,
    spec: PairSpec,
    opts: &RunOptions,
    connections: usize,
    progress: &dyn Progress,
    stop: watch::Receiver<bool>,
) -> PairSummary {
    let queue = Arc::new(InProcessQueue::new());
    let runner = {
        let (queue, stop) = (queue.clone(), stop.clone());
        tokio::spawn(async move {
            // On a stop the runner takes no new task and lets the ones in hand finish within
            // the grace, dropping the rest; then no outcome can come any more, which tells the
            // stopping driver it has seen them all.
            mailferry_worker::runner::run(
                queue.clone(),
                engine,
                connections,
                stopped(stop),
                Some(INTERRUPT_GRACE),
            )
            .await;
            queue.close_outcomes();
        })
    };
    let mut summaries = migration::run(
        queue.clone(),
        &store,
        "embedded",
        vec![spec.clone()],
        opts,
        progress,
        stopped(stop),
    )
    .await;
    queue.close();
    let _ = runner.await;
    summaries.pop().unwrap_or_else(|| {
        let mut t = mailferry_coordinator::aggregate::PairTally::new(&spec, opts.dry_run);
        t.interrupted();
        t.finish()
    })
}

/// `mailferry migrate`.
pub async fn migrate(args: MigrateArgs, stop: watch::Receiver<bool>) -> i32 {
    let s = match settings(args.settings(&ProcessEnv)) {
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
    if args.report.is_some() && args.common.batch.is_none() {
        eprintln!(
            "error: --report writes one row per pair of a --batch; use --json for one mailbox"
        );
        return exit::USAGE;
    }
    let state_dir = args.state.clone().unwrap_or_else(default_state_dir);
    let store = match SqliteStore::open(&state_dir) {
        Ok(st) => st,
        Err(e) => {
            eprintln!("error: {e}; choose another directory with --state");
            return exit::USAGE;
        }
    };
    let (specs, creds) = wire(&s.pairs);
    let config = match engine_config(&args.common, budget) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = Arc::new(Engine::new(store.clone(), creds, config));
    let opts = RunOptions {
        rules: s.rules,
        plan: s.plan,
        dry_run: args.dry_run,
        sync: s.sync,
        ..RunOptions::default()
    };
    let Some(every) = s.sync_every else {
        let code = pass(&args, &s.bad_records, specs, &engine, &store, &opts, &stop).await;
        // Pooled sessions log out and give their slots back now, not as the runtime stops.
        engine.close_idle().await;
        return code;
    };
    // `--sync-every`: a first pass, then an incremental sync on that schedule until interrupted
    // (an interrupt during a pass stops it within the grace, as without it).
    let mut passes = 0u64;
    loop {
        passes += 1;
        let code = pass(
            &args,
            &s.bad_records,
            specs.clone(),
            &engine,
            &store,
            &opts,
            &stop,
        )
        .await;
        // Between passes no session stays open (the next pass is hours away).
        engine.close_idle().await;
        if *stop.borrow() {
            return code;
        }
        let now = Utc::now();
        let next =
            mailferry_coordinator::schedule::next_sync(now, Some(every), code == exit::DEFERRED)
                .unwrap_or(now);
        eprintln!(
            "pass {passes} done; next sync at {} (every {}{}); Ctrl-C to stop",
            next.format("%Y-%m-%d %H:%M:%S UTC"),
            output::duration_text(every),
            if code == exit::DEFERRED {
                ", or when the daily upload budget renews"
            } else {
                ""
            }
        );
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(stop.clone()) => return code,
        }
    }
}

/// One pass over every pair: runs them, prints their summaries, returns the exit code.
async fn pass(
    args: &MigrateArgs,
    bad_records: &[mailferry_proto::report::BadRecord],
    specs: Vec<(Option<u64>, PairSpec)>,
    engine: &Arc<Engine<SqliteStore, MemoryCredentials>>,
    store: &SqliteStore,
    opts: &RunOptions,
    stop: &watch::Receiver<bool>,
) -> i32 {
    let printer = Printer::new(false);
    let connections = args.common.limits().connections;
    let mut results: Vec<(usize, Option<u64>, PairSummary)> =
        futures::stream::iter(specs.into_iter().enumerate())
            .map(|(i, (record, spec))| {
                let (engine, store, stop, printer) =
                    (engine.clone(), store.clone(), stop.clone(), &printer);
                async move {
                    (
                        i,
                        record,
                        run_pair(engine, store, spec, opts, connections, printer, stop).await,
                    )
                }
            })
            .buffer_unordered(args.common.parallel)
            .collect()
            .await;
    printer.finish();
    results.sort_by_key(|(i, ..)| *i);
    let mut code = if bad_records.is_empty() {
        exit::OK
    } else {
        exit::FAILURES
    };
    if let Some(dir) = &args.report_dir
        && let Err(e) = write_report_dir(dir, &results)
    {
        eprintln!("error: --report-dir {}: {e}", dir.display());
        code = exit::FATAL;
    }
    for (_, _, summary) in &results {
        // What stopped a pair also goes to stderr, so it is seen with --json and in logs.
        if let Some(e) = &summary.error {
            eprintln!("error: {e}");
        }
        code = exit::worst([code, code_for_status(summary.status)]);
        if !args.common.json {
            print!("{}", output::summary_text(summary));
        }
    }
    if args.common.batch.is_none() {
        if args.common.json
            && let Some((_, _, summary)) = results.first()
        {
            println!("{}", json(summary));
        }
        return code;
    }
    let batch = BatchSummary {
        pairs: results
            .into_iter()
            .map(|(_, record, summary)| BatchPair {
                record: record.unwrap_or(0),
                summary,
            })
            .collect(),
        bad_records: bad_records.to_vec(),
        finished_at: Utc::now(),
    };
    if args.common.json {
        println!("{}", json(&batch));
    } else {
        print!("{}", output::batch_text(&batch));
    }
    if let Some(path) = &args.report
        && let Err(e) = std::fs::write(path, output::batch_report_csv(&batch))
    {
        eprintln!("error: --report {}: {e}", path.display());
        code = code.max(exit::FATAL);
    }
    code
}

/// `--report-dir`: per pair, `NAME.json` (the summary) and `NAME-failures.csv`.
fn write_report_dir(
    dir: &std::path::Path,
    results: &[(usize, Option<u64>, PairSummary)],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (_, record, summary) in results {
        let name = output::report_name(*record, &summary.source);
        std::fs::write(dir.join(format!("{name}.json")), json(summary))?;
        std::fs::write(
            dir.join(format!("{name}-failures.csv")),
            output::failures_csv(summary),
        )?;
    }
    Ok(())
}

/// Resolves once the stop flag is raised.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
