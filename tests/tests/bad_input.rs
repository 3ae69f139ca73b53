//! Bad input: a clear error, nothing lost (issue 2).
//!
//! Each case runs the `mailferry` binary against something wrong — a refused password, a host or
//! port that is not there, TLS that cannot work, a server that misbehaves (the scripted fake in
//! `fake_server`), a connection cut mid-transfer (the `proxy`), bad flags and folder names — and
//! checks what a user sees: the documented exit code, one plain sentence naming the account and
//! what to do, no panic, and no password anywhere in the output. The cut-connection and refused-
//! folder cases also check, independently of mailferry, that the target holds exactly what it
//! should.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mailferry_tests::fake_server::{FakeServer, Script};
use mailferry_tests::proxy::{Cut, Direction, Proxy, Which};
use mailferry_tests::{
    Fixture, Fixtures, ImapClient, Side, TestAccount, TestServers, compare, personal_only,
    snapshot, snapshot_with,
};
use tokio::process::Command;

/// A password no output may contain, used where the test picks the password itself.
const WRONG_PASSWORD: &str = "Wr0ng-Pa55-Zebra-7731";

/// Exit codes of the command-line contract.
const OK: i32 = 0;
const USAGE: i32 = 2;
const FAILURES: i32 = 3;
const AUTH: i32 = 4;
const CONNECT: i32 = 5;

/// Upper bound for one run of the binary in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Running the binary with arbitrary endpoints and secrets (`cli.rs` runs it between test accounts).

/// The binary under test, found (or built) by the harness: `$MAILFERRY_BIN` or the workspace's.
fn binary() -> &'static Path {
    mailferry_tests::cli::binary()
}

/// What one run printed and returned.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.1}s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    /// The `--json` document on stdout.
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is no JSON: {e}\n{self}"))
    }
}

/// One `mailferry` invocation: arguments and passwords (`None` leaves the variable unset).
struct Invocation {
    args: Vec<String>,
    src_password: Option<String>,
    dst_password: Option<String>,
    state: tempfile::TempDir,
}

impl Invocation {
    fn new(command: &str) -> Self {
        Invocation {
            args: vec![command.to_owned()],
            src_password: None,
            dst_password: None,
            state: tempfile::tempdir().expect("temporary state directory"),
        }
    }

    fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    fn args<S: Into<String>>(mut self, a: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// `--src URL` with the password in the environment.
    fn src(self, url: String, password: &str) -> Self {
        let mut me = self.arg("--src").arg(url);
        me.src_password = Some(password.to_owned());
        me
    }

    /// `--dst URL` with the password in the environment.
    fn dst(self, url: String, password: &str) -> Self {
        let mut me = self.arg("--dst").arg(url);
        me.dst_password = Some(password.to_owned());
        me
    }

    /// The real target account over STARTTLS, trusting the test CA.
    fn real_dst(self, dst: &TestAccount) -> Self {
        self.dst(url("imap", &dst.user, dst.imap_port), &dst.password)
            .arg("--dst-ca")
            .arg(dst.ca.display().to_string())
    }

    async fn run(self) -> Run {
        let mut cmd = Command::new(binary());
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("XDG_STATE_HOME", self.state.path())
            .env("NO_COLOR", "1");
        if self.args.first().is_some_and(|c| c == "migrate") {
            cmd.arg("--state").arg(self.state.path());
        }
        // Nothing from the developer's environment may change the run.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MAILFERRY_") {
                cmd.env_remove(k);
            }
        }
        if let Some(p) = &self.src_password {
            cmd.env("MAILFERRY_SRC_PASSWORD", p);
        }
        if let Some(p) = &self.dst_password {
            cmd.env("MAILFERRY_DST_PASSWORD", p);
        }
        let start = Instant::now();
        let child = spawn(&mut cmd).await;
        let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("mailferry {:?} ran longer than {RUN_LIMIT:?}", self.args))
            .expect("waiting for mailferry");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }
}

/// Starts the binary, waiting out a concurrent `cargo build` that is replacing it (the build
/// directory is shared: `ETXTBSY` or a moment without the file).
async fn spawn(cmd: &mut Command) -> tokio::process::Child {
    let mut last = None;
    for _ in 0..40 {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ExecutableFileBusy | std::io::ErrorKind::NotFound
                ) =>
            {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("starting {}: {e}", binary().display()),
        }
    }
    panic!("starting {}: {last:?}", binary().display())
}

