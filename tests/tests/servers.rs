//! The server scenario suite: the same scenarios against every real IMAP server the harness can
//! run, as source and as target. Today: Dovecot (the pair of `scripts/test-servers`), pymap
//! (a Python IMAP server from PyPI, `scripts/pymap-server`) and Cyrus IMAP 3.6 (Debian's
//! packages unpacked, never installed, `scripts/cyrus-server`). Each scenario seeds the source with
//! the harness's fixtures, runs the real `mailferry migrate`, reads both sides back with the
//! harness's own client and compares them exactly (every folder, every message byte for byte,
//! flags, INTERNALDATE, subscriptions), then reruns and asserts that nothing is copied.
//!
//! Differences found between pymap and Dovecot (pymap 0.36.7, maildir backend), and what the
//! suite asserts about each:
//! - **Bare LF.** pymap serves every message with bare LF line endings whatever was appended
//!   (RFC 3501 §2.2 wants CRLF), and its RFC822.SIZE counts that form. Bodies read from pymap
//!   are compared with every bare LF read as CRLF (`snapshot_crlf`); a pymap source copied to
//!   Dovecot compares equal to the source.
//! - **Messages rewritten.** pymap re-renders what it stores: a message of headers only gets a
//!   blank line added, a multipart without its closing delimiter gets one. So a pymap target is
//!   compared with a control account of the same pymap seeded directly by the harness: the
//!   copy must hold exactly what a direct APPEND of the source's messages leaves there.
//! - **No keywords.** PERMANENTFLAGS is `(\Answered \Deleted \Draft \Flagged \Seen)`, no `\*`:
//!   `$Forwarded`, `Work`, … are dropped on APPEND. mailferry must (and does) name each one with
//!   its folder in a `flag_not_kept` warning.
//! - **No SPECIAL-USE.** Roles are found by common name only: Dovecot's `\Sent` `Sent Items`
//!   lands on pymap's existing `Sent`, `\Trash` `Deleted Items` on `Trash`; from pymap, `Sent
//!   Items`/`Deleted Items` land on Dovecot's `\Sent`/`\Trash`.
//! - **No third level without parents.** CREATE `a/b/c` while `a` is no folder (`\Noselect`)
//!   answers `* BYE [SERVERBUG] Unhandled server error.`; mailferry creates parents first, so
//!   deep folders arrive (tested both ways).
//! - **`.` is pymap's on-disk separator.** CREATE `v1.2` says OK and LIST then shows `v1/2`
//!   (`a..b` shows `a//b`). A rerun's CREATE `v1.2` gets `* BYE [SERVERBUG]`, which failed the
//!   whole mailferry run (exit 5 after 15 s of retries); now that folder fails by name with
//!   pymap's words (exit 3) and the rest is checked.
//! - **Invalid modified UTF-7 wedges the server.** CREATE `bad&name` makes pymap spin at 100%
//!   CPU and stop answering every connection, greetings included (not exercised here: it would
//!   wedge the shared server).
//! - `FETCH BINARY.PEEK[]` is answered as `BINARY.PEEK[]` instead of `BINARY[]` (RFC 3516
//!   §4.2); no CONDSTORE, no implicit-TLS port (STARTTLS only).
//!
//! Differences found between Cyrus (3.6.1, Debian defaults) and Dovecot:
//! - **8-bit headers munged.** With the default `munge8bit: yes`, every 8-bit byte in a header
//!   is stored as `X` (`Ärger` becomes `XXrger`). So a Cyrus target, like pymap, is compared
//!   with a control account appended to directly; a Cyrus source copies exactly.
//! - **Refusals.** CREATE of a name holding `"`, `\` or `%` answers `NO Invalid mailbox name`;
//!   APPEND of a message without a header answers `NO Message contains invalid header` (and of
//!   one holding NUL, `NO Message contains NUL characters`; Dovecot never serves a NUL, so that
//!   one cannot be seeded). mailferry names each (folder failures, a message failure with its
//!   UID) with Cyrus's words, and copies the rest.
//! - **Parallel first logins share an INBOX.** `autocreate` users logging in for the first time
//!   at once were given one INBOX between them (3 of 8 in a direct imaplib test); the harness
//!   makes each user's first login alone (`tests/src/cyrus.rs`).
//! - Otherwise Cyrus is the richest of the three: SPECIAL-USE, CREATE-SPECIAL-USE, CONDSTORE,
//!   QRESYNC, keywords kept, messages (other than 8-bit headers) byte for byte.
//!
//! A scenario is skipped, with a message saying how to install its server, only when the test
//! servers include no such server; under `CI=true` that is a failure, never a skip.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use mailferry_tests::cli::{Output, run_migrate};
use mailferry_tests::verify::{MailboxSnapshot, personal_only, snapshot_crlf};
use mailferry_tests::{
    Fixture, Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot_with,
    unchanged,
};

