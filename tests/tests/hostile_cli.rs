//! Untrusted input at the edges, through the real binary: CSV batch files, endpoint URLs,
//! password files, report outputs and flag combinations on the command line; CA bundles named
//! by API clients of a real coordinator; and TLS failures told as the advice that fits them.
//! Each case is one a user (or an API client) can hand mailferry today.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use mailferry_tests::cli::{DEFAULT_TIMEOUT, Output, bare_command, binary, pair_args};
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions};
use mailferry_tests::{Fixtures, ImapClient, Side, TestAccount, TestServers, snapshot};
use tokio::io::AsyncReadExt;

/// `mailferry`'s exit code for a usage or configuration error (nothing ran).
const USAGE: i32 = 2;
/// A port nothing listens on: a run that got past validation fails to connect (exit 5).
const CLOSED: &str = "127.0.0.1:1";

/// Runs `mailferry ARGS` with `env`, within `limit`; a run that does not end in time is killed
/// and reported as exit code -2, with what it printed.
async fn run(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = bare_command();
    cmd.args(args).envs(env.iter().copied());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b).await;
        b
    });
    let err = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b).await;
        b
    });
    let code = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.unwrap().code().unwrap_or(-1),
        Err(_) => {
            let _ = child.kill().await;
            -2
        }
    };
    let stdout = String::from_utf8_lossy(&out.await.unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.await.unwrap()).into_owned();
    let json = serde_json::from_str(stdout.trim()).ok();
    Output {
        code,
        stdout,
        stderr,
        json,
        elapsed: started.elapsed(),
    }
}

/// The run refused its input before doing anything: exit 2, a message holding `words`, and no
/// raw control character anywhere in what it printed.
fn assert_refused(out: &Output, what: &str, words: &[&str]) {
    assert_eq!(out.code, USAGE, "{what}\n{out}");
    for w in words {
        assert!(
            out.stderr.contains(w),
            "{what}: no {w:?} in the message\n{out}"
        );
    }
    assert_no_raw_controls(out, what);
}

