//! The fleet at a hosting provider's scale, where connection slots are what runs short: real
//! `mailferry coordinator` and `worker` processes over the machine's RabbitMQ and Redis,
//! migrating between the two private Dovecot servers.
//!
//! - Many more pairs than a server's connection limit allows at once: `ctl create` of them all
//!   never fails for lack of slots (its login probe waits its turn in the fleet's slot queues
//!   and keeps no session), and every pair completes exactly.
//! - A fresh store: `ctl watch` says why nothing is copied yet, and how long for; a fleet that
//!   has run does not wait again.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailferry_tests::cli::Output;
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions};
use mailferry_tests::{Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot};

/// How long one pass may take before `ctl watch` is given up on (a debug build on 2 cores).
const WATCH_LIMIT: Duration = Duration::from_secs(400);

/// One source and its (initially empty) target.
struct Pair {
    src: TestAccount,
    dst: TestAccount,
    messages: usize,
}

/// `count` sources of `messages` small messages in INBOX each, with empty targets.
async fn pairs(prefix: &str, count: usize, messages: usize) -> Vec<Pair> {
    let servers = TestServers::get();
    let srcs = servers.new_users(Side::Source, prefix, count).unwrap();
    let dsts = servers.new_users(Side::Target, prefix, count).unwrap();
    for (i, src) in srcs.iter().enumerate() {
        let mut g = Fixtures::new(7_000 + i as u64);
        let mut c = ImapClient::connect(src).await.unwrap();
        let batch: Vec<_> = (0..messages).map(|_| g.ordinary()).collect();
        c.append_all("INBOX", &batch).await.unwrap();
        c.logout().await;
    }
    srcs.into_iter()
        .zip(dsts)
        .map(|(src, dst)| Pair { src, dst, messages })
        .collect()
}

/// The batch file of `ctl create --batch`.
fn write_csv(dir: &Path, pairs: &[Pair]) -> PathBuf {
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

/// `ctl create --batch CSV --json` (plain IMAP on loopback).
async fn create(fleet: &Fleet, csv: &Path) -> Output {
    let servers = TestServers::get();
    let src = format!("imap://127.0.0.1:{}", servers.ports(Side::Source).imap);
    let dst = format!("imap://127.0.0.1:{}", servers.ports(Side::Target).imap);
    let csv = csv.to_string_lossy();
    fleet
        .ctl_with(
            &[
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
            ],
            &[],
            WATCH_LIMIT,
        )
        .await
}

/// Every target holds exactly its source's INBOX.
async fn assert_exact(pairs: &[Pair]) {
    for p in pairs {
        let source = snapshot(&p.src).await.unwrap();
        let target = snapshot(&p.dst).await.unwrap();
        if let Err(diff) = compare(&source, &target, &[("INBOX", "INBOX")]) {
            panic!(
                "{} -> {}: not an exact copy:\n{diff}",
                p.src.user, p.dst.user
            );
        }
        let all: usize = target.counts().values().sum();
        assert_eq!(all, p.messages, "{}: {:?}", p.dst.user, target.counts());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_more_pairs_than_a_server_allows_at_once_never_fails() {
    // 30 pairs, 4 sessions allowed per server, two workers: the probe of every pair and then
    // every task queue for the same few slots of each server.
    let pairs = pairs("slots", 30, 3).await;
    let env = FleetEnv::shared();
    let fleet = Fleet::start(
        &env,
        FleetOptions {
            workers: 2,
            concurrency: 4,
            worker_args: vec!["--host-connections".into(), "4".into()],
            ..FleetOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), &pairs);
    let created = create(&fleet, &csv).await;
    assert_eq!(
        created.code,
        0,
        "ctl create of {} pairs with 4 sessions per server\n{created}\n--- fleet logs ---\n{}",
        pairs.len(),
        fleet.logs()
    );
    assert!(
        !created
            .stderr
            .contains("are in use by other mailferry workers"),
        "{created}"
    );
    let id = created.str("id").to_owned();
    let watched = fleet
        .ctl_with(&["watch", &id, "--json"], &[], WATCH_LIMIT)
        .await;
    assert_eq!(
        watched.code,
        0,
        "ctl watch\n{watched}\n--- fleet logs ---\n{}",
        fleet.logs()
    );
    let rows = watched.array("pairs");
    assert_eq!(rows.len(), pairs.len());
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r:#}");
    }
    assert_exact(&pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_says_why_the_first_copy_waits_and_only_once() {
    let pairs = pairs("fresh", 2, 2).await;
    let env = FleetEnv::shared();
    let fleet = Fleet::start(
        &env,
        FleetOptions {
            lease_ttl_secs: Some(20),
            timeout_secs: Some(15),
            ..FleetOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    let csv = write_csv(first.path(), &pairs[..1]);
    let created = create(&fleet, &csv).await;
    assert_eq!(created.code, 0, "{created}");
    let id = created.str("id").to_owned();
    // Text mode: the progress lines are what an operator reads.
    let watched = fleet.ctl_with(&["watch", &id], &[], WATCH_LIMIT).await;
    assert_eq!(watched.code, 0, "{watched}");
    let line = watched
        .stderr
        .lines()
        .find(|l| l.contains("before the first copy"))
        .unwrap_or_else(|| {
            panic!(
                "no progress line said why nothing was copied yet\n{watched}\n--- fleet logs ---\n{}",
                fleet.logs()
            )
        });
    assert!(
        line.contains(
            "s before the first copy: a fresh or flushed Redis (see README, \"A fresh or flushed Redis\")"
        ) && line.contains("— waiting "),
        "{line}"
    );
    let seconds: u64 = line
        .split("— waiting ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number of seconds in {line:?}"));
    assert!((1..=20).contains(&seconds), "{line}");
    assert_exact(&pairs[..1]).await;

    // The store is no longer new: the next migration copies at once.
    let csv = write_csv(dir.path(), &pairs[1..]);
    let created = create(&fleet, &csv).await;
    assert_eq!(created.code, 0, "{created}");
    let id = created.str("id").to_owned();
    let watched = fleet.ctl_with(&["watch", &id], &[], WATCH_LIMIT).await;
    assert_eq!(watched.code, 0, "{watched}");
    assert!(
        !watched.stderr.contains("before the first copy"),
        "{watched}"
    );
    assert!(
        watched.elapsed < Duration::from_secs(20),
        "the second migration took {:?}",
        watched.elapsed
    );
    assert_exact(&pairs[1..]).await;
}
