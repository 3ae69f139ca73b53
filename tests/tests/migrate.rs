//! Scenario tests of `mailferry migrate` and `mailferry check` against the two private Dovecot
//! servers: each seeds a fresh source (and sometimes target) account with the harness's own
//! IMAP client, runs the real binary, and then proves the result by reading **both** sides
//! back independently (`snapshot` on source and target, compared through a folder mapping that
//! is written out by hand here, never computed by the code under test).
//!
//! Source: Maildir++, prefix `INBOX.`, separator `.`, localized special-use names. Target:
//! LAYOUT=fs, no prefix, separator `/`, `Sent` and `Trash` auto-created. So source `INBOX.x.y`
//! lands on target `x/y`, `INBOX.Sent Items` on `Sent`, `INBOX.Deleted Items` on `Trash`.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use mailferry_tests::cli::{Output, run_check, run_migrate};
use mailferry_tests::verify::{MailboxSnapshot, bodies_in_uid_order, personal_only};
use mailferry_tests::{
    Fixture, Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot,
    snapshot_with, statuses, unchanged,
};
use serde_json::Value;

/// A source and a target account for one test, and a private state directory.
struct Pair {
    src: TestAccount,
    dst: TestAccount,
    state: tempfile::TempDir,
}

impl Pair {
    fn new(src_prefix: &str, dst_prefix: &str) -> Pair {
        let servers = TestServers::get();
        Pair {
            src: servers.new_user(Side::Source, src_prefix).unwrap(),
            dst: servers.new_user(Side::Target, dst_prefix).unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> String {
        self.state.path().to_string_lossy().into_owned()
    }

    /// `mailferry migrate --json --state DIR EXTRA…`; panics when it cannot run or times out.
    async fn migrate(&self, extra: &[&str]) -> Output {
        let state = self.state();
        let mut args = vec!["--state", state.as_str()];
        args.extend_from_slice(extra);
        let out = run_migrate(&self.src, &self.dst, &args).await.unwrap();
        eprintln!("migrate {extra:?}: exit {} in {:?}", out.code, out.elapsed);
        out
    }

    /// Deletes the state directory (the cache), keeping the path usable.
    fn forget_state(&self) {
        std::fs::remove_dir_all(self.state.path()).unwrap();
        std::fs::create_dir_all(self.state.path()).unwrap();
    }

    async fn source(&self) -> MailboxSnapshot {
        snapshot_with(&self.src, personal_only).await.unwrap()
    }

    async fn target(&self) -> MailboxSnapshot {
        snapshot(&self.dst).await.unwrap()
    }
}

/// One folder to seed: raw name, subscribe it, messages.
struct Seed<'a> {
    name: &'a str,
    subscribe: bool,
    messages: &'a [Fixture],
}

/// Creates (unless INBOX), optionally subscribes, and fills each folder, in order.
async fn seed(account: &TestAccount, folders: &[Seed<'_>]) {
    let mut c = ImapClient::connect(account).await.unwrap();
    for f in folders {
        if f.name != "INBOX" {
            c.create(f.name).await.unwrap();
        }
        if f.subscribe {
            c.subscribe(f.name).await.unwrap();
        }
        c.append_all(f.name, f.messages).await.unwrap();
    }
    c.logout().await;
}

/// Fills the INBOX only.
async fn seed_inbox(account: &TestAccount, messages: &[Fixture]) {
    seed(
        account,
        &[Seed {
            name: "INBOX",
            subscribe: false,
            messages,
        }],
    )
    .await;
}

fn refs(v: &[Fixture]) -> Vec<&Fixture> {
    v.iter().collect()
}

fn bytes(v: &[&[Fixture]]) -> u64 {
    v.iter()
        .flat_map(|f| f.iter())
        .map(|f| f.raw.len() as u64)
        .sum()
}

#[track_caller]
fn assert_exact(src: &MailboxSnapshot, dst: &MailboxSnapshot, mapping: &[(&str, &str)]) {
    if let Err(diff) = compare(src, dst, mapping) {
        panic!("target is not an exact copy of the source:\n{diff}");
    }
}

#[track_caller]
fn assert_unchanged(before: &MailboxSnapshot, after: &MailboxSnapshot, what: &str) {
    if let Err(diff) = unchanged(before, after) {
        panic!("{what}: the target changed:\n{diff}");
    }
}

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.code, code, "unexpected exit code\n{out}");
}

/// Per target folder (decoded name) from `folder_details`: (copied, already_present, excluded,
/// failed), summed over the source folders that map to it.
fn details(out: &Output) -> BTreeMap<String, [u64; 4]> {
    let mut m: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for d in out.array("folder_details") {
        let target = d["target"].as_str().unwrap_or_default().to_owned();
        let e = m.entry(target).or_default();
        for (i, field) in ["copied", "already_present", "excluded", "failed"]
            .iter()
            .enumerate()
        {
            e[i] += d[*field].as_u64().unwrap_or_default();
        }
    }
    m
}

