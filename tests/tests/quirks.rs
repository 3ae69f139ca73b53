//! The quirks server as a scenario suite (issue 14, "Every server a provider meets"): the same
//! account migrated from and to the scripted server in each way servers other than Dovecot
//! behave (no UIDPLUS, no LITERAL+, neither, no SASL-IR with a bare-LF login answer, header
//! fields rendered otherwise, APPEND refused into a read-only selection, UIDVALIDITY made up
//! until first SELECT, approximate RFC822.SIZE). In each: an exact copy (every folder, every
//! message byte for byte with its flags and INTERNALDATE), then a rerun with the same state
//! and one with a fresh state that copy nothing.

use mailferry_tests::run::{End, Run, mailferry, mailferry_in};
use mailferry_tests::scripted::{Account, Folder, HeaderFields, Quirks, ScriptedServer};

/// What a folder holds, comparable across servers: per message its bytes, flags (sorted, no
/// `\Recent`) and INTERNALDATE, in UID order.
type Contents = Vec<(Vec<u8>, Vec<String>, String)>;

fn contents(account: &Account) -> Vec<(Vec<u8>, Contents)> {
    let mut folders: Vec<(Vec<u8>, Contents)> = account
        .folders
        .iter()
        .filter(|f| !f.is_noselect())
        .map(|f| {
            let msgs = f
                .messages
                .iter()
                .map(|m| {
                    let mut flags: Vec<String> = m
                        .flags
                        .iter()
                        .filter(|x| !x.eq_ignore_ascii_case("\\Recent"))
                        .cloned()
                        .collect();
                    flags.sort();
                    (m.body.clone(), flags, m.internal_date.clone())
                })
                .collect();
            (f.name.clone(), msgs)
        })
        .collect();
    // Created in the order the migration chose: compared by name.
    folders.sort();
    folders
}

/// An account with what tells servers apart: a header-only message, a message without
/// Message-ID, a genuine duplicate, flags and keywords, dates in other zones, a nested folder
/// and a name in modified UTF-7.
fn source_account() -> Account {
    let msg = |n: u32, extra: &str| {
        format!(
            "Received: from relay{n}.example.net; Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <quirk-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:{n:02} +0000\r\nFrom: a@example.net\r\nTo: b@example.org\r\nSubject: quirk {n}{extra}\r\n\r\nbody {n}\r\n"
        )
        .into_bytes()
    };
    let mut account = Account::new();
    {
        let inbox = account.inbox();
        inbox.push(msg(1, ""));
        inbox.push(b"Subject: a message that is one header line only".to_vec());
        inbox.push(b"From: x@example.net\r\nSubject: no id\r\n\r\nno Message-ID here\r\n".to_vec());
        inbox.push(msg(4, " (twice)"));
        inbox.push(msg(4, " (twice)"));
        inbox.push(msg(6, ""));
        let flagged = [
            (1, vec!["\\Seen"]),
            (4, vec!["\\Seen", "\\Flagged", "$Label1"]),
            (6, vec!["\\Answered", "Work"]),
        ];
        for (uid, flags) in flagged {
            if let Some(m) = inbox.messages.iter_mut().find(|m| m.uid == uid) {
                m.flags = flags.into_iter().map(String::from).collect();
            }
        }
        if let Some(m) = inbox.messages.iter_mut().find(|m| m.uid == 6) {
            m.internal_date = "29-Feb-2024 23:59:59 -0800".into();
        }
    }
    account
        .with(Folder::new("Work").with(msg(10, "")))
        .with(Folder::new("Work/2024").with(msg(11, "")).with(msg(12, "")))
        .with(Folder::new("Entw&APw-rfe").with(msg(13, "")))
}

fn with(f: impl FnOnce(&mut Quirks)) -> Quirks {
    let mut q = Quirks::default();
    f(&mut q);
    q
}

