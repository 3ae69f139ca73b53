//! A live fleet for scenario tests: real `mailferry coordinator` and `mailferry worker`
//! processes over a real RabbitMQ and Redis.
//!
//! This module owns starting and stopping those processes (and, for tests that restart or flush
//! a server, a private RabbitMQ and Redis through `scripts/fleet-servers`), capturing their
//! output to files so a test can scan it for secrets and show it on failure, and reading what
//! the fleet left behind: a [`QueueTap`] copies every message that crosses the namespace's
//! exchange, and [`redis_contents`] reads every Redis value of a namespace. It treats the binary
//! as a black box, like [`crate::cli`]: it must not link the coordinator, worker or fleet crates;
//! only the names in `mailferry_proto::queues` (contracts, no I/O) are shared.
//!
//! Each [`Fleet`] gets a fresh namespace `t<random>` (exchange, queues and keys), so fleets of
//! parallel tests share one RabbitMQ and one Redis without seeing each other; dropping the fleet
//! kills its processes and deletes its queues and keys.
//!
//! ```no_run
//! # async fn scenario() {
//! use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions};
//! let env = FleetEnv::shared();
//! let fleet = Fleet::start(&env, FleetOptions { workers: 2, ..FleetOptions::default() }).await;
//! let out = fleet.ctl(&["list", "--json"]).await;
//! assert_eq!(out.code, 0, "{out}");
//! # }
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use mailferry_proto::queues;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use crate::cli::{Output, bare_command};
use crate::servers::repo_root;

/// Environment variable with the shared RabbitMQ's URL (default [`DEFAULT_AMQP_URL`]).
pub const AMQP_URL_VAR: &str = "MAILFERRY_TEST_AMQP_URL";
/// Environment variable with the shared Redis's URL (default [`DEFAULT_REDIS_URL`]).
pub const REDIS_URL_VAR: &str = "MAILFERRY_TEST_REDIS_URL";
/// The machine's RabbitMQ, as `scripts/fleet-servers ensure` leaves it.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The machine's Redis, as `scripts/fleet-servers ensure` leaves it.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// How long a process may take to answer `GET /ready` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// The RabbitMQ and Redis a fleet runs against: the machine's shared ones, or a private pair.
#[derive(Debug)]
pub struct FleetEnv {
    amqp_url: String,
    redis_url: String,
    /// The directory of a private pair (stopped on drop), `None` for the shared servers.
    private: Option<PathBuf>,
    node: Option<String>,
}

impl FleetEnv {
    /// The machine's RabbitMQ and Redis (`$MAILFERRY_TEST_AMQP_URL`, `$MAILFERRY_TEST_REDIS_URL`).
    /// Tests keep apart by namespace; a test that restarts or flushes a server must use
    /// [`FleetEnv::private`] instead.
    pub fn shared() -> FleetEnv {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        FleetEnv {
            amqp_url: var(AMQP_URL_VAR, DEFAULT_AMQP_URL),
            redis_url: var(REDIS_URL_VAR, DEFAULT_REDIS_URL),
            private: None,
            node: None,
        }
    }

    /// A private RabbitMQ and Redis under `dir`, on free ports, started by
    /// `scripts/fleet-servers private start` (about 6-10 s here; blocks) and stopped on drop.
    ///
    /// # Panics
    /// When they cannot be started; the message carries the script's output.
    pub fn private(dir: impl AsRef<Path>) -> FleetEnv {
        let dir = dir.as_ref().to_path_buf();
        let out = std::process::Command::new("bash")
            .arg(fleet_script())
            .args(["private", "start"])
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running scripts/fleet-servers: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            panic!(
                "scripts/fleet-servers private start {} failed ({}):\n{stdout}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let get = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("fleet-servers printed no {key}:\n{stdout}"))
        };
        FleetEnv {
            amqp_url: get("MAILFERRY_AMQP_URL"),
            redis_url: get("MAILFERRY_REDIS_URL"),
            node: Some(get("MAILFERRY_FLEET_RABBITMQ_NODE")),
            private: Some(dir),
        }
    }

    /// The RabbitMQ URL (guest/guest on loopback).
    pub fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    /// The Redis URL.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The private RabbitMQ's node name; `None` for the shared servers.
    pub fn rabbitmq_node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Whether these are private servers (which may be restarted and flushed).
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    fn private_dir(&self, what: &str) -> Result<&Path> {
        self.private.as_deref().ok_or_else(|| {
            anyhow!("{what} on the shared servers would disturb other tests; use FleetEnv::private")
        })
    }

    /// Stops the private RabbitMQ gracefully and starts it again on the same ports and node
    /// (durable queues and persistent messages survive), waiting until AMQP answers.
    pub async fn restart_rabbitmq(&self) -> Result<()> {
        let dir = self.private_dir("restarting RabbitMQ")?;
        run_fleet_script(&["private", "restart-rabbitmq"], dir).await
    }

    /// Stops the private Redis and starts it again on the same port. It runs with AOF (as
    /// production does), so its data survives; [`FleetEnv::flush_redis`] is the data loss.
    pub async fn restart_redis(&self) -> Result<()> {
        let dir = self.private_dir("restarting Redis")?;
        run_fleet_script(&["private", "restart-redis"], dir).await
    }

