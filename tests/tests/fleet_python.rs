//! The gRPC API from the outside: `tests/python/client.py`, built only from the published
//! `proto/mailferry/v1/migration.proto` and stock Python gRPC tools, drives a migration on a
//! live fleet (a coordinator and one worker over the machine's RabbitMQ and Redis) between the
//! two private Dovecot servers. The client's own report is checked, and then the target is read
//! back independently with the harness's verifier, never through the API.
//!
//! Needs `MAILFERRY_TEST_PYTHON`: a Python with tests/requirements.txt installed, which
//! `scripts/test` creates in target/pyenv.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions, QueueTap};
use mailferry_tests::servers::repo_root;
use mailferry_tests::verify::personal_only;
use mailferry_tests::{
    Fixture, Fixtures, ImapClient, Side, TestServers, compare, snapshot, snapshot_with,
};
use serde_json::Value;

/// The Python with the gRPC tools, or a failure that says how to get one.
fn python() -> PathBuf {
    let hint = "run scripts/test once (it creates target/pyenv from tests/requirements.txt), \
                then export MAILFERRY_TEST_PYTHON=$PWD/target/pyenv/bin/python";
    let Some(p) = std::env::var_os("MAILFERRY_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        panic!("MAILFERRY_TEST_PYTHON is not set: {hint}");
    };
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "MAILFERRY_TEST_PYTHON={} does not exist: {hint}",
        p.display()
    );
    p
}

