//! OAuth 2.0 logins against the scripted fake server: XOAUTH2 and OAUTHBEARER, a refused token
//! (the server's JSON challenge answered, then exit 4), and the token file read again at every
//! connection so an external refresher can rotate it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mailferry_tests::cli::bare_command;
use mailferry_tests::fake_server::{FakeServer, Script};

struct Run {
    code: i32,
    out: String,
}

/// `mailferry SUB` with both sides on the fake server (plain IMAP on loopback), as two users:
/// one mailbox on both sides is refused.
fn fake_command(sub: &str, server: &FakeServer) -> tokio::process::Command {
    let src = format!("imap://alice@127.0.0.1:{}", server.port());
    let dst = format!("imap://bob@127.0.0.1:{}", server.port());
    let mut cmd = bare_command();
    cmd.args([
        sub,
        "--src",
        &src,
        "--dst",
        &dst,
        "--src-tls",
        "none",
        "--dst-tls",
        "none",
    ]);
    cmd
}

async fn check(server: &FakeServer, token_file: &std::path::Path) -> Run {
    let mut cmd = fake_command("check", server);
    cmd.args(["--timeout", "10"])
        .arg("--src-oauth2-token-file")
        .arg(token_file)
        .arg("--dst-oauth2-token-file")
        .arg(token_file);
    let o = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

fn tokens(server: &FakeServer) -> Vec<String> {
    server
        .commands()
        .into_iter()
        .filter_map(|c| c.strip_prefix("TOKEN ").map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_and_oauthbearer_log_in_with_the_current_token() {
    for (script, mech) in [
        (Script::XOAuth2, "XOAUTH2"),
        (Script::OAuthBearer, "OAUTHBEARER"),
    ] {
        let server = FakeServer::start(script).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "good-first\n").unwrap();
        let run = check(&server, &file).await;
        assert_eq!(run.code, 0, "{mech}: {}", run.out);
        // Rotated by "a refresher" between runs: the next connections use the new token.
        std::fs::write(&file, "good-second").unwrap();
        let run = check(&server, &file).await;
        assert_eq!(run.code, 0, "{mech}: {}", run.out);
        let seen = tokens(&server);
        assert!(seen.iter().all(|t| t.starts_with(mech)), "{seen:?}");
        assert!(
            seen.contains(&format!("{mech} good-first"))
                && seen.contains(&format!("{mech} good-second")),
            "{seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_a_failed_login_and_never_printed() {
    let server = FakeServer::start(Script::XOAuth2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "expired-ya29-secret-token").unwrap();
    let run = check(&server, &file).await;
    assert_eq!(run.code, 4, "{}", run.out);
    assert!(run.out.contains("access token"), "{}", run.out);
    assert!(
        !run.out.contains("expired-ya29-secret-token"),
        "{}",
        run.out
    );
    // A missing token file is a usage error; nothing connects.
    let before = server.connections();
    let run = check(&server, &dir.path().join("missing")).await;
    assert_eq!(run.code, 2, "{}", run.out);
    assert_eq!(server.connections(), before);
}

/// A server that throttles the first login with Microsoft's "Suggested Backoff Time" hint: the
/// run waits that long (visible in the summary), logs in again and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_login_waits_the_suggested_backoff_then_completes() {
    let server = FakeServer::start(Script::ThrottleOnce).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = fake_command("migrate", &server);
    cmd.arg("--json")
        .arg("--state")
        .arg(dir.path())
        .env("MAILFERRY_SRC_PASSWORD", "pw")
        .env("MAILFERRY_DST_PASSWORD", "pw");
    let started = std::time::Instant::now();
    let o = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the hint was honoured"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        summary["throttled_secs"].as_f64().unwrap() >= 1.5,
        "{summary}"
    );
    let codes: Vec<&str> = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(codes.contains(&"throttled"), "{codes:?}");
    assert!(
        stderr.contains("retrying in 1s") || stderr.contains("retrying in 2s"),
        "{stderr}"
    );
}
