//! The independent checker: what a mailbox holds, and how two mailboxes differ.
//!
//! This module owns reading a whole account into a [`MailboxSnapshot`] (folder list,
//! subscriptions, and per folder a multiset of [`MessageKey`]s: body SHA-256, flags without
//! `\Recent`, INTERNALDATE to the second) and comparing snapshots through a folder mapping. It
//! uses only [`crate::imap_client`] and must never call the code under test: a bug shared by the
//! migration engine and its checker would go unseen.
//!
//! Bodies are hashed as they stream in and dropped, so memory stays at one message (async-imap
//! buffers each FETCH response whole).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, Result, anyhow};
use chrono::DateTime;
use futures::TryStreamExt;

use crate::fixtures::{Fixture, sha256_hex};
use crate::imap_client::{FETCH_TIMEOUT, FolderInfo, FolderStatus, ImapClient, flag_atom};
use crate::servers::{Side, TestAccount};

/// What identifies a message copy: body hash, flags and INTERNALDATE.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKey {
    /// Lowercase hex SHA-256 of `BODY[]`.
    pub sha256: String,
    /// Flags and keywords, sorted and deduplicated, without `\Recent`.
    pub flags: Vec<String>,
    /// INTERNALDATE as seconds since the Unix epoch (the zone is not compared).
    pub internal_date: i64,
}

impl MessageKey {
    /// The key a fixture should have once appended.
    pub fn of_fixture(fixture: &Fixture) -> Self {
        Self {
            sha256: fixture.sha256(),
            flags: normalize_flags(fixture.flags.iter().cloned()),
            internal_date: fixture.internal_date.timestamp(),
        }
    }

    fn describe(&self) -> String {
        let date = DateTime::from_timestamp(self.internal_date, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| self.internal_date.to_string());
        format!(
            "body {} flags ({}) date {date}",
            &self.sha256[..self.sha256.len().min(12)],
            self.flags.join(" ")
        )
    }
}

/// Sorts and deduplicates flags and drops `\Recent`.
pub fn normalize_flags(flags: impl IntoIterator<Item = String>) -> Vec<String> {
    let set: BTreeSet<String> = flags
        .into_iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect();
    set.into_iter().collect()
}

/// One folder: its LIST entry and, when selectable, its messages.
#[derive(Debug, Clone, Default)]
pub struct FolderSnapshot {
    /// The LIST entry (raw name, delimiter, attributes).
    pub info: Option<FolderInfo>,
    /// The messages as a multiset: key → number of copies.
    pub messages: BTreeMap<MessageKey, usize>,
    /// Subject header (lossy, shortened) by body hash, to make diffs readable.
    pub subjects: BTreeMap<String, String>,
}

impl FolderSnapshot {
    /// Number of messages, copies included.
    pub fn count(&self) -> usize {
        self.messages.values().sum()
    }

    /// Body hashes as a multiset.
    pub fn bodies(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (k, n) in &self.messages {
            *out.entry(k.sha256.clone()).or_insert(0) += n;
        }
        out
    }
}

/// A whole account: every folder LIST shows, and the subscriptions.
#[derive(Debug, Clone)]
pub struct MailboxSnapshot {
    /// The server the account lives on.
    pub side: Side,
    /// The login name.
    pub user: String,
    /// Folders by raw name. Folders that were not read (not selectable, or filtered out) have
    /// no messages.
    pub folders: BTreeMap<String, FolderSnapshot>,
    /// Raw names of subscribed folders (LSUB).
    pub subscriptions: BTreeSet<String>,
}

impl MailboxSnapshot {
    /// The folder with this raw name.
    pub fn folder(&self, raw_name: &str) -> Option<&FolderSnapshot> {
        self.folders.get(raw_name)
    }

    /// Messages in a folder; 0 when it does not exist.
    pub fn count(&self, raw_name: &str) -> usize {
        self.folder(raw_name).map_or(0, FolderSnapshot::count)
    }

