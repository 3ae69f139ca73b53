//! OAuth 2.0 access tokens through the fleet: `ctl create --src-oauth2-token-file` sends the
//! file's token, the coordinator seals it, and workers log into the real Dovecot source with
//! OAUTHBEARER (the test servers validate JWTs locally, `exp` included, see `scripts/test-servers`).
//! A refused token stops the create; one that has expired by the time the pass runs fails the
//! pair as `auth_failed`, and a fresh token pushed with UpdatePairCredentials completes it. No
//! token is ever found in a queue message, a Redis value or a log line.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use mailferry_tests::cli::{Output, pair_args};
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions, QueueTap};
use mailferry_tests::verify::personal_only;
use mailferry_tests::{
    Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot, snapshot_with,
};

const WORK: &str = "INBOX.Work";
/// Source raw name → target raw name.
const MAPPING: &[(&str, &str)] = &[("INBOX", "INBOX"), (WORK, "Work")];
/// How long one pass may take before `ctl watch` is given up on (a debug build on 2 cores).
const WATCH_LIMIT: Duration = Duration::from_secs(300);
/// An hour, as providers' access tokens last.
const HOUR: i64 = 3600;

/// A source with a few messages in two folders (a duplicate among them), and an empty target.
async fn seeded_pair(prefix: &str, seed: u64) -> (TestAccount, TestAccount, usize) {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, prefix).unwrap();
    let dst = servers.new_user(Side::Target, prefix).unwrap();
    let mut g = Fixtures::new(seed);
    let dup = g.duplicate();
    let inbox = vec![
        g.ordinary(),
        dup.clone(),
        g.no_message_id(),
        dup,
        g.ordinary(),
    ];
    let work = vec![g.ordinary(), g.ordinary()];
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.append_all("INBOX", &inbox).await.unwrap();
    c.create_subscribed(WORK).await.unwrap();
    c.append_all(WORK, &work).await.unwrap();
    c.logout().await;
    (src, dst, inbox.len() + work.len())
}

async fn assert_exact(src: &TestAccount, dst: &TestAccount, messages: usize) {
    let source = snapshot_with(src, personal_only).await.unwrap();
    let target = snapshot(dst).await.unwrap();
    if let Err(diff) = compare(&source, &target, MAPPING) {
        panic!("{} -> {}: not an exact copy:\n{diff}", src.user, dst.user);
    }
    assert_eq!(target.counts().values().sum::<usize>(), messages);
}