    /// `FLUSHALL` on the private Redis: every fleet's bookkeeping is lost at once.
    pub fn flush_redis(&self) -> Result<()> {
        self.private_dir("flushing Redis")?;
        let mut redis = Redis::connect(&self.redis_url)?;
        match redis.cmd(&[b"FLUSHALL"])? {
            Resp::Simple(s) if s == "OK" => Ok(()),
            other => bail!("FLUSHALL answered {other:?}"),
        }
    }
}

impl Drop for FleetEnv {
    fn drop(&mut self) {
        if let Some(dir) = &self.private {
            let status = std::process::Command::new("bash")
                .arg(fleet_script())
                .args(["private", "stop"])
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!(
                    "fleet: stopping the private servers in {} failed: {status:?}",
                    dir.display()
                );
            }
        }
    }
}

fn fleet_script() -> PathBuf {
    repo_root().join("scripts").join("fleet-servers")
}

async fn run_fleet_script(args: &[&str], dir: &Path) -> Result<()> {
    let out = tokio::process::Command::new("bash")
        .arg(fleet_script())
        .args(args)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running scripts/fleet-servers")?;
    if !out.status.success() {
        bail!(
            "scripts/fleet-servers {} {} failed ({}):\n{}",
            args.join(" "),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// How to start a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Worker processes started with the fleet.
    pub workers: usize,
    /// `--concurrency` of each worker.
    pub concurrency: u16,
    /// `--timeout` of each worker (IMAP inactivity, seconds); `None`: the binary's default.
    pub timeout_secs: Option<u64>,
    /// `--lease-ttl` of each worker (seconds); `None`: the binary's default (60). A fresh
    /// namespace's store grants no folder lease for one TTL (the epoch rule), so every fleet
    /// test waits this long before its first copy: the default here is short.
    pub lease_ttl_secs: Option<u64>,
    /// Extra arguments of each worker (e.g. `--timeout 5`, `--lease-ttl 10`).
    pub worker_args: Vec<String>,
    /// Extra environment of each worker.
    pub extra_worker_env: Vec<(String, String)>,
    /// Extra arguments of the coordinator (e.g. `--tls-cert F --tls-key F`).
    pub coordinator_args: Vec<String>,
    /// Extra environment of the coordinator.
    pub extra_coordinator_env: Vec<(String, String)>,
    /// gRPC over TLS: the coordinator gets `--tls-cert`/`--tls-key`, and [`Fleet::grpc_url`]
    /// is `https://127.0.0.1:PORT`. [`Fleet::ctl`] does not pass the CA: give `--ca` yourself.
    pub grpc_tls: Option<crate::tls::TlsFiles>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            workers: 1,
            concurrency: 2,
            // Lease TTL above the inactivity timeout (DESIGN.md, Idempotency: Exclusion).
            timeout_secs: Some(8),
            lease_ttl_secs: Some(10),
            worker_args: Vec::new(),
            extra_worker_env: Vec::new(),
            coordinator_args: Vec::new(),
            extra_coordinator_env: Vec::new(),
            grpc_tls: None,
        }
    }
}

/// One running process of the fleet.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    admin_port: u16,
}

/// A coordinator and its workers in one fresh namespace; everything is killed, and the
/// namespace's queues and keys deleted, on drop.
#[derive(Debug)]
pub struct Fleet {
    amqp_url: String,
    redis_url: String,
    namespace: String,
    token: String,
    /// The base64 key of the key file: a secret like the token.
    key: String,
    dir: tempfile::TempDir,
    key_file: PathBuf,
    tokens_file: PathBuf,
    grpc_port: u16,
    coordinator_admin_port: u16,
    coordinator: Option<Proc>,
    coordinator_starts: usize,
    workers: Vec<Option<Proc>>,
    options: FleetOptions,
}

impl Fleet {
    /// Starts a coordinator and `options.workers` workers against `env`, in a fresh
    /// namespace, and waits until each answers `GET /ready` with 200.
    ///
    /// # Panics
    /// When a process cannot be started, exits, or is not ready within [`READY_TIMEOUT`]; the
    /// message carries the end of its output.
    pub async fn start(env: &FleetEnv, options: FleetOptions) -> Fleet {
        match Self::try_start(env, options).await {
            Ok(fleet) => fleet,
            Err(e) => panic!("fleet did not start: {e:#}"),
        }
    }

    async fn try_start(env: &FleetEnv, options: FleetOptions) -> Result<Fleet> {
        let dir = tempfile::Builder::new()
            .prefix("mailferry-fleet-")
            .tempdir()
            .context("creating the fleet's temp dir")?;
        let namespace = format!("t{}", random_hex(8)?);
        let token = random_hex(24)?;

        let keygen = bare_command()
            .arg("keygen")
            .output()
            .await
            .context("running mailferry keygen")?;
        let key_line = String::from_utf8_lossy(&keygen.stdout).trim().to_owned();
        if !keygen.status.success() || key_line.split_whitespace().count() != 2 {
            bail!(
                "mailferry keygen ({}) printed {key_line:?}, not one `KEY_ID BASE64` line; stderr:\n{}",
                keygen.status,
                String::from_utf8_lossy(&keygen.stderr)
            );
        }
        let key_file = dir.path().join("fleet.key");
        write_private(&key_file, format!("{key_line}\n").as_bytes())?;
        let tokens_file = dir.path().join("api-tokens");
        write_private(&tokens_file, format!("{token}\n").as_bytes())?;

        let mut fleet = Fleet {
            amqp_url: env.amqp_url.clone(),
            redis_url: env.redis_url.clone(),
            namespace,
            token,
            key: key_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned(),
            grpc_port: free_port()?,
            coordinator_admin_port: free_port()?,
            key_file,
            tokens_file,
            dir,
            coordinator: None,
            coordinator_starts: 0,
            workers: Vec::new(),
            options,
        };
        // The coordinator first: it declares the topology the workers consume from.
        fleet.spawn_coordinator()?;
        if let Some(p) = fleet.coordinator.as_mut() {
            wait_ready(p).await?;
        }
        for _ in 0..fleet.options.workers {
            fleet.spawn_worker()?;
        }
        for p in fleet.workers.iter_mut().flatten() {
            wait_ready(p).await?;
        }
        Ok(fleet)
    }

