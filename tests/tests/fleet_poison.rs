//! Poison tasks: a task on which workers keep dying, or whose code panics, must fail its own
//! pair with a clear reason and never take the rest of a migration (or the fleet) down.
//!
//! The poison comes from crash points (`fleet/src/failpoint.rs`): `task_abort@USER` aborts the
//! process at the start of every task of the pair whose source login is `USER` (as an OOM kill
//! or a stack overflow would), `task_panic@USER` panics there (as a bug would). Every other pair
//! must end as an exact copy, read back with the harness's own verifier.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use mailferry_tests::cli::{Output, bare_command};
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions};
use mailferry_tests::verify::personal_only;
use mailferry_tests::{
    Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot, snapshot_with,
};
use serde_json::Value;

const WORK: &str = "INBOX.Work";
/// Source raw name → target raw name.
const MAPPING: &[(&str, &str)] = &[("INBOX", "INBOX"), (WORK, "Work")];
/// How long a pass may take (a debug build on 2 cores, restarts of crashed workers included).
const PASS_LIMIT: Duration = Duration::from_secs(240);
/// What the pair of a task that killed its workers must say.
const CRASHED: &str = "workers crashed on this mailbox 3 times";
/// What the pair of a task that panicked must say.
const PANICKED: &str = "(a bug in mailferry)";

/// One source and its (initially empty) target.
struct Pair {
    src: TestAccount,
    dst: TestAccount,
}

/// `count` sources of 6 messages over INBOX and INBOX.Work, with empty targets.
async fn seeded_pairs(prefix: &str, count: usize, seed0: u64) -> Vec<Pair> {
    let servers = TestServers::get();
    let srcs = servers.new_users(Side::Source, prefix, count).unwrap();
    let dsts = servers.new_users(Side::Target, prefix, count).unwrap();
    for (i, src) in srcs.iter().enumerate() {
        let mut g = Fixtures::new(seed0 + i as u64);
        let mut c = ImapClient::connect(src).await.unwrap();
        c.create_subscribed(WORK).await.unwrap();
        for j in 0..6 {
            let folder = if j % 2 == 0 { "INBOX" } else { WORK };
            c.append(folder, &g.ordinary()).await.unwrap();
        }
        c.logout().await;
    }
    srcs.into_iter()
        .zip(dsts)
        .map(|(src, dst)| Pair { src, dst })
        .collect()
}

