//! Hostile and broken servers at the engine level (issue 10): what a server says about UIDs,
//! sizes, folders and their names must never crash, starve or fool a migration. Each test runs
//! the real `mailferry` binary against the scripted server (tests/src/scripted/) as the source
//! or the target, and the real Dovecot where a faithful target is needed.

use std::time::Duration;

use mailferry_tests::run::{End, Run, mailferry};
use mailferry_tests::scripted::{
    self, Account, Folder, Message, Override, Quirks, ScriptedServer, replace_bytes,
};
use mailferry_tests::{Side, TestAccount, TestServers, snapshot};

/// A small distinct message.
fn message(n: usize) -> Vec<u8> {
    format!(
        "Message-ID: <hostile-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:{:02} +0000\r\nFrom: a@example.net\r\nTo: b@example.net\r\nSubject: message {n}\r\n\r\nbody of message {n}\r\n",
        n % 60
    )
    .into_bytes()
}

fn inbox_with(n: usize) -> Account {
    let mut account = Account::new();
    for i in 0..n {
        account.inbox().push(message(i));
    }
    account
}

// ---------------------------------------------------------------------------------------------
// APPENDUID range bomb.

/// The target answers every APPEND with an APPENDUID naming 100 million UIDs (1 KB): the set is
/// counted, not expanded; the run warns that the target broke the protocol and the copies'
/// target UIDs are unknown; every message is still copied, in bounded memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appenduid_range_bomb_is_counted_not_expanded() {
    let src = ScriptedServer::start(inbox_with(3)).await.unwrap();
    let bomb = vec!["1:1000001"; 100].join(",");
    let lie = Override::alter(scripted::verb("APPEND"), move |_, honest| {
        let text = String::from_utf8_lossy(&honest).into_owned();
        // `[APPENDUID 1700000000 n]` → the same UIDVALIDITY with the bomb.
        match text.split_once("[APPENDUID ") {
            Some((head, rest)) => {
                let v = rest.split(' ').next().unwrap_or_default();
                let tail = rest.split_once(']').map(|(_, t)| t).unwrap_or_default();
                format!("{head}[APPENDUID {v} {bomb}]{tail}").into_bytes()
            }
            None => honest,
        }
    });
    let dst = ScriptedServer::start_with(Account::new(), Quirks::default(), vec![lie])
        .await
        .unwrap();
    let run = mailferry("migrate", End::Scripted(&src), End::Scripted(&dst), &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(dst.account().inbox().messages.len(), 3, "{run}");
    let warned = run.warnings("protocol_error");
    assert_eq!(
        warned.len(),
        1,
        "one protocol warning for the folder\n{run}"
    );
    let text = warned[0]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("APPENDUID") && text.contains("100000100 UIDs"),
        "{run}"
    );
    assert!(
        run.max_rss_kib < 200 * 1024,
        "the UID set was expanded\n{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// One folder whose STATUS is refused.

/// A source with INBOX, Work, a folder deleted between LIST and STATUS (`NO [NONEXISTENT]`) and,
/// when `with_refused`, a folder the account may list but not read (`NO [NOPERM]`).
async fn source_with_unreadable_folders(with_refused: bool) -> ScriptedServer {
    let mut account = inbox_with(2)
        .with(Folder::new("Work").with(message(10)).with(message(11)))
        .with(Folder::new("Gone").with(message(20)));
    let mut overrides = vec![Override::replace(
        scripted::verb_on("STATUS", "Gone"),
        "{tag} NO [NONEXISTENT] Mailbox doesn't exist: Gone\r\n",
    )];
    if with_refused {
        account = account.with(Folder::new("Secret").with(message(30)));
        overrides.push(Override::replace(
            scripted::verb_on("STATUS", "Secret"),
            "{tag} NO [NOPERM] Permission denied\r\n",
        ));
    }
    ScriptedServer::start_with(account, Quirks::default(), overrides)
        .await
        .expect("the scripted source")
}

/// A folder deleted during the run is skipped with a warning; one the server refuses is a
/// failure naming it (exit 3); every other folder is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_status_skips_that_folder_only() {
    let servers = TestServers::get();
    let dst = servers.new_user(Side::Target, "statusno").unwrap();
    let src = source_with_unreadable_folders(true).await;
    let run = mailferry("migrate", End::Scripted(&src), End::Real(&dst), &[]).await;
    assert_eq!(
        run.code, 3,
        "a refused folder is a failure of the pair\n{run}"
    );
    assert_eq!(run.json["status"], "completed_with_failures", "{run}");
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Secret") && error.contains("NOPERM"),
        "{run}"
    );
    let vanished = run.warnings("folder_vanished");
    assert_eq!(vanished.len(), 1, "{run}");
    assert_eq!(vanished[0]["folder"], "Gone", "{run}");
    let skipped: Vec<&str> = run.json["skipped_folders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        skipped.contains(&"Gone") && skipped.contains(&"Secret"),
        "{run}"
    );
    let after = snapshot(&dst).await.unwrap();
    assert_eq!((after.count("INBOX"), after.count("Work")), (2, 2), "{run}");

    // Only a vanished folder: a warning, and the run is a success.
    let dst = servers.new_user(Side::Target, "statusgone").unwrap();
    let src = source_with_unreadable_folders(false).await;
    let run = mailferry("migrate", End::Scripted(&src), End::Real(&dst), &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.warnings("folder_vanished").len(), 1, "{run}");
    let after = snapshot(&dst).await.unwrap();
    assert_eq!((after.count("INBOX"), after.count("Work")), (2, 2), "{run}");
}