/// Generates the Python stubs of migration.proto into `out` with grpc_tools.protoc.
async fn generate_stubs(python: &Path, out: &Path) {
    let proto = repo_root().join("proto");
    let run = tokio::process::Command::new(python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(proto.join("mailferry/v1/migration.proto"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "grpc_tools.protoc failed ({}): {}\n(is tests/requirements.txt installed in MAILFERRY_TEST_PYTHON?)",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join("mailferry/v1/migration_pb2_grpc.py").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_creates_watches_and_reads_a_migration() {
    let python = python();
    let stubs = tempfile::tempdir().unwrap();
    generate_stubs(&python, stubs.path()).await;

    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "fleetpy").unwrap();
    let dst = servers.new_user(Side::Target, "fleetpy").unwrap();
    let mut g = Fixtures::new(8_101);
    let inbox: Vec<Fixture> = vec![
        g.ordinary().with_flags(&["\\Seen"]),
        g.multipart(),
        g.eight_bit_headers(),
        g.ordinary().with_flags(&["\\Flagged", "$Label1"]),
        g.no_message_id(),
    ];
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &inbox).await.unwrap();
    c.logout().await;

    let env = FleetEnv::shared();
    let started = Instant::now();
    let fleet = Fleet::start(&env, FleetOptions::default()).await;
    eprintln!(
        "fleet {} ready in {:?}",
        fleet.namespace(),
        started.elapsed()
    );
    let tap = QueueTap::bind(fleet.amqp_url(), fleet.namespace())
        .await
        .unwrap();

    let client = repo_root().join("tests/python/client.py");
    let mut cmd = tokio::process::Command::new(&python);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAILFERRY_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg(&client)
        .arg("--target")
        .arg(fleet.grpc_addr())
        .args([
            "--src-host",
            &src.host,
            "--src-port",
            &src.imap_port.to_string(),
        ])
        .args(["--src-user", &src.user])
        .args([
            "--dst-host",
            &dst.host,
            "--dst-port",
            &dst.imap_port.to_string(),
        ])
        .args(["--dst-user", &dst.user])
        .env("PYTHONPATH", stubs.path())
        .env("MAILFERRY_API_TOKEN", fleet.token())
        .env("MAILFERRY_SRC_PASSWORD", &src.password)
        .env("MAILFERRY_DST_PASSWORD", &dst.password)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("client.py ran past 300 s")
        .unwrap();
    eprintln!("client.py: {} in {:?}", run.status, started.elapsed());
    eprintln!("{}", String::from_utf8_lossy(&run.stdout));
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        run.status.success(),
        "client.py failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        run.status
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client.py printed no JSON object ({e}):\n{stdout}\n{stderr}"));
    let show = serde_json::to_string_pretty(&report).unwrap();

    // The edges: health without a token, reflection, auth.
    assert_eq!(report["health"], "SERVING", "{show}");
    let services: Vec<&str> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        services.contains(&"mailferry.v1.MigrationService"),
        "{show}"
    );
    assert!(services.contains(&"grpc.health.v1.Health"), "{show}");
    let methods = report["methods"].as_array().unwrap();
    for m in [
        "CreateMigration",
        "WatchMigration",
        "ListFailures",
        "ReplayDeadLetters",
    ] {
        assert!(
            methods.iter().any(|x| x == m),
            "reflection lacks {m}: {show}"
        );
    }
    assert_eq!(report["no_token"], "UNAUTHENTICATED", "{show}");
    assert_eq!(report["wrong_token"], "UNAUTHENTICATED", "{show}");

    // The migration, as the API reports it.
    assert_eq!(
        report["idempotent"], true,
        "same request_id, another migration: {show}"
    );
    assert_eq!(report["pass_finished"], true, "{show}");
    assert!(report["watch_events"].as_u64().unwrap() >= 1, "{show}");
    assert_eq!(report["listed"], true, "{show}");
    let copied = report["totals"]["messages_copied"].as_u64().unwrap();
    assert_eq!(copied, inbox.len() as u64, "{show}");
    let bytes: u64 = inbox.iter().map(|f| f.raw.len() as u64).sum();
    assert_eq!(
        report["totals"]["bytes_copied"].as_u64().unwrap(),
        bytes,
        "{show}"
    );
    assert_eq!(report["totals"]["failed"], 0, "{show}");
    assert_eq!(report["pairs_count"], 1, "{show}");
    assert_eq!(report["pairs_failed"], 0, "{show}");
    assert_eq!(report["failures"].as_array().unwrap().len(), 0, "{show}");
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{show}");
    assert_eq!(pairs[0]["status"], "PAIR_STATUS_COMPLETED", "{show}");
    assert_eq!(
        pairs[0]["totals"]["messages_copied"].as_u64().unwrap(),
        copied,
        "{show}"
    );

    // The target, read back independently.
    let source = snapshot_with(&src, personal_only).await.unwrap();
    let target = snapshot(&dst).await.unwrap();
    if let Err(diff) = compare(&source, &target, &[("INBOX", "INBOX")]) {
        panic!("target is not an exact copy of the source:\n{diff}\n{show}");
    }
    let expected: Vec<&Fixture> = inbox.iter().collect();
    target.expect_fixtures("INBOX", &expected).unwrap();

    // Secrets stayed in process memory: not in logs, Redis, queue messages or the report.
    assert!(
        !tap.messages().is_empty(),
        "the tap saw no message: it would prove nothing about queue contents"
    );
    let queue_bytes = tap.all_bytes();
    let hits = fleet.find_secrets(
        &[&src.password, &dst.password, fleet.token()],
        &[
            ("queue messages", &queue_bytes),
            ("client report", stdout.as_bytes()),
        ],
    );
    assert!(hits.is_empty(), "secrets leaked: {hits:?}");
    // The control: the same scan does see what must be there (the source user is in the pair
    // summaries in Redis), so an empty result above is not a blind scanner.
    let seen = fleet.find_secrets(&[&src.user], &[]);
    assert!(
        seen.iter().any(|h| h.starts_with("redis ")),
        "the scan found the source user nowhere in Redis: {seen:?}"
    );

    readme_example_migrates_a_mailbox(&python, stubs.path(), &fleet).await;
}

/// Issue 14: the README's Python example, exactly as printed there (it is
/// `examples/python/migrate.py`), against this fleet over plain HTTP/2 and the Dovecot test
/// servers over STARTTLS with their private CA.
async fn readme_example_migrates_a_mailbox(python: &Path, stubs: &Path, fleet: &Fleet) {
    let example = repo_root().join("examples/python/migrate.py");
    let code = std::fs::read_to_string(&example).unwrap();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```python\n{code}```")),
        "README.md's Python example is not examples/python/migrate.py as it is"
    );
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "pyexample").unwrap();
    let dst = servers.new_user(Side::Target, "pyexample").unwrap();
    let mut g = Fixtures::new(8_102);
    let inbox: Vec<Fixture> = vec![g.ordinary(), g.multipart().with_flags(&["\\Seen"])];
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &inbox).await.unwrap();
    c.logout().await;

    let mut cmd = tokio::process::Command::new(python);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAILFERRY_") {
            cmd.env_remove(key);
        }
    }
    let url =
        |a: &mailferry_tests::TestAccount| format!("imap://{}@{}:{}", a.user, a.host, a.imap_port);
    cmd.arg(&example)
        .current_dir(std::env::temp_dir())
        .env("PYTHONPATH", stubs)
        .env(
            "MAILFERRY_COORDINATOR",
            format!("http://{}", fleet.grpc_addr()),
        )
        .env("MAILFERRY_API_TOKEN", fleet.token())
        .env("SRC_URL", url(&src))
        .env("DST_URL", url(&dst))
        .env("SRC_CA", &src.ca)
        .env("DST_CA", &dst.ca)
        .env("SRC_PASSWORD", &src.password)
        .env("DST_PASSWORD", &dst.password)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the README's example ran past 300 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("2 of 2 messages copied"),
        "the README's example failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let source = snapshot_with(&src, personal_only).await.unwrap();
    let target = snapshot(&dst).await.unwrap();
    if let Err(diff) = compare(&source, &target, &[("INBOX", "INBOX")]) {
        panic!("the README's example did not copy exactly:\n{diff}\n{stdout}");
    }
}
