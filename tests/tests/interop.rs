//! Servers other than Dovecot (issue 15): behaviours real IMAP servers have that broke a promise
//! of the README, each played by the scripted server (tests/src/scripted/) through a switchable
//! quirk or an override, with the real `mailferry` binary between two scripted servers.

use std::time::Duration;

use mailferry_tests::cli::{self, Output};
use mailferry_tests::scripted::{self, Account, Folder, Override, Quirks, ScriptedServer};

/// Runs `mailferry migrate --json` from `src` to `dst` (plain IMAP on loopback) with a private
/// state directory and `extra` arguments, within two minutes.
async fn migrate(src: &ScriptedServer, dst: &ScriptedServer, extra: &[&str]) -> Output {
    let state = tempfile::tempdir().expect("a state directory");
    let mut cmd = cli::bare_command();
    cmd.args([
        "migrate",
        "--json",
        "--src",
        &src.url(),
        "--src-tls",
        "none",
    ])
    .args(["--dst", &dst.url(), "--dst-tls", "none"])
    .arg("--state")
    .arg(state.path())
    .args(extra)
    .env("MAILFERRY_SRC_PASSWORD", src.password())
    .env("MAILFERRY_DST_PASSWORD", dst.password());
    cli::run_command(cmd, Duration::from_secs(120))
        .await
        .expect("mailferry ran")
}

/// A small distinct message.
fn message(n: usize) -> Vec<u8> {
    format!(
        "Message-ID: <interop-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:{:02} +0000\r\nFrom: a@example.net\r\nTo: b@example.net\r\nSubject: message {n}\r\n\r\nbody of message {n}\r\n",
        n % 60
    )
    .into_bytes()
}

/// A folder holding messages `from..from + n`.
fn folder(name: &str, from: usize, n: usize) -> Folder {
    (from..from + n).fold(Folder::new(name), |f, i| f.with(message(i)))
}

fn count(server: &ScriptedServer, name: &str) -> usize {
    server
        .account()
        .folder(name.as_bytes())
        .map_or(0, |f| f.messages.len())
}

/// The target commands that start with `verb` and name `name`.
fn commands_on(server: &ScriptedServer, verb: &str, name: &str) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| {
            c.starts_with(verb) && c.split(' ').nth(1).map(|n| n.trim_matches('"')) == Some(name)
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// A read-only selection refuses APPEND.

/// A target that refuses APPEND into the folder the session has open read-only (`NO Current
/// box is selected READ-ONLY.`) receives every message: the worker examines a target folder to
/// count what it holds, and leaves it before appending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_refusing_appends_into_an_examined_folder_receives_everything() {
    let mut account = Account::new().with(folder("Work", 10, 3));
    for i in 0..5 {
        account.inbox().push(message(i));
    }
    let src = ScriptedServer::start(account).await.unwrap();
    let quirks = Quirks {
        refuse_append_to_examined: true,
        ..Quirks::default()
    };
    let dst = ScriptedServer::start_with(Account::new(), quirks, Vec::new())
        .await
        .unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.u64("messages_copied"), 8, "{run}");
    assert_eq!((count(&dst, "INBOX"), count(&dst, "Work")), (5, 3), "{run}");
}

// ---------------------------------------------------------------------------------------------
// A folder that takes no mail.

