//! The fleet roles of the binary: `coordinator`, `worker` and `keygen`. Each reads its typed
//! configuration, connects, serves, and drains on the first interrupt; the logic lives in the
//! libraries (`mailferry_coordinator::control`, `mailferry_worker::runner`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mailferry_coordinator::api::ca::CaDir;
use mailferry_coordinator::api::{self, Api, TlsFiles, Tokens};
use mailferry_coordinator::control::{Control, ControlConfig};
use mailferry_fleet::amqp::{AmqpQueue, Role};
use mailferry_fleet::redis_store::RedisStore;
use mailferry_fleet::seal::FleetKeys;
use mailferry_fleet::worker_queue::WorkerQueue;
use mailferry_fleet::{MemoryCredentials, Store};
use mailferry_worker::engine::{Engine, EngineConfig};
use mailferry_worker::imap::ConnectOptions;
use tokio::sync::watch;

use crate::args::ProcessEnv;
use crate::exit;
use crate::fleet_config::FleetConfig;

/// `mailferry coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// gRPC address to listen on.
    #[arg(long, env = "MAILFERRY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Admin HTTP address (`/live`, `/ready`, `/metrics`).
    #[arg(long, env = "MAILFERRY_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// PEM certificate for gRPC over TLS (with --tls-key).
    #[arg(long, env = "MAILFERRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for gRPC over TLS (with --tls-cert).
    #[arg(long, env = "MAILFERRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a probe (login check at create) waits for a worker.
    #[arg(long, env = "MAILFERRY_PROBE_TIMEOUT", default_value_t = 120)]
    pub probe_timeout: u64,
    /// Directory of CA bundles (PEM) that API clients may name in an endpoint's `ca_file` (by
    /// file name or relative path); without it, only inline `ca_pem` is taken.
    #[arg(long, env = "MAILFERRY_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

/// `mailferry worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Admin HTTP address (`/live`, `/ready`, `/metrics`).
    #[arg(long, env = "MAILFERRY_ADMIN_LISTEN", default_value = "127.0.0.1:9091")]
    pub admin_listen: SocketAddr,
    /// Tasks run at once (and RabbitMQ prefetch).
    #[arg(long, env = "MAILFERRY_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// IMAP inactivity timeout, seconds.
    #[arg(long, env = "MAILFERRY_TIMEOUT", default_value_t = 120)]
    pub timeout: u64,
    /// IMAP progress floor, bytes per second (K, M suffixes): answers waited for longer than
    /// --timeout in all must have delivered this rate.
    #[arg(long, env = "MAILFERRY_MIN_RATE", default_value = "4K", value_parser = crate::args::rate_arg)]
    pub min_rate: u64,
    /// Folder lease time, seconds: how long a dead worker's folder stays locked (renewed every
    /// third of it while a batch runs), and how long a fresh or flushed Redis grants no folder
    /// lease. The same value on every worker of a fleet.
    #[arg(long, env = "MAILFERRY_LEASE_TTL", default_value_t = 60)]
    pub lease_ttl: u64,
    /// In-flight message bytes of this worker, shared by all its connections.
    #[arg(long, env = "MAILFERRY_MEMORY_BUDGET", default_value = "64M")]
    pub memory_budget: String,
    /// IMAP sessions per mailbox account and side across the whole fleet (idle pooled ones
    /// included: providers count them). Gmail allows about 15. The same value on every worker.
    #[arg(long, env = "MAILFERRY_ACCOUNT_CONNECTIONS", default_value_t = 8)]
    pub account_connections: u32,
    /// IMAP sessions per server (host and port) across the whole fleet. The same value on every
    /// worker.
    #[arg(long, env = "MAILFERRY_HOST_CONNECTIONS", default_value_t = 200)]
    pub host_connections: u32,
    /// Seconds to let the tasks in hand finish after SIGTERM; the rest are redelivered.
    #[arg(long, env = "MAILFERRY_DRAIN_TIMEOUT", default_value_t = 60)]
    pub drain_timeout: u64,
    /// Runs of one task that may end without an outcome (the worker died on it) before the next
    /// delivery dead-letters it, failing its pair, instead of running it again.
    #[arg(long, env = "MAILFERRY_MAX_TASK_DELIVERIES", default_value_t = mailferry_fleet::poison::DEFAULT_MAX_TASK_DELIVERIES)]
    pub max_task_deliveries: u32,
}

fn fleet_config() -> Result<FleetConfig, i32> {
    FleetConfig::from_env(&ProcessEnv).map_err(|errors| {
        for e in errors {
            eprintln!("error: {e}");
        }
        exit::USAGE
    })
}