fn url(scheme: &str, user: &str, port: u16) -> String {
    format!("{scheme}://{user}@127.0.0.1:{port}")
}

/// What every failure must look like: the exit code, no panic, no secret, and one `error:` line
/// on stderr that names the account once and contains each of `words` (case-insensitive).
///
/// Every complaint is collected before failing, so one run shows all that is wrong; when stderr
/// holds no error line, the one in stdout (if any) is still checked for its wording.
fn assert_clear_error(run: &Run, code: i32, account: &str, words: &[&str], secrets: &[&str]) {
    let mut problems = Vec::new();
    if run.code != Some(code) {
        problems.push(format!("exit code {:?}, expected {code}", run.code));
    }
    if run.stderr.contains("panicked") {
        problems.push("mailferry panicked".to_owned());
    }
    if secrets
        .iter()
        .any(|s| run.stdout.contains(s) || run.stderr.contains(s))
    {
        problems.push("a password appears in the output".to_owned());
    }
    let error_lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("error:"))
            .map(str::to_lowercase)
            .collect()
    };
    let on_stderr = error_lines(&run.stderr);
    let line = match on_stderr.as_slice() {
        [one] => Some(one.clone()),
        [] => {
            problems.push("no `error:` line on stderr".to_owned());
            error_lines(&run.stdout).into_iter().next()
        }
        more => {
            problems.push(format!(
                "{} `error:` lines on stderr, expected one",
                more.len()
            ));
            more.first().cloned()
        }
    };
    if let Some(line) = line {
        let account = account.to_lowercase();
        match line.matches(&account).count() {
            1 => {}
            0 => problems.push(format!("the error does not name {account:?}")),
            n => problems.push(format!("the error names {account:?} {n} times")),
        }
        for w in words {
            if !line.contains(&w.to_lowercase()) {
                problems.push(format!("the error does not say {w:?}"));
            }
        }
    } else {
        problems.push("no `error:` line anywhere".to_owned());
    }
    assert!(
        problems.is_empty(),
        "unclear failure:\n  - {}\n{run}",
        problems.join("\n  - ")
    );
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------------
// Credentials and reachability.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_exits_4_and_names_the_source() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "badpw").unwrap();
    let dst = servers.new_user(Side::Target, "badpw").unwrap();
    let run = Invocation::new("migrate")
        .src(url("imap", &src.user, src.imap_port), WRONG_PASSWORD)
        .arg("--src-ca")
        .arg(src.ca.display().to_string())
        .real_dst(&dst)
        .run()
        .await;
    let account = format!("source {}@127.0.0.1:{}", src.user, src.imap_port);
    assert_clear_error(
        &run,
        AUTH,
        &account,
        &["password"],
        &[WRONG_PASSWORD, &src.password, &dst.password],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_exits_5() {
    let dst = TestServers::get().new_user(Side::Target, "nohost").unwrap();
    let run = Invocation::new("check")
        .src(
            "imap://alice@no-such-host.invalid:143".into(),
            WRONG_PASSWORD,
        )
        .real_dst(&dst)
        .run()
        .await;
    assert_clear_error(
        &run,
        CONNECT,
        "source alice@no-such-host.invalid:143",
        &["host name"],
        &[WRONG_PASSWORD, &dst.password],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_exits_5() {
    let dst = TestServers::get()
        .new_user(Side::Target, "refused")
        .unwrap();
    let port = closed_port();
    let run = Invocation::new("migrate")
        .src(url("imap", "alice", port), WRONG_PASSWORD)
        .real_dst(&dst)
        .run()
        .await;
    assert_clear_error(
        &run,
        CONNECT,
        &format!("source alice@127.0.0.1:{port}"),
        &["refused", "port"],
        &[WRONG_PASSWORD, &dst.password],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_to_the_plain_port_exits_5() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "tlsplain").unwrap();
    let dst = servers.new_user(Side::Target, "tlsplain").unwrap();
    let run = Invocation::new("check")
        .src(url("imaps", &src.user, src.imap_port), &src.password)
        .arg("--src-ca")
        .arg(src.ca.display().to_string())
        .real_dst(&dst)
        .run()
        .await;
    assert_clear_error(
        &run,
        CONNECT,
        &format!("source {}@127.0.0.1:{}", src.user, src.imap_port),
        &["TLS", "port", "--src-tls"],
        &[&src.password, &dst.password],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_exits_5_and_points_to_src_ca() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "untrusted").unwrap();
    let dst = servers.new_user(Side::Target, "untrusted").unwrap();
    // Implicit TLS and STARTTLS alike: without --src-ca the test CA is unknown.
    for (scheme, port) in [("imaps", src.imaps_port), ("imap", src.imap_port)] {
        let run = Invocation::new("check")
            .src(url(scheme, &src.user, port), &src.password)
            .real_dst(&dst)
            .run()
            .await;
        assert_clear_error(
            &run,
            CONNECT,
            &format!("source {}@127.0.0.1:{port}", src.user),
            &["certificate", "--src-ca"],
            &[&src.password, &dst.password],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Misbehaving servers (the scripted fake).

/// Runs `command` with the fake server as the source over plain IMAP (loopback) and the real
/// target, with a short inactivity timeout.
async fn against_fake(command: &str, script: Script) -> (Run, FakeServer, String) {
    let dst = TestServers::get()
        .new_user(Side::Target, "fake")
        .expect("a target user");
    let fake = FakeServer::start(script).await.expect("the fake server");
    let run = Invocation::new(command)
        .src(url("imap", "alice", fake.port()), WRONG_PASSWORD)
        .args(["--src-tls", "none", "--timeout", "2"])
        .real_dst(&dst)
        .run()
        .await;
    let account = format!("source alice@127.0.0.1:{}", fake.port());
    (run, fake, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_with_exit_5() {
    for command in ["check", "migrate"] {
        let (run, _fake, account) = against_fake(command, Script::Silent).await;
        assert_clear_error(&run, CONNECT, &account, &["greeting"], &[WRONG_PASSWORD]);
        // Nothing is retried after a missing greeting, so the message must not promise it.
        assert!(
            !run.stderr.contains("will be retried") && !run.stdout.contains("will be retried"),
            "{command}: the error promises a retry that never happens\n{run}"
        );
        // One 2 s wait, not a retry loop: no greeting is not a transient failure.
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{command} took too long\n{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_an_imap_server_exits_5() {
    for script in [Script::Http, Script::Ssh] {
        let (run, _fake, account) = against_fake("check", script).await;
        assert_clear_error(
            &run,
            CONNECT,
            &account,
            &["IMAP", "port"],
            &[WRONG_PASSWORD],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_silent_after_greeting_is_a_connection_failure() {
    // The server greets, then never answers: a timeout is a connection failure (5), not a
    // refused password (4), and the user should hear that the server stopped responding.
    let (run, fake, account) = against_fake("check", Script::GreetThenSilent).await;
    assert_clear_error(
        &run,
        CONNECT,
        &account,
        &["stopped responding"],
        &[WRONG_PASSWORD],
    );
    assert!(run.elapsed < Duration::from_secs(15), "too slow\n{run}");
    assert!(!fake.commands().is_empty(), "mailferry sent no command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_gives_up_on_a_server_silent_after_greeting_with_exit_5() {
    // `migrate` retries the timeout (transient after the greeting): 5 attempts of 1 s plus the
    // 1+2+4+8 s backoff, about 20 s. When it gives up, it is still a connection failure (5), as
    // `check` says, and the last message must not promise another retry.
    let dst = TestServers::get()
        .new_user(Side::Target, "gts")
        .expect("a target user");
    let fake = FakeServer::start(Script::GreetThenSilent)
        .await
        .expect("the fake server");
    let run = Invocation::new("migrate")
        .src(url("imap", "alice", fake.port()), WRONG_PASSWORD)
        .args(["--src-tls", "none", "--timeout", "1"])
        .real_dst(&dst)
        .run()
        .await;
    let account = format!("source alice@127.0.0.1:{}", fake.port());
    assert_clear_error(
        &run,
        CONNECT,
        &account,
        &["stopped responding"],
        &[WRONG_PASSWORD],
    );
    assert!(fake.connections() >= 2, "never retried\n{run}");
    let last = run.stdout.lines().find(|l| l.trim().starts_with("error:"));
    assert!(
        last.is_none_or(|l| !l.contains("will be retried")),
        "the final error promises a retry\n{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_greeting_exits_5_with_the_servers_words() {
    let (run, _fake, account) = against_fake("check", Script::Bye).await;
    assert_clear_error(
        &run,
        CONNECT,
        &account,
        &["try again later"],
        &[WRONG_PASSWORD],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_login_exits_4() {
    let (run, fake, account) = against_fake("check", Script::RejectLogin).await;
    assert_clear_error(&run, AUTH, &account, &["password"], &[WRONG_PASSWORD]);
    assert!(
        fake.commands()
            .iter()
            .any(|c| c.starts_with("AUTHENTICATE") || c.starts_with("LOGIN")),
        "no login attempt: {:?}",
        fake.commands()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_capability_spacing_is_tolerated() {
    let (run, fake, _) = against_fake("check", Script::OddCapability).await;
    assert_eq!(run.code, Some(OK), "check failed\n{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(!run.stdout.contains(WRONG_PASSWORD) && !run.stderr.contains(WRONG_PASSWORD));
    // The capabilities were read through the double spaces (NAMESPACE was used, not guessed).
    let commands = fake.commands();
    for wanted in ["CAPABILITY", "NAMESPACE", "LIST", "STATUS"] {
        assert!(
            commands.iter().any(|c| c.starts_with(wanted)),
            "no {wanted} in {commands:?}\n{run}"
        );
    }
    assert!(run.stdout.contains("INBOX"), "{run}");
}

// ---------------------------------------------------------------------------------------------
// Connections cut mid-transfer: reconnect, resume, no duplicate.

/// About 50 messages (three of 1 MB among them) in INBOX and one subfolder.
async fn seed_mixed(src: &TestAccount) -> Vec<Fixture> {
    let mut g = Fixtures::new(7_031_977);
    let mut inbox = Vec::new();
    for i in 0..46 {
        inbox.push(match i {
            10 | 25 | 40 => g.big(1_000_000),
            i if i % 7 == 0 => g.multipart(),
            _ => g.ordinary(),
        });
    }
    let work = vec![
        g.ordinary(),
        g.no_message_id(),
        g.duplicate(),
        g.all_flags(),
    ];
    let mut c = ImapClient::connect(src)
        .await
        .expect("connecting to the source");
    c.create_subscribed("INBOX.Work")
        .await
        .expect("creating INBOX.Work");
    c.append_all("INBOX", &inbox).await.expect("seeding INBOX");
    c.append_all("INBOX.Work", &work)
        .await
        .expect("seeding INBOX.Work");
    c.logout().await;
    inbox.extend(work);
    inbox
}

async fn migrate_through_cut(side: Side, direction: Direction) {
    let servers = TestServers::get();
    let src = servers
        .new_user(Side::Source, "cut")
        .expect("a source user");
    let dst = servers
        .new_user(Side::Target, "cut")
        .expect("a target user");
    let seeded = seed_mixed(&src).await;
    let upstream = match side {
        Side::Source => src.imap_port,
        Side::Target => dst.imap_port,
    };
    let cut = Cut {
        direction,
        after_bytes: 1_500_000,
        which: Which::FirstPassing,
    };
    let proxy = Proxy::start(upstream, Some(cut)).await.expect("the proxy");
    let (src_port, dst_port) = match side {
        Side::Source => (proxy.port(), dst.imap_port),
        Side::Target => (src.imap_port, proxy.port()),
    };
    let run = Invocation::new("migrate")
        .src(url("imap", &src.user, src_port), &src.password)
        .dst(url("imap", &dst.user, dst_port), &dst.password)
        .args(["--src-tls", "none", "--dst-tls", "none", "--json"])
        .run()
        .await;
    assert!(
        proxy.cut_done(),
        "the proxy never cut ({:?} bytes)\n{run}",
        proxy.bytes()
    );
    assert_eq!(run.code, Some(OK), "migrate did not recover\n{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    for secret in [&src.password, &dst.password] {
        assert!(!run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()));
    }
    let before = snapshot_with(&src, personal_only)
        .await
        .expect("source snapshot");
    let after = snapshot(&dst).await.expect("target snapshot");
    if let Err(diff) = compare(
        &before,
        &after,
        &[("INBOX", "INBOX"), ("INBOX.Work", "Work")],
    ) {
        panic!(
            "target differs from source after a cut {direction:?} on the {side:?}:\n{diff}\n{run}"
        );
    }
    assert_eq!(after.count("INBOX") + after.count("Work"), seeded.len());

    let json = run.json();
    let copied = json["messages_copied"].as_u64().unwrap_or(0);
    let present = json["already_present"].as_u64().unwrap_or(0);
    assert_eq!(
        copied + present,
        seeded.len() as u64,
        "copied + already present must be every message\n{run}"
    );
    // Every message was appended by this run (the target was empty), so the summary's bytes are
    // the bytes of all of them, whichever attempt appended each.
    let total: u64 = seeded.iter().map(|f| f.raw.len() as u64).sum();
    if present == 0 {
        assert_eq!(
            json["bytes_copied"].as_u64(),
            Some(total),
            "bytes_copied must count the messages an earlier attempt appended\n{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_fetch_resumes_without_duplicates() {
    migrate_through_cut(Side::Source, Direction::ServerToClient).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_append_resumes_without_duplicates() {
    migrate_through_cut(Side::Target, Direction::ClientToServer).await;
}

// ---------------------------------------------------------------------------------------------
// Usage errors: exit 2, nothing ran.

/// Runs `invocation` (whose target is a fake server) and checks the usage error and that no
/// connection was made.
async fn assert_usage_error(run: Run, fake: &FakeServer, words: &[&str]) {
    assert_eq!(run.code, Some(USAGE), "wrong exit code\n{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(
        !run.stdout.contains(WRONG_PASSWORD) && !run.stderr.contains(WRONG_PASSWORD),
        "{run}"
    );
    let stderr = run.stderr.to_lowercase();
    for w in words {
        assert!(
            stderr.contains(&w.to_lowercase()),
            "stderr does not say {w:?}\n{run}"
        );
    }
    // Give a stray connection attempt the time to arrive before saying nothing ran.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.connections(), 0, "a connection was made\n{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_nothing_runs() {
    let fake = FakeServer::start(Script::OddCapability).await.unwrap();
    let dst_url = url("imap", "bob", fake.port());
    let fake_dst = |inv: Invocation| {
        inv.dst(dst_url.clone(), WRONG_PASSWORD)
            .args(["--dst-tls", "none"])
    };

    // Not a URL we know.
    for bad in [
        "http://alice@127.0.0.1:143",
        "imap://127.0.0.1:143",
        "imap://alice@127.0.0.1:notaport",
    ] {
        let run = fake_dst(Invocation::new("migrate").src(bad.into(), WRONG_PASSWORD))
            .run()
            .await;
        assert_usage_error(run, &fake, &["--src"]).await;
    }

    // No TLS towards a host that is not loopback, without --allow-insecure-auth.
    let run = fake_dst(
        Invocation::new("migrate")
            .src("imap://alice@mail.example.net:143".into(), WRONG_PASSWORD)
            .args(["--src-tls", "none"]),
    )
    .run()
    .await;
    assert_usage_error(run, &fake, &["mail.example.net", "--allow-insecure-auth"]).await;

    // No source password at all.
    let mut inv = fake_dst(Invocation::new("migrate").src(url("imap", "alice", fake.port()), ""))
        .args(["--src-tls", "none"]);
    inv.src_password = None;
    assert_usage_error(inv.run().await, &fake, &["MAILFERRY_SRC_PASSWORD"]).await;
}

// ---------------------------------------------------------------------------------------------
// Odd flags and folder names.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keywords_migrate() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "oddflags").unwrap();
    let dst = servers.new_user(Side::Target, "oddflags").unwrap();
    let mut g = Fixtures::new(99);
    let fixtures = vec![
        g.ordinary()
            .with_flags(&["$MailFlagBit0", "NonJunk", "\\Seen"]),
        g.ordinary()
            .with_flags(&["Some_Odd-Keyword.v2", "~tilde", "a&b"]),
        g.ordinary()
            .with_flags(&["$label1", "$Label1", "\\Flagged", "$Forwarded"]),
        g.ordinary().with_flags(&["UPPER", "x!y#z", "$"]),
    ];
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &fixtures).await.unwrap();
    c.logout().await;

    let run = Invocation::new("migrate")
        .src(url("imap", &src.user, src.imap_port), &src.password)
        .dst(url("imap", &dst.user, dst.imap_port), &dst.password)
        .args(["--src-tls", "none", "--dst-tls", "none"])
        .run()
        .await;
    assert_eq!(run.code, Some(OK), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    let before = snapshot_with(&src, personal_only).await.unwrap();
    let after = snapshot(&dst).await.unwrap();
    if let Err(diff) = compare(&before, &after, &[("INBOX", "INBOX")]) {
        panic!("keywords were not kept:\n{diff}\n{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_the_target_refuses_fails_alone_with_exit_3() {
    // Legal on the Maildir++ source, refused by the LAYOUT=fs target: Dovecot says
    // "Invalid mailbox name: Begins with '~'" and "Contains reserved name" (maildir's `cur`).
    const REFUSED: [(&str, &str); 2] = [("INBOX.~tilde", "~tilde"), ("INBOX.cur", "cur")];
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "refusedfolder").unwrap();
    let dst = servers.new_user(Side::Target, "refusedfolder").unwrap();
    let mut g = Fixtures::new(4242);
    let inbox = vec![g.ordinary(), g.ordinary(), g.multipart()];
    let fine = vec![g.ordinary(), g.no_message_id()];
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.create_subscribed("INBOX.Fine").await.unwrap();
    c.append_all("INBOX", &inbox).await.unwrap();
    c.append_all("INBOX.Fine", &fine).await.unwrap();
    for (raw, _) in REFUSED {
        c.create_subscribed(raw).await.unwrap();
        c.append_all(raw, &[g.ordinary(), g.ordinary()])
            .await
            .unwrap();
    }
    c.logout().await;

    let run = Invocation::new("migrate")
        .src(url("imap", &src.user, src.imap_port), &src.password)
        .dst(url("imap", &dst.user, dst.imap_port), &dst.password)
        .args(["--src-tls", "none", "--dst-tls", "none", "--json"])
        .run()
        .await;
    assert_eq!(run.code, Some(FAILURES), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    let json = run.json();
    // One failure per refused folder, with Dovecot's words and its messages counted; none per
    // message (issue 15).
    let failures = json["failures"].as_array().cloned().unwrap_or_default();
    assert!(failures.is_empty(), "{run}");
    let folder_failures = json["folder_failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (_, decoded) in REFUSED {
        let of_folder: Vec<_> = folder_failures
            .iter()
            .filter(|f| f["folder"] == decoded)
            .collect();
        assert_eq!(of_folder.len(), 1, "failures of {decoded:?}\n{run}");
        let f = of_folder[0];
        assert_eq!(f["kind"], "folder_refused", "{run}");
        assert_eq!(f["messages"].as_u64(), Some(2), "{run}");
        let reason = f["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("Invalid mailbox name") || reason.contains("reserved name"),
            "the server's words are missing for {decoded:?}\n{run}"
        );
        let advice = f["advice"].as_str().unwrap_or_default();
        assert!(!advice.is_empty(), "no advice for {decoded:?}\n{run}");
    }
    assert_eq!(json["failed"].as_u64(), Some(4), "{run}");
    assert_eq!(json["messages_copied"].as_u64(), Some(5), "{run}");

    // The rest migrated exactly.
    let before = snapshot_with(&src, personal_only).await.unwrap();
    let after = snapshot(&dst).await.unwrap();
    if let Err(diff) = compare(
        &before,
        &after,
        &[("INBOX", "INBOX"), ("INBOX.Fine", "Fine")],
    ) {
        panic!("the folders the target accepts did not migrate exactly:\n{diff}\n{run}");
    }
    // Nothing landed anywhere else (no refused folder smuggled in under another name).
    let with_mail: Vec<_> = after
        .counts()
        .into_iter()
        .filter(|(name, n)| *n > 0 && name != "INBOX" && name != "Fine")
        .collect();
    assert!(
        with_mail.is_empty(),
        "unexpected mail on the target: {with_mail:?}\n{run}"
    );
}