fn failure_kinds(out: &Output) -> Vec<String> {
    out.array("failures")
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn warning_codes(out: &Output) -> Vec<String> {
    out.array("warnings")
        .iter()
        .map(|w| w["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Exact copy, rerun, rerun without state.
// ---------------------------------------------------------------------------------------------

const SENT_ITEMS: &str = "INBOX.Sent Items";
const DELETED_ITEMS: &str = "INBOX.Deleted Items";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_copy_then_reruns_copy_nothing() {
    let pair = Pair::new("exact", "exact");
    let mut g = Fixtures::new(1_001);
    let (twin_a, twin_b) = g.same_ids_pair();
    let dup = g.duplicate();
    let inbox = vec![
        g.ordinary(),
        g.ordinary(),
        g.multipart(),
        g.eight_bit_headers(),
        g.long_line(100_000),
        g.malformed_mime(),
        g.empty_body(),
        g.header_only(),
        g.no_message_id(),
        twin_a,
        twin_b,
        g.all_flags(),
        dup.clone(),
        dup.clone(),
        dup,
        g.ordinary().with_flags(&["\\Deleted", "\\Seen"]),
        g.ordinary().with_flags(&["$Forwarded", "$MDNSent", "Work"]),
    ];
    let sent = g.across_zones();
    let trash = vec![g.ordinary(), g.ordinary().with_flags(&["\\Deleted"])];
    let projects = vec![g.multipart(), g.eight_bit_headers(), g.no_message_id()];
    let nested = vec![g.big(21 * 1024 * 1024), g.ordinary()];
    let flags = vec![g.all_flags(), g.ordinary().with_flags(&[])];
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: true,
                messages: &inbox,
            },
            Seed {
                name: SENT_ITEMS,
                subscribe: true,
                messages: &sent,
            },
            Seed {
                name: DELETED_ITEMS,
                subscribe: false,
                messages: &trash,
            },
            Seed {
                name: "INBOX.Projects",
                subscribe: true,
                messages: &projects,
            },
            Seed {
                name: "INBOX.Projects.2024",
                subscribe: true,
                messages: &nested,
            },
            Seed {
                name: "INBOX.Flags",
                subscribe: false,
                messages: &flags,
            },
        ],
    )
    .await;
    let mapping = [
        ("INBOX", "INBOX"),
        (SENT_ITEMS, "Sent"),
        (DELETED_ITEMS, "Trash"),
        ("INBOX.Projects", "Projects"),
        ("INBOX.Projects.2024", "Projects/2024"),
        ("INBOX.Flags", "Flags"),
    ];
    let all: [&[Fixture]; 6] = [&inbox, &sent, &trash, &projects, &nested, &flags];
    let total: u64 = all.iter().map(|f| f.len() as u64).sum();

    let src_before = pair.source().await;
    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    // Issue 14: a successful run ends quietly, and stderr that is no terminal gets no colour.
    assert!(
        !out.stderr.contains('\x1b') && !out.stderr.contains("not released"),
        "{out}"
    );
    let src_after = pair.source().await;
    assert_unchanged(&src_before, &src_after, "the source must never be changed");
    let dst = pair.target().await;
    assert_exact(&src_after, &dst, &mapping);
    for (folder, fixtures) in mapping.iter().map(|(_, d)| *d).zip(all) {
        if let Err(diff) = dst.expect_fixtures(folder, &refs(fixtures)) {
            panic!("{folder} does not hold exactly its fixtures:\n{diff}");
        }
    }
    let dup_copies = dst.folder("INBOX").unwrap().bodies()[&inbox[12].sha256()];
    assert_eq!(dup_copies, 3, "a genuine duplicate x3 must stay x3");

    // One pass appends in ascending source UID order.
    for (s, d) in [
        ("INBOX", "INBOX"),
        (SENT_ITEMS, "Sent"),
        ("INBOX.Flags", "Flags"),
    ] {
        assert_eq!(
            bodies_in_uid_order(&pair.dst, d).await.unwrap(),
            bodies_in_uid_order(&pair.src, s).await.unwrap(),
            "{d}: not in source UID order"
        );
    }

    // The summary's numbers are what is on the target.
    assert_eq!(out.str("status"), "completed", "{out}");
    assert_eq!(out.u64("messages_copied"), total, "{out}");
    assert_eq!(out.u64("planned"), total, "{out}");
    assert_eq!(out.u64("already_present"), 0, "{out}");
    assert_eq!(out.u64("failed"), 0, "{out}");
    assert_eq!(out.u64("excluded"), 0, "{out}");
    assert_eq!(out.u64("bytes_copied"), bytes(&all), "{out}");
    let on_target: usize = mapping.iter().map(|(_, d)| dst.count(d)).sum();
    assert_eq!(on_target as u64, total);
    let per_folder = details(&out);
    for (_, d) in mapping {
        let copied = per_folder.get(d).map_or(0, |e| e[0]);
        assert_eq!(copied, dst.count(d) as u64, "folder_details for {d}\n{out}");
    }
    // Projects and Projects/2024 and Flags created; INBOX, Sent and Trash existed.
    assert_eq!(out.u64("folders_created"), 3, "{out}");

    // A second run copies nothing and changes nothing.
    let status_before = statuses(&pair.dst).await.unwrap();
    let again = pair.migrate(&[]).await;
    assert_code(&again, 0);
    assert_eq!(again.u64("messages_copied"), 0, "{again}");
    assert_eq!(again.u64("already_present"), total, "{again}");
    assert_eq!(again.u64("folders_created"), 0, "{again}");
    assert_unchanged(&dst, &pair.target().await, "second run");
    assert_eq!(status_before, statuses(&pair.dst).await.unwrap());

    // Without its state directory it decides from the target alone: still nothing.
    pair.forget_state();
    let fresh = pair.migrate(&[]).await;
    assert_code(&fresh, 0);
    assert_eq!(fresh.u64("messages_copied"), 0, "{fresh}");
    assert_eq!(fresh.u64("already_present"), total, "{fresh}");
    assert_unchanged(&dst, &pair.target().await, "run without state");
    assert_eq!(status_before, statuses(&pair.dst).await.unwrap());
    assert_unchanged(&src_before, &pair.source().await, "source after reruns");
}

// ---------------------------------------------------------------------------------------------
// 2. Folder names.
// ---------------------------------------------------------------------------------------------

/// Source raw name → expected target raw name, computed by hand (modified UTF-7, RFC 3501
/// §5.1.3, checked against Python's UTF-16 + base64, never against mailferry's codec).
const NAMES: &[(&str, &str)] = &[
    // "Ärger" with a-umlaut: U+00E4 → &AOQ-.
    ("INBOX.&AOQ-rger", "&AOQ-rger"),
    // "Grüße": U+00FC U+00DF, one base64 run.
    ("INBOX.Gr&APwA3w-e", "Gr&APwA3w-e"),
    // "日本語": U+65E5 U+672C U+8A9E.
    ("INBOX.&ZeVnLIqe-", "&ZeVnLIqe-"),
    // "Fun 😀": U+1F600 is the surrogate pair D83D DE00.
    ("INBOX.Fun &2D3eAA-", "Fun &2D3eAA-"),
    // "Tom & Jerry".
    ("INBOX.Tom &- Jerry", "Tom &- Jerry"),
    ("INBOX.With  two spaces ", "With  two spaces "),
    ("INBOX.Say \"hi\"", "Say \"hi\""),
    ("INBOX.back\\slash", "back\\slash"),
    // Two names differing only in case.
    ("INBOX.Case", "Case"),
    ("INBOX.case", "case"),
    // Nested, three levels.
    ("INBOX.Parent", "Parent"),
    ("INBOX.Parent.Child", "Parent/Child"),
    ("INBOX.Parent.Child.&AMk-t&AOk-", "Parent/Child/&AMk-t&AOk-"),
    // Empty folder.
    ("INBOX.Empty", "Empty"),
    // Only the child exists; INBOX.p is \Noselect on the source.
    ("INBOX.p.c", "p/c"),
];

/// A source folder already named like the replacement of [`SLASHED`]'s twin: `INBOX.x/y`
/// would become `x_y`, which `INBOX.x_y` takes, so it becomes `x_y (2)` (issue 2: "on
/// collision ` (2)` is appended").
const COLLIDING: [(&str, &str); 2] = [("INBOX.x_y", "x_y"), ("INBOX.x/y", "x_y (2)")];

/// A `/` inside a source name component (legal on the source thanks to listescape) is the
/// target's delimiter: it becomes `_`, with a warning.
const SLASHED: (&str, &str) = ("INBOX.a/b", "a_b");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_names_survive_encoding_and_delimiters() {
    let pair = Pair::new("names", "names");
    let mut g = Fixtures::new(2_002);
    let mut folders: Vec<(&str, Vec<Fixture>, bool)> = Vec::new();
    for (i, (name, _)) in NAMES.iter().enumerate() {
        let messages = if *name == "INBOX.Empty" {
            Vec::new()
        } else {
            (0..1 + i % 2).map(|_| g.ordinary()).collect()
        };
        folders.push((name, messages, i % 3 != 0));
    }
    let slashed = vec![g.ordinary()];
    let inbox = vec![g.ordinary()];
    let mut seeds: Vec<Seed<'_>> = vec![Seed {
        name: "INBOX",
        subscribe: true,
        messages: &inbox,
    }];
    seeds.extend(folders.iter().map(|(name, messages, subscribe)| Seed {
        name,
        subscribe: *subscribe,
        messages,
    }));
    seeds.push(Seed {
        name: SLASHED.0,
        subscribe: true,
        messages: &slashed,
    });
    let colliding = [vec![g.ordinary()], vec![g.ordinary(), g.ordinary()]];
    for ((name, _), messages) in COLLIDING.iter().zip(&colliding) {
        seeds.push(Seed {
            name,
            subscribe: false,
            messages,
        });
    }
    seed(&pair.src, &seeds).await;

    let src = pair.source().await;
    assert!(
        !src.info("INBOX.p").unwrap().selectable(),
        "harness: INBOX.p should be \\Noselect: {:?}",
        src.info("INBOX.p")
    );
    for (name, _) in NAMES {
        assert!(src.info(name).is_some(), "harness: {name:?} not created");
    }

    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    let dst = pair.target().await;

    let mut mapping: Vec<(&str, &str)> = vec![("INBOX", "INBOX"), SLASHED];
    mapping.extend(COLLIDING);
    mapping.extend(NAMES.iter().copied());
    assert_exact(&src, &dst, &mapping);

    // Every expected name exists, selectable; the empty one is empty.
    for (_, want) in &mapping {
        let info = dst
            .info(want)
            .unwrap_or_else(|| panic!("target lacks {want:?}; it has {:?}", dst.counts()));
        assert!(info.selectable(), "{info:?}");
    }
    assert_eq!(dst.count("Empty"), 0);
    // The non-selectable source parent exists on the target too.
    assert!(
        dst.info("p").is_some(),
        "target lacks parent p: {:?}",
        dst.counts()
    );
    // The slash was not split into a hierarchy.
    assert!(
        dst.info("a").is_none() && dst.info("a/b").is_none(),
        "{:?}",
        dst.counts()
    );
    assert!(
        warning_codes(&out)
            .iter()
            .any(|c| c == "delimiter_replaced"),
        "no delimiter_replaced warning\n{out}"
    );

    // No folder beyond the mapped ones (plus the auto-created Sent and Trash, and the parent).
    let mut expected: Vec<&str> = mapping.iter().map(|(_, d)| *d).collect();
    expected.extend(["Sent", "Trash", "p"]);
    expected.sort();
    let mut have: Vec<&str> = dst.folders.keys().map(String::as_str).collect();
    have.sort();
    assert_eq!(have, expected, "target folder list");

    // Subscriptions: exactly the mapped subscribed ones (plus what the target subscribes by
    // itself, which we read before the migration would be better; Sent/Trash are auto-created
    // without subscription here).
    let want_subs: Vec<&str> = mapping
        .iter()
        .filter(|(s, _)| src.subscriptions.contains(*s))
        .map(|(_, d)| *d)
        .collect();
    for s in &want_subs {
        assert!(dst.subscriptions.contains(*s), "{s:?} not subscribed");
    }
    let not_subscribed: Vec<&str> = mapping
        .iter()
        .filter(|(s, _)| !src.subscriptions.contains(*s))
        .map(|(_, d)| *d)
        .collect();
    for s in &not_subscribed {
        assert!(
            !dst.subscriptions.contains(*s),
            "{s:?} subscribed on the target but not on the source"
        );
    }

    // Other namespaces stay behind: no Public or Virtual folder, and the one public message
    // is nowhere on the target.
    for f in dst.folders.keys() {
        assert!(
            !f.starts_with("Public") && !f.starts_with("Virtual"),
            "other namespace copied: {f:?}"
        );
    }
    let src_total: usize = mapping.iter().map(|(s, _)| src.count(s)).sum();
    let dst_total: usize = dst.counts().values().sum();
    assert_eq!(dst_total, src_total, "{:?}", dst.counts());
    assert_eq!(out.u64("messages_copied"), src_total as u64, "{out}");
    let skipped = out.json()["skipped_folders"].to_string();
    assert!(
        skipped.contains("All Mail") || warning_codes(&out).iter().any(|c| c.contains("virtual")),
        "the virtual folder is not reported as skipped\n{out}"
    );
    // Skipped folders are named as people read folder names, `/` between levels (issue 14).
    assert!(
        !skipped.contains("Virtual.") && !skipped.contains("Public."),
        "a skipped folder named with the server's delimiter\n{skipped}"
    );

    // And a rerun is a no-op on these names too.
    let again = pair.migrate(&[]).await;
    assert_code(&again, 0);
    assert_eq!(again.u64("messages_copied"), 0, "{again}");
    assert_unchanged(&dst, &pair.target().await, "rerun");
}

