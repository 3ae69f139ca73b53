//! Running the `mailferry` binary from scenario tests.
//!
//! This module owns finding (or building, once, under a file lock) `target/debug/mailferry`,
//! and running `mailferry migrate` / `mailferry check` between two test accounts with a
//! timeout, capturing the exit code, stdout, stderr and the `--json` document. It treats the
//! binary as a black box: it must not link the worker, coordinator or cli crates, and it parses
//! the JSON as untyped [`serde_json::Value`] so a field renamed in `proto/` shows up as a failed
//! assertion rather than a harness that no longer builds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::servers::{TestAccount, repo_root};

/// Environment variable naming the `mailferry` binary to test (default: the workspace's
/// `target/debug/mailferry`, built when missing).
pub const BIN_VAR: &str = "MAILFERRY_BIN";

/// Timeout for one `mailferry` run unless the caller gives another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// What one run of the binary did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// stdout parsed as one JSON document, when it is one.
    pub json: Option<serde_json::Value>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl Output {
    /// The JSON document; panics with stdout and stderr when there is none.
    pub fn json(&self) -> &serde_json::Value {
        match &self.json {
            Some(j) => j,
            None => panic!("no JSON on stdout\n{self}"),
        }
    }

    /// A top-level unsigned field of the JSON document; panics when it is absent.
    pub fn u64(&self, field: &str) -> u64 {
        match self.json().get(field).and_then(serde_json::Value::as_u64) {
            Some(n) => n,
            None => panic!("JSON has no unsigned field {field:?}\n{self}"),
        }
    }

    /// A top-level string field of the JSON document; panics when it is absent.
    pub fn str(&self, field: &str) -> &str {
        match self.json().get(field).and_then(serde_json::Value::as_str) {
            Some(s) => s,
            None => panic!("JSON has no string field {field:?}\n{self}"),
        }
    }

    /// A top-level array field of the JSON document (empty when absent or null).
    pub fn array(&self, field: &str) -> Vec<serde_json::Value> {
        self.json()
            .get(field)
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit code {} after {:?}", self.code, self.elapsed)?;
        writeln!(f, "--- stdout ---\n{}", tail(&self.stdout, 20_000))?;
        writeln!(f, "--- stderr ---\n{}", tail(&self.stderr, 8_000))
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

/// The `mailferry` binary: `$MAILFERRY_BIN`, else `target/debug/mailferry` of this workspace
/// (`$CARGO_TARGET_DIR` respected), built with `cargo build -p mailferry` when missing. The
/// build runs at most once per process and under a file lock across processes.
///
/// # Panics
/// When the binary can neither be found nor built.
pub fn binary() -> &'static Path {
    let found = BINARY.get_or_init(|| locate_binary().map_err(|e| format!("{e:#}")));
    match found {
        Ok(p) => p,
        Err(e) => panic!("mailferry binary unavailable: {e}"),
    }
}

fn locate_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_VAR) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{BIN_VAR}={} is not a file", p.display());
        }
        return Ok(p);
    }
    let root = repo_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target_dir.join("debug").join("mailferry");
    if bin.is_file() && !stale(&bin, &root) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&target_dir)
        .with_context(|| format!("creating {}", target_dir.display()))?;
    let lock_path = target_dir.join(".mailferry-tests-build.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Another process may have built it while we waited.
    if !bin.is_file() || stale(&bin, &root) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "mailferry"])
            .current_dir(&root)
            .status()
            .context("running cargo build -p mailferry")?;
        if !status.success() {
            bail!("cargo build -p mailferry failed: {status}");
        }
    }
    drop(lock);
    if !bin.is_file() {
        bail!("{} still missing after cargo build", bin.display());
    }
    Ok(bin)
}

/// Whether a source file of the crates the binary is built from (or `Cargo.lock`) is newer
/// than the binary: testing a stale binary would report bugs already fixed, or hide new ones.
fn stale(bin: &Path, root: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let newer = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > built)
    };
    if newer(&root.join("Cargo.lock")) {
        return true;
    }
    ["proto", "fleet", "worker", "coordinator", "cli"]
        .iter()
        .any(|krate| {
            newer(&root.join(krate).join("Cargo.toml"))
                || newer_in(&root.join(krate).join("src"), built)
        })
}

