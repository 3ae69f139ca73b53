//! gRPC over TLS end to end: a coordinator serving a certificate for `localhost`/`127.0.0.1`
//! signed by a private CA, and `mailferry ctl` creating and watching a migration through it
//! with `--ca`. Without the CA, with another CA, or over plain `http://` to the TLS port, ctl
//! fails with exit 7 and a message that names the problem.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mailferry_tests::cli::{DEFAULT_TIMEOUT, Output, pair_args};
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions};
use mailferry_tests::tls::TlsFiles;
use mailferry_tests::{Fixtures, ImapClient, Side, TestServers, compare, snapshot};

/// How long one pass may take before `ctl watch` is given up on (a debug build on 2 cores).
const WATCH_LIMIT: Duration = Duration::from_secs(300);
/// `ctl`'s exit code for a coordinator it cannot reach (TLS failures included).
const UNREACHABLE: i32 = 7;

/// ctl failed to reach the coordinator, said so with `words`, and did not panic.
fn assert_unreachable(out: &Output, what: &str, words: &[&str]) {
    assert_eq!(out.code, UNREACHABLE, "{what}\n{out}");
    let said = out.stderr.to_lowercase();
    assert!(
        words.iter().all(|w| said.contains(w)),
        "{what}: the message does not say {words:?}\n{out}"
    );
    assert!(!said.contains("panicked"), "{what}\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_creates_and_watches_over_tls_with_its_ca_and_refuses_without() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "tlsapi").unwrap();
    let dst = servers.new_user(Side::Target, "tlsapi").unwrap();
    let mut g = Fixtures::new(7_300);
    let inbox = vec![g.ordinary(), g.ordinary(), g.no_message_id()];
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &inbox).await.unwrap();
    c.logout().await;

    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path(), "grpc").unwrap();
    let ca = tls.ca.to_string_lossy().into_owned();
    let fleet = Fleet::start(
        &FleetEnv::shared(),
        FleetOptions {
            lease_ttl_secs: Some(6),
            grpc_tls: Some(tls.clone()),
            ..FleetOptions::default()
        },
    )
    .await;
    assert!(
        fleet.grpc_url().starts_with("https://"),
        "{}",
        fleet.grpc_url()
    );

    // The system's roots do not know the private CA.
    let out = fleet.ctl(&["list"]).await;
    assert_unreachable(&out, "ctl without --ca", &["certificate"]);
    // Nor does another CA (the IMAP test servers').
    let other = servers.ca().to_string_lossy().into_owned();
    let out = fleet.ctl(&["list", "--ca", &other]).await;
    assert_unreachable(&out, "ctl --ca <another CA>", &["certificate"]);
    // Plain HTTP/2 to the TLS port: no answer a gRPC client can read.
    let plain = format!("http://{}", fleet.grpc_addr());
    let env = [("MAILFERRY_COORDINATOR", plain.as_str())];
    let out = fleet.ctl_with(&["list"], &env, DEFAULT_TIMEOUT).await;
    assert_unreachable(
        &out,
        "ctl over http:// to the TLS port",
        &[&plain, "if it serves tls (--tls-cert), use https://"],
    );

    // With the CA: a migration created and watched to its end, exact.
    let secrets = [
        ("MAILFERRY_SRC_PASSWORD", src.password.as_str()),
        ("MAILFERRY_DST_PASSWORD", dst.password.as_str()),
    ];
    let pair = pair_args(&src, &dst);
    let mut create = vec!["create", "--ca", &ca, "--json"];
    create.extend(pair.iter().map(String::as_str));
    let out = fleet.ctl_with(&create, &secrets, DEFAULT_TIMEOUT).await;
    assert_eq!(out.code, 0, "ctl create over TLS\n{out}");
    let id = out.str("id").to_owned();
    let out = fleet
        .ctl_with(&["watch", &id, "--ca", &ca, "--json"], &[], WATCH_LIMIT)
        .await;
    assert_eq!(out.code, 0, "ctl watch over TLS\n{out}");
    assert_eq!(
        out.json()["migration"]["totals"]["messages_copied"],
        3,
        "{out}"
    );
    let (source, target) = (snapshot(&src).await.unwrap(), snapshot(&dst).await.unwrap());
    compare(&source, &target, &[("INBOX", "INBOX")]).unwrap();
    // The CA also comes from the environment, as every ctl flag does.
    let out = fleet
        .ctl_with(
            &["get", &id, "--json"],
            &[("MAILFERRY_CA", &ca)],
            DEFAULT_TIMEOUT,
        )
        .await;
    assert_eq!(out.code, 0, "ctl get with MAILFERRY_CA\n{out}");
    assert_eq!(out.str("state"), "idle", "{out}");
}