// ---------------------------------------------------------------------------------------------
// 3. Mail already on the target.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_already_on_the_target_is_not_duplicated() {
    let pair = Pair::new("present", "present");
    let mut g = Fixtures::new(3_003);
    let mut inbox: Vec<Fixture> = (0..6).map(|_| g.ordinary()).collect();
    // A genuine duplicate x3 and a same-headers pair: the target will hold one of each, so it
    // is owed two more copies of the first and only the other twin.
    let dup = g.duplicate();
    let (twin_a, twin_b) = g.same_ids_pair();
    inbox.extend([
        dup.clone(),
        twin_a,
        dup.clone(),
        twin_b.clone(),
        dup.clone(),
    ]);
    let work: Vec<Fixture> = vec![g.ordinary(), g.multipart(), g.no_message_id(), g.ordinary()];
    let own = g.ordinary();
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: false,
                messages: &inbox,
            },
            Seed {
                name: "INBOX.Work",
                subscribe: false,
                messages: &work,
            },
        ],
    )
    .await;
    // On the target: two of INBOX's ordinary messages, one of the target user's own, one copy
    // of the duplicate, the second twin; and Work with the message that has no Message-ID.
    let pre_inbox = vec![
        inbox[1].clone(),
        own.clone(),
        dup.clone(),
        inbox[4].clone(),
        twin_b,
    ];
    let pre_work = vec![work[2].clone()];
    seed(
        &pair.dst,
        &[
            Seed {
                name: "INBOX",
                subscribe: false,
                messages: &pre_inbox,
            },
            Seed {
                name: "Work",
                subscribe: false,
                messages: &pre_work,
            },
        ],
    )
    .await;

    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    assert_eq!(out.u64("already_present"), 5, "{out}");
    assert_eq!(out.u64("messages_copied"), 10, "{out}");
    let d = details(&out);
    assert_eq!(d.get("INBOX").map(|e| (e[0], e[1])), Some((7, 4)), "{out}");
    assert_eq!(d.get("Work").map(|e| (e[0], e[1])), Some((3, 1)), "{out}");

    let dst = pair.target().await;
    let mut want_inbox = refs(&inbox);
    want_inbox.push(&own);
    dst.expect_fixtures("INBOX", &want_inbox).unwrap();
    dst.expect_fixtures("Work", &refs(&work)).unwrap();
    assert_eq!(dst.folder("INBOX").unwrap().bodies()[&dup.sha256()], 3);
    assert_exact(&pair.source().await, &dst, &[("INBOX.Work", "Work")]);

    let again = pair.migrate(&[]).await;
    assert_code(&again, 0);
    assert_eq!(again.u64("messages_copied"), 0, "{again}");
    assert_eq!(again.u64("already_present"), 15, "{again}");
    assert_unchanged(&dst, &pair.target().await, "rerun");
}

