//! The fleet end to end: real `mailferry coordinator` and `mailferry worker` processes over the
//! machine's RabbitMQ and Redis, migrating between the two private Dovecot servers. Each
//! scenario drives the fleet through `mailferry ctl` or a direct gRPC client, and then reads every
//! target back with the harness's own verifier — never through the API — and holds the API's
//! figures against what the target really holds.
//!
//! Mailboxes are small (a few dozen messages over two folders, with a genuine duplicate and a
//! message without Message-ID) so the whole file runs in a minute or two on two cores.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use mailferry_tests::cli::Output;
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions, QueueTap, Redis, free_port};
use mailferry_tests::verify::{MailboxSnapshot, MessageKey, personal_only};
use mailferry_tests::{
    Fixture, Fixtures, FolderStatus, ImapClient, Side, TestAccount, TestServers, compare, snapshot,
    snapshot_with, statuses,
};
use serde_json::Value;
use tonic::transport::Channel;

const WORK: &str = "INBOX.Work";
/// Source raw name → target raw name.
const MAPPING: &[(&str, &str)] = &[("INBOX", "INBOX"), (WORK, "Work")];
/// How long one pass may take before `ctl watch` is given up on (a debug build on 2 cores).
const WATCH_LIMIT: Duration = Duration::from_secs(300);
/// How long one gRPC call may take (a probe waits for a worker, a refused login for Dovecot's
/// failure delay).
const RPC_LIMIT: Duration = Duration::from_secs(150);

// ---------------------------------------------------------------------------------------------
// Mailboxes
// ---------------------------------------------------------------------------------------------

/// One source and its (initially empty) target.
struct Pair {
    src: TestAccount,
    dst: TestAccount,
    /// Messages seeded into the source (all folders).
    messages: usize,
}

/// INBOX: `inbox` ordinary messages with a genuine duplicate (twice) and a message without
/// Message-ID in the middle; `INBOX.Work`: `work` ordinary messages.
fn mailbox(g: &mut Fixtures, inbox: usize, work: usize) -> Vec<(&'static str, Vec<Fixture>)> {
    let mut first: Vec<Fixture> = (0..inbox).map(|_| g.ordinary()).collect();
    let dup = g.duplicate();
    let at = first.len() / 2;
    first.splice(at..at, [dup.clone(), g.no_message_id(), dup]);
    let second = (0..work).map(|_| g.ordinary()).collect();
    vec![("INBOX", first), (WORK, second)]
}

async fn seed(src: &TestAccount, seed: u64, inbox: usize, work: usize) -> usize {
    let mut g = Fixtures::new(seed);
    let mut c = ImapClient::connect(src).await.unwrap();
    let mut n = 0;
    for (name, messages) in mailbox(&mut g, inbox, work) {
        if name != "INBOX" {
            c.create_subscribed(name).await.unwrap();
        }
        c.append_all(name, &messages).await.unwrap();
        n += messages.len();
    }
    c.logout().await;
    n
}

/// `count` seeded sources with empty targets.
async fn seeded_pairs(
    prefix: &str,
    count: usize,
    seed0: u64,
    inbox: usize,
    work: usize,
) -> Vec<Pair> {
    let servers = TestServers::get();
    let srcs = servers.new_users(Side::Source, prefix, count).unwrap();
    let dsts = servers.new_users(Side::Target, prefix, count).unwrap();
    let counts = futures::future::join_all(
        srcs.iter()
            .enumerate()
            .map(|(i, s)| seed(s, seed0 + i as u64, inbox, work)),
    )
    .await;
    srcs.into_iter()
        .zip(dsts)
        .zip(counts)
        .map(|((src, dst), messages)| Pair { src, dst, messages })
        .collect()
}