// ---------------------------------------------------------------------------------------------
// Arithmetic on server numbers.

fn inbox_announcing(sizes: &[u64]) -> Account {
    let mut account = Account::new();
    for (i, size) in sizes.iter().enumerate() {
        let uid = account.inbox().push(message(i));
        if let Some(m) = account.inbox().messages.iter_mut().find(|m| m.uid == uid) {
            m.announced_size = Some(*size);
        }
    }
    account
}

/// Sizes near `u64::MAX` saturate: three of them need `u64::MAX` bytes, not 2^64 - 3; two of
/// 2^63 do not wrap to 0 and pass the quota check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_sizes_saturate_in_check() {
    let servers = TestServers::get();
    let dst = servers.new_user(Side::Target, "hugesize").unwrap();
    let src = ScriptedServer::start(inbox_announcing(&[u64::MAX; 3]))
        .await
        .unwrap();
    let run = mailferry("check", End::Scripted(&src), End::Real(&dst), &[]).await;
    assert_eq!(run.json["bytes_needed"].as_u64(), Some(u64::MAX), "{run}");
    assert_eq!(
        run.json["source"]["bytes"].as_u64(),
        Some(u64::MAX),
        "{run}"
    );

    let dst = servers.new_user(Side::Target, "wrapsize").unwrap();
    servers.set_quota(&dst, Some(10 << 20)).unwrap();
    let src = ScriptedServer::start(inbox_announcing(&[1 << 63, 1 << 63]))
        .await
        .unwrap();
    let run = mailferry("check", End::Scripted(&src), End::Real(&dst), &[]).await;
    assert_eq!(run.json["bytes_needed"].as_u64(), Some(u64::MAX), "{run}");
    let quota_problem = run.json["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["blocking"] == true && p["message"].as_str().unwrap_or("").contains("quota"));
    assert!(quota_problem, "the quota check passed\n{run}");
    assert_eq!(run.code, 3, "{run}");
}

/// A message at UID 4294967295 (the largest UID) is inventoried and copied; nothing computes
/// a UID past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_uid_is_copied() {
    let servers = TestServers::get();
    let dst = servers.new_user(Side::Target, "maxuid").unwrap();
    let mut account = inbox_with(1);
    account.inbox().insert(Message::new(u32::MAX, message(99)));
    let src = ScriptedServer::start(account).await.unwrap();
    let run = mailferry("migrate", End::Scripted(&src), End::Real(&dst), &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["messages_copied"].as_u64(), Some(2), "{run}");
    let after = snapshot(&dst).await.unwrap();
    assert_eq!(after.count("INBOX"), 2, "{run}");
    // A rerun finds both copies by key and copies nothing again.
    let run = run_again(&src, &dst).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["already_present"].as_u64(), Some(2), "{run}");
}

async fn run_again(src: &ScriptedServer, dst: &TestAccount) -> Run {
    mailferry("migrate", End::Scripted(src), End::Real(dst), &[]).await
}

// ---------------------------------------------------------------------------------------------
// Bodies shorter or longer than their RFC822.SIZE.