fn assert_no_raw_controls(out: &Output, what: &str) {
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains(['\r', '\0', '\u{1b}']),
            "{what}: a raw control character was echoed\n{out:?}"
        );
    }
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// `--src`/`--dst` host URLs of a batch against the test servers (STARTTLS with their CA).
fn batch_hosts(servers: &TestServers) -> Vec<String> {
    let ca = servers.ca().to_string_lossy().into_owned();
    vec![
        "--src".into(),
        format!("imap://127.0.0.1:{}", servers.ports(Side::Source).imap),
        "--dst".into(),
        format!("imap://127.0.0.1:{}", servers.ports(Side::Target).imap),
        "--src-ca".into(),
        ca.clone(),
        "--dst-ca".into(),
        ca,
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// CSV batch files
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_password_keeps_its_spaces() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "csvspace").unwrap();
    let dst = servers.new_user(Side::Target, "csvspace").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The real passwords with spaces around them: not what the servers accept.
    let csv = write(
        dir.path(),
        "users.csv",
        &format!(
            "src_user,dst_user,src_password,dst_password\n {} , {} ,\" {} \",{}\n",
            src.user, dst.user, src.password, dst.password
        ),
    );
    let mut args = vec!["check", "--json", "--batch", &csv];
    let hosts = batch_hosts(servers);
    args.extend(strs(&hosts));
    let out = run(&args, &[], DEFAULT_TIMEOUT).await;
    assert_eq!(
        out.code, 4,
        "the source login used the password as written, spaces included (users are trimmed)\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_column_named_twice_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "users.csv",
        "src_user,dst_user,src_password,SRC_USER\na,b,pw,c\n",
    );
    let out = run(
        &[
            "check",
            "--batch",
            &csv,
            "--src",
            &format!("imap://{CLOSED}"),
            "--dst",
            &format!("imap://{CLOSED}"),
        ],
        &[("MAILFERRY_DST_PASSWORD", "x")],
        Duration::from_secs(60),
    )
    .await;
    assert_refused(
        &out,
        "a duplicated column",
        &["src_user twice", "columns 1 and 4"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_twice_in_a_batch_runs_and_is_reported_once_and_flagged() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "csvdup").unwrap();
    let dst = servers.new_user(Side::Target, "csvdup").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let row = format!(
        "{},{},{},{}\n",
        src.user, dst.user, src.password, dst.password
    );
    let csv = write(
        dir.path(),
        "users.csv",
        &format!("src_user,dst_user,src_password,dst_password\n{row}{row}"),
    );
    let mut args = vec!["check", "--json", "--batch", &csv];
    let hosts = batch_hosts(servers);
    args.extend(strs(&hosts));
    let out = run(&args, &[], DEFAULT_TIMEOUT).await;
    assert_eq!(out.array("pairs").len(), 1, "checked once\n{out}");
    let bad = out.array("bad_records");
    assert_eq!(bad.len(), 1, "{out}");
    assert_eq!(bad[0]["record"], 2, "{out}");
    let error = bad[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("the same pair as record 1"), "{out}");
    assert_eq!(
        out.code, 3,
        "a flagged record is a problem of the file\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["--src", "imap://127.0.0.1:1", "--dst", "imap://127.0.0.1:1"];
    let env = [
        ("MAILFERRY_SRC_PASSWORD", "x"),
        ("MAILFERRY_DST_PASSWORD", "y"),
    ];
    let long = write(
        dir.path(),
        "long.csv",
        &format!("src_user,dst_user\n{},b\n", "a".repeat(100_000)),
    );
    let mut args = vec!["check", "--batch", &long];
    args.extend(hosts);
    let out = run(&args, &env, Duration::from_secs(60)).await;
    assert_refused(
        &out,
        "a 100 KB field",
        &["line 2", "longer than 4096 bytes"],
    );

    let mut many = String::from("src_user,dst_user\n");
    for i in 0..100_001 {
        many.push_str(&format!("u{i},v{i}\n"));
    }
    let many = write(dir.path(), "many.csv", &many);
    let mut args = vec!["check", "--batch", &many];
    args.extend(hosts);
    let out = run(&args, &env, Duration::from_secs(60)).await;
    assert_refused(&out, "100,001 records", &["more than 100000 records"]);
}

// ---------------------------------------------------------------------------------------------
// Endpoints, passwords and flags
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mailbox_as_source_and_target_is_refused() {
    let src = format!("imaps://alice@{CLOSED}");
    let dst = "imaps://alice@127.0.0.1:1";
    let env = [
        ("MAILFERRY_SRC_PASSWORD", "x"),
        ("MAILFERRY_DST_PASSWORD", "y"),
    ];
    let out = run(
        &[
            "check",
            "--src",
            &src,
            "--dst",
            dst,
            "--dst-tls",
            "starttls",
        ],
        &env,
        Duration::from_secs(60),
    )
    .await;
    assert_refused(&out, "the same mailbox twice", &["same mailbox"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_url_user_are_refused_and_never_echoed() {
    let env = [
        ("MAILFERRY_SRC_PASSWORD", "x"),
        ("MAILFERRY_DST_PASSWORD", "y"),
    ];
    for user in ["a%0D%0AA1%20DELETE%20INBOX", "a%00b", "a%1B%5B2Jb"] {
        let src = format!("imap://{user}@{CLOSED}");
        let out = run(
            &["check", "--src", &src, "--dst", "imap://b@127.0.0.2:1"],
            &env,
            Duration::from_secs(60),
        )
        .await;
        assert_refused(&out, user, &["--src", "control character"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_password_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "pw", "\n");
    let out = run(
        &[
            "check",
            "--src",
            &format!("imap://a@{CLOSED}"),
            "--dst",
            "imap://b@127.0.0.2:1",
            "--src-password-file",
            &empty,
        ],
        &[("MAILFERRY_DST_PASSWORD", "y")],
        Duration::from_secs(60),
    )
    .await;
    assert_refused(
        &out,
        "an empty password file",
        &["--src-password-file", "is empty"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_that_would_repeat_for_ever_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_string_lossy().into_owned();
    let out = run(
        &[
            "migrate",
            "--src",
            &format!("imap://a@{CLOSED}"),
            "--dst",
            "imap://b@127.0.0.2:1",
            "--dry-run",
            "--sync-every",
            "1h",
            "--state",
            &state,
        ],
        &[
            ("MAILFERRY_SRC_PASSWORD", "x"),
            ("MAILFERRY_DST_PASSWORD", "y"),
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_refused(
        &out,
        "--dry-run --sync-every",
        &["--dry-run", "--sync-every"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_report_outputs_are_found_before_any_copy() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "reportdir").unwrap();
    let dst = servers.new_user(Side::Target, "reportdir").unwrap();
    let mut g = Fixtures::new(10_010);
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &[g.ordinary(), g.ordinary()])
        .await
        .unwrap();
    c.logout().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").to_string_lossy().into_owned();
    // Under a plain file, nothing can be created, whoever runs the test (root included).
    let plain = write(dir.path(), "plain", "");
    let under = format!("{plain}/reports");
    let secrets = [
        ("MAILFERRY_SRC_PASSWORD", src.password.as_str()),
        ("MAILFERRY_DST_PASSWORD", dst.password.as_str()),
    ];
    let pair = pair_args(&src, &dst);
    let mut args = vec!["migrate", "--state", &state, "--report-dir", &under];
    args.extend(strs(&pair));
    let out = run(&args, &secrets, DEFAULT_TIMEOUT).await;
    assert_refused(
        &out,
        "--report-dir under a file",
        &["--report-dir", "nothing was copied"],
    );
    let target = snapshot(&dst).await.unwrap();
    let copied: usize = target.folders.values().map(|f| f.count()).sum();
    assert_eq!(copied, 0, "nothing may be copied before the refusal\n{out}");

    // `--report FILE` of a batch, likewise.
    let csv = write(
        dir.path(),
        "users.csv",
        &format!(
            "src_user,dst_user,src_password,dst_password\n{},{},{},{}\n",
            src.user, dst.user, src.password, dst.password
        ),
    );
    let report = format!("{plain}/report.csv");
    let hosts = batch_hosts(servers);
    let mut args = vec![
        "migrate", "--state", &state, "--batch", &csv, "--report", &report,
    ];
    args.extend(strs(&hosts));
    let out = run(&args, &[], DEFAULT_TIMEOUT).await;
    assert_refused(
        &out,
        "--report under a file",
        &["--report", "nothing was copied"],
    );
    let target = snapshot(&dst).await.unwrap();
    let copied: usize = target.folders.values().map(|f| f.count()).sum();
    assert_eq!(copied, 0, "nothing may be copied before the refusal\n{out}");
}

// ---------------------------------------------------------------------------------------------
// TLS advice
// ---------------------------------------------------------------------------------------------

/// Forwards every connection to `127.0.0.2:PORT` (a name the test certificate does not hold)
/// on to `127.0.0.1:to`, until dropped.
struct Forward {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    async fn start(to: u16) -> Forward {
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Forward { port, task }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_other_names_is_told_as_such_not_as_a_missing_ca() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "tlsname").unwrap();
    let dst = servers.new_user(Side::Target, "tlsname").unwrap();
    let forward = Forward::start(src.imaps_port).await;
    let ca = src.ca.to_string_lossy().into_owned();
    let src_url = format!("imaps://{}@127.0.0.2:{}", src.user, forward.port);
    let dst_url = mailferry_tests::cli::endpoint(&dst);
    let secrets = [
        ("MAILFERRY_SRC_PASSWORD", src.password.as_str()),
        ("MAILFERRY_DST_PASSWORD", dst.password.as_str()),
    ];
    let out = run(
        &[
            "check", "--src", &src_url, "--src-ca", &ca, "--dst", &dst_url, "--dst-ca", &ca,
        ],
        &secrets,
        DEFAULT_TIMEOUT,
    )
    .await;
    assert_eq!(out.code, 5, "a TLS failure\n{out}");
    for w in [
        "not valid for 127.0.0.2",
        "localhost",
        "127.0.0.1",
        "connect by a name the certificate holds",
    ] {
        assert!(out.stderr.contains(w), "no {w:?}\n{out}");
    }
    assert!(
        !out.stderr.contains("--src-ca"),
        "a CA cannot cure a wrong name\n{out}"
    );

    // The right name without the CA: an unknown issuer, for which --src-ca is the cure.
    let src_url = format!("imaps://{}@127.0.0.1:{}", src.user, src.imaps_port);
    let out = run(
        &[
            "check", "--src", &src_url, "--dst", &dst_url, "--dst-ca", &ca,
        ],
        &secrets,
        DEFAULT_TIMEOUT,
    )
    .await;
    assert_eq!(out.code, 5, "a TLS failure\n{out}");
    assert!(out.stderr.contains("--src-ca FILE"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// CA bundles named through the API
// ---------------------------------------------------------------------------------------------

/// Implicit TLS to the test server, with the given CA fields.
fn tls_endpoint(a: &TestAccount, ca_file: &str, ca_pem: &str) -> pb::Endpoint {
    pb::Endpoint {
        host: a.host.clone(),
        port: u32::from(a.imaps_port),
        user: a.user.clone(),
        tls: pb::TlsMode::Implicit as i32,
        ca_file: ca_file.to_owned(),
        insecure_skip_verify: false,
        ca_pem: ca_pem.to_owned(),
        auth_mechanism: 0,
    }
}

fn password(p: &str) -> Option<pb::Credentials> {
    Some(pb::Credentials {
        kind: Some(pb::credentials::Kind::Password(p.to_owned())),
    })
}

/// CheckMailboxes of one pair whose source has the given CA fields.
async fn check(
    fleet: &Fleet,
    src: &TestAccount,
    dst: &TestAccount,
    ca_file: &str,
    ca_pem: &str,
) -> Result<pb::CheckMailboxesResponse, tonic::Status> {
    let mut client = MigrationServiceClient::connect(fleet.grpc_url())
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::CheckMailboxesRequest {
        pairs: vec![pb::PairSpec {
            source: Some(tls_endpoint(src, ca_file, ca_pem)),
            source_credentials: password(&src.password),
            target: Some(pb::Endpoint {
                tls: pb::TlsMode::None as i32,
                port: u32::from(dst.imap_port),
                ..tls_endpoint(dst, "", "")
            }),
            target_credentials: password(&dst.password),
        }],
        options: None,
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", fleet.token()).parse().unwrap(),
    );
    match tokio::time::timeout(Duration::from_secs(120), client.check_mailboxes(req)).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => panic!("CheckMailboxes: no answer in 2 minutes\n{}", fleet.logs()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_ca_files_come_only_from_the_ca_directory_and_refusals_all_read_alike() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "apica").unwrap();
    let dst = servers.new_user(Side::Target, "apica").unwrap();
    let cas = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(&src.ca).unwrap();
    write(cas.path(), "imap-ca.pem", &pem);
    write(cas.path(), "notes.txt", "not a certificate\n");
    let fleet = Fleet::start(
        &FleetEnv::shared(),
        FleetOptions {
            coordinator_args: vec!["--ca-dir".into(), cas.path().to_string_lossy().into_owned()],
            ..FleetOptions::default()
        },
    )
    .await;

    // Outside the directory, climbing out of it, missing, not PEM: one answer for all, which
    // tells an API client nothing about the coordinator's files.
    let outside = src.ca.to_string_lossy().into_owned();
    let mut answers = Vec::new();
    for name in [
        "/etc/passwd",
        "../x",
        "missing.pem",
        "notes.txt",
        outside.as_str(),
    ] {
        match check(&fleet, &src, &dst, name, "").await {
            Ok(r) => panic!("ca_file {name:?} was used: {r:?}"),
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::InvalidArgument, "{name}: {s:?}");
                answers.push(s.message().to_owned());
            }
        }
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
    assert!(
        answers[0].starts_with("pairs[0].source.ca_file: "),
        "{answers:#?}"
    );

    // A bundle of the directory, by name, and the same PEM inline: the TLS login works.
    for (ca_file, ca_pem) in [("imap-ca.pem", ""), ("", pem.as_str())] {
        let r = check(&fleet, &src, &dst, ca_file, ca_pem).await.unwrap();
        assert_eq!(r.pairs.len(), 1);
        assert!(
            r.pairs[0].report.is_some(),
            "ca_file {ca_file:?} / inline {}: {:?}",
            !ca_pem.is_empty(),
            r.pairs[0]
        );
    }
    // Without it the server's certificate is not trusted: the CA is what made it work.
    let r = check(&fleet, &src, &dst, "", "").await.unwrap();
    assert!(r.pairs[0].report.is_none(), "{:?}", r.pairs[0]);
    assert!(r.pairs[0].error.contains("certificate"), "{:?}", r.pairs[0]);

    // Inline text that is no certificate is refused, naming the field.
    let s = check(&fleet, &src, &dst, "", "hello").await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with("pairs[0].source.ca_pem: "), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_create_sends_its_ca_file_inline() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "ctlca").unwrap();
    let dst = servers.new_user(Side::Target, "ctlca").unwrap();
    let mut g = Fixtures::new(10_020);
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &[g.ordinary(), g.ordinary()])
        .await
        .unwrap();
    c.logout().await;
    // A copy of the CA outside any CA directory; it is gone before the pass runs.
    let dir = tempfile::tempdir().unwrap();
    let ca = write(
        dir.path(),
        "ca.pem",
        &std::fs::read_to_string(&src.ca).unwrap(),
    );
    let fleet = Fleet::start(
        &FleetEnv::shared(),
        FleetOptions {
            lease_ttl_secs: Some(6),
            ..FleetOptions::default()
        },
    )
    .await;
    let secrets = [
        ("MAILFERRY_SRC_PASSWORD", src.password.as_str()),
        ("MAILFERRY_DST_PASSWORD", dst.password.as_str()),
    ];
    let src_url = format!("imaps://{}@127.0.0.1:{}", src.user, src.imaps_port);
    let dst_url = mailferry_tests::cli::endpoint(&dst);
    let dst_ca = dst.ca.to_string_lossy().into_owned();
    let args = [
        "create",
        "--json",
        "--skip-probe",
        "--src",
        &src_url,
        "--src-ca",
        &ca,
        "--dst",
        &dst_url,
        "--dst-ca",
        &dst_ca,
    ];
    let out = fleet.ctl_with(&args, &secrets, DEFAULT_TIMEOUT).await;
    assert_eq!(out.code, 0, "ctl create\n{out}");
    let id = out.str("id").to_owned();
    std::fs::remove_file(&ca).unwrap();
    let out = fleet
        .ctl_with(&["watch", &id, "--json"], &[], Duration::from_secs(300))
        .await;
    assert_eq!(out.code, 0, "the pass trusted the CA sent at create\n{out}");
    assert_eq!(
        out.json()["migration"]["totals"]["messages_copied"],
        2,
        "{out}"
    );
}

/// Issue 14: a coordinator started with nothing set names every missing setting in one go,
/// the tokens file and a bad `--tls-cert` among them, not one per start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_reports_every_bad_setting_at_once() {
    let out = run(
        &[
            "coordinator",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
        DEFAULT_TIMEOUT,
    )
    .await;
    assert_eq!(out.code, USAGE, "{out}");
    for wanted in [
        "MAILFERRY_AMQP_URL is not set",
        "MAILFERRY_REDIS_URL is not set",
        "MAILFERRY_SECRET_KEY_FILE is not set",
        "MAILFERRY_API_TOKENS_FILE is not set",
        "--tls-cert /nonexistent/cert.pem",
        "--tls-key /nonexistent/key.pem",
    ] {
        assert!(out.stderr.contains(wanted), "{wanted:?} missing\n{out}");
    }
}
