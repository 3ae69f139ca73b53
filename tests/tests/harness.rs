//! Smoke tests of the harness itself: the servers come up as configured, seeding and
//! snapshotting round-trip every fixture, the checker can fail, and the limit users are refused
//! the way Dovecot refuses them.

use std::process::Command;

use mailferry_tests::verify::personal_only;
use mailferry_tests::{Fixture, Fixtures, ImapClient, Side, TestServers, compare, snapshot};
use mailferry_tests::{snapshot_with, verify::MessageKey};

// Raw (modified UTF-7) names, hardcoded on purpose: the harness has no codec.
const SENT: &str = "INBOX.Sent Items";
/// "INBOX.ärger" (`&AOQ-` is U+00E4).
const AERGER: &str = "INBOX.&AOQ-rger";
/// A '/' inside a name, legal on the source thanks to the listescape plugin.
const SLASHED: &str = "INBOX.a/b";
/// A child of a folder that itself does not exist (`INBOX.a` is \Noselect on Maildir++).
const NESTED: &str = "INBOX.a.b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_source_round_trips_and_compare_catches_differences() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "smoke").unwrap();
    let dst = servers.new_user(Side::Target, "smoke").unwrap();
    let mut g = Fixtures::new(20_261_125);

    let (twin_a, twin_b) = g.same_ids_pair();
    let dup = g.duplicate();
    let inbox: Vec<Fixture> = vec![
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
    ];
    let sent = g.across_zones();
    let aerger = vec![
        g.ordinary().with_flags(&["$Label1", "Work"]),
        g.ordinary().with_flags(&["\\Deleted", "\\Seen"]),
        g.ordinary().with_flags(&[]),
    ];
    let slashed = vec![g.ordinary()];
    let nested = vec![g.big(2_000_000)];

    let mut c = ImapClient::connect(&src).await.unwrap();
    for name in [SENT, AERGER, NESTED] {
        c.create_subscribed(name).await.unwrap();
    }
    c.create(SLASHED).await.unwrap();
    c.append_all("INBOX", &inbox).await.unwrap();
    c.append_all(SENT, &sent).await.unwrap();
    c.append_all(AERGER, &aerger).await.unwrap();
    c.append_all(SLASHED, &slashed).await.unwrap();
    c.append_all(NESTED, &nested).await.unwrap();
    c.logout().await;

    let snap = snapshot_with(&src, personal_only).await.unwrap();

    // Counts, flags and dates round-trip (expect_fixtures compares all three).
    for (folder, fixtures) in [
        ("INBOX", &inbox),
        (SENT, &sent),
        (AERGER, &aerger),
        (SLASHED, &slashed),
        (NESTED, &nested),
    ] {
        assert_eq!(snap.count(folder), fixtures.len(), "count of {folder}");
        if let Err(diff) = snap.expect_fixtures(folder, &refs(fixtures)) {
            panic!("{folder} does not hold its fixtures:\n{diff}");
        }
    }
    let dup_key = MessageKey::of_fixture(&inbox[12]);
    assert_eq!(snap.folder("INBOX").unwrap().messages[&dup_key], 3);

    // Folder list: raw names, delimiter, special-use and \Noselect as configured.
    let sent_info = snap.info(SENT).unwrap();
    assert!(sent_info.has("\\Sent"), "{sent_info:?}");
    assert_eq!(sent_info.delimiter.as_deref(), Some("."));
    let parent = snap.info("INBOX.a").unwrap();
    assert!(!parent.selectable(), "{parent:?}");
    assert!(snap.info(SLASHED).unwrap().selectable());
    // The other namespaces are listed but, with personal_only, not read.
    assert!(
        snap.info("Public.Announcements").is_some(),
        "{:?}",
        snap.counts()
    );
    assert!(snap.info("Virtual.All Mail").unwrap().has("\\All"));
    assert_eq!(snap.count("Virtual.All Mail"), 0);

    let subs: Vec<&str> = snap.subscriptions.iter().map(String::as_str).collect();
    for name in [SENT, AERGER, NESTED] {
        assert!(subs.contains(&name), "{name} not subscribed: {subs:?}");
    }
    assert!(!subs.contains(&SLASHED), "{subs:?}");

    // A mailbox equals itself.
    let identity: Vec<(&str, &str)> = ["INBOX", SENT, AERGER, SLASHED, NESTED]
        .iter()
        .map(|n| (*n, *n))
        .collect();
    compare(&snap, &snap, &identity).unwrap();

    // Plant differences on the target: one message with other flags, one left out, one extra,
    // and the folder not subscribed.
    const TARGET_AERGER: &str = "&AOQ-rger";
    let mut t = ImapClient::connect(&dst).await.unwrap();
    t.create(TARGET_AERGER).await.unwrap();
    t.append(TARGET_AERGER, &aerger[0].clone().with_flags(&["$Label1"]))
        .await
        .unwrap();
    t.append(TARGET_AERGER, &aerger[2]).await.unwrap();
    t.append(TARGET_AERGER, &g.ordinary()).await.unwrap();
    t.logout().await;
    let target = snapshot(&dst).await.unwrap();
    // Sent and Trash are auto-created on the target.
    assert!(
        target.info("Sent").unwrap().has("\\Sent"),
        "{:?}",
        target.counts()
    );
    assert!(target.info("Trash").unwrap().has("\\Trash"));

    let diff = compare(&snap, &target, &[(AERGER, TARGET_AERGER)]).unwrap_err();
    eprintln!("planted differences are reported as:\n{diff}");
    assert_eq!(diff.folders.len(), 1, "{diff}");
    let fd = &diff.folders[0];
    assert_eq!(fd.missing.len(), 1, "{diff}");
    assert_eq!(fd.missing[0].key, MessageKey::of_fixture(&aerger[1]));
    assert_eq!(fd.extra.len(), 1, "{diff}");
    assert_eq!(fd.mismatched.len(), 1, "{diff}");
    assert_eq!(fd.mismatched[0].target.flags, vec!["$Label1".to_owned()]);
    assert!(
        diff.problems.iter().any(|p| p.contains("subscribed")),
        "{diff}"
    );
    // A mapped folder that does not exist is a problem, not a pass.
    let diff = compare(&snap, &target, &[(SENT, "Sent Items")]).unwrap_err();
    assert!(diff.to_string().contains("does not exist"), "{diff}");
}