/// A source announcing a size 1,000 bytes off for UID 2, every time (a server with approximate
/// sizes): fetched once more, copied as served, and reported `size_mismatch`. A body cut short
/// once in transit is fetched again and arrives whole, without a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_another_size_is_refetched_then_copied_with_a_warning() {
    let mut account = inbox_with(3);
    let true_size = account.inbox().messages[1].body.len() as u64;
    account.inbox().messages[1].announced_size = Some(true_size + 1_000);
    let src = ScriptedServer::start(account).await.unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let run = mailferry("migrate", End::Scripted(&src), End::Scripted(&dst), &[]).await;
    assert_eq!(run.code, 0, "{run}");
    let warned = run.warnings("size_mismatch");
    assert_eq!(warned.len(), 1, "{run}");
    let text = warned[0]["message"].as_str().unwrap_or_default();
    let announced = (true_size + 1_000).to_string();
    assert!(
        text.contains("UID 2")
            && text.contains(&announced)
            && text.contains(&true_size.to_string()),
        "{text}"
    );
    assert_eq!(warned[0]["folder"], "INBOX", "{run}");
    let body_fetches = src
        .commands()
        .iter()
        .filter(|c| c.starts_with("UID FETCH 2 ") && c.contains("BODY.PEEK[]"))
        .count();
    assert_eq!(body_fetches, 1, "UID 2 is fetched once more, alone\n{run}");
    assert_eq!(dst.account().inbox().messages.len(), 3, "{run}");

    // Cut short once: the second fetch brings the whole body.
    let account = inbox_with(3);
    let whole = account.folders[0].messages[1].body.clone();
    let cut = whole[..whole.len() - 10].to_vec();
    let mut from = format!("{{{}}}\r\n", whole.len()).into_bytes();
    from.extend_from_slice(&whole);
    let mut to = format!("{{{}}}\r\n", cut.len()).into_bytes();
    to.extend_from_slice(&cut);
    let once = Override::alter(scripted::text_contains("BODY.PEEK[]"), move |_, honest| {
        replace_bytes(&honest, &from, &to)
    })
    .times(1);
    let src = ScriptedServer::start_with(account, Quirks::default(), vec![once])
        .await
        .unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let run = mailferry("migrate", End::Scripted(&src), End::Scripted(&dst), &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.warnings("size_mismatch").is_empty(), "{run}");
    let copied = dst.account().inbox().messages.clone();
    assert_eq!(copied.len(), 3, "{run}");
    assert_eq!(
        copied[1].body, whole,
        "the truncated body was copied\n{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// Non-UTF-8 folder names.

/// A folder whose name holds the byte 0xFF is opened under exactly those bytes; its messages
/// arrive on the target under a name derived with a replacement character, with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_with_a_non_utf8_name_is_copied() {
    let servers = TestServers::get();
    let dst = servers.new_user(Side::Target, "rawname").unwrap();
    let account = inbox_with(1).with(
        Folder::new(&b"Caf\xff"[..])
            .with(message(40))
            .with(message(41)),
    );
    let src = ScriptedServer::start(account).await.unwrap();
    let run = mailferry("migrate", End::Scripted(&src), End::Real(&dst), &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["messages_copied"].as_u64(), Some(3), "{run}");
    assert_eq!(run.warnings("undecodable_name").len(), 1, "{run}");
    let after = snapshot(&dst).await.unwrap();
    let others: usize = after
        .counts()
        .iter()
        .filter(|(name, _)| name.as_str() != "INBOX")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        (after.count("INBOX"), others),
        (1, 2),
        "{:?}\n{run}",
        after.counts()
    );
}

// ---------------------------------------------------------------------------------------------
// Advice that misleads.

/// A FETCH answered with another UID than asked is a protocol failure for that message, named
/// with both UIDs, not "deleted on the source during the run".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uid_than_asked_is_not_called_a_deletion() {
    let other = Override::alter(scripted::text_contains("BODY.PEEK[]"), |_, honest| {
        replace_bytes(&honest, b"FETCH (UID 2 ", b"FETCH (UID 7 ")
    });
    let src = ScriptedServer::start_with(inbox_with(3), Quirks::default(), vec![other])
        .await
        .unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();
    let run = mailferry("migrate", End::Scripted(&src), End::Scripted(&dst), &[]).await;
    assert_eq!(run.code, 3, "{run}");
    let failures = run.json["failures"].as_array().cloned().unwrap_or_default();
    assert_eq!(failures.len(), 1, "{run}");
    let f = &failures[0];
    assert_eq!(f["uid"], 2, "{run}");
    assert_eq!(f["kind"], "wrong_message", "{run}");
    let reason = f["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("UID 2") && reason.contains("UID 7"),
        "{run}"
    );
    let advice = f["advice"].as_str().unwrap_or_default();
    assert!(!advice.contains("deleted"), "{run}");
    assert_eq!(dst.account().inbox().messages.len(), 2, "{run}");
}

// ---------------------------------------------------------------------------------------------
// A listing of 100,000 folders.

fn many_folders(n: usize) -> Account {
    let mut account = Account::new();
    for i in 0..n {
        let mut f = Folder::new(format!("F{i:06}").into_bytes());
        f.subscribed = false;
        account.folders.push(f);
    }
    account
}

/// 100,000 folders is refused before anything is planned: the pair fails (exit 6) with an error
/// naming the limit and the flag, in bounded memory and time, and no folder is asked about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_folders_are_refused_with_the_limit_named() {
    let servers = TestServers::get();
    let dst = servers.new_user(Side::Target, "manyfolders").unwrap();
    let src = ScriptedServer::start(many_folders(100_000)).await.unwrap();
    let started = std::time::Instant::now();
    let run = mailferry(
        "migrate",
        End::Scripted(&src),
        End::Real(&dst),
        &["--dry-run"],
    )
    .await;
    assert_eq!(run.code, 6, "{run}");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("100001 folders") && said.contains("50000") && said.contains("--max-folders"),
        "{run}"
    );
    assert!(run.max_rss_kib < 250 * 1024, "{run}");
    assert!(started.elapsed() < Duration::from_secs(60), "{run}");
    assert!(
        !src.commands().iter().any(|c| c.starts_with("STATUS")),
        "nothing is asked of folders beyond the limit"
    );
}
