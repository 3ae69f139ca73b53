//! Runs the `mailferry` binary between two ends (the scripted server or a real test account)
//! with `--json`, a private state directory and a time limit, and keeps what it did: exit code,
//! output, the JSON summary and peak memory.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::cli::{self, binary};
use crate::scripted::ScriptedServer;
use crate::servers::TestAccount;

/// What one run of the binary did, with its peak resident memory.
pub struct Run {
    /// Exit code (128+n after signal n).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Standard output as JSON (`--json`), `Null` when it is not.
    pub json: serde_json::Value,
    /// Peak resident memory.
    pub max_rss_kib: u64,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = |s: &str| s[s.len().saturating_sub(6_000)..].to_owned();
        write!(
            f,
            "exit {} (peak RSS {} KiB)\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.max_rss_kib,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

impl Run {
    /// The summary's warnings with this code.
    pub fn warnings(&self, code: &str) -> Vec<serde_json::Value> {
        self.json["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["code"] == code)
            .cloned()
            .collect()
    }
}

/// One side of a run: the scripted server (plain IMAP on loopback) or a real test account.
pub enum End<'a> {
    /// The scripted server.
    Scripted(&'a ScriptedServer),
    /// A real Dovecot test account.
    Real(&'a TestAccount),
}

impl End<'_> {
    fn args(&self, flag: &str) -> Vec<String> {
        match self {
            End::Scripted(s) => vec![
                format!("--{flag}"),
                s.url(),
                format!("--{flag}-tls"),
                "none".into(),
            ],
            End::Real(a) => vec![
                format!("--{flag}"),
                cli::endpoint(a),
                format!("--{flag}-ca"),
                a.ca.to_string_lossy().into_owned(),
            ],
        }
    }

    fn password(&self) -> String {
        match self {
            End::Scripted(s) => s.password(),
            End::Real(a) => a.password.clone(),
        }
    }
}

/// Runs `mailferry SUB --json` from `src` to `dst` under `/usr/bin/time`, with a private state
/// directory and `extra` arguments, killed after two minutes.
pub async fn mailferry(sub: &str, src: End<'_>, dst: End<'_>, extra: &[&str]) -> Run {
    mailferry_in(sub, src, dst, extra, None).await
}

/// As [`mailferry`], with `migrate`'s state directory `state` when given (kept between runs),
/// else a private one.
pub async fn mailferry_in(
    sub: &str,
    src: End<'_>,
    dst: End<'_>,
    extra: &[&str],
    state: Option<&std::path::Path>,
) -> Run {
    let private = tempfile::tempdir().expect("a state directory");
    let state = state.unwrap_or(private.path());
    let mut cmd = tokio::process::Command::new("/usr/bin/time");
    cmd.args(["-f", "MAXRSS_KIB %M"])
        .arg(binary())
        .arg(sub)
        .arg("--json")
        .args(src.args("src"))
        .args(dst.args("dst"))
        .args(extra)
        .env("MAILFERRY_SRC_PASSWORD", src.password())
        .env("MAILFERRY_DST_PASSWORD", dst.password())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if sub == "migrate" {
        cmd.arg("--state").arg(state);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAILFERRY_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd.spawn().expect("starting mailferry under /usr/bin/time");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b).await;
        b
    });
    let err = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b).await;
        b
    });
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("mailferry finished within two minutes")
        .expect("waiting for mailferry");
    let stdout = String::from_utf8_lossy(&out.await.unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.await.unwrap_or_default()).into_owned();
    let max_rss_kib = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("MAXRSS_KIB "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    Run {
        // /usr/bin/time exits with the command's code (128+n after a signal).
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        json,
        max_rss_kib,
    }
}
