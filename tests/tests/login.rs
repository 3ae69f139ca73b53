//! Logins against servers other than Dovecot (issue 15): a tagged answer to the login ended by a
//! bare LF, a broken AUTHENTICATE PLAIN avoided with `--src-auth-mechanism` /
//! `--dst-auth-mechanism`, LOGIN arguments of any byte, every mechanism against real Dovecot,
//! and a login that fails the same way every time given up after three tries, with its cause and
//! the right exit code. The binary runs against the scripted server (tests/src/scripted/).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mailferry_tests::cli::{self, Output, bare_command, run_command};
use mailferry_tests::scripted::{Account, Folder, Override, Quirks, ScriptedServer, verb};
use mailferry_tests::{Side, TestServers};

/// Exit codes (README, "Exit codes").
const AUTH: i32 = 4;
const CONNECT: i32 = 5;

fn message(n: usize) -> Vec<u8> {
    format!(
        "Message-ID: <login-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:{n:02} +0000\r\nFrom: a@example.net\r\nTo: b@example.net\r\nSubject: message {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// Three messages in INBOX, two in `Work`.
fn source_account() -> Account {
    let mut a = Account::new();
    for n in 0..3 {
        a.inbox().push(message(n));
    }
    a.with(Folder::new("Work").with(message(3)).with(message(4)))
}

/// Messages held by every folder of an account.
fn held(server: &ScriptedServer) -> usize {
    server
        .account()
        .folders
        .iter()
        .map(|f| f.messages.len())
        .sum()
}

/// `mailferry SUB --json` from `src` to `dst` (both scripted) with a private state directory.
async fn run(sub: &str, src: &ScriptedServer, dst: &ScriptedServer, extra: &[&str]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = bare_command();
    cmd.arg(sub)
        .arg("--json")
        .args(src.args("src"))
        .args(dst.args("dst"))
        .args(extra)
        .env("MAILFERRY_SRC_PASSWORD", src.password())
        .env("MAILFERRY_DST_PASSWORD", dst.password());
    if sub == "migrate" {
        cmd.arg("--state").arg(state.path());
    }
    run_command(cmd, Duration::from_secs(150)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_answer_ended_by_a_bare_lf_logs_in_at_once() {
    // The server of issue 15: `+ ` for the SASL response, then `m2 OK ...\n`. With LOGIN too.
    let quirks = Quirks {
        sasl_ir: false,
        bare_lf_login: true,
        ..Quirks::default()
    };
    for (mechanism, command) in [(None, "AUTHENTICATE"), (Some("login"), "LOGIN")] {
        let src = ScriptedServer::start_with(source_account(), quirks.clone(), Vec::new())
            .await
            .unwrap();
        let dst = ScriptedServer::start_with(Account::new(), quirks.clone(), Vec::new())
            .await
            .unwrap();
        let mut extra = vec!["--timeout", "30"];
        if let Some(m) = mechanism {
            extra.extend(["--src-auth-mechanism", m, "--dst-auth-mechanism", m]);
        }
        let out = run("migrate", &src, &dst, &extra).await;
        assert_eq!(out.code, 0, "{command}: {out}");
        assert_eq!(out.str("status"), "completed", "{out}");
        assert_eq!(out.u64("messages_copied"), 5, "{out}");
        assert_eq!(held(&dst), 5);
        // Waiting for a CRLF that never comes would take the whole --timeout per login.
        assert!(out.elapsed < Duration::from_secs(20), "{command}: {out}");
        assert!(
            src.count(command) >= 1 && dst.count(command) >= 1,
            "{command}"
        );
        let other = if command == "LOGIN" {
            "AUTHENTICATE"
        } else {
            "LOGIN"
        };
        assert_eq!(src.count(other) + dst.count(other), 0, "{command}");
    }
}

/// A server whose AUTHENTICATE PLAIN is broken: refused as a bad command, or never answered.
fn broken_sasl(hang: bool) -> Override {
    match hang {
        false => Override::replace(
            verb("AUTHENTICATE"),
            "{tag} BAD Error in IMAP command AUTHENTICATE: Unsupported\r\n",
        ),
        true => Override::hang(verb("AUTHENTICATE")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_authenticate_plain_is_avoided_with_the_login_command() {
    for hang in [false, true] {
        // By default PLAIN is tried (it is offered), fails, and the message says what to try.
        let src = ScriptedServer::start_with(
            source_account(),
            Quirks::default(),
            vec![broken_sasl(hang)],
        )
        .await
        .unwrap();
        let dst = ScriptedServer::start(Account::new()).await.unwrap();
        let out = run("migrate", &src, &dst, &["--timeout", "2"]).await;
        assert_eq!(out.code, if hang { CONNECT } else { AUTH }, "{out}");
        assert!(
            out.stderr.contains("--src-auth-mechanism login"),
            "hang {hang}: the message names the way round\n{out}"
        );
        assert_eq!(held(&dst), 0);
        // With LOGIN, the same server works, on either side.
        let out = run(
            "migrate",
            &src,
            &dst,
            &["--timeout", "2", "--src-auth-mechanism", "login"],
        )
        .await;
        assert_eq!(out.code, 0, "hang {hang}: {out}");
        assert_eq!(out.u64("messages_copied"), 5, "{out}");
        let src2 = ScriptedServer::start(source_account()).await.unwrap();
        let dst2 =
            ScriptedServer::start_with(Account::new(), Quirks::default(), vec![broken_sasl(hang)])
                .await
                .unwrap();
        let out = run(
            "migrate",
            &src2,
            &dst2,
            &["--timeout", "2", "--dst-auth-mechanism", "login"],
        )
        .await;
        assert_eq!(out.code, 0, "hang {hang}: {out}");
        assert_eq!(held(&dst2), 5);
        assert_eq!(dst2.count("AUTHENTICATE"), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sends_every_password_byte_as_typed() {
    // RFC 3501 §6.2.3: quoted where it can be (with `"` and `\` escaped), a literal otherwise
    // (8-bit, CR, LF), synchronising where the server lacks LITERAL+.
    let passwords = [
        "with \"quotes\" and \\ backslash",
        "wörd {3}\t8-bit",
        "line\r\nbreak",
        "{5}",
    ];
    for literal_plus in [true, false] {
        for password in passwords {
            let mut account = source_account();
            account.password = password.to_owned();
            let quirks = Quirks {
                literal_plus,
                ..Quirks::default()
            };
            let src = ScriptedServer::start_with(account, quirks, Vec::new())
                .await
                .unwrap();
            let dst = ScriptedServer::start(Account::new()).await.unwrap();
            let out = run(
                "check",
                &src,
                &dst,
                &["--timeout", "10", "--src-auth-mechanism", "login"],
            )
            .await;
            assert_eq!(out.code, 0, "{password:?} (LITERAL+ {literal_plus}): {out}");
            assert_eq!(src.count("LOGIN"), 1);
            assert!(
                !out.stdout.contains(password) && !out.stderr.contains(password),
                "the password was printed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mechanism_logs_into_dovecot() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "mech").unwrap();
    let dst = servers.new_user(Side::Target, "mech").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src_token = dir.path().join("src-token");
    let dst_token = dir.path().join("dst-token");
    std::fs::write(&src_token, servers.oauth2_token(&src.user, 3600).unwrap()).unwrap();
    std::fs::write(&dst_token, servers.oauth2_token(&dst.user, 3600).unwrap()).unwrap();
    let (src_token, dst_token) = (
        src_token.to_string_lossy().into_owned(),
        dst_token.to_string_lossy().into_owned(),
    );
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "--src-auth-mechanism",
            "login",
            "--dst-auth-mechanism",
            "plain",
        ],
        vec![
            "--src-auth-mechanism",
            "PLAIN",
            "--dst-auth-mechanism",
            "LOGIN",
        ],
        vec![
            "--src-auth-mechanism",
            "xoauth2",
            "--src-oauth2-token-file",
            &src_token,
            "--dst-auth-mechanism",
            "oauthbearer",
            "--dst-oauth2-token-file",
            &dst_token,
        ],
        vec![
            "--src-auth-mechanism",
            "oauthbearer",
            "--src-oauth2-token-file",
            &src_token,
            "--dst-auth-mechanism",
            "xoauth2",
            "--dst-oauth2-token-file",
            &dst_token,
        ],
    ];
    for args in &cases {
        let out = cli::run_check(&src, &dst, args).await.unwrap();
        assert_eq!(out.code, 0, "{args:?}: {out}");
    }
    // An administrator for the user: PLAIN with an authorization identity.
    if let Some((master, master_password)) = servers.master() {
        let mut cmd = cli::command(
            "check",
            &src,
            &dst,
            &[
                "--json",
                "--src-authuser",
                master,
                "--src-auth-mechanism",
                "plain",
            ],
        );
        cmd.env("MAILFERRY_SRC_PASSWORD", master_password);
        let out = run_command(cmd, Duration::from_secs(120)).await.unwrap();
        assert_eq!(out.code, 0, "{out}");
    }
    // A wrong password with LOGIN is refused as any login is: exit 4 with Dovecot's words.
    let mut cmd = cli::command(
        "check",
        &src,
        &dst,
        &["--json", "--src-auth-mechanism", "login"],
    );
    cmd.env("MAILFERRY_SRC_PASSWORD", "not-the-password");
    let out = run_command(cmd, Duration::from_secs(120)).await.unwrap();
    assert_eq!(out.code, AUTH, "{out}");
    assert!(
        out.stderr.contains("AUTHENTICATIONFAILED") || out.stderr.contains("Authentication failed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_mechanisms_are_refused_before_anything_runs() {
    let src = ScriptedServer::start(source_account()).await.unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let out = run(
        "migrate",
        &src,
        &dst,
        &[
            "--src-auth-mechanism",
            "login",
            "--src-authuser",
            "admin",
            "--dst-auth-mechanism",
            "cram-md5",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{out}");
    for words in [
        "--src-auth-mechanism login and --src-authuser exclude each other",
        "--dst-auth-mechanism \"cram-md5\" is not a login mechanism",
    ] {
        assert!(out.stderr.contains(words), "missing {words:?}\n{out}");
    }
    let mut cmd = bare_command();
    cmd.arg("check")
        .args(src.args("src"))
        .args(dst.args("dst"))
        .args(["--src-auth-mechanism", "plain", "--src-oauth2-token-file"])
        .arg(&token)
        .args(["--dst-auth-mechanism", "xoauth2"])
        .env("MAILFERRY_SRC_PASSWORD", src.password())
        .env("MAILFERRY_DST_PASSWORD", dst.password());
    let out = run_command(cmd, Duration::from_secs(60)).await.unwrap();
    assert_eq!(out.code, 2, "{out}");
    for words in [
        "--src-auth-mechanism plain and --src-oauth2-token-file exclude each other",
        "--dst-auth-mechanism xoauth2 logs in with an OAuth 2.0 access token",
    ] {
        assert!(out.stderr.contains(words), "missing {words:?}\n{out}");
    }
    assert!(
        src.commands().is_empty() && dst.commands().is_empty(),
        "something ran"
    );
}

/// How one test server fails every login the same way.
enum Failing {
    /// `NO [AUTHENTICATIONFAILED]`: the password is wrong.
    WrongPassword,
    /// The login is never answered.
    Silence,
    /// `* BYE` in answer to the login.
    Bye,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_failing_the_same_way_stops_after_three_tries() {
    for (failing, code, max_tries, words) in [
        (Failing::WrongPassword, AUTH, 1, "Authentication failed"),
        (
            Failing::Silence,
            CONNECT,
            3,
            "stopped responding to AUTHENTICATE PLAIN",
        ),
        (Failing::Bye, CONNECT, 3, "Internal error occurred"),
    ] {
        let overrides = match failing {
            Failing::WrongPassword => Vec::new(),
            Failing::Silence => vec![Override::hang(verb("AUTHENTICATE"))],
            Failing::Bye => vec![
                Override::replace(verb("AUTHENTICATE"), "* BYE Internal error occurred\r\n")
                    .then_silence(),
            ],
        };
        let src = ScriptedServer::start_with(source_account(), Quirks::default(), overrides)
            .await
            .unwrap();
        let dst = ScriptedServer::start(Account::new()).await.unwrap();
        let wrong = matches!(failing, Failing::WrongPassword);
        let state = tempfile::tempdir().unwrap();
        let mut cmd = bare_command();
        cmd.args(["migrate", "--json"])
            .args(src.args("src"))
            .args(dst.args("dst"))
            .arg("--state")
            .arg(state.path())
            .args(["--timeout", "2"])
            .env(
                "MAILFERRY_SRC_PASSWORD",
                if wrong { "wrong" } else { "secret" },
            )
            .env("MAILFERRY_DST_PASSWORD", dst.password());
        let out = run_command(cmd, Duration::from_secs(120)).await.unwrap();
        assert_eq!(out.code, code, "{words}: {out}");
        let tries = src.count("AUTHENTICATE");
        assert_eq!(tries, max_tries, "{words}: login attempts\n{out}");
        let error = out.str("error").to_owned();
        assert!(error.contains(words), "{words}: the cause is named\n{out}");
        if max_tries > 1 {
            assert!(
                error.contains("3 times in a row"),
                "the message says it was given up\n{out}"
            );
        }
        assert!(out.stderr.contains(words), "{out}");
        assert_eq!(held(&dst), 0);
    }
}