// ---------------------------------------------------------------------------------------------
// 4. Over quota, then the quota is raised.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_fails_per_message_and_a_rerun_after_raising_it_completes() {
    let servers = TestServers::get();
    let pair = Pair::new("quota", "smallquota");
    let mut g = Fixtures::new(4_004);
    // 8 × 200 kB = 1.6 MB against a 1 MiB quota: about five fit.
    let inbox: Vec<Fixture> = (0..8).map(|_| g.big(200_000)).collect();
    let small = vec![g.ordinary()];
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: false,
                messages: &inbox,
            },
            Seed {
                name: "INBOX.Later",
                subscribe: false,
                messages: &small,
            },
        ],
    )
    .await;
    let src = pair.source().await;

    let out = pair.migrate(&[]).await;
    assert_code(&out, 3);
    assert_eq!(out.str("status"), "completed_with_failures", "{out}");
    let failed = out.u64("failed");
    let copied = out.u64("messages_copied");
    assert!(failed >= 1, "{out}");
    assert_eq!(copied + failed, 9, "{out}");
    let failures = out.array("failures");
    assert_eq!(failures.len() as u64, failed, "{out}");
    for f in &failures {
        assert_eq!(f["kind"], "over_quota", "{f}");
        assert!(
            !f["advice"].as_str().unwrap_or_default().is_empty(),
            "no advice: {f}"
        );
        assert!(f["uid"].as_u64().unwrap_or_default() > 0, "{f}");
        assert!(f["size"].as_u64().unwrap_or_default() > 0, "{f}");
    }
    // What got in is intact and accounted for: every target message is a source message.
    let dst = pair.target().await;
    let on_target = dst.count("INBOX") + dst.count("Later");
    assert_eq!(on_target as u64, copied, "{:?}", dst.counts());
    let src_bodies = src.folder("INBOX").unwrap().bodies();
    for (body, n) in dst.folder("INBOX").unwrap().bodies() {
        assert!(
            src_bodies.get(&body).is_some_and(|m| *m >= n),
            "foreign body"
        );
    }

    servers
        .set_quota(&pair.dst, Some(64 * 1024 * 1024))
        .unwrap();
    let rerun = pair.migrate(&[]).await;
    assert_code(&rerun, 0);
    assert_eq!(rerun.u64("messages_copied"), failed, "{rerun}");
    assert_eq!(rerun.u64("already_present"), copied, "{rerun}");
    assert_exact(
        &src,
        &pair.target().await,
        &[("INBOX", "INBOX"), ("INBOX.Later", "Later")],
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Too large for the target, then left out with --max-size.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_messages_fail_or_are_excluded_with_max_size() {
    let pair = Pair::new("toolarge", "smallmsg");
    let mut g = Fixtures::new(5_005);
    let small: Vec<Fixture> = vec![g.ordinary(), g.long_line(50_000), g.ordinary()];
    let large: Vec<Fixture> = vec![g.big(150_000), g.big(300_000)];
    // Interleaved: small, large, small, large, small.
    let inbox = vec![
        small[0].clone(),
        large[0].clone(),
        small[1].clone(),
        large[1].clone(),
        small[2].clone(),
    ];
    seed_inbox(&pair.src, &inbox).await;

    let out = pair.migrate(&[]).await;
    assert_code(&out, 3);
    assert_eq!(out.u64("messages_copied"), 3, "{out}");
    assert_eq!(out.u64("failed"), 2, "{out}");
    assert_eq!(failure_kinds(&out), ["too_large", "too_large"], "{out}");
    let mut sizes: Vec<u64> = out
        .array("failures")
        .iter()
        .map(|f| f["size"].as_u64().unwrap_or_default())
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [large[0].raw.len() as u64, large[1].raw.len() as u64],
        "{out}"
    );
    for f in out.array("failures") {
        assert!(!f["advice"].as_str().unwrap_or_default().is_empty(), "{f}");
        // The exact size, never a rounded one that could read like the limit.
        let size = mailferry_proto::report::bytes_text(f["size"].as_u64().unwrap_or_default());
        assert!(
            f["reason"].as_str().unwrap_or_default().contains(&size),
            "{f}"
        );
    }
    let dst = pair.target().await;
    dst.expect_fixtures("INBOX", &refs(&small)).unwrap();

    // With --max-size the large ones are left out by choice: excluded, exit 0.
    let limited = pair.migrate(&["--max-size", "100K"]).await;
    assert_code(&limited, 0);
    assert_eq!(limited.u64("excluded"), 2, "{limited}");
    assert_eq!(limited.u64("failed"), 0, "{limited}");
    assert_eq!(limited.u64("messages_copied"), 0, "{limited}");
    assert_eq!(limited.u64("already_present"), 3, "{limited}");
    assert_unchanged(&dst, &pair.target().await, "--max-size rerun");

    // And on a fresh target, --max-size from the start.
    let servers = TestServers::get();
    let dst2 = servers.new_user(Side::Target, "smallmsg").unwrap();
    let state2 = tempfile::tempdir().unwrap();
    let state2 = state2.path().to_string_lossy().into_owned();
    let fresh = run_migrate(
        &pair.src,
        &dst2,
        &["--state", &state2, "--max-size", "100K"],
    )
    .await
    .unwrap();
    assert_code(&fresh, 0);
    assert_eq!(fresh.u64("excluded"), 2, "{fresh}");
    assert_eq!(fresh.u64("messages_copied"), 3, "{fresh}");
    snapshot(&dst2)
        .await
        .unwrap()
        .expect_fixtures("INBOX", &refs(&small))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. Options.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_reports_the_plan() {
    let pair = Pair::new("dryrun", "dryrun");
    let mut g = Fixtures::new(6_006);
    let inbox: Vec<Fixture> = (0..4).map(|_| g.ordinary()).collect();
    let sent = vec![g.ordinary(), g.ordinary()];
    let new = vec![g.ordinary(), g.multipart(), g.ordinary()];
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: true,
                messages: &inbox,
            },
            Seed {
                name: SENT_ITEMS,
                subscribe: true,
                messages: &sent,
            },
            Seed {
                name: "INBOX.New.Folder",
                subscribe: true,
                messages: &new,
            },
        ],
    )
    .await;
    // One message already there, so the plan is 8, not 9.
    seed(
        &pair.dst,
        &[Seed {
            name: "INBOX",
            subscribe: false,
            messages: &inbox[..1],
        }],
    )
    .await;
    let before = pair.target().await;
    let status_before = statuses(&pair.dst).await.unwrap();

    let out = pair.migrate(&["--dry-run"]).await;
    assert_code(&out, 0);
    assert_eq!(out.json()["dry_run"], Value::Bool(true), "{out}");
    assert_eq!(out.u64("planned"), 8, "{out}");
    assert_eq!(out.u64("messages_copied"), 0, "{out}");
    assert_eq!(out.u64("already_present"), 1, "{out}");
    assert_unchanged(&before, &pair.target().await, "--dry-run");
    assert_eq!(
        status_before,
        statuses(&pair.dst).await.unwrap(),
        "--dry-run"
    );

    // The real run then does what the dry run said.
    let real = pair.migrate(&[]).await;
    assert_code(&real, 0);
    assert_eq!(real.u64("messages_copied"), 8, "{real}");
    assert_exact(
        &pair.source().await,
        &pair.target().await,
        &[
            ("INBOX", "INBOX"),
            (SENT_ITEMS, "Sent"),
            ("INBOX.New.Folder", "New/Folder"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_deleted_leaves_deleted_messages_out() {
    let pair = Pair::new("skipdel", "skipdel");
    let mut g = Fixtures::new(6_106);
    let kept = vec![
        g.ordinary().with_flags(&["\\Seen"]),
        g.ordinary(),
        g.ordinary(),
    ];
    let deleted = [
        g.ordinary().with_flags(&["\\Deleted"]),
        g.ordinary().with_flags(&["\\Deleted", "\\Seen", "Work"]),
    ];
    let inbox = vec![
        kept[0].clone(),
        deleted[0].clone(),
        kept[1].clone(),
        deleted[1].clone(),
        kept[2].clone(),
    ];
    seed_inbox(&pair.src, &inbox).await;
    let out = pair.migrate(&["--skip-deleted"]).await;
    assert_code(&out, 0);
    assert_eq!(out.u64("messages_copied"), 3, "{out}");
    assert_eq!(out.u64("excluded"), 2, "{out}");
    pair.target()
        .await
        .expect_fixtures("INBOX", &refs(&kept))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_exclude_and_map_select_and_place_folders() {
    let pair = Pair::new("filters", "filters");
    let mut g = Fixtures::new(6_206);
    let mut make = |n: usize| -> Vec<Fixture> { (0..n).map(|_| g.ordinary()).collect() };
    let (inbox, keep, keep_sub, drop_sub, other) = (make(2), make(2), make(1), make(2), make(1));
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: false,
                messages: &inbox,
            },
            Seed {
                name: "INBOX.Keep",
                subscribe: false,
                messages: &keep,
            },
            Seed {
                name: "INBOX.Keep.Sub",
                subscribe: false,
                messages: &keep_sub,
            },
            Seed {
                name: "INBOX.Keep.Drop",
                subscribe: false,
                messages: &drop_sub,
            },
            Seed {
                name: "INBOX.Other",
                subscribe: false,
                messages: &other,
            },
        ],
    )
    .await;
    let out = pair
        .migrate(&["--include", "^Keep", "--exclude", "^Keep/Drop$"])
        .await;
    assert_code(&out, 0);
    assert_eq!(out.u64("messages_copied"), 3, "{out}");
    let src = pair.source().await;
    let dst = pair.target().await;
    assert_exact(
        &src,
        &dst,
        &[("INBOX.Keep", "Keep"), ("INBOX.Keep.Sub", "Keep/Sub")],
    );
    for absent in ["Keep/Drop", "Other"] {
        assert!(
            dst.info(absent).is_none(),
            "{absent} copied: {:?}",
            dst.counts()
        );
    }
    assert_eq!(dst.count("INBOX"), 0, "INBOX was not included");

    // --map, on another target: one folder elsewhere, its sibling where it was.
    let servers = TestServers::get();
    let dst2 = servers.new_user(Side::Target, "mapped").unwrap();
    let state2 = tempfile::tempdir().unwrap();
    let state2 = state2.path().to_string_lossy().into_owned();
    let mapped = run_migrate(
        &pair.src,
        &dst2,
        &["--state", &state2, "--map", "Keep/Drop=Elsewhere"],
    )
    .await
    .unwrap();
    assert_code(&mapped, 0);
    let dst2_snap = snapshot(&dst2).await.unwrap();
    assert_exact(
        &src,
        &dst2_snap,
        &[
            ("INBOX", "INBOX"),
            ("INBOX.Keep", "Keep"),
            ("INBOX.Keep.Sub", "Keep/Sub"),
            ("INBOX.Keep.Drop", "Elsewhere"),
            ("INBOX.Other", "Other"),
        ],
    );
    assert!(
        dst2_snap.info("Keep/Drop").is_none(),
        "mapped folder also copied under its own name: {:?}",
        dst2_snap.counts()
    );
}

// ---------------------------------------------------------------------------------------------
// 8. check.
// ---------------------------------------------------------------------------------------------

fn folder_figures(report: &Value, side: &str) -> BTreeMap<String, u64> {
    report[side]["folders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_owned(),
                f["messages"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn mapping_of(report: &Value) -> BTreeMap<String, String> {
    report["mapping"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["source"].as_str().unwrap_or_default().to_owned(),
                m["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_folders_mapping_and_blocking_quota() {
    let servers = TestServers::get();
    let pair = Pair::new("check", "check");
    let mut g = Fixtures::new(8_008);
    let inbox: Vec<Fixture> = (0..3).map(|_| g.ordinary()).collect();
    let sent = vec![g.ordinary(), g.ordinary()];
    let big = vec![g.big(700_000), g.big(700_000)];
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: false,
                messages: &inbox,
            },
            Seed {
                name: SENT_ITEMS,
                subscribe: false,
                messages: &sent,
            },
            Seed {
                name: "INBOX.Big.Files",
                subscribe: false,
                messages: &big,
            },
        ],
    )
    .await;
    seed(
        &pair.dst,
        &[Seed {
            name: "INBOX",
            subscribe: false,
            messages: &inbox[..1],
        }],
    )
    .await;
    let dst_before = pair.target().await;

    let out = run_check(&pair.src, &pair.dst, &[]).await.unwrap();
    assert_code(&out, 0);
    let report = out.json();
    let src_folders = folder_figures(report, "source");
    assert_eq!(src_folders.get("INBOX"), Some(&3), "{out}");
    assert_eq!(src_folders.get("Sent Items"), Some(&2), "{out}");
    assert_eq!(src_folders.get("Big/Files"), Some(&2), "{out}");
    let dst_folders = folder_figures(report, "target");
    assert_eq!(dst_folders.get("INBOX"), Some(&1), "{out}");
    let mapping = mapping_of(report);
    assert_eq!(
        mapping.get("INBOX").map(String::as_str),
        Some("INBOX"),
        "{out}"
    );
    assert_eq!(
        mapping.get("Sent Items").map(String::as_str),
        Some("Sent"),
        "{out}"
    );
    assert_eq!(
        mapping.get("Big/Files").map(String::as_str),
        Some("Big/Files"),
        "{out}"
    );
    assert!(
        !mapping
            .keys()
            .any(|k| k.contains("All Mail") || k.contains("Announcements")),
        "other namespaces in the mapping: {mapping:?}"
    );
    let with_mail = report["target_folders_with_mail"].to_string();
    assert!(with_mail.contains("INBOX"), "{out}");
    assert_unchanged(&dst_before, &pair.target().await, "check");

    // Issue 14: a target with a 100 KiB message limit that it does not advertise (Dovecot
    // offers no APPENDLIMIT): the check cannot know the limit and says so, naming the largest
    // message, instead of a plain all-clear.
    let smallmsg = servers.new_user(Side::Target, "smallmsg").unwrap();
    let out = run_check(&pair.src, &smallmsg, &[]).await.unwrap();
    assert_code(&out, 0);
    let unknown = out.json()["unknown"].to_string();
    assert!(
        unknown.contains("does not advertise APPENDLIMIT")
            && unknown.contains(" bytes (in \\\"Big/Files\\\")"),
        "{out}"
    );

    // A target whose quota cannot hold the source: a blocking problem, exit 3.
    let small = servers.new_user(Side::Target, "smallquota").unwrap();
    let out = run_check(&pair.src, &small, &[]).await.unwrap();
    assert_code(&out, 3);
    let problems = out.array("problems");
    assert!(
        problems.iter().any(|p| p["blocking"] == Value::Bool(true)),
        "no blocking problem\n{out}"
    );
    assert!(out.json()["quota_free"].as_u64().is_some(), "{out}");
    assert!(
        out.u64("bytes_needed") > servers.smallquota_bytes(),
        "{out}"
    );
}

/// A byte budget far smaller than the messages, several folders copied at once: the copy must
/// neither stall (a large message waits for the whole budget while other folders hold parts of
/// it) nor lose anything. This once hung for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_memory_budget_with_large_messages_completes_exactly() {
    let pair = Pair::new("budget", "budget");
    let mut g = Fixtures::new(6_301);
    let folders: Vec<(String, Vec<Fixture>)> = (0..4)
        .map(|i| {
            let mut msgs: Vec<Fixture> = (0..12).map(|_| g.ordinary()).collect();
            msgs.insert(3, g.big(1_500_000 + i * 250_000));
            msgs.push(g.big(2_200_000));
            (
                if i == 0 {
                    "INBOX".to_owned()
                } else {
                    format!("INBOX.f{i}")
                },
                msgs,
            )
        })
        .collect();
    let seeds: Vec<Seed<'_>> = folders
        .iter()
        .map(|(name, msgs)| Seed {
            name,
            subscribe: false,
            messages: msgs,
        })
        .collect();
    seed(&pair.src, &seeds).await;
    let out = pair
        .migrate(&[
            "--memory-budget",
            "1M",
            "--connections",
            "4",
            "--timeout",
            "30",
        ])
        .await;
    assert_code(&out, 0);
    assert_eq!(out.u64("messages_copied"), 56, "{out}");
    let mapping: Vec<(&str, String)> = folders
        .iter()
        .map(|(n, _)| (n.as_str(), n.strip_prefix("INBOX.").unwrap_or(n).to_owned()))
        .collect();
    let mapping: Vec<(&str, &str)> = mapping.iter().map(|(a, b)| (*a, b.as_str())).collect();
    assert_exact(&pair.source().await, &pair.target().await, &mapping);
}

/// `--since` (inclusive) and `--before` (exclusive) select by INTERNALDATE; the rest is
/// reported as excluded, and a later run without the filters copies exactly what was left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_before_select_by_internal_date() {
    use chrono::TimeZone;
    let pair = Pair::new("dates", "dates");
    let mut g = Fixtures::new(6_401);
    let zone = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    // 2015-01-01 02:00 +0200 is midnight UTC: on the --since boundary, so included.
    let dated: Vec<Fixture> = [
        (2014, 6),
        (2015, 1),
        (2017, 3),
        (2019, 12),
        (2020, 1),
        (2022, 5),
    ]
    .iter()
    .map(|(y, mo)| {
        let day = if *mo == 1 { 1 } else { 15 };
        let hour = if *mo == 1 { 2 } else { 12 };
        g.ordinary()
            .with_internal_date(zone.with_ymd_and_hms(*y, *mo, day, hour, 0, 0).unwrap())
    })
    .collect();
    seed_inbox(&pair.src, &dated).await;
    let out = pair
        .migrate(&["--since", "2015-01-01", "--before", "2020-01-01"])
        .await;
    assert_code(&out, 0);
    assert_eq!(
        (out.u64("messages_copied"), out.u64("excluded")),
        (3, 3),
        "{out}"
    );
    pair.target()
        .await
        .expect_fixtures("INBOX", &[&dated[1], &dated[2], &dated[3]])
        .unwrap();
    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    assert_eq!(
        (out.u64("messages_copied"), out.u64("already_present")),
        (3, 3),
        "{out}"
    );
    assert_exact(
        &pair.source().await,
        &pair.target().await,
        &[("INBOX", "INBOX")],
    );
}

/// `--exclude-folder-role junk` leaves the source's junk folder out (found by its special-use
/// attribute), and `--regex-rename` moves folders under a new parent on the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_roles_can_be_left_out_and_folders_renamed() {
    let pair = Pair::new("rename", "rename");
    let mut g = Fixtures::new(6_501);
    let inbox = vec![g.ordinary()];
    let junk = vec![g.ordinary(), g.ordinary()];
    let projects = vec![g.ordinary(), g.ordinary()];
    let keep = vec![g.ordinary()];
    seed(
        &pair.src,
        &[
            Seed {
                name: "INBOX",
                subscribe: false,
                messages: &inbox,
            },
            Seed {
                name: "INBOX.Junk E-mail",
                subscribe: false,
                messages: &junk,
            },
            Seed {
                name: "INBOX.Old",
                subscribe: false,
                messages: &[],
            },
            Seed {
                name: "INBOX.Old.Projects",
                subscribe: false,
                messages: &projects,
            },
            Seed {
                name: "INBOX.Keep",
                subscribe: false,
                messages: &keep,
            },
        ],
    )
    .await;
    let out = pair
        .migrate(&[
            "--exclude-folder-role",
            "junk",
            "--regex-rename",
            "s#^Old(/|$)#Archive/Old$1#",
        ])
        .await;
    assert_code(&out, 0);
    assert_eq!(out.u64("messages_copied"), 4, "{out}");
    let src = pair.source().await;
    let dst = pair.target().await;
    assert_exact(
        &src,
        &dst,
        &[
            ("INBOX", "INBOX"),
            ("INBOX.Old", "Archive/Old"),
            ("INBOX.Old.Projects", "Archive/Old/Projects"),
            ("INBOX.Keep", "Keep"),
        ],
    );
    let names: Vec<String> = dst.folders.keys().cloned().collect();
    assert!(!names.iter().any(|n| n.contains("Junk")), "{names:?}");
    assert!(
        out.stdout.contains("exclude-folder-role"),
        "the skipped folder is reported: {out}"
    );
}