    fn base_command(&self) -> tokio::process::Command {
        let mut cmd = bare_command();
        cmd.env("MAILFERRY_AMQP_URL", &self.amqp_url)
            .env("MAILFERRY_REDIS_URL", &self.redis_url)
            .env("MAILFERRY_SECRET_KEY_FILE", &self.key_file)
            .env("MAILFERRY_NAMESPACE", &self.namespace)
            .env("MAILFERRY_LOG", "info");
        cmd
    }

    fn spawn(
        &self,
        name: String,
        mut cmd: tokio::process::Command,
        admin_port: u16,
    ) -> Result<Proc> {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let err = file.try_clone().context("cloning the log file handle")?;
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err));
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name,
            child,
            log,
            admin_port,
        })
    }

    fn spawn_coordinator(&mut self) -> Result<()> {
        self.coordinator_starts += 1;
        let mut cmd = self.base_command();
        cmd.arg("coordinator")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.grpc_port))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.coordinator_admin_port))
            .args(&self.options.coordinator_args)
            .args(self.options.grpc_tls.iter().flat_map(|t| {
                [
                    "--tls-cert".as_ref(),
                    t.cert.as_os_str(),
                    "--tls-key".as_ref(),
                    t.key.as_os_str(),
                ]
            }))
            .env("MAILFERRY_API_TOKENS_FILE", &self.tokens_file)
            .envs(
                self.options
                    .extra_coordinator_env
                    .iter()
                    .map(|(k, v)| (k, v)),
            );
        let name = format!("coordinator-{}", self.coordinator_starts);
        self.coordinator = Some(self.spawn(name, cmd, self.coordinator_admin_port)?);
        Ok(())
    }

    fn spawn_worker(&mut self) -> Result<usize> {
        let index = self.workers.len();
        let admin_port = free_port()?;
        let mut cmd = self.base_command();
        cmd.arg("worker")
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--concurrency")
            .arg(self.options.concurrency.to_string())
            .args(
                self.options
                    .timeout_secs
                    .map(|t| ["--timeout".to_owned(), t.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(
                self.options
                    .lease_ttl_secs
                    .map(|t| ["--lease-ttl".to_owned(), t.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.options.worker_args)
            .envs(self.options.extra_worker_env.iter().map(|(k, v)| (k, v)));
        let proc = self.spawn(format!("worker-{index}"), cmd, admin_port)?;
        self.workers.push(Some(proc));
        Ok(index)
    }

    /// Runs `mailferry ctl ARGS` against this fleet's coordinator (within three minutes).
    pub async fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with(args, &[], crate::cli::DEFAULT_TIMEOUT).await
    }

    /// Runs `mailferry ctl ARGS` with extra environment (e.g. `MAILFERRY_SRC_PASSWORD`) and a
    /// time limit.
    ///
    /// # Panics
    /// When it cannot be started or runs past `limit`.
    pub async fn ctl_with(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
        let mut cmd = bare_command();
        cmd.arg("ctl")
            .args(args)
            .env("MAILFERRY_COORDINATOR", self.grpc_url())
            .env("MAILFERRY_API_TOKEN", &self.token)
            .envs(env.iter().copied());
        let started = Instant::now();
        let out = match tokio::time::timeout(limit, cmd.output()).await {
            Ok(out) => out.unwrap_or_else(|e| panic!("running mailferry ctl {args:?}: {e}")),
            // kill_on_drop: dropping the future killed the process.
            Err(_) => panic!(
                "mailferry ctl {args:?} ran past {limit:?}\n--- fleet logs ---\n{}",
                tail(&self.logs(), 12_000)
            ),
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Output {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_str(stdout.trim()).ok(),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    /// SIGKILLs worker `index` and waits for it to die.
    ///
    /// # Panics
    /// When there is no such running worker.
    pub async fn kill_worker(&mut self, index: usize) {
        let mut proc = self
            .workers
            .get_mut(index)
            .and_then(Option::take)
            .unwrap_or_else(|| panic!("no running worker {index}"));
        kill(&mut proc).await;
    }

    /// Starts one more worker, waits until it is ready, and returns its index.
    pub async fn start_worker(&mut self) -> usize {
        let index = self
            .spawn_worker()
            .unwrap_or_else(|e| panic!("starting a worker: {e:#}"));
        if let Some(Some(p)) = self.workers.get_mut(index)
            && let Err(e) = wait_ready(p).await
        {
            panic!("{e:#}");
        }
        index
    }

    /// SIGKILLs the coordinator and waits for it to die.
    pub async fn kill_coordinator(&mut self) {
        if let Some(mut proc) = self.coordinator.take() {
            kill(&mut proc).await;
        }
    }

    /// Kills the coordinator (if it runs) and starts a new one on the same ports, waiting until
    /// it is ready.
    pub async fn restart_coordinator(&mut self) {
        self.kill_coordinator().await;
        let started = self.spawn_coordinator().and(Ok(()));
        let ready = match (started, self.coordinator.as_mut()) {
            (Ok(()), Some(p)) => wait_ready(p).await,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(anyhow!("coordinator missing after start")),
        };
        if let Err(e) = ready {
            panic!("restarting the coordinator: {e:#}");
        }
    }

    /// Everything every process of this fleet printed so far, one section per process.
    pub fn logs(&self) -> String {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        let mut all = String::new();
        for p in paths {
            let name = p.file_stem().unwrap_or_default().to_string_lossy();
            let text = std::fs::read(&p).unwrap_or_default();
            all.push_str(&format!(
                "===== {name} =====\n{}\n",
                String::from_utf8_lossy(&text)
            ));
        }
        all
    }

    /// Where the secrets appear in the logs, the namespace's Redis values, or `extra` texts
    /// (e.g. a [`QueueTap`]'s messages or a client's output); empty when nowhere. The API
    /// token and the fleet key are always looked for; pass the mailbox passwords and anything
    /// else that must stay in process memory.
    pub fn find_secrets(&self, secrets: &[&str], extra: &[(&str, &[u8])]) -> Vec<String> {
        let own = [self.token.as_str(), self.key.as_str()];
        let mut places: Vec<(String, Vec<u8>)> = vec![("logs".into(), self.logs().into_bytes())];
        match redis_contents(&self.redis_url, &self.namespace) {
            Ok(values) => places.extend(values.into_iter().map(|(k, v)| (format!("redis {k}"), v))),
            Err(e) => places.push(("redis (unreadable)".into(), format!("{e:#}").into_bytes())),
        }
        places.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())));
        let mut hits = Vec::new();
        for secret in secrets.iter().chain(&own).filter(|s| !s.is_empty()) {
            for (name, bytes) in &places {
                if contains(bytes, secret.as_bytes()) {
                    hits.push(format!(
                        "{name} holds secret {}…",
                        &secret[..secret.len().min(4)]
                    ));
                }
            }
        }
        hits
    }

    /// `127.0.0.1:PORT` of the gRPC API.
    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:PORT` of the gRPC API (what `MAILFERRY_COORDINATOR` holds), or
    /// `https://` with [`FleetOptions::grpc_tls`].
    pub fn grpc_url(&self) -> String {
        let scheme = match self.options.grpc_tls {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://{}", self.grpc_addr())
    }

    /// `127.0.0.1:PORT` of the coordinator's admin HTTP port.
    pub fn coordinator_admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.coordinator_admin_port)
    }

    /// `127.0.0.1:PORT` of worker `index`'s admin HTTP port, while it runs.
    pub fn worker_admin_addr(&self, index: usize) -> Option<String> {
        let p = self.workers.get(index)?.as_ref()?;
        Some(format!("127.0.0.1:{}", p.admin_port))
    }

    /// The API token the coordinator accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The namespace of this fleet's exchange, queues and keys (`t` + 16 hex digits).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The RabbitMQ URL the processes use.
    pub fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    /// The Redis URL the processes use.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The fleet key file (`MAILFERRY_SECRET_KEY_FILE`).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The fleet's temp dir (logs, key and token files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let procs = self
            .coordinator
            .iter_mut()
            .chain(self.workers.iter_mut().flatten());
        for p in procs {
            let _ = p.child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- fleet {} logs (tail) ---\n{}",
                self.namespace,
                tail(&self.logs(), 16_000)
            );
        }
        if let Err(e) = delete_redis_namespace(&self.redis_url, &self.namespace) {
            eprintln!("fleet: deleting Redis keys of {}: {e:#}", self.namespace);
        }
        // lapin is async and a Drop cannot await: a thread of its own with its own runtime.
        let (url, ns) = (self.amqp_url.clone(), self.namespace.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(20), delete_amqp_namespace(&url, &ns))
                    .await
                    .map_err(|_| anyhow!("timed out"))?
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("fleet: deleting queues of {}: {e:#}", self.namespace),
            Err(_) => eprintln!("fleet: the queue cleanup thread panicked"),
        }
    }
}