/// A batch file (`ctl create --batch`, `migrate --batch`): one record per pair, passwords in it.
fn write_csv(dir: &std::path::Path, pairs: &[Pair]) -> std::path::PathBuf {
    let mut csv = String::from("src_user,src_password,dst_user,dst_password\n");
    for p in pairs {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            p.src.user, p.src.password, p.dst.user, p.dst.password
        ));
    }
    let path = dir.join("users.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// The endpoint arguments of `ctl create --batch` and `migrate --batch` (plain IMAP on
/// loopback).
fn endpoint_args() -> Vec<String> {
    let servers = TestServers::get();
    [
        "--src".to_owned(),
        format!("imap://127.0.0.1:{}", servers.ports(Side::Source).imap),
        "--dst".to_owned(),
        format!("imap://127.0.0.1:{}", servers.ports(Side::Target).imap),
        "--src-tls".to_owned(),
        "none".to_owned(),
        "--dst-tls".to_owned(),
        "none".to_owned(),
    ]
    .into()
}

/// Every target but `except`'s is an exact copy of its source.
async fn assert_exact_except(pairs: &[Pair], except: usize) {
    let mut wrong = Vec::new();
    for (i, p) in pairs.iter().enumerate().filter(|(i, _)| *i != except) {
        let source = snapshot_with(&p.src, personal_only).await.unwrap();
        let target = snapshot(&p.dst).await.unwrap();
        if let Err(diff) = compare(&source, &target, MAPPING) {
            wrong.push(format!(
                "pair {i} ({}): not an exact copy:\n{diff}",
                p.src.user
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The row of `rows` (pair summaries with a `source` `user@host:port`) for `user`.
fn row_of<'a>(rows: &'a [Value], user: &str, key: &str) -> &'a Value {
    let prefix = format!("{user}@");
    rows.iter()
        .find(|r| r[key].as_str().is_some_and(|s| s.starts_with(&prefix)))
        .unwrap_or_else(|| panic!("no row for {user} in {rows:#?}"))
}

fn logs_tail(fleet: &Fleet) -> String {
    let logs = fleet.logs();
    let mut start = logs.len().saturating_sub(12_000);
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    format!("--- fleet logs (tail) ---\n{}", &logs[start..])
}

/// `ctl create --batch CSV --skip-probe` (the probe's tasks would meet the poison before the
/// migration exists); the new migration's id.
async fn create(fleet: &Fleet, csv: &std::path::Path) -> String {
    let csv = csv.to_string_lossy().into_owned();
    let mut args = vec!["create".to_owned(), "--batch".to_owned(), csv];
    args.extend(endpoint_args());
    args.extend(["--skip-probe".to_owned(), "--json".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fleet.ctl(&args).await;
    assert_eq!(out.code, 0, "ctl create\n{out}");
    out.str("id").to_owned()
}

/// `ctl watch ID --json` as a child process of its own, so the test can restart workers while
/// it follows the pass.
fn spawn_watch(fleet: &Fleet, id: &str) -> tokio::process::Child {
    let mut cmd = bare_command();
    cmd.args(["ctl", "watch", id, "--json"])
        .env("MAILFERRY_COORDINATOR", fleet.grpc_url())
        .env("MAILFERRY_API_TOKEN", fleet.token());
    cmd.spawn().unwrap()
}

async fn finish(child: tokio::process::Child) -> Output {
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Output {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).ok(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::ZERO,
    }
}

/// A worker that aborts on every task of one pair, in a fleet whose supervisor restarts every
/// worker that dies (as Kubernetes does): after three crashes the task is dead-lettered, its pair
/// fails saying why and where to look, `ctl dead-letters` lists it, and every other pair of the
/// migration is copied exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_kills_its_workers_is_dead_lettered_and_fails_only_its_pair() {
    let pairs = seeded_pairs("poisonab", 4, 51_000).await;
    let poison = 1;
    let armed = format!("task_abort@{}", pairs[poison].src.user);
    let env = FleetEnv::shared();
    // One task per worker at a time: a crash takes down the poison task alone, so no healthy
    // task is ever in hand at a crash (see README, "Poison tasks").
    let mut fleet = Fleet::start(
        &env,
        FleetOptions {
            workers: 0,
            concurrency: 1,
            lease_ttl_secs: Some(6),
            ..FleetOptions::default()
        },
    )
    .await;
    let worker_env = [("MAILFERRY_FAILPOINT", armed.as_str())];
    const WORKERS: usize = 2;
    let mut started = 0;
    for _ in 0..WORKERS {
        started = fleet.start_worker_with_env(&worker_env).await + 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let id = create(&fleet, &write_csv(dir.path(), &pairs)).await;
    let mut watch = spawn_watch(&fleet, &id);

    // The supervisor: a dead worker is replaced by a new one armed the same way.
    let deadline = Instant::now() + PASS_LIMIT;
    let mut crashes = Vec::new();
    let mut counted = std::collections::HashSet::new();
    loop {
        if watch.try_wait().unwrap().is_some() {
            break;
        }
        let running = fleet.running_workers();
        for index in 0..started {
            if counted.contains(&index) || running.contains(&index) {
                continue;
            }
            counted.insert(index);
            if let Some(status) = fleet.worker_exit_status(index) {
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGABRT),
                    "worker {index} ended with {status}, not at the crash point\n{}",
                    fleet.worker_log(index)
                );
                crashes.push(index);
            }
        }
        assert!(
            crashes.len() <= 3,
            "workers died {} times on one task and the fleet still gives it to them\n{}",
            crashes.len(),
            logs_tail(&fleet)
        );
        for _ in running.len()..WORKERS {
            started = fleet.start_worker_with_env(&worker_env).await + 1;
        }
        assert!(
            Instant::now() < deadline,
            "the pass did not end within {PASS_LIMIT:?} ({} crashes)\n{}",
            crashes.len(),
            logs_tail(&fleet)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = finish(watch).await;
    assert_eq!(
        crashes.len(),
        3,
        "three deliveries crash, the fourth is dead-lettered\n{}",
        logs_tail(&fleet)
    );
    // One pair failed (6, "other fatal error"), every other one completed.
    assert_eq!(out.code, 6, "ctl watch {id}\n{out}\n{}", logs_tail(&fleet));
    let rows = out.array("pairs");
    let bad = row_of(&rows, &pairs[poison].src.user, "source");
    assert_eq!(bad["status"], "failed", "{bad:#}");
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(CRASHED) && error.contains("mailferry ctl dead-letters"),
        "the poisoned pair's error does not say what happened: {error:?}"
    );
    for (i, p) in pairs.iter().enumerate().filter(|(i, _)| *i != poison) {
        let r = row_of(&rows, &p.src.user, "source");
        assert_eq!(r["status"], "completed", "pair {i}: {r:#}");
    }
    assert_exact_except(&pairs, poison).await;

    let dead = fleet.ctl(&["dead-letters", "--json"]).await;
    assert_eq!(dead.code, 0, "{dead}");
    let letters = dead.array("dead_letters");
    assert_eq!(letters.len(), 1, "one dead letter expected: {letters:#?}");
    assert_eq!(letters[0]["pair_id"], bad["id"], "{letters:#?}");
    let reason = letters[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(CRASHED), "dead letter reason: {reason:?}");
}

/// A task that panics is that task's failure, never a dead worker: the worker keeps its
/// process, the pair fails with an internal-error reason, the other pairs are copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_its_pair_and_the_worker_lives_on() {
    let pairs = seeded_pairs("poisonpa", 3, 52_000).await;
    let poison = 0;
    let armed = format!("task_panic@{}", pairs[poison].src.user);
    let env = FleetEnv::shared();
    let mut fleet = Fleet::start(
        &env,
        FleetOptions {
            workers: 0,
            concurrency: 2,
            lease_ttl_secs: Some(6),
            ..FleetOptions::default()
        },
    )
    .await;
    let worker = fleet
        .start_worker_with_env(&[("MAILFERRY_FAILPOINT", armed.as_str())])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let id = create(&fleet, &write_csv(dir.path(), &pairs)).await;
    let out = fleet
        .ctl_with(&["watch", &id, "--json"], &[], PASS_LIMIT)
        .await;
    // The one worker ever started still runs: the panic did not take its process down.
    assert_eq!(
        fleet.running_workers(),
        vec![worker],
        "the worker died\n{}",
        logs_tail(&fleet)
    );
    assert!(
        fleet
            .worker_log(worker)
            .contains("failpoint task_panic reached"),
        "the armed task never ran\n{}",
        logs_tail(&fleet)
    );
    assert_eq!(out.code, 6, "ctl watch {id}\n{out}\n{}", logs_tail(&fleet));
    let rows = out.array("pairs");
    let bad = row_of(&rows, &pairs[poison].src.user, "source");
    assert_eq!(bad["status"], "failed", "{bad:#}");
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("internal error while")
            && error.contains(PANICKED)
            && error.contains("failpoint task_panic reached")
            && error.contains("please report it"),
        "the panicking pair's error: {error:?}"
    );
    for (i, p) in pairs.iter().enumerate().filter(|(i, _)| *i != poison) {
        let r = row_of(&rows, &p.src.user, "source");
        assert_eq!(r["status"], "completed", "pair {i}: {r:#}");
    }
    assert_exact_except(&pairs, poison).await;
}

/// The embedded mode: a panic in one pair's task of a `migrate --batch` fails that pair; the
/// other pairs finish, and the exit code is the README's for a failed pair (6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_pair_of_a_batch_fails_alone() {
    let pairs = seeded_pairs("poisonem", 3, 53_000).await;
    let poison = 2;
    let armed = format!("task_panic@{}", pairs[poison].src.user);
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), &pairs);
    let state = dir.path().join("state");
    let mut cmd = bare_command();
    cmd.arg("migrate")
        .arg("--batch")
        .arg(&csv)
        .args(endpoint_args())
        .arg("--state")
        .arg(&state)
        .arg("--json")
        .env("MAILFERRY_FAILPOINT", &armed);
    let out = match tokio::time::timeout(PASS_LIMIT, cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("migrate --batch did not end within {PASS_LIMIT:?}"),
    };
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&out.stdout).ok(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::ZERO,
    };
    assert_eq!(out.code, 6, "{out}");
    let summaries: Vec<Value> = out
        .array("pairs")
        .into_iter()
        .map(|p| p["summary"].clone())
        .collect();
    assert_eq!(summaries.len(), pairs.len(), "{out}");
    let bad = row_of(&summaries, &pairs[poison].src.user, "source");
    assert_eq!(bad["status"], "failed", "{bad:#}");
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("internal error while")
            && error.contains(PANICKED)
            && error.contains("please report it"),
        "the panicking pair's error: {error:?}"
    );
    for (i, p) in pairs.iter().enumerate().filter(|(i, _)| *i != poison) {
        let s = row_of(&summaries, &p.src.user, "source");
        assert_eq!(s["status"], "completed", "pair {i}: {s:#}");
    }
    assert_exact_except(&pairs, poison).await;
}