/// An IMAP server implementation the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Source: Maildir++, prefix `INBOX.`, separator `.`, localized special-use names (`Sent
    /// Items`, `Deleted Items`). Target: no prefix, separator `/`, `Sent` and `Trash`
    /// auto-created with special-use.
    Dovecot,
    /// No prefix, separator `/`, no SPECIAL-USE, no CONDSTORE, STARTTLS and plain LOGIN.
    Pymap,
    /// Cyrus IMAP 3.6 (Debian's, unpacked): `altnamespace` (folders beside INBOX),
    /// `unixhierarchysep` (`/`), SPECIAL-USE, CONDSTORE, QRESYNC.
    Cyrus,
}

impl Kind {
    /// A fresh account on this server playing `role`, or `None` when the server is not
    /// installed here (outside CI only).
    fn account(self, role: Side, prefix: &str) -> Option<TestAccount> {
        let servers = TestServers::get();
        match self {
            Kind::Dovecot => Some(servers.new_user(role, prefix).unwrap()),
            Kind::Pymap => {
                if servers.pymap().is_none() {
                    return skip(
                        "the test servers include no pymap: run `scripts/pymap-server install`, \
                         then `scripts/test-servers start` (scripts/test does this)",
                    );
                }
                Some(servers.new_pymap_user(role, prefix).unwrap())
            }
            Kind::Cyrus => {
                if servers.cyrus().is_none() {
                    return skip(
                        "the test servers include no Cyrus: run `scripts/cyrus-server install`, \
                         then `scripts/test-servers start` (scripts/test does this)",
                    );
                }
                Some(servers.new_cyrus_user(role, prefix).unwrap())
            }
        }
    }

    /// The raw name of the personal folder `path` (components, outermost first) on this server
    /// playing `role`.
    fn folder(self, role: Side, path: &[&str]) -> String {
        match (self, role) {
            (_, _) if path == ["INBOX"] => "INBOX".to_owned(),
            (Kind::Dovecot, Side::Source) => format!("INBOX.{}", path.join(".")),
            _ => path.join("/"),
        }
    }

    /// Whether the server stores messages other than byte for byte as appended: pymap serves
    /// bare LF line endings (read as CRLF by [`Kind::snapshot`]), adds a blank line after a
    /// message of headers only, and closes an unterminated multipart. Cyrus (defaults:
    /// `munge8bit: yes`) replaces every 8-bit byte of a header with `X`.
    fn rewrites_messages(self) -> bool {
        matches!(self, Kind::Pymap | Kind::Cyrus)
    }

    /// Whether the server keeps keywords (`$Forwarded`, `Work`): pymap's PERMANENTFLAGS holds
    /// only the system flags.
    fn keeps_keywords(self) -> bool {
        self != Kind::Pymap
    }

    /// Reads the personal folders of `account` (the Dovecot source also shows public and
    /// virtual namespaces, which a migration leaves out). pymap serves messages with bare LF
    /// line endings whatever it was given, so its bodies are read as CRLF.
    async fn snapshot(self, account: &TestAccount) -> MailboxSnapshot {
        match self {
            Kind::Dovecot | Kind::Cyrus => snapshot_with(account, personal_only).await.unwrap(),
            Kind::Pymap => snapshot_crlf(account, personal_only).await.unwrap(),
        }
    }
}