    /// Message count per folder.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.folders
            .iter()
            .map(|(name, f)| (name.clone(), f.count()))
            .collect()
    }

    /// The LIST entry of a folder.
    pub fn info(&self, raw_name: &str) -> Option<&FolderInfo> {
        self.folder(raw_name).and_then(|f| f.info.as_ref())
    }

    /// Checks that `raw_name` holds exactly `fixtures` (body, flags and INTERNALDATE, copies
    /// counted).
    pub fn expect_fixtures(&self, raw_name: &str, fixtures: &[&Fixture]) -> Result<(), Diff> {
        let mut expected = FolderSnapshot::default();
        for f in fixtures {
            *expected
                .messages
                .entry(MessageKey::of_fixture(f))
                .or_insert(0) += 1;
            expected.subjects.insert(f.sha256(), subject_of(&f.raw));
        }
        let mut diff = Diff::default();
        let label = format!("expected fixtures -> {raw_name:?}");
        match self.folder(raw_name) {
            None => diff
                .problems
                .push(format!("{label}: folder does not exist")),
            Some(actual) => {
                if let Some(fd) = diff_messages(&label, &expected, actual, false) {
                    diff.folders.push(fd);
                }
            }
        }
        diff.into_result()
    }

    /// Checks that `raw_name` holds exactly the bodies of `fixtures` (copies counted), whatever
    /// their flags and dates.
    pub fn expect_bodies(&self, raw_name: &str, fixtures: &[&Fixture]) -> Result<(), Diff> {
        let mut expected = FolderSnapshot::default();
        for f in fixtures {
            let key = MessageKey {
                sha256: f.sha256(),
                flags: Vec::new(),
                internal_date: 0,
            };
            *expected.messages.entry(key).or_insert(0) += 1;
            expected.subjects.insert(f.sha256(), subject_of(&f.raw));
        }
        let mut diff = Diff::default();
        let label = format!("expected bodies -> {raw_name:?}");
        match self.folder(raw_name) {
            None => diff
                .problems
                .push(format!("{label}: folder does not exist")),
            Some(actual) => {
                if let Some(fd) = diff_messages(&label, &expected, actual, true) {
                    diff.folders.push(fd);
                }
            }
        }
        diff.into_result()
    }
}

/// Reads every selectable folder of the account (see [`snapshot_with`]).
pub async fn snapshot(account: &TestAccount) -> Result<MailboxSnapshot> {
    snapshot_with(account, |_| true).await
}

/// Reads the folder list, the subscriptions, and the messages of every selectable folder for
/// which `read` returns true (the others are listed without messages). On the source, pass
/// [`personal_only`] to skip the public and virtual namespaces.
pub async fn snapshot_with(
    account: &TestAccount,
    read: impl Fn(&FolderInfo) -> bool,
) -> Result<MailboxSnapshot> {
    snapshot_impl(account, read, false).await
}

/// Like [`snapshot_with`], with every bare LF of a body read as CRLF before it is hashed: for
/// servers that store and serve messages with bare LF line endings (pymap), so their copy of a
/// CRLF message compares equal to the original while every other byte still counts.
pub async fn snapshot_crlf(
    account: &TestAccount,
    read: impl Fn(&FolderInfo) -> bool,
) -> Result<MailboxSnapshot> {
    snapshot_impl(account, read, true).await
}

async fn snapshot_impl(
    account: &TestAccount,
    read: impl Fn(&FolderInfo) -> bool,
    crlf: bool,
) -> Result<MailboxSnapshot> {
    let mut client = ImapClient::connect(account).await?;
    let list = client.list().await?;
    let subscriptions = client.subscriptions().await?.into_iter().collect();
    let mut folders = BTreeMap::new();
    for info in list {
        let mut folder = FolderSnapshot::default();
        if info.selectable() && read(&info) {
            read_folder(&mut client, &info.name, &mut folder, crlf)
                .await
                .with_context(|| {
                    format!(
                        "reading {:?} of {} on the {} server",
                        info.name,
                        account.user,
                        account.side.name()
                    )
                })?;
        }
        folder.info = Some(info.clone());
        folders.insert(info.name, folder);
    }
    client.logout().await;
    Ok(MailboxSnapshot {
        side: account.side,
        user: account.user.clone(),
        folders,
        subscriptions,
    })
}

