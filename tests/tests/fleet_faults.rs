//! The fleet under faults: workers that crash at chosen points or are SIGKILLed at random
//! moments, a coordinator killed mid-pass, RabbitMQ restarted and Redis flushed under a running
//! migration. Whatever happens, no target may ever hold a message more often than its source
//! (checked after every fault), and once the migration completes every target is an exact copy —
//! read back with the harness's own verifier, never through the API.
//!
//! Kill moments and victims come from a seeded generator; the seed is in each test.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use mailferry_tests::cli::Output;
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions, QueueTap, Redis};
use mailferry_tests::verify::{MailboxSnapshot, MessageKey, personal_only};
use mailferry_tests::{
    Fixture, Fixtures, ImapClient, Side, SplitMix64, TestAccount, TestServers, compare, snapshot,
    snapshot_with,
};
use serde_json::Value;

const WORK: &str = "INBOX.Work";
/// Source raw name → target raw name.
const MAPPING: &[(&str, &str)] = &[("INBOX", "INBOX"), (WORK, "Work")];
/// How long one pass may take before `ctl watch` is given up on (a debug build on 2 cores,
/// takeovers of dead workers' folder leases included).
const WATCH_LIMIT: Duration = Duration::from_secs(300);
/// How long a test waits for the first message to land on a target, or a worker to crash.
const EVENT_LIMIT: Duration = Duration::from_secs(120);
/// How long after FLUSHALL the fleet may take to forget a migration and dead-letter its tasks.
const FORGET_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Mailboxes
// ---------------------------------------------------------------------------------------------

/// Size of the "big" messages: each goes alone, with a synchronising literal, so a batch holds
/// APPENDs of very different lengths.
const BIG: usize = 400_000;

/// What a seeded source holds (see [`mailbox`]).
#[derive(Debug, Clone, Copy)]
struct Shape {
    inbox: usize,
    work: usize,
    big: usize,
}

/// 27 messages over two folders.
const SMALL: Shape = Shape {
    inbox: 16,
    work: 8,
    big: 0,
};
/// 39 messages, 12 of them big.
const LARGER: Shape = Shape {
    inbox: 20,
    work: 7,
    big: 12,
};

/// One source and its (initially empty) target.
struct Pair {
    src: TestAccount,
    dst: TestAccount,
    /// Messages seeded into the source (all folders).
    messages: usize,
}

/// INBOX: `inbox` ordinary messages with a genuine duplicate (twice) and a message without
/// Message-ID in the middle; `INBOX.Work`: `work` ordinary messages; `big` messages of [`BIG`]
/// bytes spread over both.
fn mailbox(
    g: &mut Fixtures,
    inbox: usize,
    work: usize,
    big: usize,
) -> Vec<(&'static str, Vec<Fixture>)> {
    let mut first: Vec<Fixture> = (0..inbox).map(|_| g.ordinary()).collect();
    let dup = g.duplicate();
    let at = first.len() / 2;
    first.splice(at..at, [dup.clone(), g.no_message_id(), dup]);
    let mut second: Vec<Fixture> = (0..work).map(|_| g.ordinary()).collect();
    for i in 0..big {
        let folder = if i % 2 == 0 { &mut first } else { &mut second };
        let at = (i * 7) % (folder.len() + 1);
        folder.insert(at, g.big(BIG));
    }
    vec![("INBOX", first), (WORK, second)]
}