/// A target folder refusing every APPEND is one failure of the folder, with the server's words
/// and a count of the messages not copied, not one "refused this message's content" per
/// message; the batch stops after the first refusals and the chain's later batches are not
/// sent. The other folder is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_refusing_every_append_is_one_failure_of_the_folder() {
    // 600 messages: two batches of the chain (500 a batch).
    let mut account = Account::new().with(folder("Locked", 100, 600));
    for i in 0..3 {
        account.inbox().push(message(i));
    }
    let src = ScriptedServer::start(account).await.unwrap();
    let refuse = Override::replace(
        scripted::verb_on("APPEND", "Locked"),
        "{tag} NO [NOPERM] Permission denied to insert into Locked\r\n",
    );
    let target = Account::new().with(Folder::new("Locked"));
    let dst = ScriptedServer::start_with(target, Quirks::default(), vec![refuse])
        .await
        .unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 3, "{run}");
    assert_eq!(run.str("status"), "completed_with_failures", "{run}");
    assert_eq!(run.u64("messages_copied"), 3, "{run}");
    assert_eq!(
        run.u64("failed"),
        600,
        "every message not copied is counted\n{run}"
    );
    assert!(
        run.array("failures").is_empty(),
        "no failure per message\n{run}"
    );
    let folder_failures = run.array("folder_failures");
    assert_eq!(folder_failures.len(), 1, "{run}");
    let f = &folder_failures[0];
    assert_eq!(
        (f["folder"].as_str(), f["messages"].as_u64()),
        (Some("Locked"), Some(600)),
        "{run}"
    );
    assert_eq!(f["kind"], "folder_refused", "{run}");
    let reason = f["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("[NOPERM] Permission denied to insert into Locked")
            && reason.contains("Locked"),
        "{run}"
    );
    let advice = f["advice"].as_str().unwrap_or_default();
    assert!(
        !advice.contains("content") && advice.contains("--exclude"),
        "{run}"
    );
    let details = run.array("folder_details");
    let locked = details
        .iter()
        .find(|d| d["target"] == "Locked")
        .unwrap_or_else(|| panic!("no details of Locked\n{run}"));
    assert_eq!(locked["failed"].as_u64(), Some(600), "{run}");
    assert!(
        locked["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Permission denied"),
        "{run}"
    );
    assert_eq!(
        commands_on(&dst, "APPEND", "Locked"),
        3,
        "the batch stops after three refusals alike; the next batch is not sent"
    );
    assert_eq!(
        (count(&dst, "INBOX"), count(&dst, "Locked")),
        (3, 0),
        "{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// Refused CREATE.

/// A folder the target refuses to create is a failure of its own, empty or not, with the
/// server's words: in the failures of folders, in the folder details (not created) and in the
/// exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_is_a_failure_even_of_an_empty_folder() {
    let mut account = Account::new()
        .with(Folder::new("Empty"))
        .with(folder("Full", 20, 2))
        .with(folder("Fine", 30, 1));
    account.inbox().push(message(0));
    let src = ScriptedServer::start(account).await.unwrap();
    let overrides = vec![
        Override::replace(
            scripted::verb_on("CREATE", "Empty"),
            "{tag} NO Invalid mailbox name\r\n",
        ),
        Override::replace(
            scripted::verb_on("CREATE", "Full"),
            "{tag} NO [CANNOT] Error in IMAP command received by server\r\n",
        ),
    ];
    let dst = ScriptedServer::start_with(Account::new(), Quirks::default(), overrides)
        .await
        .unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 3, "{run}");
    assert_eq!(run.str("status"), "completed_with_failures", "{run}");
    assert_eq!(
        (run.u64("messages_copied"), run.u64("failed")),
        (2, 2),
        "{run}"
    );
    assert!(run.array("failures").is_empty(), "{run}");
    let folder_failures = run.array("folder_failures");
    let of = |name: &str| {
        folder_failures
            .iter()
            .find(|f| f["folder"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no failure of {name}\n{run}"))
    };
    let empty = of("Empty");
    assert_eq!(empty["messages"].as_u64(), Some(0), "{run}");
    assert!(
        empty["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid mailbox name"),
        "{run}"
    );
    let full = of("Full");
    assert_eq!(full["messages"].as_u64(), Some(2), "{run}");
    assert!(
        full["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("[CANNOT] Error in IMAP command received by server"),
        "{run}"
    );
    let details = run.array("folder_details");
    let empty = details
        .iter()
        .find(|d| d["target"] == "Empty")
        .unwrap_or_else(|| panic!("no details of Empty\n{run}"));
    assert_eq!(empty["created"], false, "{run}");
    assert!(
        empty["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid mailbox name"),
        "{run}"
    );
    assert_eq!(count(&dst, "Fine"), 1, "{run}");
}

/// A target that hangs up on one CREATE with `* BYE [SERVERBUG]` (RFC 5530 §3: a bug of the
/// server's own; pymap does this for a folder name it cannot store twice) fails that folder by
/// name, with the server's words, and the other folders are still created and copied; the run
/// is not given up as a connection failure of the whole mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_serverbug_answering_create_fails_only_that_folder() {
    let mut account = Account::new()
        .with(folder("Bad", 20, 2))
        .with(folder("Fine", 30, 1));
    account.inbox().push(message(0));
    let src = ScriptedServer::start(account).await.unwrap();
    let overrides = vec![
        Override::replace(
            scripted::verb_on("CREATE", "Bad"),
            "* BYE [SERVERBUG] Unhandled server error.\r\n",
        )
        .then_silence(),
    ];
    let dst = ScriptedServer::start_with(Account::new(), Quirks::default(), overrides)
        .await
        .unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 3, "{run}");
    assert_eq!(run.str("status"), "completed_with_failures", "{run}");
    assert_eq!(
        (run.u64("messages_copied"), run.u64("failed")),
        (2, 2),
        "{run}"
    );
    let bad = run
        .array("folder_failures")
        .into_iter()
        .find(|f| f["folder"] == "Bad")
        .unwrap_or_else(|| panic!("no failure of Bad\n{run}"));
    assert!(
        bad["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("[SERVERBUG] Unhandled server error."),
        "{run}"
    );
    assert_eq!(count(&dst, "Fine"), 1, "{run}");
    assert_eq!(count(&dst, "INBOX"), 1, "{run}");
}

// ---------------------------------------------------------------------------------------------
// UIDVALIDITY of a folder never opened.

/// A target keeping no UID state for its empty INBOX until it is first opened read-write makes
/// up a new UIDVALIDITY for every STATUS and EXAMINE: the copy opens the empty folder
/// read-write once and goes on, with no "changed since planning" retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_uidvalidity_of_an_empty_folder_causes_no_retry() {
    let mut account = Account::new();
    for i in 0..3 {
        account.inbox().push(message(i));
    }
    let src = ScriptedServer::start(account).await.unwrap();
    let quirks = Quirks {
        lazy_uidvalidity: true,
        ..Quirks::default()
    };
    let dst = ScriptedServer::start_with(Account::new(), quirks, Vec::new())
        .await
        .unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(count(&dst, "INBOX"), 3, "{run}");
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("changed since planning"),
        "{run}"
    );
    // The inventory's EXAMINE, the copy's EXAMINE and one SELECT: no attempt was repeated.
    let opened = commands_on(&dst, "EXAMINE", "INBOX") + commands_on(&dst, "SELECT", "INBOX");
    assert_eq!(
        commands_on(&dst, "SELECT", "INBOX"),
        1,
        "{:?}",
        dst.commands()
    );
    assert!(opened <= 3, "{:?}", dst.commands());
    assert_eq!(commands_on(&dst, "APPEND", "INBOX"), 3, "{run}");
}