/// Skips a scenario whose server is not installed here, saying how to install it; under
/// `CI=true` a missing server is a failure.
fn skip(why: &str) -> Option<TestAccount> {
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A source and a target account on two servers, and a private state directory.
struct Pair {
    from: Kind,
    to: Kind,
    src: TestAccount,
    dst: TestAccount,
    state: tempfile::TempDir,
}

impl Pair {
    fn new(from: Kind, to: Kind, prefix: &str) -> Option<Pair> {
        Some(Pair {
            from,
            to,
            src: from.account(Side::Source, prefix)?,
            dst: to.account(Side::Target, prefix)?,
            state: tempfile::tempdir().unwrap(),
        })
    }

    async fn migrate(&self, extra: &[&str]) -> Output {
        let state = self.state.path().to_string_lossy().into_owned();
        let mut args = vec!["--state", state.as_str()];
        args.extend_from_slice(extra);
        let out = run_migrate(&self.src, &self.dst, &args).await.unwrap();
        eprintln!(
            "{:?} -> {:?} migrate {extra:?}: exit {} in {:?}",
            self.from, self.to, out.code, out.elapsed
        );
        out
    }
}

/// One folder to seed: its path (components) and messages.
struct Seed {
    path: &'static [&'static str],
    subscribe: bool,
    messages: Vec<Fixture>,
}

/// A small mailbox of ordinary and awkward messages in nested folders.
fn mailbox(seed: u64) -> Vec<Seed> {
    let mut g = Fixtures::new(seed);
    let dup = g.duplicate();
    vec![
        Seed {
            path: &["INBOX"],
            subscribe: true,
            messages: vec![
                g.ordinary(),
                g.multipart(),
                g.eight_bit_headers(),
                g.malformed_mime(),
                g.header_only(),
                g.no_message_id(),
                g.all_flags(),
                dup.clone(),
                dup,
                g.ordinary()
                    .with_flags(&["$Forwarded", "$MDNSent", "Work", "\\Seen"]),
            ],
        },
        Seed {
            path: &["Projects"],
            subscribe: true,
            messages: g.across_zones(),
        },
        Seed {
            path: &["Projects", "2024"],
            subscribe: false,
            messages: vec![g.long_line(20_000), g.empty_body()],
        },
        Seed {
            path: &["Empty"],
            subscribe: true,
            messages: vec![],
        },
    ]
}

async fn seed(kind: Kind, role: Side, account: &TestAccount, folders: &[Seed]) {
    let mut c = ImapClient::connect(account).await.unwrap();
    for f in folders {
        let name = kind.folder(role, f.path);
        if kind == Kind::Pymap {
            // pymap cannot create a leaf before its parents (see deep_mailbox).
            for depth in 1..f.path.len() {
                let parent = kind.folder(role, &f.path[..depth]);
                if !c.list().await.unwrap().iter().any(|i| i.name == parent) {
                    c.create(&parent).await.unwrap();
                }
            }
        }
        if name != "INBOX" {
            c.create(&name).await.unwrap();
        }
        if f.subscribe {
            c.subscribe(&name).await.unwrap();
        }
        c.append_all(&name, &f.messages).await.unwrap();
    }
    c.logout().await;
}

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.code, code, "unexpected exit code\n{out}");
}