/// The batch file of `ctl create --batch`: one record per pair, passwords included.
fn write_csv(dir: &Path, name: &str, pairs: &[Pair]) -> PathBuf {
    let mut csv = String::from("src_user,src_password,dst_user,dst_password,src_host,dst_host\n");
    for p in pairs {
        csv.push_str(&format!(
            "{},{},{},{},{}:{},{}:{}\n",
            p.src.user,
            p.src.password,
            p.dst.user,
            p.dst.password,
            p.src.host,
            p.src.imap_port,
            p.dst.host,
            p.dst.imap_port
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// The fleet through `ctl`
// ---------------------------------------------------------------------------------------------

/// Lease TTL 6 s and IMAP timeout 10 s: a fresh namespace grants no folder lease for one TTL.
fn options(workers: usize) -> FleetOptions {
    FleetOptions {
        workers,
        concurrency: 4,
        timeout_secs: Some(10),
        lease_ttl_secs: Some(6),
        ..FleetOptions::default()
    }
}

/// `ctl create --batch CSV` (plain IMAP on loopback); the new migration's id.
async fn create(fleet: &Fleet, csv: &Path) -> String {
    create_with(fleet, csv, &[]).await
}

/// `ctl create` of a CSV with `extra` flags (sync options).
async fn create_with(fleet: &Fleet, csv: &Path, extra: &[&str]) -> String {
    let servers = TestServers::get();
    let src = format!("imap://127.0.0.1:{}", servers.ports(Side::Source).imap);
    let dst = format!("imap://127.0.0.1:{}", servers.ports(Side::Target).imap);
    let csv = csv.to_string_lossy();
    let args: Vec<&str> = [
        "create",
        "--batch",
        &csv,
        "--src",
        &src,
        "--dst",
        &dst,
        "--src-tls",
        "none",
        "--dst-tls",
        "none",
        "--json",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    let out = fleet.ctl(&args).await;
    assert_eq!(out.code, 0, "ctl create\n{out}");
    out.str("id").to_owned()
}

/// `ctl watch ID --json`: follows the pass to its end.
async fn watch(fleet: &Fleet, id: &str) -> Output {
    fleet
        .ctl_with(&["watch", id, "--json"], &[], WATCH_LIMIT)
        .await
}

/// `ctl SUBCOMMAND ID --json`, which must succeed.
async fn ctl_ok(fleet: &Fleet, subcommand: &str, id: &str) -> Output {
    let out = fleet.ctl(&[subcommand, id, "--json"]).await;
    assert_eq!(out.code, 0, "ctl {subcommand} {id}\n{out}");
    out
}

/// The migration's state as `ctl get` reports it.
async fn state(fleet: &Fleet, id: &str) -> String {
    ctl_ok(fleet, "get", id).await.str("state").to_owned()
}

/// Seconds from the end of the last pass to the next automatic sync (`None`: none is due).
async fn next_sync_after_pass(fleet: &Fleet, id: &str) -> Option<i64> {
    let got = ctl_ok(fleet, "get", id).await;
    let at = |field: &str| {
        got.json()[field]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let next = at("next_sync_at")?;
    let finished = at("pass_finished_at").unwrap_or_else(|| panic!("no pass_finished_at\n{got}"));
    Some((next - finished).num_seconds())
}

/// `ctl pairs ID --json`: one row per pair.
async fn pair_rows(fleet: &Fleet, id: &str) -> Vec<Value> {
    ctl_ok(fleet, "pairs", id).await.array("pairs")
}

/// The row of `p` (its `source` is `user@host:port`).
fn row<'a>(rows: &'a [Value], p: &Pair) -> &'a Value {
    let prefix = format!("{}@", p.src.user);
    rows.iter()
        .find(|r| r["source"].as_str().is_some_and(|s| s.starts_with(&prefix)))
        .unwrap_or_else(|| panic!("no pair row for {}: {rows:#?}", p.src.user))
}

fn total(row: &Value, field: &str) -> u64 {
    row["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no totals.{field} in {row:#}"))
}

// ---------------------------------------------------------------------------------------------
// The targets, read back independently
// ---------------------------------------------------------------------------------------------

/// Every target is an exact copy of its source through [`MAPPING`] (bodies, flags, dates,
/// duplicates), and holds nothing anywhere else.
async fn assert_exact(pairs: &[Pair]) {
    for p in pairs {
        let source = snapshot_with(&p.src, personal_only).await.unwrap();
        let target = snapshot(&p.dst).await.unwrap();
        if let Err(diff) = compare(&source, &target, MAPPING) {
            panic!(
                "{} -> {}: not an exact copy:\n{diff}",
                p.src.user, p.dst.user
            );
        }
        let all: usize = target.counts().values().sum();
        assert_eq!(
            all,
            p.messages,
            "{}: the target holds {all} messages in all, the source {}: {:?}",
            p.dst.user,
            p.messages,
            target.counts()
        );
    }
}

/// Every target folder holds only messages of its source folder, each at most as often as the
/// source holds it (no duplicate), and nothing outside the mapping.
fn part_of_source(src: &MailboxSnapshot, dst: &MailboxSnapshot) -> Result<(), String> {
    let mut excess = Vec::new();
    for (s, d) in MAPPING {
        let Some(have) = dst.folder(d) else { continue };
        let empty = BTreeMap::new();
        let want: &BTreeMap<MessageKey, usize> = src.folder(s).map_or(&empty, |f| &f.messages);
        for (key, n) in &have.messages {
            let allowed = want.get(key).copied().unwrap_or(0);
            if *n > allowed {
                excess.push(format!(
                    "{d:?}: {:?} x{n}, source x{allowed}",
                    have.subjects.get(&key.sha256)
                ));
            }
        }
    }
    let mapped: usize = MAPPING.iter().map(|(_, d)| dst.count(d)).sum();
    let all: usize = dst.counts().values().sum();
    if all != mapped {
        excess.push(format!(
            "messages outside the mapped folders: {:?}",
            dst.counts()
        ));
    }
    if excess.is_empty() {
        Ok(())
    } else {
        Err(excess.join("; "))
    }
}

async fn assert_part_of_source(pairs: &[Pair], when: &str) -> usize {
    let mut on_targets = 0;
    for p in pairs {
        let source = snapshot_with(&p.src, personal_only).await.unwrap();
        let target = snapshot(&p.dst).await.unwrap();
        if let Err(e) = part_of_source(&source, &target) {
            panic!("{when}: {} -> {}: duplicates: {e}", p.src.user, p.dst.user);
        }
        on_targets += target.counts().values().sum::<usize>();
    }
    on_targets
}

async fn target_statuses(pairs: &[Pair]) -> Vec<BTreeMap<String, FolderStatus>> {
    let mut out = Vec::new();
    for p in pairs {
        out.push(statuses(&p.dst).await.unwrap());
    }
    out
}

/// The namespace's Redis keys that hold a pair's sealed account, among those matching `pattern`.
fn account_keys(fleet: &Fleet, pattern: &str) -> Vec<String> {
    Redis::connect(fleet.redis_url())
        .unwrap()
        .keys(pattern)
        .unwrap()
        .into_iter()
        .filter(|k| k.contains(":account:"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A direct gRPC client
// ---------------------------------------------------------------------------------------------

async fn client(fleet: &Fleet) -> MigrationServiceClient<Channel> {
    MigrationServiceClient::connect(fleet.grpc_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", fleet.grpc_url()))
}

/// `msg` with `authorization: Bearer TOKEN` metadata (none for `None`).
fn request<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

/// Plain IMAP on loopback.
fn endpoint(a: &TestAccount) -> pb::Endpoint {
    pb::Endpoint {
        host: a.host.clone(),
        port: u32::from(a.imap_port),
        user: a.user.clone(),
        tls: pb::TlsMode::None as i32,
        ca_file: String::new(),
        insecure_skip_verify: false,
        ca_pem: String::new(),
        auth_mechanism: 0,
    }
}

fn password(p: &str) -> Option<pb::Credentials> {
    Some(pb::Credentials {
        kind: Some(pb::credentials::Kind::Password(p.to_owned())),
    })
}

fn spec(src: &TestAccount, src_pw: &str, dst: &TestAccount, dst_pw: &str) -> pb::PairSpec {
    pb::PairSpec {
        source: Some(endpoint(src)),
        source_credentials: password(src_pw),
        target: Some(endpoint(dst)),
        target_credentials: password(dst_pw),
    }
}

fn create_request(request_id: &str, pairs: Vec<pb::PairSpec>) -> pb::CreateMigrationRequest {
    pb::CreateMigrationRequest {
        request_id: request_id.to_owned(),
        name: "fleet test".to_owned(),
        pairs,
        options: None,
        skip_probe: false,
    }
}

/// CreateMigration with the fleet's token, within [`RPC_LIMIT`].
async fn send(
    c: &mut MigrationServiceClient<Channel>,
    fleet: &Fleet,
    what: &str,
    req: pb::CreateMigrationRequest,
) -> Result<pb::Migration, tonic::Status> {
    let call = c.create_migration(request(req, Some(fleet.token())));
    within(what, fleet, call).await
}

/// Awaits a call within [`RPC_LIMIT`].
async fn within<T>(
    what: &str,
    fleet: &Fleet,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(RPC_LIMIT, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => panic!(
            "{what}: no answer within {RPC_LIMIT:?}\n{}",
            logs_tail(fleet)
        ),
    }
}

/// The call failed with `code` and a message that starts with `field` (the API names the
/// offending field first: `pairs[0].source.tls: …`).
fn expect_error<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    match result {
        Ok(v) => panic!("{what}: succeeded, expected {code:?} naming {field}: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {s:?}");
            if !field.is_empty() {
                assert!(
                    s.message().starts_with(&format!("{field}:")),
                    "{what}: the message does not name {field} first: {:?}",
                    s.message()
                );
            }
        }
    }
}

fn logs_tail(fleet: &Fleet) -> String {
    let logs = fleet.logs();
    let mut start = logs.len().saturating_sub(12_000);
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    format!("--- fleet logs (tail) ---\n{}", &logs[start..])
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// Twenty mailboxes by two worker processes: every target exact, the summary equal to the
/// target, a second pass copies nothing, and no password is left anywhere outside process
/// memory (queue messages, Redis values, logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pairs_by_two_worker_processes_are_exact() {
    let mut pairs = seeded_pairs("fleet20", 20, 20_000, 8, 4).await;
    let env = FleetEnv::shared();
    let fleet = Fleet::start(&env, options(2)).await;
    let tap = QueueTap::bind(fleet.amqp_url(), fleet.namespace())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), "users.csv", &pairs);

    let id = create_with(
        &fleet,
        &csv,
        &["--sync-every", "90m", "--delete-propagation"],
    )
    .await;
    let out = watch(&fleet, &id).await;
    assert_eq!(out.code, 0, "ctl watch {id}\n{out}");
    assert_exact(&pairs).await;
    assert_eq!(next_sync_after_pass(&fleet, &id).await, Some(90 * 60));

    // The summary equals the target, pair by pair and in all.
    let rows = pair_rows(&fleet, &id).await;
    assert_eq!(rows.len(), pairs.len(), "{rows:#?}");
    for p in &pairs {
        let r = row(&rows, p);
        assert_eq!(r["status"], "completed", "{r:#}");
        assert_eq!(total(r, "messages_copied"), p.messages as u64, "{r:#}");
        assert_eq!(total(r, "failed"), 0, "{r:#}");
    }
    let all: usize = pairs.iter().map(|p| p.messages).sum();
    let m = &out.json()["migration"];
    assert_eq!(m["totals"]["messages_copied"], all as u64, "{m:#}");
    assert_eq!(m["pairs_finished"], pairs.len() as u64, "{m:#}");

    // A second pass finds everything there and copies nothing.
    let before = target_statuses(&pairs).await;
    ctl_ok(&fleet, "sync-now", &id).await;
    let again = watch(&fleet, &id).await;
    assert_eq!(again.code, 0, "ctl watch {id} after sync-now\n{again}");
    let m = &again.json()["migration"];
    assert_eq!(m["totals"]["messages_copied"], 0, "{m:#}");
    assert!(m["passes"].as_u64().unwrap() >= 2, "{m:#}");
    for r in again.array("pairs") {
        assert_eq!(r["status"], "completed", "{r:#}");
        assert_eq!(total(&r, "messages_copied"), 0, "{r:#}");
    }
    let after = target_statuses(&pairs).await;
    assert_eq!(before, after, "the second pass changed a target");
    assert_exact(&pairs).await;

    // Mail in use between syncs: one source message deleted, one flagged. The workers keep
    // no state: the sync finds the changes from the store's watermarks and entries alone.
    let mut c = ImapClient::connect(&pairs[0].src).await.unwrap();
    let uid = c.uids("INBOX").await.unwrap()[0];
    c.expunge_uid("INBOX", uid).await.unwrap();
    c.logout().await;
    pairs[0].messages -= 1;
    let mut c = ImapClient::connect(&pairs[1].src).await.unwrap();
    let uid = c.uids("INBOX").await.unwrap()[0];
    c.select("INBOX").await.unwrap();
    c.command(&format!("UID STORE {uid} +FLAGS (\\Flagged $Sync)"))
        .await
        .unwrap();
    c.logout().await;
    ctl_ok(&fleet, "sync-now", &id).await;
    let synced = watch(&fleet, &id).await;
    assert_eq!(synced.code, 0, "ctl watch {id} after changes\n{synced}");
    let m = &synced.json()["migration"];
    assert_eq!(m["totals"]["messages_copied"], 0, "{m:#}");
    assert_eq!(m["totals"]["flags_updated"], 1, "{m:#}");
    assert_eq!(m["totals"]["expunged"], 1, "{m:#}");
    assert_exact(&pairs).await;

    // Secrets stayed in process memory.
    let queue = tap.all_bytes();
    assert!(
        tap.count("tasks") > 0 && tap.count("outcomes") > 0,
        "the tap saw no task or outcome: it would prove nothing"
    );
    let passwords: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.src.password.as_str(), p.dst.password.as_str()])
        .collect();
    let printed = format!("{out}{again}");
    let hits = fleet.find_secrets(
        &passwords,
        &[
            ("queue messages", &queue),
            ("ctl output", printed.as_bytes()),
        ],
    );
    assert!(hits.is_empty(), "secrets leaked: {hits:?}");
    // The control: the scan does see what is there (a user name in the pair summaries).
    let seen = fleet.find_secrets(&[&pairs[0].src.user], &[]);
    assert!(
        seen.iter().any(|h| h.starts_with("redis ")),
        "the scan found a source user nowhere in Redis: {seen:?}"
    );
}

/// The API refuses bad requests with the precise code and the offending field, creates nothing
/// for them (no migration, no stored credentials, nothing on a target), and CreateMigration is
/// idempotent by request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_input_gets_precise_codes_and_creates_nothing() {
    let mut pairs = seeded_pairs("fleetapi", 1, 21_000, 6, 3).await;
    let pair = pairs.pop().unwrap();
    let (src, dst) = (&pair.src, &pair.dst);
    let servers = TestServers::get();
    // A target that only ever appears in refused requests: it must stay empty.
    let bystander = servers.new_user(Side::Target, "fleetapi").unwrap();
    let env = FleetEnv::shared();
    let fleet = Fleet::start(&env, options(1)).await;
    let token = Some(fleet.token());
    let mut c = client(&fleet).await;

    let good = || spec(src, &src.password, &bystander, &bystander.password);

    let r = send(
        &mut c,
        &fleet,
        "empty pairs",
        create_request("bad-1", vec![]),
    )
    .await;
    expect_error("empty pairs", r, tonic::Code::InvalidArgument, "pairs");

    let mut tls = good();
    tls.source.as_mut().unwrap().tls = 9;
    let r = send(&mut c, &fleet, "tls=9", create_request("bad-2", vec![tls])).await;
    expect_error(
        "tls=9",
        r,
        tonic::Code::InvalidArgument,
        "pairs[0].source.tls",
    );

    let r = send(
        &mut c,
        &fleet,
        "duplicate",
        create_request("bad-3", vec![good(), good()]),
    )
    .await;
    expect_error(
        "duplicate pair",
        r,
        tonic::Code::InvalidArgument,
        "pairs[1]",
    );

    let mut big = create_request("bad-4", vec![good()]);
    big.options = Some(pb::MigrationOptions {
        batch_messages: 1_000_000,
        ..pb::MigrationOptions::default()
    });
    let r = send(&mut c, &fleet, "batch_messages", big).await;
    expect_error(
        "batch_messages=1000000",
        r,
        tonic::Code::InvalidArgument,
        "options.batch_messages",
    );

    // Well-formed, but the probe (a login through a worker) fails.
    let mut nowhere = good();
    nowhere.source.as_mut().unwrap().port = u32::from(free_port().unwrap());
    let r = send(
        &mut c,
        &fleet,
        "unreachable",
        create_request("bad-5", vec![nowhere]),
    )
    .await;
    match &r {
        Err(s) if s.code() == tonic::Code::FailedPrecondition => assert!(
            s.message().starts_with("pairs[0]"),
            "unreachable host: {:?}",
            s.message()
        ),
        other => panic!("unreachable host: expected FAILED_PRECONDITION, got {other:?}"),
    }
    let wrong_src = spec(src, "wrong-password", &bystander, &bystander.password);
    let r = send(
        &mut c,
        &fleet,
        "wrong source password",
        create_request("bad-6", vec![wrong_src]),
    )
    .await;
    expect_error(
        "wrong source password",
        r,
        tonic::Code::FailedPrecondition,
        "pairs[0].source",
    );
    let wrong_dst = spec(src, &src.password, &bystander, "wrong-password");
    let r = send(
        &mut c,
        &fleet,
        "wrong target password",
        create_request("bad-7", vec![wrong_dst]),
    )
    .await;
    expect_error(
        "wrong target password",
        r,
        tonic::Code::FailedPrecondition,
        "pairs[0].target",
    );

    // Unknown ids.
    let unknown = "0123456789abcdef0123456789abcdef";
    let r = within(
        "GetMigration",
        &fleet,
        c.get_migration(request(
            pb::GetMigrationRequest {
                migration_id: unknown.into(),
            },
            token,
        )),
    )
    .await;
    expect_error("GetMigration unknown", r, tonic::Code::NotFound, "");
    let r = within(
        "ListPairs",
        &fleet,
        c.list_pairs(request(
            pb::ListPairsRequest {
                migration_id: unknown.into(),
                ..pb::ListPairsRequest::default()
            },
            token,
        )),
    )
    .await;
    expect_error("ListPairs unknown", r, tonic::Code::NotFound, "");
    let r = within(
        "PauseMigration",
        &fleet,
        c.pause_migration(request(
            pb::MigrationRef {
                migration_id: unknown.into(),
            },
            token,
        )),
    )
    .await;
    expect_error("PauseMigration unknown", r, tonic::Code::NotFound, "");

    // No token, a wrong token.
    for (what, t) in [("no token", None), ("wrong token", Some("not-the-token"))] {
        let r = within(
            what,
            &fleet,
            c.list_migrations(request(pb::ListMigrationsRequest::default(), t)),
        )
        .await;
        expect_error(what, r, tonic::Code::Unauthenticated, "");
        let r = within(
            what,
            &fleet,
            c.create_migration(request(create_request("bad-8", vec![good()]), t)),
        )
        .await;
        expect_error(what, r, tonic::Code::Unauthenticated, "");
    }

    // Nothing half-created.
    let list = within(
        "ListMigrations",
        &fleet,
        c.list_migrations(request(pb::ListMigrationsRequest::default(), token)),
    )
    .await
    .unwrap();
    assert!(list.migrations.is_empty(), "{list:?}");
    let ns = fleet.namespace().to_owned();
    let keys = Redis::connect(fleet.redis_url())
        .unwrap()
        .keys(&format!("{ns}:*"))
        .unwrap();
    let left: Vec<&String> = keys
        .iter()
        .filter(|k| {
            [":pair:", ":migration", ":request:"]
                .iter()
                .any(|p| k.contains(p))
        })
        .collect();
    assert!(
        left.is_empty(),
        "refused requests left keys behind: {left:?}"
    );

    // The same request id twice: one migration.
    let req = || {
        create_request(
            "fleet-api-once",
            vec![spec(src, &src.password, dst, &dst.password)],
        )
    };
    let first = send(&mut c, &fleet, "create", req()).await.unwrap();
    let second = send(&mut c, &fleet, "create again", req()).await.unwrap();
    assert_eq!(
        first.id, second.id,
        "the same request id made two migrations"
    );
    let list = within(
        "ListMigrations",
        &fleet,
        c.list_migrations(request(pb::ListMigrationsRequest::default(), token)),
    )
    .await
    .unwrap();
    assert_eq!(list.migrations.len(), 1, "{list:?}");
    let out = watch(&fleet, &first.id).await;
    assert_eq!(out.code, 0, "ctl watch {}\n{out}", first.id);
    assert_exact(&[pair]).await;
    let rows = pair_rows(&fleet, &first.id).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");

    // The target of the refused requests was never written to.
    let untouched = snapshot(&bystander).await.unwrap();
    assert_eq!(
        untouched.counts().values().sum::<usize>(),
        0,
        "a refused request wrote to its target: {:?}",
        untouched.counts()
    );
}