// ---------------------------------------------------------------------------------------------
// Gmail's `[Gmail]`.

/// A Gmail-like source: `[Gmail]` holds no mail (`\Noselect`) and every child goes elsewhere
/// (to the target's Sent and Trash) or is skipped (virtual folders). No empty `[Gmail]` is
/// created on the target; one subscribed on its own is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_gmail_parent_is_not_created() {
    let gmail = |parent_subscribed: bool| {
        let mut account = Account::new()
            .with(
                Folder::new("[Gmail]")
                    .attribute("\\Noselect")
                    .subscribed(parent_subscribed),
            )
            .with(folder("[Gmail]/All Mail", 0, 3).attribute("\\All"))
            .with(folder("[Gmail]/Sent Mail", 1, 1).attribute("\\Sent"))
            .with(Folder::new("[Gmail]/Trash").attribute("\\Trash"))
            .with(Folder::new("[Gmail]/Starred").attribute("\\Flagged"));
        account.inbox().push(message(0));
        account
    };
    let target = || {
        Account::new()
            .with(Folder::new("Sent"))
            .with(Folder::new("Trash"))
    };
    let src = ScriptedServer::start(gmail(false)).await.unwrap();
    let dst = ScriptedServer::start(target()).await.unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!((count(&dst, "INBOX"), count(&dst, "Sent")), (1, 1), "{run}");
    assert!(
        dst.account().folder(b"[Gmail]").is_none(),
        "an empty [Gmail] was created: {:?}",
        dst.commands()
    );
    assert_eq!(commands_on(&dst, "CREATE", "[Gmail]"), 0, "{run}");
    let skipped = run.array("skipped_folders");
    assert!(
        skipped.iter().any(|s| s["name"] == "[Gmail]"),
        "[Gmail] is reported as left out\n{run}"
    );

    // Subscribed on its own: created (and subscribed).
    let src = ScriptedServer::start(gmail(true)).await.unwrap();
    let dst = ScriptedServer::start(target()).await.unwrap();
    let run = migrate(&src, &dst, &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        dst.account()
            .folder(b"[Gmail]")
            .is_some_and(|f| f.subscribed),
        "{:?}",
        dst.commands()
    );
}