async fn seed(src: &TestAccount, seed: u64, shape: Shape) -> usize {
    let mut g = Fixtures::new(seed);
    let mut c = ImapClient::connect(src).await.unwrap();
    let mut n = 0;
    for (name, messages) in mailbox(&mut g, shape.inbox, shape.work, shape.big) {
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
async fn seeded_pairs(prefix: &str, count: usize, seed0: u64, shape: Shape) -> Vec<Pair> {
    let servers = TestServers::get();
    let srcs = servers.new_users(Side::Source, prefix, count).unwrap();
    let dsts = servers.new_users(Side::Target, prefix, count).unwrap();
    let counts = futures::future::join_all(
        srcs.iter()
            .enumerate()
            .map(|(i, s)| seed(s, seed0 + i as u64, shape)),
    )
    .await;
    srcs.into_iter()
        .zip(dsts)
        .zip(counts)
        .map(|((src, dst), messages)| Pair { src, dst, messages })
        .collect()
}

/// The batch file of `ctl create --batch`: one record per pair, passwords included.
fn write_csv(dir: &Path, pairs: &[Pair]) -> PathBuf {
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
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("users.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// The fleet through `ctl`
// ---------------------------------------------------------------------------------------------

/// The workers' folder lease TTL: a dead worker's folder is taken over within seconds, and a
/// fresh or flushed store grants no folder lease for this long.
const LEASE_TTL: Duration = Duration::from_secs(6);

/// Lease TTL 6 s and IMAP timeout 10 s.
fn options(workers: usize) -> FleetOptions {
    FleetOptions {
        workers,
        concurrency: 2,
        timeout_secs: Some(10),
        lease_ttl_secs: Some(LEASE_TTL.as_secs()),
        ..FleetOptions::default()
    }
}

/// `ctl create --batch CSV` (plain IMAP on loopback); the new migration's id.
async fn create(fleet: &Fleet, csv: &Path) -> String {
    create_with(fleet, csv, &[]).await
}

/// `ctl create --batch CSV EXTRA…`; the new migration's id.
async fn create_with(fleet: &Fleet, csv: &Path, extra: &[&str]) -> String {
    let servers = TestServers::get();
    let src = format!("imap://127.0.0.1:{}", servers.ports(Side::Source).imap);
    let dst = format!("imap://127.0.0.1:{}", servers.ports(Side::Target).imap);
    let csv = csv.to_string_lossy();
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    let out = fleet.ctl(&args).await;
    assert_eq!(out.code, 0, "ctl create\n{out}");
    out.str("id").to_owned()
}

/// CreateMigration through the gRPC API with `batch_messages` (which `ctl` does not set): small
/// batches make a folder's chain many round trips through the queue, so a fault lands in the
/// middle of it. Plain IMAP on loopback; the new migration's id.
async fn create_in_small_batches(fleet: &Fleet, pairs: &[Pair], batch_messages: u32) -> String {
    let endpoint = |a: &TestAccount| pb::Endpoint {
        host: a.host.clone(),
        port: u32::from(a.imap_port),
        user: a.user.clone(),
        tls: pb::TlsMode::None as i32,
        ca_file: String::new(),
        insecure_skip_verify: false,
        ca_pem: String::new(),
        auth_mechanism: 0,
    };
    let password = |a: &TestAccount| pb::Credentials {
        kind: Some(pb::credentials::Kind::Password(a.password.clone())),
    };
    let req = pb::CreateMigrationRequest {
        request_id: format!("{}-small-batches", fleet.namespace()),
        name: "small batches".into(),
        pairs: pairs
            .iter()
            .map(|p| pb::PairSpec {
                source: Some(endpoint(&p.src)),
                source_credentials: Some(password(&p.src)),
                target: Some(endpoint(&p.dst)),
                target_credentials: Some(password(&p.dst)),
            })
            .collect(),
        options: Some(pb::MigrationOptions {
            batch_messages,
            ..pb::MigrationOptions::default()
        }),
        skip_probe: false,
    };
    let mut request = tonic::Request::new(req);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", fleet.token()).parse().unwrap(),
    );
    let call = async {
        let mut c = MigrationServiceClient::connect(fleet.grpc_url()).await?;
        Ok::<_, Box<dyn std::error::Error>>(c.create_migration(request).await?.into_inner())
    };
    match tokio::time::timeout(EVENT_LIMIT, call).await {
        Ok(Ok(m)) => m.id,
        Ok(Err(e)) => panic!("CreateMigration: {e}\n{}", logs_tail(fleet)),
        Err(_) => panic!(
            "CreateMigration: no answer within {EVENT_LIMIT:?}\n{}",
            logs_tail(fleet)
        ),
    }
}

/// `ctl watch ID --json`: follows the pass to its end.
async fn watch(fleet: &Fleet, id: &str) -> Output {
    fleet
        .ctl_with(&["watch", id, "--json"], &[], WATCH_LIMIT)
        .await
}

/// The pairs that did not complete and the failures of a `ctl watch --json` summary, grouped,
/// for people.
fn failures_summary(out: &Output) -> String {
    let Some(doc) = &out.json else {
        return format!("{out}");
    };
    let mut lines = Vec::new();
    for r in doc["pairs"].as_array().into_iter().flatten() {
        if r["status"] != "completed" {
            lines.push(format!(
                "  pair {} {}: copied {} already present {} failed {} {}",
                r["id"],
                r["status"],
                r["totals"]["messages_copied"],
                r["totals"]["already_present"],
                r["totals"]["failed"],
                r["error"]
            ));
        }
    }
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for f in doc["failures"].as_array().into_iter().flatten() {
        let key = format!(
            "{} {} [{}] {}",
            f["pair_id"], f["folder"], f["kind"], f["reason"]
        );
        *groups.entry(key).or_insert(0) += 1;
    }
    for (k, n) in groups {
        lines.push(format!("  {n} x {k}"));
    }
    lines.join("\n")
}

/// `ctl watch ID --json`, which must end with exit code 0 (every pair completed).
async fn watch_ok(fleet: &Fleet, id: &str) -> Output {
    let out = watch(fleet, id).await;
    assert_eq!(
        out.code,
        0,
        "ctl watch {id}:\n{}\n{out}",
        failures_summary(&out)
    );
    out
}

/// `ctl pairs ID --json`: one row per pair.
async fn pair_rows(fleet: &Fleet, id: &str) -> Vec<Value> {
    let out = fleet.ctl(&["pairs", id, "--json"]).await;
    assert_eq!(out.code, 0, "ctl pairs {id}\n{out}");
    out.array("pairs")
}

fn total(row: &Value, field: &str) -> u64 {
    row["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no totals.{field} in {row:#}"))
}

/// Each pair's summary accounts for every source message exactly once: copied (this pass,
/// found or appended) plus already present (found by the plan) equals the source count.
async fn check_summary(fleet: &Fleet, id: &str, pairs: &[Pair]) -> Result<(), String> {
    let rows = pair_rows(fleet, id).await;
    if rows.len() != pairs.len() {
        return Err(format!(
            "{} pair rows for {} pairs: {rows:#?}",
            rows.len(),
            pairs.len()
        ));
    }
    let mut wrong = Vec::new();
    for p in pairs {
        let prefix = format!("{}@", p.src.user);
        let Some(r) = rows
            .iter()
            .find(|r| r["source"].as_str().is_some_and(|s| s.starts_with(&prefix)))
        else {
            return Err(format!("no pair row for {}: {rows:#?}", p.src.user));
        };
        let counted = total(r, "messages_copied") + total(r, "already_present");
        if r["status"] != "completed" || total(r, "failed") != 0 || counted != p.messages as u64 {
            wrong.push(format!(
                "pair {} ({}): status {}, copied + already_present = {counted} for {} source \
                 messages, failed {}",
                r["id"],
                p.src.user,
                r["status"],
                p.messages,
                total(r, "failed")
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the summary is not the source: {}",
            wrong.join("; ")
        ))
    }
}

async fn assert_summary_counts_each_message_once(fleet: &Fleet, id: &str, pairs: &[Pair]) {
    if let Err(e) = check_summary(fleet, id, pairs).await {
        panic!("{e}");
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
// The targets, read back independently
// ---------------------------------------------------------------------------------------------

/// Every target is an exact copy of its source through [`MAPPING`] (bodies, flags, dates,
/// duplicates), and holds nothing anywhere else.
async fn check_exact(pairs: &[Pair]) -> Result<(), String> {
    let mut wrong = Vec::new();
    for p in pairs {
        let source = snapshot_with(&p.src, personal_only).await.unwrap();
        let target = snapshot(&p.dst).await.unwrap();
        if let Err(diff) = compare(&source, &target, MAPPING) {
            wrong.push(format!(
                "{} -> {}: not an exact copy:\n{diff}",
                p.src.user, p.dst.user
            ));
        }
        let all: usize = target.counts().values().sum();
        if all != p.messages {
            wrong.push(format!(
                "{}: the target holds {all} messages in all, the source {}: {:?}",
                p.dst.user,
                p.messages,
                target.counts()
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

async fn assert_exact(pairs: &[Pair]) {
    if let Err(e) = check_exact(pairs).await {
        panic!("{e}");
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

/// No target holds a message more often than its source; returns the messages on all targets.
async fn assert_no_duplicate(fleet: &Fleet, pairs: &[Pair], when: &str) -> usize {
    let mut on_targets = 0;
    for p in pairs {
        let source = snapshot_with(&p.src, personal_only).await.unwrap();
        let target = snapshot(&p.dst).await.unwrap();
        if let Err(e) = part_of_source(&source, &target) {
            panic!(
                "{when}: {} -> {}: duplicates: {e}\n{}",
                p.src.user,
                p.dst.user,
                logs_tail(fleet)
            );
        }
        on_targets += target.counts().values().sum::<usize>();
    }
    on_targets
}

/// Counts the messages on the targets, through one open connection per target (a STATUS of
/// each mapped folder per poll: cheap enough to poll every few milliseconds).
struct Progress {
    clients: Vec<ImapClient>,
}

impl Progress {
    async fn open(pairs: &[Pair]) -> Progress {
        let mut clients = Vec::new();
        for p in pairs {
            clients.push(ImapClient::connect(&p.dst).await.unwrap());
        }
        Progress { clients }
    }

    /// Messages in the mapped target folders (a folder not created yet counts 0).
    async fn count(&mut self) -> usize {
        let mut n = 0;
        for c in &mut self.clients {
            for (_, d) in MAPPING {
                n += c.status(d).await.map_or(0, |s| s.messages as usize);
            }
        }
        n
    }

    /// Waits until at least one message has landed on a target: the pass is copying.
    async fn wait_for_copying(&mut self, fleet: &Fleet) -> usize {
        let deadline = Instant::now() + EVENT_LIMIT;
        loop {
            let n = self.count().await;
            if n > 0 {
                return n;
            }
            if Instant::now() > deadline {
                panic!(
                    "nothing reached a target within {EVENT_LIMIT:?}\n{}",
                    logs_tail(fleet)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A private RabbitMQ and Redis under `dir` (started off the async threads: it blocks).
async fn private_env(dir: &Path) -> FleetEnv {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || FleetEnv::private(dir))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// For each crash point, a migration of its own whose first worker is armed with that point
/// (alone, so it is certain to reach it) and aborts there like kill -9: after a source FETCH
/// returned message data (`fetch`), after the target answered an APPEND whose copy is not yet
/// recorded (`appended`), after the outcome was confirmed but before the task was acked, so it
/// runs again (`outcome_published`). A normal worker then takes over: the migration completes,
/// no loss, no duplicate, and the summary counts every message once. Every point is run and
/// checked before the test reports what went wrong at any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_each_crash_point_loses_and_duplicates_nothing() {
    // 2 pairs: List, CreateFolders, Inventory x2 and CopyBatch x2 (one per folder) each, so
    // the 9th outcome is a copy batch's (checked below). The first stage starts in a fresh
    // namespace, whose store grants no folder lease for one TTL (as after a Redis flush): the
    // crash lands in a batch that already waited for that.
    let points = [
        ("fetch", "fetch:3"),
        ("appended", "appended:2"),
        ("outcome_published", "copy_outcome_published:3"),
    ];
    let mut stages = Vec::new();
    for (i, _) in points.iter().enumerate() {
        stages.push(seeded_pairs("fleetfp", 2, 31_000 + 10 * i as u64, SMALL).await);
    }
    let env = FleetEnv::shared();
    let mut fleet = Fleet::start(&env, options(0)).await;
    let tap = QueueTap::bind(fleet.amqp_url(), fleet.namespace())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for ((name, armed), pairs) in points.into_iter().zip(&stages) {
        let armed_worker = fleet
            .start_worker_with_env(&[("MAILFERRY_FAILPOINT", armed)])
            .await;
        let csv = write_csv(&dir.path().join(name), pairs);
        // No probe: its List tasks would go to the armed worker, and `create` would wait for a
        // worker that is about to die.
        let id = create_with(&fleet, &csv, &["--skip-probe"]).await;
        let Some(status) = fleet.wait_worker_exit(armed_worker, EVENT_LIMIT).await else {
            panic!(
                "the worker armed with {armed} did not reach it within {EVENT_LIMIT:?}\n{}",
                logs_tail(&fleet)
            );
        };
        let log = fleet.worker_log(armed_worker);
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "worker {armed_worker} ({armed}) ended with {status}, not the crash point's abort\n{log}"
        );
        assert!(
            log.contains(&format!(
                "failpoint {} reached",
                armed.split(':').next().unwrap_or(name)
            )),
            "worker {armed_worker} ({armed}) died elsewhere:\n{log}"
        );
        if name == "outcome_published" {
            // The armed worker was alone: the outcomes of this migration so far are its own,
            // and the last one is the one it died after.
            let outcomes: Vec<String> = tap
                .messages()
                .into_iter()
                .filter(|m| m.routing_key == "outcomes")
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
                .filter(|b| b.contains(&id))
                .collect();
            let last = outcomes.last().map(String::as_str).unwrap_or_default();
            assert!(
                last.contains(r#""type":"copy""#),
                "the worker armed with {armed} died after {} outcome(s), the last not a copy \
                 batch's (adjust N): {}",
                outcomes.len(),
                last.chars().take(300).collect::<String>()
            );
        }
        let n = assert_no_duplicate(&fleet, pairs, &format!("after the crash at {armed}")).await;
        eprintln!("{armed}: worker {armed_worker} crashed with {n} messages on the targets");

        let normal = fleet.start_worker().await;
        let out = watch(&fleet, &id).await;
        if out.code != 0 {
            problems.push(format!(
                "{armed}: ctl watch {id} exited {} (0 expected):\n{}",
                out.code,
                failures_summary(&out)
            ));
        }
        if let Err(e) = check_exact(pairs).await {
            problems.push(format!("{armed}: {e}"));
        }
        if let Err(e) = check_summary(&fleet, &id, pairs).await {
            problems.push(format!("{armed}: {e}"));
        }
        // The next stage starts with its armed worker alone again.
        fleet.kill_worker(normal).await;
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Waits until the fleet's store is older than one lease TTL, so the first copies are not
/// refused by the epoch rule. The kill, coordinator and RabbitMQ tests are about their fault,
/// not that rule: epoch refusals and a takeover share one retry budget, which the crash-point
/// test covers.
async fn let_the_epoch_age() {
    tokio::time::sleep(LEASE_TTL + Duration::from_millis(500)).await;
}

/// Two workers; three times, one of them is SIGKILLed at a random moment while the pass runs
/// (the first while messages are being copied) and a fresh one takes its place. No kill leaves
/// a duplicate; the migration completes, exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_moments() {
    const SEED: u64 = 32_000;
    let pairs = seeded_pairs("fleetkill", 4, SEED, LARGER).await;
    let total: usize = pairs.iter().map(|p| p.messages).sum();
    let env = FleetEnv::shared();
    let mut fleet = Fleet::start(&env, options(2)).await;
    let mut progress = Progress::open(&pairs).await;
    let_the_epoch_age().await;
    let id = create_in_small_batches(&fleet, &pairs, 2).await;

    let mut rng = SplitMix64::new(SEED);
    let mut mid_copy = 0;
    progress.wait_for_copying(&fleet).await;
    for kill in 0..3 {
        // The first kill right after copying began, the others up to 3 s after the last.
        let delay = match kill {
            0 => rng.range(0, 200),
            _ => rng.range(300, 3_000),
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let running = fleet.running_workers();
        let victim = *rng.pick(&running);
        let before = progress.count().await;
        fleet.kill_worker(victim).await;
        let replacement = fleet.start_worker().await;
        if before > 0 && before < total {
            mid_copy += 1;
        }
        let n = assert_no_duplicate(&fleet, &pairs, &format!("after kill {kill}")).await;
        eprintln!(
            "seed {SEED}: kill {kill} of worker {victim} after {delay} ms with {before}/{total} \
             on the targets (now {n}); worker {replacement} started"
        );
    }
    assert!(
        mid_copy >= 1,
        "no kill landed while messages were being copied: the test proved little"
    );
    watch_ok(&fleet, &id).await;
    assert_exact(&pairs).await;
    assert_summary_counts_each_message_once(&fleet, &id, &pairs).await;
}

/// The coordinator is SIGKILLed while the pass copies (in small batches, so its folder chains
/// are cut in the middle) and started again: it resumes the pass from the store, and `ctl
/// watch` sees it complete; the targets are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_and_restarted_mid_run_completes() {
    let pairs = seeded_pairs("fleetcoord", 3, 33_000, LARGER).await;
    let total: usize = pairs.iter().map(|p| p.messages).sum();
    let env = FleetEnv::shared();
    let mut fleet = Fleet::start(&env, options(2)).await;
    let mut progress = Progress::open(&pairs).await;
    let_the_epoch_age().await;
    let id = create_in_small_batches(&fleet, &pairs, 2).await;

    let n = progress.wait_for_copying(&fleet).await;
    fleet.kill_coordinator().await;
    eprintln!("coordinator killed with {n}/{total} messages on the targets");
    let n = assert_no_duplicate(&fleet, &pairs, "with the coordinator dead").await;
    assert!(
        n < total,
        "every message was copied with the coordinator dead: the kill came too late to prove \
         anything"
    );
    fleet.restart_coordinator().await;
    watch_ok(&fleet, &id).await;
    assert_exact(&pairs).await;
    assert_summary_counts_each_message_once(&fleet, &id, &pairs).await;
}

/// RabbitMQ is restarted (gracefully, durable queues kept) while the pass copies in small
/// batches: every process reconnects and the migration completes, exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restarted_mid_run() {
    let pairs = seeded_pairs("fleetamqp", 3, 34_000, LARGER).await;
    let total: usize = pairs.iter().map(|p| p.messages).sum();
    let servers_dir = tempfile::tempdir().unwrap();
    let env = private_env(servers_dir.path()).await;
    let fleet = Fleet::start(&env, options(2)).await;
    let mut progress = Progress::open(&pairs).await;
    let_the_epoch_age().await;
    let id = create_in_small_batches(&fleet, &pairs, 2).await;

    let n = progress.wait_for_copying(&fleet).await;
    eprintln!("restarting RabbitMQ with {n}/{total} messages on the targets");
    env.restart_rabbitmq().await.unwrap();
    let n = assert_no_duplicate(&fleet, &pairs, "after the RabbitMQ restart").await;
    eprintln!("RabbitMQ is back with {n}/{total} messages on the targets");
    watch_ok(&fleet, &id).await;
    assert_exact(&pairs).await;
    assert_summary_counts_each_message_once(&fleet, &id, &pairs).await;
    drop(fleet);
}

/// Redis is flushed while the pass copies: the API forgets the migration (NOT_FOUND), the tasks
/// in flight are dead-lettered as `state_lost` rather than run without their state, no target
/// gets a duplicate, and the same batch file, created again, completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_mid_run() {
    let pairs = seeded_pairs("fleetflush", 3, 35_000, LARGER).await;
    let servers_dir = tempfile::tempdir().unwrap();
    let env = private_env(servers_dir.path()).await;
    // One task at a time per worker: six folder chains for two slots, so tasks are still
    // queued when Redis is flushed.
    let one_at_a_time = FleetOptions {
        concurrency: 1,
        ..options(2)
    };
    let mut fleet = Fleet::start(&env, one_at_a_time).await;
    let tap = QueueTap::bind(fleet.amqp_url(), fleet.namespace())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), &pairs);
    let mut progress = Progress::open(&pairs).await;
    let id = create(&fleet, &csv).await;

    let n = progress.wait_for_copying(&fleet).await;
    env.flush_redis().unwrap();
    eprintln!("Redis flushed with {n} messages on the targets");

    // Everything is checked before the test reports what went wrong.
    let mut problems = Vec::new();

    // The API forgets the migration. A coordinator that loses its leader lease to the flush
    // stops; it is started again, as an orchestrator would.
    let deadline = Instant::now() + FORGET_LIMIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(status) = fleet.coordinator_exit_status() {
            eprintln!("the coordinator exited ({status}) after FLUSHALL; starting it again");
            fleet.restart_coordinator().await;
        }
        let get = fleet.ctl(&["get", &id, "--json"]).await;
        if get.code == 2 {
            last = None;
            break;
        }
        last = Some(get);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(get) = last {
        problems.push(format!(
            "ctl get {id} still answers {FORGET_LIMIT:?} after FLUSHALL (exit {}, state {}, \
             passes {}), expected NOT_FOUND (exit 2); the namespace's keys now: {:?}",
            get.code,
            get.json
                .as_ref()
                .map_or(Value::Null, |j| j["state"].clone()),
            get.json
                .as_ref()
                .map_or(Value::Null, |j| j["passes"].clone()),
            Redis::connect(fleet.redis_url())
                .unwrap()
                .keys(&format!("{}:*", fleet.namespace()))
                .unwrap()
        ));
    }

    // Tasks that reached a worker after the flush are dead-lettered as state_lost (the tap
    // shows header values as bytes).
    let kind = format!("{:?}", b"state_lost".to_vec());
    let lost = |tap: &QueueTap| {
        tap.messages()
            .into_iter()
            .filter(|m| m.routing_key == "dead" && m.properties.contains(&kind))
            .count()
    };
    let deadline = Instant::now() + FORGET_LIMIT;
    while lost(&tap) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state_lost = lost(&tap);
    eprintln!(
        "{state_lost} task(s) dead-lettered as state_lost, {} dead letters in all",
        tap.count("dead")
    );
    if state_lost == 0 {
        problems.push(format!(
            "no task was dead-lettered as state_lost within {FORGET_LIMIT:?}; dead letters seen: \
             {:?}",
            tap.messages()
                .iter()
                .filter(|m| m.routing_key == "dead")
                .map(|m| &m.properties)
                .collect::<Vec<_>>()
        ));
    }
    assert_no_duplicate(&fleet, &pairs, "after FLUSHALL").await;

    // Created again from the same batch file: it completes, exactly.
    let again = create(&fleet, &csv).await;
    assert_ne!(again, id);
    watch_ok(&fleet, &again).await;
    assert_exact(&pairs).await;
    assert_summary_counts_each_message_once(&fleet, &again, &pairs).await;
    let out = fleet.ctl(&["dead-letters", "--json"]).await;
    assert_eq!(out.code, 0, "ctl dead-letters\n{out}");
    let letters = out.array("dead_letters");
    if state_lost > 0
        && !letters.iter().any(|d| {
            d["migration_id"] == id.as_str()
                && d["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("no longer knows"))
        })
    {
        problems.push(format!(
            "ctl dead-letters lists no state_lost dead letter of {id}: {letters:#?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    drop(fleet);
}
