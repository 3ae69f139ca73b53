//! Ctrl-C (SIGINT) stops a run within a second or two whatever it waits on (issue 15): a server
//! that accepts the connection and never greets, a login never answered, a FETCH that stalls
//! half-way; the exit code is 130, and a rerun copies nothing twice. A second Ctrl-C stops at
//! once. The binary runs against the scripted server (tests/src/scripted/) and the fake server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mailferry_tests::cli::bare_command;
use mailferry_tests::fake_server::{FakeServer, Script};
use mailferry_tests::scripted::{
    Account, Folder, Override, Quirks, ScriptedServer, text_contains, verb,
};
use tokio::io::AsyncReadExt;

/// Exit code of an interrupted run.
const INTERRUPTED: i32 = 130;

/// How long a run may take to stop after SIGINT: the 1 s grace, the summary, the exit, and a
/// loaded machine's slack; far below the `--timeout 120` any wait would otherwise last.
const STOPS_WITHIN: Duration = Duration::from_secs(5);

fn message(n: usize) -> Vec<u8> {
    format!(
        "Message-ID: <interrupt-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:{n:02} +0000\r\nFrom: a@example.net\r\nTo: b@example.net\r\nSubject: message {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// What an interrupted run did.
struct Stopped {
    code: i32,
    /// From the (first) SIGINT to the exit.
    took: Duration,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} {:?} after SIGINT\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

fn sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -INT {pid}");
}

/// Starts `mailferry ARGS` (`--timeout 120`, passwords set), waits for `ready`, sends SIGINT
/// (`signals` times, 200 ms apart) and waits for the exit.
async fn interrupt(args: &[String], ready: impl AsyncFnOnce(), signals: usize) -> Stopped {
    let mut cmd = bare_command();
    cmd.args(args)
        .args(["--timeout", "120"])
        .env("MAILFERRY_SRC_PASSWORD", "secret")
        .env("MAILFERRY_DST_PASSWORD", "secret");
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    ready().await;
    let pid = child.id().expect("still running when interrupted");
    let sent = Instant::now();
    for i in 0..signals {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sigint(pid);
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("mailferry stopped within a minute of SIGINT")
        .unwrap();
    Stopped {
        code: status.code().unwrap_or(-1),
        took: sent.elapsed(),
        stdout: out.await.unwrap_or_default(),
        stderr: err.await.unwrap_or_default(),
    }
}

fn side(flag: &str, url: String) -> Vec<String> {
    vec![
        format!("--{flag}"),
        url,
        format!("--{flag}-tls"),
        "none".into(),
    ]
}

async fn one_second() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_wait_for_a_greeting_that_never_comes() {
    for sub in ["migrate", "check"] {
        let silent = FakeServer::start(Script::Silent).await.unwrap();
        let dst = ScriptedServer::start(Account::new()).await.unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut args = vec![sub.to_owned()];
        args.extend(side(
            "src",
            format!("imap://alice@127.0.0.1:{}", silent.port()),
        ));
        args.extend(dst.args("dst"));
        if sub == "migrate" {
            args.extend(["--state".into(), state.path().display().to_string()]);
        }
        let run = interrupt(&args, one_second, 1).await;
        assert_eq!(run.code, INTERRUPTED, "{sub}: {run}");
        assert!(run.took < STOPS_WITHIN, "{sub}: {run}");
        assert!(
            run.stderr.contains("interrupt again to stop at once"),
            "{sub}: the first interrupt says how to stop at once\n{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_login_never_answered() {
    let src = ScriptedServer::start_with(
        Account::new().with(Folder::new("Work").with(message(1))),
        Quirks::default(),
        vec![Override::hang(verb("AUTHENTICATE"))],
    )
    .await
    .unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["migrate".to_owned()];
    args.extend(src.args("src"));
    args.extend(dst.args("dst"));
    args.extend(["--state".into(), state.path().display().to_string()]);
    let run = interrupt(&args, one_second, 1).await;
    assert_eq!(run.code, INTERRUPTED, "{run}");
    assert!(run.took < STOPS_WITHIN, "{run}");
    assert_eq!(src.count("AUTHENTICATE"), 1, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_stalled_fetch_and_a_rerun_copies_nothing_twice() {
    // Two folders, one connection per side: the first folder's bodies come, the second's
    // FETCH stops half-way and the server falls silent.
    let bodies = text_contains("INTERNALDATE BODY.PEEK[]");
    let mut account = Account::new();
    for n in 0..4 {
        account.inbox().push(message(n));
    }
    let account = account.with(
        Folder::new("Work")
            .with(message(4))
            .with(message(5))
            .with(message(6)),
    );
    let src = ScriptedServer::start_with(
        account,
        Quirks::default(),
        vec![
            Override::alter(text_contains("INTERNALDATE BODY.PEEK[]"), |_, honest| {
                honest
            })
            .times(1),
            Override::alter(bodies, |_, honest| honest[..honest.len() / 2].to_vec())
                .then_silence()
                .times(1),
        ],
    )
    .await
    .unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["migrate".to_owned(), "--json".to_owned()];
    args.extend(src.args("src"));
    args.extend(dst.args("dst"));
    args.extend([
        "--state".into(),
        state.path().display().to_string(),
        "--connections".into(),
        "1".into(),
    ]);
    let stalled = async || {
        let started = Instant::now();
        while src
            .commands()
            .iter()
            .filter(|c| c.contains("INTERNALDATE BODY.PEEK[]"))
            .count()
            < 2
        {
            assert!(started.elapsed() < Duration::from_secs(60), "never stalled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The half answer is out; mailferry now waits for the rest.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let run = interrupt(&args, stalled, 1).await;
    assert_eq!(run.code, INTERRUPTED, "{run}");
    assert!(run.took < STOPS_WITHIN, "{run}");
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(summary["status"], "interrupted", "{run}");
    let before: u64 = dst
        .account()
        .folders
        .iter()
        .map(|f| f.messages.len() as u64)
        .sum();
    assert!(
        (1..7).contains(&before),
        "the first folder was copied, the second not: {before}\n{run}"
    );
    // The rerun (same state) finds what is there and copies the rest, once.
    let mut cmd = bare_command();
    cmd.args(&args)
        .args(["--timeout", "30"])
        .env("MAILFERRY_SRC_PASSWORD", "secret")
        .env("MAILFERRY_DST_PASSWORD", "secret");
    let out = mailferry_tests::cli::run_command(cmd, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        (out.u64("already_present"), out.u64("messages_copied")),
        (before, 7 - before),
        "{out}"
    );
    let target = dst.account();
    let mut copies: Vec<Vec<u8>> = target
        .folders
        .iter()
        .flat_map(|f| f.messages.iter().map(|m| m.body.clone()))
        .collect();
    copies.sort();
    let mut expected: Vec<Vec<u8>> = (0..7).map(message).collect();
    expected.sort();
    assert_eq!(copies, expected, "every message on the target once\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once() {
    let silent = FakeServer::start(Script::Silent).await.unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["migrate".to_owned()];
    args.extend(side(
        "src",
        format!("imap://alice@127.0.0.1:{}", silent.port()),
    ));
    args.extend(dst.args("dst"));
    args.extend(["--state".into(), state.path().display().to_string()]);
    let run = interrupt(&args, one_second, 2).await;
    assert_eq!(run.code, INTERRUPTED, "{run}");
    assert!(run.took < STOPS_WITHIN, "{run}");
    assert!(
        run.stderr.contains("interrupt again to stop at once"),
        "{run}"
    );
}