async fn kill(proc: &mut Proc) {
    let _ = proc.child.start_kill();
    if tokio::time::timeout(Duration::from_secs(10), proc.child.wait())
        .await
        .is_err()
    {
        panic!("{} did not die within 10 s of SIGKILL", proc.name);
    }
}

/// Polls `GET /ready` until it answers 200; fails at once when the process exits.
async fn wait_ready(proc: &mut Proc) -> Result<()> {
    let addr = format!("127.0.0.1:{}", proc.admin_port);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = proc.child.try_wait().context("polling the process")? {
            bail!(
                "{} exited ({status}) before /ready answered 200\n--- {} ---\n{}",
                proc.name,
                proc.log.display(),
                log_tail(&proc.log)
            );
        }
        let last = match http_get(&addr, "/ready").await {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => format!("{code} {}", body.trim()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!(
                "{} not ready within {READY_TIMEOUT:?} (GET http://{addr}/ready: {last})\n--- {} ---\n{}",
                proc.name,
                proc.log.display(),
                log_tail(&proc.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path}: no answer within 5 s"))?
        .with_context(|| format!("GET http://{addr}{path}"))?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("GET http://{addr}{path}: not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok((code, body.to_owned()))
}

/// A free TCP port on 127.0.0.1 (bound, read and released; a small race remains).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `n` random bytes from the kernel, as lowercase hex.
fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    tail(&String::from_utf8_lossy(&text), 6_000).to_owned()
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ
// ---------------------------------------------------------------------------------------------

/// Routing keys of every message the fleet publishes: tasks, outcomes, dead letters, retries.
pub fn routing_keys() -> Vec<String> {
    let mut keys = vec![
        queues::TASKS_KEY.to_owned(),
        queues::OUTCOMES_KEY.to_owned(),
        queues::DEAD_KEY.to_owned(),
    ];
    keys.extend(
        queues::RETRY_BUCKETS_SECS
            .iter()
            .map(|&b| queues::retry_key(b)),
    );
    keys
}

/// Deletes the namespace's queues and exchange (those that exist).
pub async fn delete_amqp_namespace(amqp_url: &str, ns: &str) -> Result<()> {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let mut names = vec![
        queues::tasks_queue(ns),
        queues::outcomes_queue(ns),
        queues::dead_queue(ns),
    ];
    names.extend(
        queues::RETRY_BUCKETS_SECS
            .iter()
            .map(|&b| queues::retry_queue(ns, b)),
    );
    for name in names {
        // A channel per call: an error closes the channel it happened on.
        let ch = conn.create_channel().await?;
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting queue {name}"))?;
        let _ = ch.close(200, "done".into()).await;
    }
    let ch = conn.create_channel().await?;
    ch.exchange_delete(
        queues::exchange(ns).as_str().into(),
        ExchangeDeleteOptions::default(),
    )
    .await
    .with_context(|| format!("deleting exchange {ns}"))?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// One message copied by a [`QueueTap`].
#[derive(Debug, Clone)]
pub struct TappedMessage {
    /// The routing key it was published (or dead-lettered) with.
    pub routing_key: String,
    /// Its properties and headers, as text.
    pub properties: String,
    /// The payload.
    pub body: Vec<u8>,
}

/// A private auto-delete queue bound to a namespace's exchange with every routing key the fleet
/// uses, so a test sees a copy of every message that went through (tasks, outcomes, dead
/// letters, retries) without taking any away from the fleet.
pub struct QueueTap {
    messages: Arc<Mutex<Vec<TappedMessage>>>,
    conn: Option<Connection>,
    task: tokio::task::JoinHandle<()>,
}

impl QueueTap {
    /// Binds the tap. The exchange must exist: bind after [`Fleet::start`] (whose coordinator
    /// declares it) and before the traffic to be seen.
    pub async fn bind(amqp_url: &str, ns: &str) -> Result<QueueTap> {
        let conn = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ")?;
        let ch = conn.create_channel().await?;
        let exchange = queues::exchange(ns);
        ch.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| {
            format!("exchange {exchange:?} does not exist yet (start the fleet first)")
        })?;
        let queue = format!("{ns}.test-tap.{}", random_hex(4)?);
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring {queue}"))?;
        for key in routing_keys() {
            ch.queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {queue} to {exchange} with {key}"))?;
        }
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "test-tap".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context("consuming from the tap")?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        let task = tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let m = TappedMessage {
                    routing_key: d.routing_key.to_string(),
                    properties: format!("{:?}", d.properties),
                    body: d.data,
                };
                if let Ok(mut v) = sink.lock() {
                    v.push(m);
                }
            }
        });
        Ok(QueueTap {
            messages,
            conn: Some(conn),
            task,
        })
    }

    /// Every message seen so far, in arrival order.
    pub fn messages(&self) -> Vec<TappedMessage> {
        self.messages.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// How many messages with `routing_key` were seen so far.
    pub fn count(&self, routing_key: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.routing_key == routing_key)
            .count()
    }

    /// Every message as one byte string (routing key, properties, body), for
    /// [`Fleet::find_secrets`].
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for m in self.messages() {
            all.extend_from_slice(format!("{} {}\n", m.routing_key, m.properties).as_bytes());
            all.extend_from_slice(&m.body);
            all.push(b'\n');
        }
        all
    }
}