/// `mailferry keygen`: prints a new fleet key line.
pub fn keygen() -> i32 {
    match FleetKeys::generate_line() {
        Ok(line) => {
            print!("{line}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FATAL
        }
    }
}

/// Runs the coordinator until the first interrupt.
pub async fn coordinator(args: CoordinatorArgs, mut stop: watch::Receiver<bool>) -> i32 {
    // Every bad setting is reported at once, not one per start.
    let mut errors = Vec::new();
    let cfg = FleetConfig::from_env(&ProcessEnv)
        .map_err(|e| errors.extend(e))
        .ok();
    let tokens = match std::env::var("MAILFERRY_API_TOKENS_FILE").ok() {
        Some(f) => Tokens::load(std::path::Path::new(&f))
            .map_err(|e| errors.push(format!("MAILFERRY_API_TOKENS_FILE: {e}")))
            .ok(),
        None => {
            errors.push(
                "MAILFERRY_API_TOKENS_FILE is not set: the file of accepted API tokens, one per line"
                    .into(),
            );
            None
        }
    };
    let cas = match args.ca_dir.as_deref().map(CaDir::open) {
        None => Some(CaDir::none()),
        Some(Ok(cas)) => Some(cas),
        Some(Err(e)) => {
            errors.push(e.to_string());
            None
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => match (std::fs::read(c), std::fs::read(k)) {
            (Ok(cert), Ok(key)) => Some(TlsFiles { cert, key }),
            (cert, key) => {
                if let Err(e) = cert {
                    errors.push(format!("--tls-cert {}: {e}", c.display()));
                }
                if let Err(e) = key {
                    errors.push(format!("--tls-key {}: {e}", k.display()));
                }
                None
            }
        },
        _ => None,
    };
    let (Some(cfg), Some(tokens), Some(cas), true) = (cfg, tokens, cas, errors.is_empty()) else {
        for e in errors {
            eprintln!("error: {e}");
        }
        return exit::USAGE;
    };
    let admin = match crate::admin::bind(args.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let metrics = match crate::telemetry::install_metrics() {
        Ok(handle) => crate::admin::prometheus(handle),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    let (ready_tx, ready_rx) = watch::channel(false);
    crate::admin::spawn(admin, ready_rx, metrics);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --listen {}: {e}", args.listen);
            return exit::USAGE;
        }
    };
    let store = match connect_store(&cfg, &mut stop).await {
        Some(s) => s,
        None => return exit::INTERRUPTED,
    };
    // One coordinator drives the fleet at a time: the others wait, not ready, for the leader
    // lease; a leader that cannot renew it stops at once (its successor resumes the passes).
    let holder = format!(
        "coordinator:{}:{}:{}",
        hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let Some(token) = await_leadership(&store, &holder, &mut stop).await else {
        return exit::INTERRUPTED;
    };
    let held = Arc::new(std::sync::atomic::AtomicU64::new(token));
    let lost = keep_leadership(store.clone(), holder.clone(), held.clone());
    let lease_store = store.clone();
    let queue = match connect_queue(&cfg, Role::Coordinator, &mut stop).await {
        Some(q) => Arc::new(q),
        None => return exit::INTERRUPTED,
    };
    let control = match Control::start(
        store,
        queue.clone(),
        Arc::new(cfg.keys),
        ControlConfig {
            probe_timeout: Duration::from_secs(args.probe_timeout.max(1)),
            ..ControlConfig::default()
        },
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    spawn_gauges(control.clone(), queue.clone());
    let _ = ready_tx.send(true);
    tracing::info!(listen = %args.listen, namespace = %cfg.namespace, "coordinator serving");
    eprintln!(
        "mailferry coordinator: gRPC on {}, admin on {}",
        args.listen, args.admin_listen
    );
    let shutdown = async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = lost => {
                eprintln!("error: lost the coordinator leader lease (Redis unreachable or flushed); stopping so that one coordinator drives the fleet");
            }
        }
    };
    let code = match api::serve(
        Api::new(control).with_ca_dir(cas),
        tokens,
        tls,
        listener,
        shutdown,
    )
    .await
    {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::FATAL
        }
    };
    // Hand the lead over at once: a standby takes it at its next try instead of waiting for
    // the lease to run out (a rollout or a drained node). Only a token we still hold is
    // released; the passes of this coordinator resume in the next one.
    let token = held.load(std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = lease_store.release_lease(LEADER_LEASE, token).await {
        tracing::warn!("leader lease not released (it expires in {LEADER_TTL:?}): {e}");
    }
    code
}

/// How often the coordinator samples its gauges (queue depth, migrations by state).
const GAUGE_EVERY: Duration = Duration::from_secs(15);

/// Samples the coordinator's gauges now and every [`GAUGE_EVERY`]: the tasks queue's depth (a
/// passive declare), the number of migrations in each state and the sync scheduler's lag. A
/// failed sample leaves the last value and says why once per failure streak.
fn spawn_gauges(control: Control, queue: Arc<AmqpQueue>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(GAUGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            every.tick().await;
            let depth = queue.task_queue_depth().await.map_err(|e| e.to_string());
            if let Ok(n) = depth {
                mailferry_fleet::metrics::set_queue_depth("tasks", n);
            }
            mailferry_fleet::metrics::set_sync_lag(control.sync_lag().as_secs_f64());
            let states = migration_states(&control).await;
            if let Ok(counts) = &states {
                mailferry_fleet::metrics::set_migrations(counts.iter().map(|(s, n)| (*s, *n)));
            }
            match (depth.err(), states.err()) {
                (None, None) => failing = false,
                (a, b) if !failing => {
                    failing = true;
                    let why = a.into_iter().chain(b).collect::<Vec<_>>().join("; ");
                    tracing::warn!("metrics not sampled: {why}");
                }
                _ => {}
            }
        }
    });
}

