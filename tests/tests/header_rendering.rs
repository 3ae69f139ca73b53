//! Servers render a message's identifying header fields differently (issue 15, part 3): a rerun
//! without the state directory must still recognise every copy, so it copies nothing twice,
//! whichever server is the source. Both ends are the scripted server, each rendering
//! `BODY[HEADER.FIELDS (...)]` its own way (`scripted::HeaderFields`).

use mailferry_tests::run::{End, Run, mailferry};
use mailferry_tests::scripted::{Account, HeaderFields, Quirks, ScriptedServer};

/// 50 bytes or so: one header line and no blank line, stored byte for byte by every server.
const HEADER_ONLY: &[u8] = b"Subject: a message that is one header line only";

fn ordinary(n: usize) -> Vec<u8> {
    format!(
        "Received: from relay{n}.example.net by mx.example.org; Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <render-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:0{n} +0000\r\nFrom: a@example.net\r\nSubject: ordinary {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

async fn server(how: HeaderFields, account: Account) -> ScriptedServer {
    let quirks = Quirks {
        header_fields: how,
        ..Quirks::default()
    };
    ScriptedServer::start_with(account, quirks, Vec::new())
        .await
        .expect("starting the scripted server")
}

fn source_account() -> Account {
    let mut account = Account::new();
    account.inbox().push(HEADER_ONLY.to_vec());
    for n in 1..=3 {
        account.inbox().push(ordinary(n));
    }
    account
}

/// Three runs, each with a fresh state directory; the target must hold each message once.
async fn three_runs_without_state(src: &ScriptedServer, dst: &ScriptedServer) -> Vec<Run> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = mailferry("migrate", End::Scripted(src), End::Scripted(dst), &[]).await;
        assert_eq!(run.code, 0, "{run}");
        let held = dst.account().inbox().messages.len();
        assert_eq!(
            held, 4,
            "the target holds {held} messages after a run\n{run}"
        );
        runs.push(run);
    }
    runs
}

/// The source renders a header-only message as its one field, the target as nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_message_rendered_empty_by_the_target_is_copied_once() {
    let src = server(HeaderFields::WholeMessageWithoutBlankLine, source_account()).await;
    let dst = server(HeaderFields::EmptyWithoutBlankLine, Account::new()).await;
    let runs = three_runs_without_state(&src, &dst).await;
    // The copy is exact: the target only renders it otherwise, which is no reason to warn.
    assert!(runs[0].warnings("key_unstable").is_empty(), "{}", runs[0]);
}

/// The other way round: the source renders it as nothing, the target as its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_message_rendered_empty_by_the_source_is_copied_once() {
    let src = server(HeaderFields::EmptyWithoutBlankLine, source_account()).await;
    let dst = server(HeaderFields::WholeMessageWithoutBlankLine, Account::new()).await;
    let runs = three_runs_without_state(&src, &dst).await;
    assert!(runs[0].warnings("key_unstable").is_empty(), "{}", runs[0]);
}

/// The target never renders `Received`, so no key of a message with one matches: the copies are
/// recognised by content (equal size, equal bytes) and the summary says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_rendered_without_a_field_are_recognised_by_content() {
    let src = server(HeaderFields::WholeMessageWithoutBlankLine, source_account()).await;
    let dst = server(HeaderFields::WithoutReceived, Account::new()).await;
    let runs = three_runs_without_state(&src, &dst).await;
    let recognised = runs[1].warnings("headers_rendered_differently");
    assert_eq!(recognised.len(), 1, "{}", runs[1]);
    let text = recognised[0]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("3 messages in \"INBOX\""), "{text}");
    assert_eq!(
        runs[1].json["messages_copied"].as_u64(),
        Some(0),
        "{}",
        runs[1]
    );
}

/// Body fetches of one message for keying (`UID FETCH n UID BODY.PEEK[]`), as the server saw them.
fn keying_fetches(server: &ScriptedServer) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| c.starts_with("UID FETCH") && c.ends_with("(UID BODY.PEEK[])"))
        .count()
}

/// The content check costs nothing when nothing is left unmatched: a first run into an empty
/// folder and a rerun that owes nothing fetch no body to compare. Only the header-only message,
/// rendered with no identifying field, is fetched: to key it, and once after it was appended,
/// to tell a target that renders it otherwise from one that changed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_unmatched_means_no_body_compared() {
    let src = server(HeaderFields::EmptyWithoutBlankLine, source_account()).await;
    let dst = server(HeaderFields::EmptyWithoutBlankLine, Account::new()).await;
    let first = mailferry("migrate", End::Scripted(&src), End::Scripted(&dst), &[]).await;
    assert_eq!(first.code, 0, "{first}");
    assert_eq!(keying_fetches(&src), 1, "{:#?}", src.commands());
    assert_eq!(keying_fetches(&dst), 1, "{:#?}", dst.commands());
    assert!(first.warnings("key_unstable").is_empty(), "{first}");
    let rerun = mailferry("migrate", End::Scripted(&src), End::Scripted(&dst), &[]).await;
    assert_eq!(rerun.json["messages_copied"].as_u64(), Some(0), "{rerun}");
    assert_eq!(keying_fetches(&src), 2, "{:#?}", src.commands());
    assert_eq!(keying_fetches(&dst), 2, "{:#?}", dst.commands());
}