fn refs(v: &[Fixture]) -> Vec<&Fixture> {
    v.iter().collect()
}

#[tokio::test]
async fn small_quota_user_is_refused_with_overquota() {
    let servers = TestServers::get();
    let user = servers.new_user(Side::Target, "smallquota").unwrap();
    let mut g = Fixtures::new(7);
    let mut c = ImapClient::connect(&user).await.unwrap();
    let quota = servers.smallquota_bytes() as usize;
    let mut accepted = 0;
    let refusal = loop {
        let msg = g.big(quota / 4);
        let outcome = c.try_append("INBOX", &msg).await.unwrap();
        if !outcome.is_ok() {
            break outcome;
        }
        accepted += 1;
        assert!(accepted < 10, "quota of {quota} bytes never enforced");
    };
    eprintln!("over quota after {accepted} messages: {refusal}");
    assert_eq!(refusal.status, "NO");
    assert!(refusal.text.starts_with("[OVERQUOTA]"), "{refusal}");
    assert!((2..=4).contains(&accepted), "accepted {accepted}");
    c.logout().await;
}

#[tokio::test]
async fn small_message_user_is_refused_with_limit() {
    let servers = TestServers::get();
    let user = servers.new_user(Side::Target, "smallmsg").unwrap();
    let limit = servers.smallmsg_bytes() as usize;
    let mut g = Fixtures::new(8);
    let mut c = ImapClient::connect(&user).await.unwrap();
    let caps = c.capabilities().await.unwrap();
    eprintln!(
        "post-login APPENDLIMIT: {:?}",
        caps.iter().find(|c| c.starts_with("APPENDLIMIT"))
    );

    let too_big = c.try_append("INBOX", &g.big(limit + 1024)).await.unwrap();
    eprintln!("message over the size limit: {too_big}");
    assert_eq!(too_big.status, "NO");
    assert!(too_big.text.starts_with("[LIMIT]"), "{too_big}");

    // The connection is still usable, and smaller messages go in.
    c.append("INBOX", &g.big(limit / 2)).await.unwrap();
    c.logout().await;
    let snap = snapshot(&user).await.unwrap();
    assert_eq!(snap.count("INBOX"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_message_round_trips() {
    let servers = TestServers::get();
    let user = servers.new_user(Side::Source, "big").unwrap();
    let big = Fixtures::new(9).big(21 * 1024 * 1024);
    let mut c = ImapClient::connect(&user).await.unwrap();
    c.append("INBOX", &big).await.unwrap();
    c.logout().await;
    let snap = snapshot_with(&user, personal_only).await.unwrap();
    snap.expect_fixtures("INBOX", &[&big]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_created_in_parallel_can_all_log_in() {
    let servers = TestServers::get();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            tokio::spawn(async move {
                let side = if i % 2 == 0 {
                    Side::Source
                } else {
                    Side::Target
                };
                let user = servers.new_user(side, "parallel").unwrap();
                let fixture = Fixtures::new(i).ordinary();
                let mut c = ImapClient::connect(&user).await.unwrap();
                c.append("INBOX", &fixture).await.unwrap();
                c.logout().await;
                let snap = snapshot_with(&user, personal_only).await.unwrap();
                snap.expect_fixtures("INBOX", &[&fixture]).unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn target_folders_and_capabilities_are_as_documented() {
    let servers = TestServers::get();
    let user = servers.new_user(Side::Target, "layout").unwrap();
    let mut c = ImapClient::connect(&user).await.unwrap();
    for name in ["Junk", "Drafts", "Archive", "a/b/c", "dotted.name"] {
        c.create(name).await.unwrap();
    }
    let caps = c.capabilities().await.unwrap();
    for cap in [
        "CONDSTORE",
        "QRESYNC",
        "UIDPLUS",
        "SPECIAL-USE",
        "QUOTA",
        "MOVE",
    ] {
        assert!(caps.iter().any(|c| c == cap), "{cap} missing from {caps:?}");
    }
    let list = c.list().await.unwrap();
    c.logout().await;
    let find = |n: &str| list.iter().find(|f| f.name == n).unwrap();
    for (name, use_) in [
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Drafts", "\\Drafts"),
        ("Archive", "\\Archive"),
    ] {
        assert!(find(name).has(use_), "{:?}", find(name));
    }
    assert_eq!(find("a/b/c").delimiter.as_deref(), Some("/"));
    // Parents created implicitly by CREATE "a/b/c" exist, but only as \Noselect directories.
    assert!(!find("a").selectable(), "{list:?}");
    assert!(!find("a/b").selectable(), "{list:?}");
    assert!(find("a/b/c").selectable());
    assert!(find("dotted.name").selectable());
}

#[test]
fn imaps_certificate_verifies_against_the_test_ca() {
    let servers = TestServers::get();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed; skipping");
        return;
    }
    for side in [Side::Source, Side::Target] {
        let port = servers.ports(side).imaps;
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-verify_return_error",
                "-verify_hostname",
            ])
            .arg("localhost")
            .arg("-CAfile")
            .arg(servers.ca())
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verification: OK"),
            "{} IMAPS on {port}: {text}",
            side.name()
        );
    }
}