/// `ctl create` of one pair (STARTTLS): the source logs in with the token in `token_file`, the
/// target with its password (from the environment, as secrets never go on argv).
async fn create(
    fleet: &Fleet,
    src: &TestAccount,
    dst: &TestAccount,
    token_file: &Path,
    extra: &[&str],
) -> Output {
    let token_file = token_file.to_string_lossy();
    let pair = pair_args(src, dst);
    let mut args = vec!["create", "--src-oauth2-token-file", &token_file, "--json"];
    args.extend(pair.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let env = [("MAILFERRY_DST_PASSWORD", dst.password.as_str())];
    fleet
        .ctl_with(&args, &env, mailferry_tests::cli::DEFAULT_TIMEOUT)
        .await
}

async fn watch(fleet: &Fleet, id: &str) -> Output {
    fleet
        .ctl_with(&["watch", id, "--json"], &[], WATCH_LIMIT)
        .await
}

/// The one pair row of migration `id`.
async fn only_pair(fleet: &Fleet, id: &str) -> serde_json::Value {
    let out = fleet.ctl(&["pairs", id, "--json"]).await;
    assert_eq!(out.code, 0, "ctl pairs {id}\n{out}");
    let rows = out.array("pairs");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows.into_iter().next().unwrap()
}

/// UpdatePairCredentials of the source side with `token`, as an API client refreshing its
/// tokens does.
async fn push_token(fleet: &Fleet, migration_id: &str, pair_id: &str, token: &str) {
    let mut client = MigrationServiceClient::connect(fleet.grpc_url())
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::UpdatePairCredentialsRequest {
        migration_id: migration_id.to_owned(),
        pair_id: pair_id.to_owned(),
        side: pb::Side::Source as i32,
        credentials: Some(pb::Credentials {
            kind: Some(pb::credentials::Kind::Oauth2(pb::OAuth2Token {
                access_token: token.to_owned(),
            })),
        }),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", fleet.token()).parse().unwrap(),
    );
    client.update_pair_credentials(req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_through_the_fleet_api() {
    let servers = TestServers::get();
    let (src, dst, messages) = seeded_pair("oauthfleet", 7_100).await;
    let (late_src, late_dst, late_messages) = seeded_pair("oauthlate", 7_200).await;
    let fleet = Fleet::start(
        &FleetEnv::shared(),
        FleetOptions {
            lease_ttl_secs: Some(6),
            ..FleetOptions::default()
        },
    )
    .await;
    let tap = QueueTap::bind(fleet.amqp_url(), fleet.namespace())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let mut tokens = Vec::new();

    // An expired token: the probe's login is refused, nothing is created.
    let expired = servers.oauth2_token(&src.user, -HOUR).unwrap();
    std::fs::write(&token_file, format!("{expired}\n")).unwrap();
    tokens.push(expired);
    let out = create(&fleet, &src, &dst, &token_file, &[]).await;
    assert_eq!(out.code, 3, "an expired token at create\n{out}");
    assert!(
        out.stderr.contains("pairs[0].source") && out.stderr.contains("access token"),
        "{out}"
    );
    let list = fleet.ctl(&["list", "--json"]).await;
    assert_eq!(list.code, 0, "{list}");
    assert_eq!(list.array("migrations").len(), 0, "{list}");

    // A current token: migrated exactly, the token read from the file and sent once.
    let current = servers.oauth2_token(&src.user, HOUR).unwrap();
    std::fs::write(&token_file, &current).unwrap();
    tokens.push(current);
    let out = create(&fleet, &src, &dst, &token_file, &[]).await;
    assert_eq!(out.code, 0, "ctl create\n{out}");
    let id = out.str("id").to_owned();
    let out = watch(&fleet, &id).await;
    assert_eq!(out.code, 0, "ctl watch {id}\n{out}");
    assert_exact(&src, &dst, messages).await;
    let row = only_pair(&fleet, &id).await;
    assert_eq!(row["status"], "completed", "{row:#}");

    // A token that has expired by the time the pass runs (the probe skipped stands for "the
    // hour ran out"): the pair is auth_failed with advice to push a fresh token, and a fresh
    // token pushed with UpdatePairCredentials completes it on RetryFailures.
    let stale = servers.oauth2_token(&late_src.user, -HOUR).unwrap();
    std::fs::write(&token_file, &stale).unwrap();
    tokens.push(stale);
    let out = create(&fleet, &late_src, &late_dst, &token_file, &["--skip-probe"]).await;
    assert_eq!(out.code, 0, "ctl create --skip-probe\n{out}");
    let late_id = out.str("id").to_owned();
    let out = watch(&fleet, &late_id).await;
    assert_eq!(out.code, 4, "ctl watch {late_id} (expired token)\n{out}");
    let row = only_pair(&fleet, &late_id).await;
    assert_eq!(row["status"], "auth_failed", "{row:#}");
    let error = row["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("login refused") && error.contains("UpdatePairCredentials"),
        "{row:#}"
    );
    let fresh = servers.oauth2_token(&late_src.user, HOUR).unwrap();
    push_token(&fleet, &late_id, row["id"].as_str().unwrap(), &fresh).await;
    tokens.push(fresh);
    let out = fleet.ctl(&["retry", &late_id, "--json"]).await;
    assert_eq!(out.code, 0, "ctl retry {late_id}\n{out}");
    let out = watch(&fleet, &late_id).await;
    assert_eq!(
        out.code, 0,
        "ctl watch {late_id} after a fresh token\n{out}"
    );
    assert_exact(&late_src, &late_dst, late_messages).await;

    // No token, nor a password, outside process memory: not in Redis, queues or logs.
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    // The JWT's signature alone is secret enough to look for (header and claims are not).
    secrets.extend(tokens.iter().filter_map(|t| t.rsplit('.').next()));
    secrets.extend([dst.password.as_str(), late_dst.password.as_str()]);
    let queued = tap.all_bytes();
    let hits = fleet.find_secrets(&secrets, &[("queue messages", &queued)]);
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
}