/// Pause mid-pass (the batches in hand finish, no duplicate), resume to an exact copy, complete
/// (credentials gone), delete (NOT_FOUND); and cancel another migration (credentials gone, it
/// cannot be resumed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_cancel_and_delete() {
    let pairs = seeded_pairs("fleetpause", 3, 22_000, 30, 10).await;
    let env = FleetEnv::shared();
    let fleet = Fleet::start(&env, options(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), "users.csv", &pairs);
    let ns = fleet.namespace().to_owned();

    // A fresh namespace grants no folder lease for one TTL, so this pause lands before or
    // during the first copies.
    let id = create(&fleet, &csv).await;
    let paused = ctl_ok(&fleet, "pause", &id).await;
    let out = watch(&fleet, &id).await;
    assert!(
        out.code == 0 || out.code == 6,
        "ctl watch of a paused pass: 0 (all done) or 6 (interrupted)\n{out}\n{paused}"
    );
    assert_eq!(state(&fleet, &id).await, "paused");
    assert_eq!(
        next_sync_after_pass(&fleet, &id).await,
        None,
        "a paused migration has no sync due"
    );
    let rows = pair_rows(&fleet, &id).await;
    let interrupted = rows.iter().filter(|r| r["status"] != "completed").count();
    for r in &rows {
        assert!(
            r["status"] == "completed" || r["status"] == "interrupted",
            "after a pause: {r:#}"
        );
    }
    let copied = assert_part_of_source(&pairs, "after the pause").await;
    eprintln!(
        "paused: {interrupted} of {} pairs interrupted, {copied} messages on the targets",
        pairs.len()
    );

    ctl_ok(&fleet, "resume", &id).await;
    let out = watch(&fleet, &id).await;
    assert_eq!(out.code, 0, "ctl watch {id} after resume\n{out}");
    assert_exact(&pairs).await;
    // Idle again: the next automatic sync is due one interval (the default, 3 h) after the pass.
    assert_eq!(state(&fleet, &id).await, "idle");
    assert_eq!(next_sync_after_pass(&fleet, &id).await, Some(3 * 3600));
    // What the first pass copied is found, not copied again.
    let rows = pair_rows(&fleet, &id).await;
    for p in &pairs {
        let r = row(&rows, p);
        assert_eq!(r["status"], "completed", "{r:#}");
        assert_eq!(
            total(r, "messages_copied") + total(r, "already_present"),
            p.messages as u64,
            "{r:#}"
        );
    }

    // Complete: a final pass, then the credentials are dropped.
    let before = target_statuses(&pairs).await;
    ctl_ok(&fleet, "complete", &id).await;
    let out = watch(&fleet, &id).await;
    assert_eq!(out.code, 0, "ctl watch {id} after complete\n{out}");
    assert_eq!(state(&fleet, &id).await, "completed");
    assert_eq!(
        next_sync_after_pass(&fleet, &id).await,
        None,
        "a completed migration syncs no more"
    );
    let keys = account_keys(&fleet, &format!("{ns}:pair:{{{id}.*"));
    assert!(keys.is_empty(), "credentials kept after complete: {keys:?}");
    assert_eq!(
        before,
        target_statuses(&pairs).await,
        "the final pass wrote"
    );
    assert_exact(&pairs).await;
    let again = fleet.ctl(&["resume", &id]).await;
    assert_eq!(again.code, 3, "resume of a completed migration\n{again}");

    // Delete: the migration is gone.
    ctl_ok(&fleet, "delete", &id).await;
    let gone = fleet.ctl(&["get", &id]).await;
    assert_eq!(gone.code, 2, "ctl get of a deleted migration\n{gone}");
    let mut c = client(&fleet).await;
    let r = within(
        "GetMigration",
        &fleet,
        c.get_migration(request(
            pb::GetMigrationRequest {
                migration_id: id.clone(),
            },
            Some(fleet.token()),
        )),
    )
    .await;
    expect_error("GetMigration after delete", r, tonic::Code::NotFound, "");
    assert_exact(&pairs).await;

    // Cancel another migration at once: its credentials go, it cannot run again.
    let other = seeded_pairs("fleetcancel", 1, 22_100, 20, 5).await;
    let csv = write_csv(dir.path(), "other.csv", &other);
    let id = create(&fleet, &csv).await;
    ctl_ok(&fleet, "cancel", &id).await;
    let out = watch(&fleet, &id).await;
    assert!(
        out.code == 0 || out.code == 6,
        "ctl watch of a cancelled pass\n{out}"
    );
    assert_eq!(state(&fleet, &id).await, "cancelled");
    let keys = account_keys(&fleet, &format!("{ns}:pair:{{{id}.*"));
    assert!(keys.is_empty(), "credentials kept after cancel: {keys:?}");
    assert_part_of_source(&other, "after cancel").await;
    let resumed = fleet.ctl(&["resume", &id]).await;
    assert_eq!(
        resumed.code, 3,
        "resume of a cancelled migration\n{resumed}"
    );
    ctl_ok(&fleet, "delete", &id).await;
    let gone = fleet.ctl(&["get", &id]).await;
    assert_eq!(gone.code, 2, "ctl get of a deleted migration\n{gone}");
}
