//! Incremental syncs after the first pass (`mailferry migrate` again, and `--sync-every`),
//! against the two private Dovecot servers (both offer CONDSTORE and UIDPLUS). Each test changes
//! the source the way a mailbox in use changes — new mail, new folders, flags read and flagged,
//! mail deleted, a folder recreated — syncs, and proves the target by reading both sides back.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mailferry_tests::cli::{Output, command, run_migrate};
use mailferry_tests::verify::{MailboxSnapshot, MessageKey, bodies_in_uid_order, personal_only};
use mailferry_tests::{
    Fixture, Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot, snapshot_with,
};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Pair {
    src: TestAccount,
    dst: TestAccount,
    state: tempfile::TempDir,
}

impl Pair {
    fn new(prefix: &str) -> Pair {
        let servers = TestServers::get();
        Pair {
            src: servers.new_user(Side::Source, prefix).unwrap(),
            dst: servers.new_user(Side::Target, prefix).unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// `mailferry migrate --json --state DIR EXTRA…`, which must exit 0.
    async fn sync(&self, extra: &[&str]) -> Output {
        let state = self.state.path().to_string_lossy().into_owned();
        let mut args = vec!["--state", state.as_str()];
        args.extend_from_slice(extra);
        let out = run_migrate(&self.src, &self.dst, &args).await.unwrap();
        eprintln!("migrate {extra:?}: exit {} in {:?}", out.code, out.elapsed);
        assert_eq!(out.code, 0, "{out}");
        out
    }

    async fn source(&self) -> MailboxSnapshot {
        snapshot_with(&self.src, personal_only).await.unwrap()
    }

    async fn target(&self) -> MailboxSnapshot {
        snapshot(&self.dst).await.unwrap()
    }

    async fn src_client(&self) -> ImapClient {
        ImapClient::connect(&self.src).await.unwrap()
    }

    async fn dst_client(&self) -> ImapClient {
        ImapClient::connect(&self.dst).await.unwrap()
    }

    #[track_caller]
    fn assert_exact(&self, src: &MailboxSnapshot, dst: &MailboxSnapshot, map: &[(&str, &str)]) {
        if let Err(diff) = compare(src, dst, map) {
            panic!("target is not an exact copy of the source:\n{diff}");
        }
    }
}

async fn seed(account: &TestAccount, folder: &str, messages: &[Fixture]) {
    let mut c = ImapClient::connect(account).await.unwrap();
    if folder != "INBOX" {
        c.create_subscribed(folder).await.unwrap();
    }
    c.append_all(folder, messages).await.unwrap();
    c.logout().await;
}

fn has(snap: &MailboxSnapshot, folder: &str, f: &Fixture) -> bool {
    let want = MessageKey::of_fixture(f);
    snap.folder(folder)
        .is_some_and(|s| s.messages.keys().any(|k| k.sha256 == want.sha256))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_follow_new_mail_new_folders_flags_and_deletions_only_when_asked() {
    let pair = Pair::new("sync");
    let mut g = Fixtures::new(9_001);
    let inbox: Vec<Fixture> = (0..4)
        .map(|_| g.ordinary().with_flags(&["\\Seen"]))
        .collect();
    let work = vec![g.ordinary().with_flags(&[]), g.multipart().with_flags(&[])];
    seed(&pair.src, "INBOX", &inbox).await;
    seed(&pair.src, "INBOX.Work", &work).await;
    let first = pair.sync(&[]).await;
    assert_eq!(first.u64("messages_copied"), 6);
    let map = [("INBOX", "INBOX"), ("INBOX.Work", "Work")];
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);

    // The target user files a message of their own (marked deleted, even): no sync may touch it.
    let own = g.ordinary().with_flags(&["\\Deleted"]);
    seed(&pair.dst, "INBOX", std::slice::from_ref(&own)).await;

    // The mailbox is in use: a message read and flagged, one deleted, new mail, a new folder,
    // a keyword added in another folder.
    let mut c = pair.src_client().await;
    let uids = c.uids("INBOX").await.unwrap();
    c.command(&format!("UID STORE {} FLAGS (\\Flagged $Work)", uids[1]))
        .await
        .unwrap();
    c.expunge_uid("INBOX", uids[2]).await.unwrap();
    let work_uids = c.uids("INBOX.Work").await.unwrap();
    c.command(&format!("UID STORE {} +FLAGS (\\Answered)", work_uids[0]))
        .await
        .unwrap();
    c.logout().await;
    let fresh = g.ordinary();
    seed(&pair.src, "INBOX", std::slice::from_ref(&fresh)).await;
    let new_folder = vec![g.ordinary(), g.no_message_id()];
    seed(&pair.src, "INBOX.New", &new_folder).await;

    // A sync without --delete-propagation: everything follows but the deletion.
    let out = pair.sync(&[]).await;
    assert_eq!(out.u64("messages_copied"), 3, "{out}");
    assert_eq!(out.u64("flags_updated"), 2, "{out}");
    assert_eq!(out.u64("expunged"), 0, "{out}");
    let src = pair.source().await;
    let dst = pair.target().await;
    let map3 = [
        ("INBOX", "INBOX"),
        ("INBOX.Work", "Work"),
        ("INBOX.New", "New"),
    ];
    pair.assert_exact(&src, &dst, &map3[1..]);
    assert!(
        has(&dst, "INBOX", &inbox[2]),
        "a deletion was propagated unasked"
    );
    assert!(has(&dst, "INBOX", &own));
    assert_eq!(dst.count("INBOX"), src.count("INBOX") + 2);
    assert!(
        dst.subscriptions.contains("New"),
        "the new folder is not subscribed"
    );

    // With --delete-propagation the copy of the deleted message goes, and only it.
    let out = pair.sync(&["--delete-propagation"]).await;
    assert_eq!(out.u64("expunged"), 1, "{out}");
    assert_eq!(out.u64("messages_copied"), 0, "{out}");
    let dst = pair.target().await;
    assert!(!has(&dst, "INBOX", &inbox[2]));
    assert!(
        has(&dst, "INBOX", &own),
        "the target user's own mail was removed"
    );
    // Apart from the user's own message, the target is now the source exactly.
    let mut d = pair.dst_client().await;
    remove_by_body(&mut d, "INBOX", &pair.dst, &own).await;
    d.logout().await;
    pair.assert_exact(&pair.source().await, &pair.target().await, &map3);

    // Nothing changed since: a rerun copies, updates and removes nothing.
    let out = pair.sync(&["--delete-propagation"]).await;
    for field in ["messages_copied", "flags_updated", "expunged"] {
        assert_eq!(out.u64(field), 0, "{field}: {out}");
    }
}

/// Removes the one message of `folder` whose body is `f`'s.
async fn remove_by_body(c: &mut ImapClient, folder: &str, account: &TestAccount, f: &Fixture) {
    let want = MessageKey::of_fixture(f).sha256;
    let bodies = bodies_in_uid_order(account, folder).await.unwrap();
    let uids = c.uids(folder).await.unwrap();
    let Some(i) = bodies.iter().position(|b| *b == want) else {
        panic!("no message with that body in {folder}");
    };
    c.expunge_uid(folder, uids[i]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_side_flag_changes_stay_unless_full_flag_sync() {
    let pair = Pair::new("fullflags");
    let mut g = Fixtures::new(9_002);
    let inbox = vec![g.ordinary().with_flags(&["\\Seen"]), g.ordinary()];
    seed(&pair.src, "INBOX", &inbox).await;
    pair.sync(&[]).await;
    // The user flags a copy on the target; the source message did not change.
    let mut d = pair.dst_client().await;
    let uids = d.uids("INBOX").await.unwrap();
    d.command(&format!("UID STORE {} +FLAGS (\\Flagged)", uids[0]))
        .await
        .unwrap();
    d.logout().await;
    let out = pair.sync(&[]).await;
    assert_eq!(out.u64("flags_updated"), 0, "{out}");
    let map = [("INBOX", "INBOX")];
    assert!(compare(&pair.source().await, &pair.target().await, &map).is_err());
    // --full-flag-sync compares every copy: the source's flags win (documented).
    let out = pair.sync(&["--full-flag-sync"]).await;
    assert_eq!(out.u64("flags_updated"), 1, "{out}");
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_reset_on_either_side_duplicates_nothing() {
    let pair = Pair::new("uvreset");
    let mut g = Fixtures::new(9_003);
    let work: Vec<Fixture> = (0..3).map(|_| g.ordinary()).collect();
    seed(&pair.src, "INBOX.Work", &work).await;
    pair.sync(&[]).await;
    let map = [("INBOX.Work", "Work")];

    // The source folder is deleted and recreated with the same mail and one more message: a new
    // UIDVALIDITY, none of the recorded copies' source UIDs mean anything now.
    let before = pair.src_client().await.status("INBOX.Work").await.unwrap();
    let mut c = pair.src_client().await;
    c.delete("INBOX.Work").await.unwrap();
    c.logout().await;
    let mut again = work.clone();
    again.push(g.ordinary());
    seed(&pair.src, "INBOX.Work", &again).await;
    let after = pair.src_client().await.status("INBOX.Work").await.unwrap();
    assert_ne!(before.uid_validity, after.uid_validity);
    // Even with deletions propagated, nothing is removed and nothing duplicated.
    let out = pair.sync(&["--delete-propagation"]).await;
    assert_eq!(out.u64("messages_copied"), 1, "{out}");
    assert_eq!(out.u64("expunged"), 0, "{out}");
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);

    // The target folder is recreated empty: everything is copied again, once.
    let mut d = pair.dst_client().await;
    d.delete("Work").await.unwrap();
    d.create_subscribed("Work").await.unwrap();
    d.logout().await;
    let out = pair.sync(&["--delete-propagation"]).await;
    assert_eq!(out.u64("messages_copied"), 4, "{out}");
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_every_keeps_the_target_in_sync_until_interrupted() {
    let pair = Pair::new("every");
    let mut g = Fixtures::new(9_004);
    let first = vec![g.ordinary(), g.ordinary()];
    seed(&pair.src, "INBOX", &first).await;
    let state = pair.state.path().to_string_lossy().into_owned();
    let mut child = command(
        "migrate",
        &pair.src,
        &pair.dst,
        &["--state", &state, "--sync-every", "1m"],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let wait_for = async |lines: &mut tokio::io::Lines<_>, what: &str| {
        let found = tokio::time::timeout(Duration::from_secs(180), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                eprintln!("migrate: {line}");
                if line.contains(what) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "never saw {what:?}");
    };
    wait_for(&mut lines, "pass 1 done").await;
    let map = [("INBOX", "INBOX")];
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);
    // Mail that still reaches the old box follows on the next scheduled sync.
    let late = g.ordinary();
    seed(&pair.src, "INBOX", std::slice::from_ref(&late)).await;
    wait_for(&mut lines, "pass 2 done").await;
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);
    // Interrupted while waiting for the next sync: it stops at once, successfully.
    let pid = child.id().unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_upload_budget_defers_the_rest_without_loss_or_duplicates() {
    let pair = Pair::new("budget");
    let mut g = Fixtures::new(9_005);
    // Ten 30 KB messages against a 100 KiB daily budget: three fit each day.
    let inbox: Vec<Fixture> = (0..10).map(|_| g.big(30 * 1024)).collect();
    seed(&pair.src, "INBOX", &inbox).await;
    let map = [("INBOX", "INBOX")];
    let state = pair.state.path().to_string_lossy().into_owned();
    let run = async |state: &str| {
        run_migrate(
            &pair.src,
            &pair.dst,
            &["--state", state, "--daily-upload-budget", "100K"],
        )
        .await
        .unwrap()
    };
    let out = run(&state).await;
    assert_eq!(out.code, 9, "deferred mail exits with 9\n{out}");
    assert_eq!(out.str("status"), "deferred", "{out}");
    assert_eq!(out.u64("messages_copied"), 3, "{out}");
    assert_eq!(out.u64("deferred"), 7, "{out}");
    assert!(
        out.json()["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "daily_budget_reached"),
        "{out}"
    );
    // The same day again: the budget is spent, nothing more goes.
    let out = run(&state).await;
    assert_eq!(out.code, 9, "{out}");
    assert_eq!(out.u64("messages_copied"), 0, "{out}");
    assert_eq!(out.u64("deferred"), 7, "{out}");
    assert_eq!(pair.target().await.count("INBOX"), 3);
    // Each "next day" (a state directory whose budget is fresh) takes three more, and the
    // last one completes the mailbox: nothing lost, nothing twice.
    let mut days = 0;
    loop {
        days += 1;
        let fresh = tempfile::tempdir().unwrap();
        let out = run(&fresh.path().to_string_lossy()).await;
        if out.code == 0 {
            assert_eq!(out.u64("deferred"), 0, "{out}");
            break;
        }
        assert_eq!(out.code, 9, "{out}");
        assert!(days < 5, "the budget never let the rest through\n{out}");
    }
    assert_eq!(days, 3);
    pair.assert_exact(&pair.source().await, &pair.target().await, &map);
}