/// STATUS of every selectable folder of the account, by raw name. Two equal results taken
/// before and after a run prove that the run appended and expunged nothing.
pub async fn statuses(account: &TestAccount) -> Result<BTreeMap<String, FolderStatus>> {
    let mut client = ImapClient::connect(account).await?;
    let mut out = BTreeMap::new();
    for info in client.list().await? {
        if info.selectable() {
            let status = client.status(&info.name).await?;
            out.insert(info.name, status);
        }
    }
    client.logout().await;
    Ok(out)
}

/// Checks that two snapshots of one account are the same: the same folders (raw names and
/// selectability), the same messages per folder (bodies, flags, dates, copies) and the same
/// subscriptions.
pub fn unchanged(before: &MailboxSnapshot, after: &MailboxSnapshot) -> Result<(), Diff> {
    let mut diff = Diff::default();
    let names = |s: &MailboxSnapshot| -> BTreeSet<(String, bool)> {
        s.folders
            .iter()
            .map(|(n, f)| {
                (
                    n.clone(),
                    f.info.as_ref().is_none_or(FolderInfo::selectable),
                )
            })
            .collect()
    };
    let (nb, na) = (names(before), names(after));
    for gone in nb.difference(&na) {
        diff.problems
            .push(format!("folder {gone:?} was there before, not after"));
    }
    for new in na.difference(&nb) {
        diff.problems
            .push(format!("folder {new:?} is there after, not before"));
    }
    for sub in before.subscriptions.difference(&after.subscriptions) {
        diff.problems
            .push(format!("subscription {sub:?} was there before, not after"));
    }
    for sub in after.subscriptions.difference(&before.subscriptions) {
        diff.problems
            .push(format!("subscription {sub:?} is there after, not before"));
    }
    for (name, b) in &before.folders {
        if let Some(a) = after.folder(name) {
            let label = format!("{name:?} before -> after");
            if let Some(fd) = diff_messages(&label, b, a, false) {
                diff.folders.push(fd);
            }
        }
    }
    diff.into_result()
}