/// How many migrations are in each state (by the API's state names).
async fn migration_states(control: &Control) -> Result<Vec<(&'static str, u64)>, String> {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for id in control.list_ids().await.map_err(|e| e.to_string())? {
        // One deleted meanwhile is simply not counted.
        let Ok(view) = control.get(&id).await else {
            continue;
        };
        let state = mailferry_coordinator::control::state_name(view.record.state);
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    Ok(counts)
}

/// How long the coordinator's leader lease lasts without renewal.
const LEADER_TTL: Duration = Duration::from_secs(15);

/// Waits for the leader lease; `None` when interrupted first.
async fn await_leadership(
    store: &RedisStore,
    holder: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<u64> {
    let mut told = false;
    loop {
        match store.acquire_lease(LEADER_LEASE, holder, LEADER_TTL).await {
            Ok(Some(token)) => return Some(token),
            Ok(None) if !told => {
                eprintln!("another coordinator leads this namespace; standing by");
                told = true;
            }
            Ok(None) => {}
            Err(e) => eprintln!("leader lease: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LEADER_TTL / 5) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

/// Renews the leader lease every third of its life; resolves when another coordinator has it.
/// A lease that vanished (Redis flushed) is taken again at once if it is free.
fn keep_leadership(
    store: RedisStore,
    holder: String,
    held: Arc<std::sync::atomic::AtomicU64>,
) -> impl Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut renewed = tokio::time::Instant::now();
        let mut token = held.load(std::sync::atomic::Ordering::SeqCst);
        loop {
            tokio::time::sleep(LEADER_TTL / 3).await;
            match store.renew_lease(LEADER_LEASE, token, LEADER_TTL).await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => match store.acquire_lease(LEADER_LEASE, &holder, LEADER_TTL).await {
                    Ok(Some(t)) => {
                        tracing::warn!(
                            "the leader lease had vanished (Redis flushed?); taken again"
                        );
                        token = t;
                        held.store(t, std::sync::atomic::Ordering::SeqCst);
                        renewed = tokio::time::Instant::now();
                    }
                    _ => break,
                },
                Err(e) => {
                    tracing::warn!("leader lease not renewed: {e}");
                    if renewed.elapsed() >= LEADER_TTL * 2 / 3 {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// The leader lease's name.
const LEADER_LEASE: &str = "coordinator-leader";

/// Connects to Redis, retrying until it answers or the process is interrupted.
async fn connect_store(cfg: &FleetConfig, stop: &mut watch::Receiver<bool>) -> Option<RedisStore> {
    let mut delay = Duration::from_millis(200);
    loop {
        match RedisStore::connect(&cfg.redis_url, &cfg.namespace).await {
            Ok(s) => return Some(s),
            Err(e) => eprintln!("waiting for Redis: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Connects to RabbitMQ, retrying until it answers or the process is interrupted.
async fn connect_queue(
    cfg: &FleetConfig,
    role: Role,
    stop: &mut watch::Receiver<bool>,
) -> Option<AmqpQueue> {
    let mut delay = Duration::from_millis(200);
    loop {
        match AmqpQueue::connect(&cfg.amqp_url, &cfg.namespace, role).await {
            Ok(q) => return Some(q),
            Err(e) => eprintln!("waiting for RabbitMQ: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs a worker until the first interrupt, then drains.
pub async fn worker(args: WorkerArgs, mut stop: watch::Receiver<bool>) -> i32 {
    let cfg = match fleet_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut errors = Vec::new();
    let budget = crate::args::parse_size(&args.memory_budget).filter(|b| *b >= 1 << 20);
    if budget.is_none() {
        errors.push(format!(
            "--memory-budget {:?} must be a size of at least 1M",
            args.memory_budget
        ));
    }
    if args.concurrency == 0 || args.concurrency > 256 {
        errors.push(format!(
            "--concurrency {} must be between 1 and 256",
            args.concurrency
        ));
    }
    if args.timeout == 0 {
        errors.push("--timeout must be at least 1 second".into());
    }
    if args.account_connections == 0 {
        errors.push("--account-connections must be at least 1".into());
    }
    if args.host_connections == 0 {
        errors.push("--host-connections must be at least 1".into());
    }
    if args.max_task_deliveries == 0 {
        errors.push("--max-task-deliveries must be at least 1".into());
    }
    if args.lease_ttl < 3 {
        errors.push(format!(
            "--lease-ttl {} must be at least 3 seconds",
            args.lease_ttl
        ));
    }
    let Some(budget) = budget.filter(|_| errors.is_empty()) else {
        for e in errors {
            eprintln!("error: {e}");
        }
        return exit::USAGE;
    };
    let admin = match crate::admin::bind(args.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let metrics = match crate::telemetry::install_metrics() {
        Ok(handle) => crate::admin::prometheus(handle),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    let (ready_tx, ready_rx) = watch::channel(false);
    crate::admin::spawn(admin, ready_rx, metrics);
    let Some(store) = connect_store(&cfg, &mut stop).await else {
        return exit::INTERRUPTED;
    };
    let Some(queue) = connect_queue(
        &cfg,
        Role::Worker {
            prefetch: args.concurrency,
        },
        &mut stop,
    )
    .await
    else {
        return exit::INTERRUPTED;
    };
    let queue = Arc::new(queue);
    let creds = MemoryCredentials::default();
    let tasks = Arc::new(
        WorkerQueue::new(
            queue.clone(),
            store.clone(),
            Arc::new(cfg.keys),
            creds.clone(),
        )
        .with_max_task_deliveries(args.max_task_deliveries),
    );
    let holder = format!(
        "worker:{}:{}:{}",
        hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let engine = Arc::new(Engine::new(
        store,
        creds,
        EngineConfig {
            connect: ConnectOptions {
                buffers: Arc::new(mailferry_worker::imap::buffers::BufferPool::new(
                    usize::try_from(budget / 4).unwrap_or(usize::MAX),
                )),
                timeout: Duration::from_secs(args.timeout),
                min_rate: args.min_rate,
                ..ConnectOptions::default()
            },
            budget_bytes: budget - budget / 4,
            holder,
            lease_ttl: Duration::from_secs(args.lease_ttl),
            account_connections: args.account_connections,
            host_connections: args.host_connections,
            ..EngineConfig::default()
        },
    ));
    let _ = ready_tx.send(true);
    tracing::info!(concurrency = args.concurrency, namespace = %cfg.namespace, "worker serving");
    eprintln!(
        "mailferry worker: {} tasks at once, namespace {}, admin on {}",
        args.concurrency, cfg.namespace, args.admin_listen
    );
    let drain = Duration::from_secs(args.drain_timeout);
    let mut stop2 = stop.clone();
    let shutdown = async move {
        let _ = stop2.wait_for(|s| *s).await;
    };
    let runner = mailferry_worker::runner::run(
        tasks.clone(),
        engine.clone(),
        usize::from(args.concurrency),
        shutdown,
        // The drain timeout below bounds the wait; tasks still in hand are redelivered.
        None,
    );
    tokio::pin!(runner);
    tokio::select! {
        _ = &mut runner => {}
        _ = async {
            let _ = stop.wait_for(|s| *s).await;
            let _ = ready_tx.send(false);
            // Tasks not started go back to the queue; the ones in hand get the grace period.
            mailferry_fleet::TaskQueue::close(tasks.as_ref());
            tokio::time::sleep(drain).await;
        } => {
            eprintln!("drain timeout: tasks still in hand will be redelivered to another worker");
        }
    }
    // Idle sessions hold connection slots the other workers may be waiting for.
    let _ = tokio::time::timeout(Duration::from_secs(5), engine.close_idle()).await;
    exit::OK
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}