/// The ways servers differ that the suite plays, by name.
fn behaviours() -> Vec<(&'static str, Quirks)> {
    vec![
        (
            "plain IMAP4rev1 with UIDPLUS and LITERAL+",
            Quirks::default(),
        ),
        ("no UIDPLUS", with(|q| q.uidplus = false)),
        ("no LITERAL+", with(|q| q.literal_plus = false)),
        (
            "neither UIDPLUS nor LITERAL+",
            with(|q| {
                q.uidplus = false;
                q.literal_plus = false;
            }),
        ),
        (
            "no SASL-IR, a bare LF after the login",
            with(|q| {
                q.sasl_ir = false;
                q.bare_lf_login = true;
            }),
        ),
        (
            "a header-only message rendered as no header",
            with(|q| q.header_fields = HeaderFields::EmptyWithoutBlankLine),
        ),
        (
            "Received never rendered",
            with(|q| q.header_fields = HeaderFields::WithoutReceived),
        ),
        (
            "APPEND refused into a read-only selection",
            with(|q| q.refuse_append_to_examined = true),
        ),
        (
            "UIDVALIDITY made up until first SELECT",
            with(|q| q.lazy_uidvalidity = true),
        ),
    ]
}

/// Migrates from `src` to `dst` three times (state kept, then a fresh state) and checks the
/// copy is exact and the reruns copy nothing.
async fn exact_then_nothing(what: &str, src: &ScriptedServer, dst: &ScriptedServer) {
    let state = tempfile::tempdir().expect("a state directory");
    let kept = Some(state.path());
    let first = mailferry_in("migrate", End::Scripted(src), End::Scripted(dst), &[], kept).await;
    check(what, "first run", &first, 0);
    assert_eq!(
        contents(&dst.account()),
        contents(&src.account()),
        "{what}: the target is not an exact copy\n{first}"
    );
    let again = mailferry_in("migrate", End::Scripted(src), End::Scripted(dst), &[], kept).await;
    check(what, "rerun", &again, 0);
    let fresh = mailferry("migrate", End::Scripted(src), End::Scripted(dst), &[]).await;
    check(what, "rerun without state", &fresh, 0);
    assert_eq!(
        contents(&dst.account()),
        contents(&src.account()),
        "{what}: a rerun changed the target\n{fresh}"
    );
}

fn check(what: &str, which: &str, run: &Run, copied: u64) {
    assert_eq!(run.code, 0, "{what}, {which}\n{run}");
    if which != "first run" {
        assert_eq!(
            run.json["messages_copied"].as_u64(),
            Some(copied),
            "{what}, {which}: copied again\n{run}"
        );
    }
}

async fn start(account: Account, quirks: Quirks) -> ScriptedServer {
    ScriptedServer::start_with(account, quirks, Vec::new())
        .await
        .expect("starting the scripted server")
}

/// A target that behaves otherwise: the copy is exact and reruns copy nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_each_kind_of_server_the_copy_is_exact_and_reruns_copy_nothing() {
    for (what, quirks) in behaviours() {
        let src = start(source_account(), Quirks::default()).await;
        let dst = start(Account::new(), quirks).await;
        exact_then_nothing(&format!("to a target with {what}"), &src, &dst).await;
    }
}

/// A source that behaves otherwise (and one that announces approximate sizes, as Exchange
/// does): the copy is exact and reruns copy nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_each_kind_of_server_the_copy_is_exact_and_reruns_copy_nothing() {
    let mut cases = behaviours();
    cases.push(("approximate RFC822.SIZE", Quirks::default()));
    for (what, quirks) in cases {
        let mut account = source_account();
        if what.starts_with("approximate") {
            for m in &mut account.inbox().messages {
                m.announced_size = Some(m.body.len() as u64 + 7);
            }
        }
        let src = start(account, quirks).await;
        let dst = start(Account::new(), Quirks::default()).await;
        exact_then_nothing(&format!("from a source with {what}"), &src, &dst).await;
    }
}
