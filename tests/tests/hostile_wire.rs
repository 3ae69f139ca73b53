//! Hostile servers at the wire, seen as a user sees them: the real binary against scripted
//! servers on loopback (`fake_server`) that crash or starve a careless client before login.
//! Each case ends with an exit code and message from the README's table, within the timeouts,
//! never a crash (exit 134 or 139, a signal) or a wait without end. The same bounds are tested
//! at the connection level, byte by byte, in `worker/tests/hostile_wire.rs`.

use std::time::Duration;

use mailferry_tests::cli::{Output, bare_command, run_command};
use mailferry_tests::fake_server::{FakeServer, Script};

/// `mailferry SUBCOMMAND` from the fake server to an unused target (the source fails first).
async fn against(script: Script, subcommand: &str, extra: &[&str]) -> (Output, FakeServer) {
    let fake = FakeServer::start(script).await.expect("the fake server");
    let mut cmd = bare_command();
    cmd.arg(subcommand)
        .arg("--src")
        .arg(format!("imap://alice@127.0.0.1:{}", fake.port()))
        .arg("--dst")
        .arg(format!("imap://bob@127.0.0.1:{}", fake.port()))
        .args(["--src-tls", "none", "--dst-tls", "none"])
        .args(extra)
        .env("MAILFERRY_SRC_PASSWORD", "pw-a")
        .env("MAILFERRY_DST_PASSWORD", "pw-b");
    let out = run_command(cmd, Duration::from_secs(120))
        .await
        .expect("mailferry ends by itself");
    (out, fake)
}

fn assert_not_a_crash(out: &Output) {
    assert!(
        ![134, 139, -1].contains(&out.code),
        "mailferry crashed (exit {})\n{out}",
        out.code
    );
    assert!(!out.stderr.contains("panicked"), "a panic\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_nested_ten_thousand_deep_does_not_crash_check_or_migrate() {
    for subcommand in ["check", "migrate"] {
        let (out, _fake) = against(Script::DeepGreeting, subcommand, &["--timeout", "5"]).await;
        assert_not_a_crash(&out);
        assert!(
            [5, 6].contains(&out.code),
            "{subcommand}: a connection or fatal error expected\n{out}"
        );
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains("nested"),
            "{subcommand}: names the cause\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_greeting_is_given_up_under_the_progress_floor() {
    // Two bytes a second never trip a 2 s inactivity timeout; the floor of 100 bytes/s after
    // the timeout's grace does. `check` makes one attempt.
    let (out, _fake) = against(
        Script::Trickle,
        "check",
        &["--timeout", "2", "--min-rate", "100"],
    )
    .await;
    assert_not_a_crash(&out);
    assert_eq!(out.code, 5, "a connection failure\n{out}");
    assert!(out.elapsed < Duration::from_secs(30), "{out}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("too slowly") || said.contains("greeting"),
        "{out}"
    );
}