fn newer_in(dir: &Path, built: std::time::SystemTime) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => newer_in(&path, built),
            Ok(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built),
            Err(_) => false,
        }
    })
}

/// `imap://USER@HOST:PORT` (STARTTLS) for an account.
pub fn endpoint(account: &TestAccount) -> String {
    format!(
        "imap://{}@{}:{}",
        account.user, account.host, account.imap_port
    )
}

/// The endpoint flags of one pair, for `migrate`, `check` or `ctl create`: `--src` and `--dst`
/// URLs (STARTTLS) and each server's CA. Passwords are not flags: set them in the environment.
pub fn pair_args(src: &TestAccount, dst: &TestAccount) -> Vec<String> {
    vec![
        "--src".into(),
        endpoint(src),
        "--dst".into(),
        endpoint(dst),
        "--src-ca".into(),
        src.ca.to_string_lossy().into_owned(),
        "--dst-ca".into(),
        dst.ca.to_string_lossy().into_owned(),
    ]
}

/// The binary with no arguments yet: inherited `MAILFERRY_*` variables removed (so a
/// developer's environment cannot change a test), stdin closed, stdout and stderr piped,
/// killed when dropped.
pub fn bare_command() -> Command {
    let mut cmd = Command::new(binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAILFERRY_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A `mailferry SUBCOMMAND` command between two accounts: endpoints, CAs and passwords set,
/// inherited `MAILFERRY_*` variables removed (so a developer's environment cannot change a
/// test), stdin closed, stdout and stderr piped, killed when dropped. `extra` comes last.
pub fn command(subcommand: &str, src: &TestAccount, dst: &TestAccount, extra: &[&str]) -> Command {
    let mut cmd = bare_command();
    cmd.arg(subcommand)
        .args(pair_args(src, dst))
        .args(extra)
        .env("MAILFERRY_SRC_PASSWORD", &src.password)
        .env("MAILFERRY_DST_PASSWORD", &dst.password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `mailferry migrate --json` from `src` to `dst` with `extra` arguments (pass `--state`
/// there), within [`DEFAULT_TIMEOUT`].
pub async fn run_migrate(src: &TestAccount, dst: &TestAccount, extra: &[&str]) -> Result<Output> {
    run("migrate", src, dst, extra, DEFAULT_TIMEOUT).await
}

/// Runs `mailferry check --json` from `src` to `dst` with `extra` arguments, within
/// [`DEFAULT_TIMEOUT`].
pub async fn run_check(src: &TestAccount, dst: &TestAccount, extra: &[&str]) -> Result<Output> {
    run("check", src, dst, extra, DEFAULT_TIMEOUT).await
}

/// Runs `mailferry SUBCOMMAND --json …` and waits at most `limit`; on timeout the process is
/// killed and the error carries what it printed so far.
pub async fn run(
    subcommand: &str,
    src: &TestAccount,
    dst: &TestAccount,
    extra: &[&str],
    limit: Duration,
) -> Result<Output> {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    run_command(command(subcommand, src, dst, &args), limit).await
}

/// Runs a prepared command of the binary ([`bare_command`] or [`command`]) and waits at most
/// `limit`; on timeout the process is killed and the error carries what it printed so far.
pub async fn run_command(mut cmd: Command, limit: Duration) -> Result<Output> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary().display()))?;
    let started = Instant::now();
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let out_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.context("waiting for mailferry")?,
        Err(_) => {
            let _ = child.kill().await;
            let out = out_task.await.unwrap_or_default();
            let err = err_task.await.unwrap_or_default();
            bail!(
                "mailferry timed out after {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                tail(&String::from_utf8_lossy(&out), 8_000),
                tail(&String::from_utf8_lossy(&err), 8_000)
            );
        }
    };
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out_task.await.unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_task.await.unwrap_or_default()).into_owned();
    let json = serde_json::from_str(stdout.trim()).ok();
    Ok(Output {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        json,
        elapsed,
    })
}