/// Admin logins (`--src-authuser` / `--dst-authuser`): SASL PLAIN with an authorization
/// identity, with the administrator's password, on both sides; a wrong admin password is a
/// refused login (exit 4) and never appears in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_logins_act_for_the_mailbox_owner() {
    let servers = TestServers::get();
    let (admin, admin_password) = servers
        .master()
        .expect("scripts/test-servers configures a master user");
    let pair = Pair::new("admin", "admin");
    let mut g = Fixtures::new(6_601);
    let inbox = vec![g.ordinary(), g.ordinary()];
    seed_inbox(&pair.src, &inbox).await;
    let state = pair.state();
    let args = [
        "--json",
        "--state",
        state.as_str(),
        "--src-authuser",
        admin,
        "--dst-authuser",
        admin,
    ];
    let run = |password: &str| {
        let mut cmd = mailferry_tests::cli::command("migrate", &pair.src, &pair.dst, &args);
        cmd.env("MAILFERRY_SRC_PASSWORD", password)
            .env("MAILFERRY_DST_PASSWORD", password);
        cmd
    };
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run("not-the-admin-password").output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run(admin_password).output(),
    )
    .await
    .unwrap()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains(admin_password) && !stderr.contains(admin_password));
    pair.target()
        .await
        .expect_fixtures("INBOX", &refs(&inbox))
        .unwrap();
}