impl Drop for QueueTap {
    fn drop(&mut self) {
        // The queue is exclusive and auto-delete: it goes with the connection.
        self.task.abort();
        if let (Some(conn), Ok(handle)) = (self.conn.take(), tokio::runtime::Handle::try_current())
        {
            handle.spawn(async move {
                let _ = conn.close(200, "done".into()).await;
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis (a minimal RESP2 client: enough for SCAN, reads and deletes)
// ---------------------------------------------------------------------------------------------

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$…`; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*…`; `None` for the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    fn items(self) -> Vec<Resp> {
        match self {
            Resp::Array(Some(v)) => v,
            _ => Vec::new(),
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Resp::Bulk(Some(b)) => b,
            Resp::Simple(s) => s.into_bytes(),
            Resp::Int(n) => n.to_string().into_bytes(),
            _ => Vec::new(),
        }
    }
}

/// One blocking connection to Redis.
pub struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Redis {
    /// Connects to `redis://[[user]:password@]host[:port][/db]` (no TLS).
    pub fn connect(url: &str) -> Result<Redis> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| anyhow!("only redis:// URLs are supported here"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
        let addr = if hostport.contains(':') {
            hostport.to_owned()
        } else {
            format!("{hostport}:6379")
        };
        let stream =
            TcpStream::connect(&addr).with_context(|| format!("connecting to Redis at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut redis = Redis {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        if let Some(auth) = auth {
            let (user, password) = auth.split_once(':').unwrap_or(("", auth));
            let reply = if user.is_empty() {
                redis.cmd(&[b"AUTH", password.as_bytes()])?
            } else {
                redis.cmd(&[b"AUTH", user.as_bytes(), password.as_bytes()])?
            };
            if let Resp::Error(e) = reply {
                bail!("Redis AUTH failed: {e}");
            }
        }
        if !db.is_empty()
            && let Resp::Error(e) = redis.cmd(&[b"SELECT", db.as_bytes()])?
        {
            bail!("Redis SELECT {db} failed: {e}");
        }
        Ok(redis)
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Result<Resp> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&req).context("writing to Redis")?;
        self.read()
    }

    fn read(&mut self) -> Result<Resp> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .context("reading from Redis")?;
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line
            .split_at_checked(1)
            .ok_or_else(|| anyhow!("Redis closed the connection"))?;
        Ok(match kind {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Int(rest.parse().context("Redis integer")?),
            "$" => {
                let len: i64 = rest.parse().context("Redis bulk length")?;
                if len < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0; usize::try_from(len)? + 2];
                    self.reader
                        .read_exact(&mut buf)
                        .context("reading a Redis bulk string")?;
                    buf.truncate(buf.len() - 2);
                    Resp::Bulk(Some(buf))
                }
            }
            "*" => {
                let len: i64 = rest.parse().context("Redis array length")?;
                if len < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(usize::try_from(len)?);
                    for _ in 0..len {
                        items.push(self.read()?);
                    }
                    Resp::Array(Some(items))
                }
            }
            other => bail!("unexpected Redis reply type {other:?}"),
        })
    }