/// The body SHA-256 of every message of one folder, in ascending UID order: compared between
/// source and a target that was empty, it proves that one pass appended in source UID order.
pub async fn bodies_in_uid_order(account: &TestAccount, raw_name: &str) -> Result<Vec<String>> {
    let mut client = ImapClient::connect(account).await?;
    let session = client.session_mut();
    let mut out: Vec<(u32, String)> = Vec::new();
    tokio::time::timeout(FETCH_TIMEOUT, async {
        let mailbox = session.examine(raw_name).await?;
        if mailbox.exists == 0 {
            return Ok::<_, anyhow::Error>(());
        }
        let mut stream = session.uid_fetch("1:*", "(UID BODY.PEEK[])").await?;
        while let Some(fetch) = stream.try_next().await? {
            let uid = fetch.uid.unwrap_or_default();
            let body = fetch
                .body()
                .ok_or_else(|| anyhow!("UID {uid}: no BODY[] in the FETCH response"))?;
            out.push((uid, sha256_hex(body)));
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow!("timed out after {FETCH_TIMEOUT:?}"))?
    .with_context(|| format!("reading {raw_name:?} of {}", account.user))?;
    client.logout().await;
    out.sort();
    Ok(out.into_iter().map(|(_, sha)| sha).collect())
}

/// For the source server: false for the `Public.` and `Virtual.` namespaces.
pub fn personal_only(info: &FolderInfo) -> bool {
    crate::servers::SOURCE_OTHER_NAMESPACES
        .iter()
        .all(|p| !(info.name.starts_with(p) || p.strip_suffix('.') == Some(info.name.as_str())))
}

async fn read_folder(
    client: &mut ImapClient,
    name: &str,
    out: &mut FolderSnapshot,
    crlf: bool,
) -> Result<()> {
    let session = client.session_mut();
    tokio::time::timeout(FETCH_TIMEOUT, async {
        let mailbox = session.examine(name).await?;
        if mailbox.exists == 0 {
            return Ok::<_, anyhow::Error>(());
        }
        let mut stream = session
            .uid_fetch("1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
            .await?;
        while let Some(fetch) = stream.try_next().await? {
            let uid = fetch.uid.unwrap_or_default();
            let body = fetch
                .body()
                .ok_or_else(|| anyhow!("UID {uid}: no BODY[] in the FETCH response"))?;
            let date = fetch
                .internal_date()
                .ok_or_else(|| anyhow!("UID {uid}: no INTERNALDATE"))?;
            let body = if crlf {
                to_crlf(body)
            } else {
                std::borrow::Cow::Borrowed(body)
            };
            let body = body.as_ref();
            let key = MessageKey {
                sha256: sha256_hex(body),
                flags: normalize_flags(fetch.flags().filter_map(|f| flag_atom(&f))),
                internal_date: date.timestamp(),
            };
            out.subjects
                .entry(key.sha256.clone())
                .or_insert_with(|| subject_of(body));
            *out.messages.entry(key).or_insert(0) += 1;
            // `fetch` (and the body it owns) is dropped here.
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow!("timed out after {FETCH_TIMEOUT:?}"))?
}

/// `raw` with every LF not preceded by CR turned into CRLF.
fn to_crlf(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bare = raw
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
    if !bare {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, b) in raw.iter().enumerate() {
        if *b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    std::borrow::Cow::Owned(out)
}

/// The Subject header of a message, lossy and shortened, or `(no subject)`.
fn subject_of(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(8192)];
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            let s = String::from_utf8_lossy(&line[8..]).trim().to_owned();
            return s.chars().take(60).collect();
        }
    }
    "(no subject)".to_owned()
}

/// One message that is where it should not be, or not where it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// The message.
    pub key: MessageKey,
    /// How many copies.
    pub copies: usize,
    /// Its Subject, for people.
    pub subject: String,
}

/// The same body on both sides, with different flags or INTERNALDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The message as the source (or expectation) has it.
    pub source: MessageKey,
    /// The message as the target has it.
    pub target: MessageKey,
    /// Its Subject, for people.
    pub subject: String,
}

/// Differences between one source folder (or expectation) and its target folder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderDiff {
    /// `"source" -> "target"`, or a description of the expectation.
    pub label: String,
    /// In the source, not in the target.
    pub missing: Vec<DiffEntry>,
    /// In the target, not in the source.
    pub extra: Vec<DiffEntry>,
    /// Same body, different flags or date.
    pub mismatched: Vec<Mismatch>,
}

/// Everything [`compare`] found wrong. Its `Display` is meant to be read in a test failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Per-folder message differences.
    pub folders: Vec<FolderDiff>,
    /// Folder-level problems (a folder missing on one side, a subscription not carried over).
    pub problems: Vec<String>,
}