/// `--max-messages-per-second` spreads the copy over time (a lower bound only: never a speed
/// assertion), and the copy stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_limits_slow_the_copy_and_keep_it_exact() {
    let pair = Pair::new("rate", "rate");
    let mut g = Fixtures::new(6_701);
    let inbox: Vec<Fixture> = (0..30).map(|_| g.ordinary()).collect();
    seed_inbox(&pair.src, &inbox).await;
    let out = pair
        .migrate(&["--max-messages-per-second", "20", "--connections", "4"])
        .await;
    assert_code(&out, 0);
    // 30 messages at 20 per second cannot take less than 29/20 s.
    assert!(
        out.elapsed >= std::time::Duration::from_millis(1450),
        "{:?}",
        out.elapsed
    );
    assert_exact(
        &pair.source().await,
        &pair.target().await,
        &[("INBOX", "INBOX")],
    );
}

/// An interrupt (SIGINT) stops taking new work, lets the batches in hand finish (they take less
/// than the one-second grace here), and prints a summary that says exactly what is on the
/// target; exit 130. A rerun then completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_finishes_the_batches_in_hand_and_reports_them() {
    let pair = Pair::new("sigint", "sigint");
    let mut g = Fixtures::new(6_801);
    let folders: Vec<(String, Vec<Fixture>)> = (0..4)
        .map(|i| {
            let name = if i == 0 {
                "INBOX".to_owned()
            } else {
                format!("INBOX.f{i}")
            };
            (name, (0..30).map(|_| g.ordinary()).collect())
        })
        .collect();
    let seeds: Vec<Seed<'_>> = folders
        .iter()
        .map(|(name, msgs)| Seed {
            name,
            subscribe: false,
            messages: msgs,
        })
        .collect();
    seed(&pair.src, &seeds).await;
    let state = pair.state();
    // One connection, so folders are copied one after another, and rate-limited so the
    // interrupt lands mid-copy: 120 messages at 40/s take 3 s.
    let args = [
        "--json",
        "--state",
        state.as_str(),
        "--connections",
        "1",
        "--max-messages-per-second",
        "40",
    ];
    let mut child = mailferry_tests::cli::command("migrate", &pair.src, &pair.dst, &args)
        .spawn()
        .unwrap();
    // Interrupt once the first messages are on the target (not after a fixed delay: a loaded
    // machine may still be logging in), well before the rate limit lets the copy finish.
    let started = std::time::Instant::now();
    let mut watcher = ImapClient::connect(&pair.dst).await.unwrap();
    loop {
        let mut on_target = 0;
        for name in ["INBOX", "f1", "f2", "f3"] {
            on_target += watcher.status(name).await.map_or(0, |s| s.messages);
        }
        if on_target > 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "nothing was copied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout)
        .await
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], "interrupted");
    let copied = summary["messages_copied"].as_u64().unwrap();
    let on_target: u64 = pair
        .target()
        .await
        .counts()
        .values()
        .map(|n| *n as u64)
        .sum();
    assert!(
        copied > 0 && copied < 120,
        "the interrupt landed mid-copy: {copied}"
    );
    assert_eq!(copied, on_target, "the summary says what is on the target");
    assert_eq!(
        copied % 30,
        0,
        "whole batches (here: folders) finish, none is cut: {copied}"
    );
    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    assert_eq!(
        (out.u64("messages_copied"), out.u64("already_present")),
        (120 - copied, copied),
        "{out}"
    );
    let mapping: Vec<(&str, String)> = folders
        .iter()
        .map(|(n, _)| (n.as_str(), n.strip_prefix("INBOX.").unwrap_or(n).to_owned()))
        .collect();
    let mapping: Vec<(&str, &str)> = mapping.iter().map(|(a, b)| (*a, b.as_str())).collect();
    assert_exact(&pair.source().await, &pair.target().await, &mapping);
}