    /// Every key matching `pattern` (SCAN, so it never blocks the server).
    pub fn keys(&mut self, pattern: &str) -> Result<Vec<String>> {
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let reply = self.cmd(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ])?;
            if let Resp::Error(e) = reply {
                bail!("SCAN: {e}");
            }
            let mut parts = reply.items().into_iter();
            cursor = parts
                .next()
                .map(Resp::bytes)
                .unwrap_or_else(|| b"0".to_vec());
            if let Some(batch) = parts.next() {
                keys.extend(
                    batch
                        .items()
                        .into_iter()
                        .map(|k| String::from_utf8_lossy(&k.bytes()).into_owned()),
                );
            }
            if cursor == b"0" {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Everything stored under `key`, whatever its type, as one byte string (fields, members,
    /// scores and values, each followed by a newline).
    pub fn contents(&mut self, key: &str) -> Result<Vec<u8>> {
        let k = key.as_bytes();
        let kind = String::from_utf8_lossy(&self.cmd(&[b"TYPE", k])?.bytes()).into_owned();
        let reply = match kind.as_str() {
            "string" => self.cmd(&[b"GET", k])?,
            "hash" => self.cmd(&[b"HGETALL", k])?,
            "set" => self.cmd(&[b"SMEMBERS", k])?,
            "zset" => self.cmd(&[b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"])?,
            "list" => self.cmd(&[b"LRANGE", k, b"0", b"-1"])?,
            "stream" => self.cmd(&[b"XRANGE", k, b"-", b"+"])?,
            _ => return Ok(Vec::new()), // "none": expired meanwhile
        };
        let mut out = Vec::new();
        flatten(reply, &mut out);
        Ok(out)
    }
}

fn flatten(reply: Resp, out: &mut Vec<u8>) {
    match reply {
        Resp::Array(Some(items)) => items.into_iter().for_each(|i| flatten(i, out)),
        other => {
            out.extend_from_slice(&other.bytes());
            out.push(b'\n');
        }
    }
}

/// Every key of namespace `ns` (`<ns>:*`) with its contents.
pub fn redis_contents(redis_url: &str, ns: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut redis = Redis::connect(redis_url)?;
    let keys = redis.keys(&format!("{ns}:*"))?;
    keys.into_iter()
        .map(|k| Ok((k.clone(), redis.contents(&k)?)))
        .collect()
}

/// Deletes every key of namespace `ns` (`<ns>:*`); returns how many there were.
pub fn delete_redis_namespace(redis_url: &str, ns: &str) -> Result<usize> {
    let mut redis = Redis::connect(redis_url)?;
    let keys = redis.keys(&format!("{ns}:*"))?;
    for chunk in keys.chunks(500) {
        let mut args: Vec<&[u8]> = vec![b"UNLINK"];
        args.extend(chunk.iter().map(|k| k.as_bytes()));
        if let Resp::Error(e) = redis.cmd(&args)? {
            bail!("UNLINK: {e}");
        }
    }
    Ok(keys.len())
}

/// Helpers for fault-injection scenarios (`tests/tests/fleet_faults.rs`): workers armed with a
/// crash point, and what became of them.
impl Fleet {
    /// Starts one more worker with `extra` environment on top of
    /// [`FleetOptions::extra_worker_env`] (e.g. `MAILFERRY_FAILPOINT=fetch:2`) and returns its
    /// index once it answers `GET /ready` with 200 — or once it has exited, since a worker armed
    /// with a crash point may reach it before readiness is polled.
    ///
    /// # Panics
    /// When it cannot be started or is neither ready nor exited within [`READY_TIMEOUT`].
    pub async fn start_worker_with_env(&mut self, extra: &[(&str, &str)]) -> usize {
        let saved = self.options.extra_worker_env.clone();
        self.options.extra_worker_env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let spawned = self.spawn_worker();
        self.options.extra_worker_env = saved;
        let index = spawned.unwrap_or_else(|e| panic!("starting a worker: {e:#}"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(Some(p)) = self.workers.get_mut(index) else {
                panic!("worker {index} vanished");
            };
            if matches!(p.child.try_wait(), Ok(Some(_))) {
                return index;
            }
            let addr = format!("127.0.0.1:{}", p.admin_port);
            if let Ok((200, _)) = http_get(&addr, "/ready").await {
                return index;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready within {READY_TIMEOUT:?}\n{}",
                    p.name,
                    log_tail(&p.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How worker `index` ended, once it has exited by itself (e.g. at a crash point); `None`
    /// while it runs, and for a worker this fleet killed or never started.
    pub fn worker_exit_status(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        let p = self.workers.get_mut(index)?.as_mut()?;
        p.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for worker `index` to exit by itself; its exit status, or `None` if
    /// it still runs.
    pub async fn wait_worker_exit(
        &mut self,
        index: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.worker_exit_status(index) {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How the coordinator ended, once it has exited by itself (e.g. on losing its leader
    /// lease); `None` while it runs, and after [`Fleet::kill_coordinator`].
    pub fn coordinator_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let p = self.coordinator.as_mut()?;
        p.child.try_wait().ok().flatten()
    }

    /// Indices of the workers that are running now (started, not killed, not exited).
    pub fn running_workers(&mut self) -> Vec<usize> {
        let mut running = Vec::new();
        for (i, slot) in self.workers.iter_mut().enumerate() {
            if let Some(p) = slot
                && matches!(p.child.try_wait(), Ok(None))
            {
                running.push(i);
            }
        }
        running
    }

    /// Everything worker `index` printed so far (empty when it never ran).
    pub fn worker_log(&self, index: usize) -> String {
        let path = self.dir.path().join(format!("worker-{index}.log"));
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_cover_every_queue() {
        let keys = routing_keys();
        for k in ["tasks", "outcomes", "dead", "retry.1s", "retry.86400s"] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn tail_keeps_char_boundaries() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }

    #[test]
    fn contains_finds_only_real_substrings() {
        assert!(contains(b"xx secret yy", b"secret"));
        assert!(!contains(b"xx secre", b"secret"));
        assert!(!contains(b"anything", b""));
    }

    // The tests below need the machine's RabbitMQ and Redis (scripts/fleet-servers ensure).

    #[test]
    fn redis_client_reads_and_deletes_one_namespace() {
        let url = FleetEnv::shared().redis_url().to_owned();
        let ns = format!("t{}", random_hex(8).unwrap());
        let neighbour = format!("{ns}x:kept");
        let mut r = Redis::connect(&url).unwrap();
        let s = |x: &str| x.as_bytes().to_vec();
        let writes: Vec<Vec<Vec<u8>>> = vec![
            vec![s("SET"), s(&format!("{ns}:str")), s("v-string")],
            vec![s("HSET"), s(&format!("{ns}:hash")), s("f"), s("v-hash")],
            vec![s("SADD"), s(&format!("{ns}:set")), s("v-set")],
            vec![s("ZADD"), s(&format!("{ns}:zset")), s("7"), s("v-zset")],
            vec![s("RPUSH"), s(&format!("{ns}:list")), s("v-list")],
            vec![s("SET"), s(&neighbour), s("v-neighbour")],
        ];
        for w in &writes {
            let args: Vec<&[u8]> = w.iter().map(Vec::as_slice).collect();
            let reply = r.cmd(&args).unwrap();
            assert!(!matches!(reply, Resp::Error(_)), "{reply:?}");
        }
        let contents = redis_contents(&url, &ns).unwrap();
        assert_eq!(contents.len(), 5, "{contents:?}");
        let all: Vec<u8> = contents.iter().flat_map(|(_, v)| v.clone()).collect();
        for v in ["v-string", "v-hash", "v-set", "v-zset", "v-list"] {
            assert!(contains(&all, v.as_bytes()), "{v} not read back");
        }
        assert!(
            !contains(&all, b"v-neighbour"),
            "another namespace was read"
        );
        assert_eq!(delete_redis_namespace(&url, &ns).unwrap(), 5);
        assert!(r.keys(&format!("{ns}:*")).unwrap().is_empty());
        assert_eq!(
            r.cmd(&[b"GET", neighbour.as_bytes()]).unwrap().bytes(),
            b"v-neighbour"
        );
        r.cmd(&[b"DEL", neighbour.as_bytes()]).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_tap_copies_messages_and_cleanup_removes_the_namespace() {
        use lapin::BasicProperties;
        use lapin::options::BasicPublishOptions;
        let url = FleetEnv::shared().amqp_url().to_owned();
        let ns = format!("t{}", random_hex(8).unwrap());
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let exchange = queues::exchange(&ns);
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
        let tasks = queues::tasks_queue(&ns);
        ch.queue_declare(
            tasks.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            tasks.as_str().into(),
            exchange.as_str().into(),
            queues::TASKS_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

        let tap = QueueTap::bind(&url, &ns).await.unwrap();
        for (key, body) in [
            (queues::TASKS_KEY.to_owned(), "task-body-1"),
            (queues::retry_key(5), "retry-body-2"),
        ] {
            ch.basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while tap.messages().len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(tap.count("tasks"), 1, "{:?}", tap.messages());
        assert_eq!(tap.count("retry.5s"), 1, "{:?}", tap.messages());
        assert!(contains(&tap.all_bytes(), b"retry-body-2"));
        // The fleet's own queue still got its message: the tap copies, it does not take.
        let q = ch
            .queue_declare(
                tasks.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(q.message_count(), 1);
        drop(tap);

        delete_amqp_namespace(&url, &ns).await.unwrap();
        let check = conn.create_channel().await.unwrap();
        let gone = check
            .queue_declare(
                tasks.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        assert!(gone.is_err(), "{tasks} still exists");
        let check = conn.create_channel().await.unwrap();
        let gone = check
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        assert!(gone.is_err(), "exchange {exchange} still exists");
        let _ = conn.close(200, "done".into()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn private_servers_restart_keep_data_and_flush_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let env = tokio::task::spawn_blocking(move || FleetEnv::private(path))
            .await
            .unwrap();
        assert!(env.is_private());
        assert_ne!(env.amqp_url(), DEFAULT_AMQP_URL);
        assert_ne!(env.redis_url(), DEFAULT_REDIS_URL);
        assert!(
            FleetEnv::shared().flush_redis().is_err(),
            "flushing the shared Redis must be refused"
        );

        let mut r = Redis::connect(env.redis_url()).unwrap();
        r.cmd(&[b"SET", b"probe", b"kept"]).unwrap();
        env.restart_redis().await.unwrap();
        let mut r = Redis::connect(env.redis_url()).unwrap();
        assert_eq!(
            r.cmd(&[b"GET", b"probe"]).unwrap().bytes(),
            b"kept",
            "AOF lost the key"
        );
        env.flush_redis().unwrap();
        assert_eq!(r.cmd(&[b"GET", b"probe"]).unwrap(), Resp::Bulk(None));

        // A durable queue survives the restart.
        declare_probe(env.amqp_url(), false).await.unwrap();
        env.restart_rabbitmq().await.unwrap();
        declare_probe(env.amqp_url(), true).await.unwrap();
        drop(env);
        assert!(
            Redis::connect(&format!(
                "redis://127.0.0.1:{}",
                r.writer.peer_addr().unwrap().port()
            ))
            .is_err(),
            "the private Redis still runs after drop"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fleet_processes_start_die_and_come_back() {
        let env = FleetEnv::shared();
        let mut fleet = Fleet::start(&env, FleetOptions::default()).await;
        let list = |out: &Output| {
            assert_eq!(out.code, 0, "{out}");
            assert!(out.json.is_some(), "ctl list --json printed no JSON\n{out}");
        };
        list(&fleet.ctl(&["list", "--json"]).await);
        assert_eq!(
            http_get(&fleet.coordinator_admin_addr(), "/live")
                .await
                .unwrap()
                .0,
            200
        );

        let first = fleet.worker_admin_addr(0).unwrap();
        fleet.kill_worker(0).await;
        assert!(fleet.worker_admin_addr(0).is_none());
        assert!(
            http_get(&first, "/live").await.is_err(),
            "worker 0 still answers"
        );
        let second = fleet.start_worker().await;
        assert_eq!(second, 1);
        let addr = fleet.worker_admin_addr(second).unwrap();
        assert_eq!(http_get(&addr, "/ready").await.unwrap().0, 200);

        fleet.kill_coordinator().await;
        let down = fleet
            .ctl_with(&["list", "--json"], &[], Duration::from_secs(60))
            .await;
        assert_ne!(down.code, 0, "ctl worked without a coordinator\n{down}");
        fleet.restart_coordinator().await;
        list(&fleet.ctl(&["list", "--json"]).await);

        let logs = fleet.logs();
        for name in ["coordinator-1", "coordinator-2", "worker-0", "worker-1"] {
            assert!(
                logs.contains(&format!("===== {name} =====")),
                "no log of {name}"
            );
        }
        assert!(
            fleet.find_secrets(&[], &[]).is_empty(),
            "token or key in the logs"
        );
        let (redis_url, ns) = (fleet.redis_url().to_owned(), fleet.namespace().to_owned());
        drop(fleet);
        assert!(
            Redis::connect(&redis_url)
                .unwrap()
                .keys(&format!("{ns}:*"))
                .unwrap()
                .is_empty(),
            "the fleet's keys outlived it"
        );
    }

    async fn declare_probe(url: &str, passive: bool) -> lapin::Result<()> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        let opts = QueueDeclareOptions {
            passive,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare("probe".into(), opts, FieldTable::default())
            .await?;
        conn.close(200, "done".into()).await
    }
}