/// Exact copy, then a rerun that copies nothing and changes nothing.
async fn exact_copy_and_rerun(from: Kind, to: Kind, folders: Vec<Seed>) {
    let Some(pair) = Pair::new(from, to, "srv-exact") else {
        return;
    };
    seed(from, Side::Source, &pair.src, &folders).await;
    let total: u64 = folders.iter().map(|f| f.messages.len() as u64).sum();
    let mapping: Vec<(String, String)> = folders
        .iter()
        .map(|f| {
            (
                from.folder(Side::Source, f.path),
                to.folder(Side::Target, f.path),
            )
        })
        .collect();

    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    assert_eq!(out.u64("messages_copied"), total, "{out}");
    let src = from.snapshot(&pair.src).await;
    let dst = to.snapshot(&pair.dst).await;
    if to.rewrites_messages() {
        // The target holds exactly what it holds when the same messages are appended to it
        // directly: a control account seeded by the harness.
        let control = to.account(Side::Target, "srv-control").unwrap();
        seed(to, Side::Target, &control, &folders).await;
        let same: Vec<(&str, &str)> = mapping
            .iter()
            .map(|(_, t)| (t.as_str(), t.as_str()))
            .collect();
        if let Err(diff) = compare(&to.snapshot(&control).await, &dst, &same) {
            panic!("{from:?} -> {to:?}: the target differs from a direct append:\n{diff}\n{out}");
        }
    } else if let Err(diff) = compare(&src, &dst, &mapping) {
        panic!("{from:?} -> {to:?}: the target is not an exact copy:\n{diff}\n{out}");
    }
    if !from.rewrites_messages() && !to.rewrites_messages() {
        // And the copy is what was appended to the source, byte for byte.
        for (f, (_, target)) in folders.iter().zip(&mapping) {
            let fixtures: Vec<&Fixture> = f.messages.iter().collect();
            if let Err(diff) = dst.expect_fixtures(target, &fixtures) {
                panic!("{from:?} -> {to:?}: {target} does not hold exactly its fixtures:\n{diff}");
            }
        }
    }
    if !to.keeps_keywords() {
        // Every keyword of the source the target dropped is named, with its folder.
        let warned: Vec<(String, String)> = out
            .array("warnings")
            .iter()
            .filter(|w| w["code"] == "flag_not_kept")
            .map(|w| {
                (
                    w["folder"].as_str().unwrap_or_default().to_owned(),
                    w["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for (f, (_, target)) in folders.iter().zip(&mapping) {
            for keyword in f.messages.iter().flat_map(|m| &m.flags) {
                if keyword.starts_with('\\') {
                    continue;
                }
                let named = warned.iter().any(|(folder, message)| {
                    folder == target && message.contains(&format!("flag {keyword} "))
                });
                assert!(
                    named,
                    "{target}: no flag_not_kept warning names {keyword}\n{out}"
                );
            }
        }
    }

    let again = pair.migrate(&[]).await;
    assert_code(&again, 0);
    assert_eq!(again.u64("messages_copied"), 0, "{again}");
    assert_eq!(again.u64("already_present"), total, "{again}");
    if let Err(diff) = unchanged(&dst, &to.snapshot(&pair.dst).await) {
        panic!("{from:?} -> {to:?}: the rerun changed the target:\n{diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymap_to_dovecot_exact_copy_and_rerun() {
    exact_copy_and_rerun(Kind::Pymap, Kind::Dovecot, mailbox(14_001)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_pymap_exact_copy_and_rerun() {
    exact_copy_and_rerun(Kind::Dovecot, Kind::Pymap, mailbox(14_001)).await;
}

/// Special-use folders land on the target's folder of the same role: by attribute where the
/// server has SPECIAL-USE (Dovecot), by common name where it has not (pymap).
async fn special_use_folders_map(
    from: Kind,
    to: Kind,
    expected: &[(&'static [&'static str], &'static [&'static str])],
) {
    let Some(pair) = Pair::new(from, to, "srv-roles") else {
        return;
    };
    let mut g = Fixtures::new(14_002);
    let folders: Vec<Seed> = expected
        .iter()
        .map(|(path, _)| Seed {
            path,
            subscribe: true,
            messages: vec![g.ordinary().with_flags(&["\\Seen"])],
        })
        .collect();
    seed(from, Side::Source, &pair.src, &folders).await;
    if to == Kind::Pymap {
        // A provider's usual folders, without attributes: pymap has no SPECIAL-USE.
        let mut c = ImapClient::connect(&pair.dst).await.unwrap();
        for name in ["Sent", "Trash"] {
            c.create_subscribed(name).await.unwrap();
        }
        c.logout().await;
    }
    let mapping: Vec<(String, String)> = expected
        .iter()
        .map(|(s, t)| (from.folder(Side::Source, s), to.folder(Side::Target, t)))
        .collect();
    let out = pair.migrate(&[]).await;
    assert_code(&out, 0);
    let src = from.snapshot(&pair.src).await;
    let dst = to.snapshot(&pair.dst).await;
    if let Err(diff) = compare(&src, &dst, &mapping) {
        panic!("{from:?} -> {to:?}: special-use folders did not map as expected:\n{diff}\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymap_to_dovecot_special_use_by_name() {
    special_use_folders_map(
        Kind::Pymap,
        Kind::Dovecot,
        &[
            (&["Sent Items"], &["Sent"]),
            (&["Deleted Items"], &["Trash"]),
            // The target's \Junk folder does not exist until created, so no folder has the
            // role: the source name stays.
            (&["Junk E-mail"], &["Junk E-mail"]),
            (&["Drafts"], &["Drafts"]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_pymap_special_use_by_attribute() {
    special_use_folders_map(
        Kind::Dovecot,
        Kind::Pymap,
        &[
            (&["Sent Items"], &["Sent"]),
            (&["Deleted Items"], &["Trash"]),
            (&["Junk E-mail"], &["Junk E-mail"]),
            (&["Drafts"], &["Drafts"]),
        ],
    )
    .await;
}

/// Folders nested three deep under parents that are no folders on the source (\Noselect): pymap
/// refuses to create such a leaf before its parents (`* BYE [SERVERBUG] Unhandled server
/// error.`), so the copy creates the parents first; everything lands, a rerun copies nothing.
fn deep_mailbox(seed: u64) -> Vec<Seed> {
    let mut g = Fixtures::new(seed);
    vec![
        Seed {
            path: &["INBOX"],
            subscribe: true,
            messages: vec![g.ordinary(), g.multipart()],
        },
        Seed {
            path: &["Deep", "Er", "Est"],
            subscribe: true,
            messages: vec![g.ordinary().with_flags(&["\\Flagged"])],
        },
        Seed {
            path: &["Fine"],
            subscribe: false,
            messages: vec![g.ordinary(), g.eight_bit_headers()],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_pymap_deep_folders_under_missing_parents() {
    exact_copy_and_rerun(Kind::Dovecot, Kind::Pymap, deep_mailbox(14_003)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymap_to_dovecot_deep_folders() {
    exact_copy_and_rerun(Kind::Pymap, Kind::Dovecot, deep_mailbox(14_004)).await;
}

/// A folder name with a `.` on a target whose storage uses `.` as its hierarchy separator
/// (pymap's Maildir++). The first run creates `v1.2` (pymap says OK and lists it as `v1/2`)
/// and copies the message; the rerun does not find `v1.2` in the target's LIST, sends CREATE
/// `v1.2` again, and pymap answers `* BYE [SERVERBUG] Unhandled server error.` (its maildir
/// folder exists). Before the fix mailferry took that BYE for a transient connection failure
/// of the whole mailbox: it retried for 15 s and exited 5 (`connect_failed`) having checked
/// nothing. Now that folder fails by name, with pymap's words, and the rest goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_pymap_a_dotted_folder_refused_on_rerun_is_named_and_the_rest_checked() {
    let servers = TestServers::get();
    // The Dovecot target server ('/' separator) as the source, so a name may hold a '.'.
    let src = servers.new_user(Side::Target, "srv-dots").unwrap();
    let Some(dst) = Kind::Pymap.account(Side::Target, "srv-dots") else {
        return;
    };
    let mut g = Fixtures::new(14_005);
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.create("v1.2").await.unwrap();
    c.append("v1.2", &g.ordinary().with_flags(&["\\Seen"]))
        .await
        .unwrap();
    c.append("INBOX", &g.ordinary()).await.unwrap();
    c.logout().await;
    let state = tempfile::tempdir().unwrap();
    let state = state.path().to_string_lossy().into_owned();
    let first = run_migrate(&src, &dst, &["--state", &state]).await.unwrap();
    assert_code(&first, 0);
    assert_eq!(first.u64("messages_copied"), 2, "{first}");
    let again = run_migrate(&src, &dst, &["--state", &state]).await.unwrap();
    assert_eq!(again.u64("messages_copied"), 0, "{again}");
    // pymap lists the folder as `v1/2`, so mailferry cannot know `v1.2` is there: the refused
    // CREATE fails that folder by name, with pymap's words; INBOX is checked and found complete.
    assert_code(&again, 3);
    assert_eq!(again.u64("already_present"), 1, "{again}");
    let named = again.array("folder_failures").into_iter().any(|f| {
        f["folder"] == "v1.2"
            && f["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("[SERVERBUG] Unhandled server error.")
    });
    assert!(named, "the refused CREATE of v1.2 is not named\n{again}");
}

/// One Cyrus scenario at a time. Cyrus 3.6 was seen to give users created while another test's
/// users were in use one INBOX between them (a target holding another test's messages), and
/// serialising first logins alone (`tests/src/cyrus.rs`) did not prevent it; the four Cyrus
/// scenarios take a few seconds each.
static CYRUS_ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrus_to_dovecot_exact_copy_and_rerun() {
    let _alone = CYRUS_ALONE.lock().await;
    exact_copy_and_rerun(Kind::Cyrus, Kind::Dovecot, mailbox(14_011)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_exact_copy_and_rerun() {
    let _alone = CYRUS_ALONE.lock().await;
    exact_copy_and_rerun(Kind::Dovecot, Kind::Cyrus, mailbox(14_011)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_deep_folders_under_missing_parents() {
    let _alone = CYRUS_ALONE.lock().await;
    exact_copy_and_rerun(Kind::Dovecot, Kind::Cyrus, deep_mailbox(14_013)).await;
}

/// Cyrus refuses folder names holding `"` or `\` ("Invalid mailbox name") and a message with no
/// header ("Message contains invalid header"): each refusal is reported by name with Cyrus's
/// words (the folders in `folder_failures[]`, the message in `failures[]` with its UID), and
/// everything else is copied exactly; a rerun copies nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_refusals_are_named_and_the_rest_copied() {
    let _alone = CYRUS_ALONE.lock().await;
    let (from, to) = (Kind::Dovecot, Kind::Cyrus);
    let Some(pair) = Pair::new(from, to, "srv-refused") else {
        return;
    };
    let mut g = Fixtures::new(14_014);
    // No header at all, only text: Dovecot takes it, Cyrus does not.
    let mut headless = g.ordinary();
    headless.raw = b"just text, no header\r\n".to_vec();
    let good = vec![g.ordinary(), g.multipart()];
    let mut inbox = good.clone();
    inbox.push(headless);
    let folders = vec![
        Seed {
            path: &["INBOX"],
            subscribe: true,
            messages: inbox,
        },
        Seed {
            path: &["Say \"hi\""],
            subscribe: true,
            messages: vec![g.ordinary()],
        },
        Seed {
            path: &["back\\slash"],
            subscribe: false,
            messages: vec![],
        },
        Seed {
            path: &["Fine"],
            subscribe: true,
            messages: vec![g.ordinary(), g.eight_bit_headers()],
        },
    ];
    seed(from, Side::Source, &pair.src, &folders).await;
    let out = pair.migrate(&[]).await;
    assert_code(&out, 3);
    assert_eq!(out.u64("messages_copied"), 4, "{out}");
    assert_eq!(out.u64("failed"), 2, "{out}");
    let folder_failures = out.array("folder_failures");
    for name in ["Say \"hi\"", "back\\slash"] {
        let named = folder_failures.iter().any(|f| {
            f["folder"] == name
                && f["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Invalid mailbox name")
        });
        assert!(named, "the refused folder {name} is not named\n{out}");
    }
    let failures = out.array("failures");
    let headless_named = failures.iter().any(|f| {
        f["folder"] == "INBOX"
            && f["uid"].as_u64() == Some(3)
            && f["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("Message contains invalid header")
    });
    assert!(headless_named, "the refused message is not named\n{out}");

    // Everything else is what Cyrus holds when it is appended directly.
    let control = to.account(Side::Target, "srv-control").unwrap();
    let kept = [
        Seed {
            path: &["INBOX"],
            subscribe: true,
            messages: good,
        },
        Seed {
            path: &["Fine"],
            subscribe: true,
            messages: folders[3].messages.clone(),
        },
    ];
    seed(to, Side::Target, &control, &kept).await;
    let dst = to.snapshot(&pair.dst).await;
    if let Err(diff) = compare(
        &to.snapshot(&control).await,
        &dst,
        &[("INBOX", "INBOX"), ("Fine", "Fine")],
    ) {
        panic!("the folders Cyrus took differ from a direct append:\n{diff}\n{out}");
    }
    let again = pair.migrate(&[]).await;
    assert_eq!(again.u64("messages_copied"), 0, "{again}");
    if let Err(diff) = unchanged(&dst, &to.snapshot(&pair.dst).await) {
        panic!("the rerun changed the target:\n{diff}");
    }
}