/// Issue 14: `--trace-imap FILE` holds every command and response of the run (both sides, the
/// APPENDs and the servers' answers), and neither the passwords nor any message's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imap_trace_shows_the_exchange_but_no_secret_or_content() {
    let pair = Pair::new("trace", "trace");
    let mut g = Fixtures::new(9_009);
    let inbox = vec![g.ordinary(), g.multipart()];
    seed_inbox(&pair.src, &inbox).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("imap.trace");
    let out = pair
        .migrate(&["--trace-imap", trace.to_str().unwrap()])
        .await;
    assert_code(&out, 0);
    let text = std::fs::read_to_string(&trace).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the trace names accounts and folders");
    for wanted in [
        " source C: ",
        " target S: ",
        "<login data not shown>",
        "APPEND",
        "OK [APPENDUID",
    ] {
        assert!(
            text.contains(wanted),
            "{wanted:?} not in the trace:\n{text}"
        );
    }
    for secret in [&pair.src.password, &pair.dst.password] {
        assert!(
            !text.contains(secret.as_str()),
            "a password in the trace:\n{text}"
        );
    }
    // No line of any message's body (the fixtures' lines are long and distinctive).
    for f in &inbox {
        let body = String::from_utf8_lossy(&f.raw);
        let last = body
            .lines()
            .rev()
            .find(|l| l.trim().len() > 20)
            .expect("a distinctive line");
        assert!(
            !text.contains(last.trim()),
            "message content in the trace: {last}"
        );
    }
}