impl Diff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.folders.is_empty() && self.problems.is_empty()
    }

    fn into_result(self) -> Result<(), Diff> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mailboxes differ: {} folder(s) with message differences, {} other problem(s)",
            self.folders.len(),
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        for fd in &self.folders {
            writeln!(f, "  {}:", fd.label)?;
            let entries = |f: &mut fmt::Formatter<'_>, what: &str, list: &[DiffEntry]| {
                if list.is_empty() {
                    return Ok(());
                }
                let n: usize = list.iter().map(|e| e.copies).sum();
                writeln!(f, "    {what}: {n}")?;
                for e in list {
                    writeln!(
                        f,
                        "      {:?} {} x{}",
                        e.subject,
                        e.key.describe(),
                        e.copies
                    )?;
                }
                Ok(())
            };
            entries(f, "missing in target", &fd.missing)?;
            entries(f, "extra in target", &fd.extra)?;
            if !fd.mismatched.is_empty() {
                writeln!(f, "    flags or date differ: {}", fd.mismatched.len())?;
                for m in &fd.mismatched {
                    writeln!(f, "      {:?}", m.subject)?;
                    writeln!(f, "        source {}", m.source.describe())?;
                    writeln!(f, "        target {}", m.target.describe())?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diff {}

/// Compares source and target through `mapping` (source raw name → target raw name).
///
/// Several source folders may map to one target folder (e.g. `INBOX.Sent Items` and an
/// existing `Sent`); the target folder must then hold their union. Folders outside the mapping
/// are ignored. A subscribed source folder must map to a subscribed target folder.
pub fn compare(
    source: &MailboxSnapshot,
    target: &MailboxSnapshot,
    mapping: &[(impl AsRef<str>, impl AsRef<str>)],
) -> Result<(), Diff> {
    let mut diff = Diff::default();
    // target name -> (labels of sources, merged expectation)
    let mut expected: BTreeMap<&str, (Vec<String>, FolderSnapshot)> = BTreeMap::new();
    for (src, dst) in mapping {
        let (src, dst) = (src.as_ref(), dst.as_ref());
        let entry = expected.entry(dst).or_default();
        entry.0.push(format!("{src:?}"));
        match source.folder(src) {
            None => diff.problems.push(format!(
                "source folder {src:?} is not in the source snapshot"
            )),
            Some(folder) => {
                for (k, n) in &folder.messages {
                    *entry.1.messages.entry(k.clone()).or_insert(0) += n;
                }
                entry.1.subjects.extend(folder.subjects.clone());
            }
        }
        if source.subscriptions.contains(src) && !target.subscriptions.contains(dst) {
            diff.problems.push(format!(
                "source folder {src:?} is subscribed but target folder {dst:?} is not"
            ));
        }
    }
    for (dst, (sources, want)) in &expected {
        let label = format!("{} -> {dst:?}", sources.join(" + "));
        match target.folder(dst) {
            None => diff
                .problems
                .push(format!("{label}: target folder {dst:?} does not exist")),
            Some(have) => {
                if let Some(fd) = diff_messages(&label, want, have, false) {
                    diff.folders.push(fd);
                }
            }
        }
    }
    diff.into_result()
}

/// Multiset difference of `want` and `have`, pairing same-body leftovers as mismatches. With
/// `bodies_only`, flags and dates are ignored.
fn diff_messages(
    label: &str,
    want: &FolderSnapshot,
    have: &FolderSnapshot,
    bodies_only: bool,
) -> Option<FolderDiff> {
    let strip = |k: &MessageKey| {
        if bodies_only {
            MessageKey {
                sha256: k.sha256.clone(),
                flags: Vec::new(),
                internal_date: 0,
            }
        } else {
            k.clone()
        }
    };
    let mut want_left: BTreeMap<MessageKey, usize> = BTreeMap::new();
    for (k, n) in &want.messages {
        *want_left.entry(strip(k)).or_insert(0) += n;
    }
    let mut have_left: BTreeMap<MessageKey, usize> = BTreeMap::new();
    for (k, n) in &have.messages {
        *have_left.entry(strip(k)).or_insert(0) += n;
    }
    for (k, n) in want_left.iter_mut() {
        if let Some(m) = have_left.get_mut(k) {
            let common = (*n).min(*m);
            *n -= common;
            *m -= common;
        }
    }
    want_left.retain(|_, n| *n > 0);
    have_left.retain(|_, n| *n > 0);

    let subject = |sha: &str| {
        want.subjects
            .get(sha)
            .or_else(|| have.subjects.get(sha))
            .cloned()
            .unwrap_or_default()
    };
    let mut fd = FolderDiff {
        label: label.to_owned(),
        ..FolderDiff::default()
    };
    // Pair same-body leftovers: the message arrived, with the wrong flags or date.
    let mut missing: Vec<(MessageKey, usize)> = want_left.into_iter().collect();
    let mut extra: Vec<(MessageKey, usize)> = have_left.into_iter().collect();
    for (wk, wn) in missing.iter_mut() {
        for (hk, hn) in extra.iter_mut() {
            while *wn > 0 && *hn > 0 && wk.sha256 == hk.sha256 {
                *wn -= 1;
                *hn -= 1;
                fd.mismatched.push(Mismatch {
                    source: wk.clone(),
                    target: hk.clone(),
                    subject: subject(&wk.sha256),
                });
            }
        }
    }
    let entries = |list: Vec<(MessageKey, usize)>| {
        list.into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(key, copies)| DiffEntry {
                subject: subject(&key.sha256),
                key,
                copies,
            })
            .collect::<Vec<_>>()
    };
    fd.missing = entries(missing);
    fd.extra = entries(extra);
    let empty = fd.missing.is_empty() && fd.extra.is_empty() && fd.mismatched.is_empty();
    (!empty).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sha: &str, flags: &[&str], date: i64) -> MessageKey {
        MessageKey {
            sha256: sha.to_owned(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            internal_date: date,
        }
    }

    fn folder(keys: &[(MessageKey, usize)]) -> FolderSnapshot {
        FolderSnapshot {
            info: None,
            messages: keys.iter().cloned().collect(),
            subjects: BTreeMap::new(),
        }
    }

    fn mailbox(side: Side, folders: &[(&str, FolderSnapshot)], subs: &[&str]) -> MailboxSnapshot {
        MailboxSnapshot {
            side,
            user: "u".to_owned(),
            folders: folders
                .iter()
                .map(|(n, f)| ((*n).to_owned(), f.clone()))
                .collect(),
            subscriptions: subs.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn equal_mailboxes_compare_clean() {
        let f = folder(&[(key("a", &["\\Seen"], 1), 3), (key("b", &[], 2), 1)]);
        let s = mailbox(Side::Source, &[("INBOX.x", f.clone())], &["INBOX.x"]);
        let t = mailbox(Side::Target, &[("x", f)], &["x"]);
        assert_eq!(compare(&s, &t, &[("INBOX.x", "x")]), Ok(()));
    }

    #[test]
    fn reports_missing_extra_and_mismatch() {
        let s = mailbox(
            Side::Source,
            &[(
                "A",
                folder(&[
                    (key("dup", &[], 1), 3),
                    (key("f", &["\\Seen"], 5), 1),
                    (key("gone", &[], 7), 1),
                ]),
            )],
            &["A"],
        );
        let t = mailbox(
            Side::Target,
            &[(
                "B",
                folder(&[
                    (key("dup", &[], 1), 2),
                    (key("f", &[], 5), 1),
                    (key("new", &[], 9), 1),
                ]),
            )],
            &[],
        );
        let diff = compare(&s, &t, &[("A", "B")]).unwrap_err();
        let fd = &diff.folders[0];
        assert_eq!(fd.missing.len(), 2, "{diff}");
        assert_eq!(fd.missing.iter().map(|e| e.copies).sum::<usize>(), 2);
        assert_eq!(fd.extra.len(), 1);
        assert_eq!(fd.mismatched.len(), 1);
        assert_eq!(fd.mismatched[0].target.flags, Vec::<String>::new());
        assert_eq!(diff.problems.len(), 1, "subscription: {diff}");
        let text = diff.to_string();
        assert!(text.contains("missing in target: 2"), "{text}");
        assert!(text.contains("flags or date differ: 1"), "{text}");
    }

    #[test]
    fn merged_sources_and_missing_target() {
        let s = mailbox(
            Side::Source,
            &[
                ("S1", folder(&[(key("a", &[], 1), 1)])),
                ("S2", folder(&[(key("b", &[], 1), 1)])),
            ],
            &[],
        );
        let t = mailbox(
            Side::Target,
            &[("T", folder(&[(key("a", &[], 1), 1), (key("b", &[], 1), 1)]))],
            &[],
        );
        assert_eq!(compare(&s, &t, &[("S1", "T"), ("S2", "T")]), Ok(()));
        let diff = compare(&s, &t, &[("S1", "nope")]).unwrap_err();
        assert!(diff.problems[0].contains("does not exist"), "{diff}");
    }

    #[test]
    fn flags_are_normalized() {
        let flags = normalize_flags(
            ["Work", "\\Seen", "\\Recent", "Work"]
                .into_iter()
                .map(String::from),
        );
        assert_eq!(flags, vec!["Work".to_owned(), "\\Seen".to_owned()]);
    }

    #[test]
    fn subject_is_extracted() {
        assert_eq!(
            subject_of(b"From: a\r\nSubject: Hi there\r\n\r\nSubject: no"),
            "Hi there"
        );
        assert_eq!(subject_of(b"From: a\r\n\r\nSubject: body"), "(no subject)");
    }
}
