//! Typed IMAP commands on a [`Connection`]: what the engine asks of a server, and nothing that
//! changes the source. The only commands that change the target are CREATE, SUBSCRIBE and APPEND.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{FolderStatus, Quota};

use super::conn::{Arg, Completion, Connection, astring};
use super::error::ImapResult;
use super::wire::{self, Code, Response, Status, Value};
use crate::mailbox::name::{raw_name_bytes, raw_name_text};

/// A LIST (or LSUB) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Attributes as sent (`\Noselect`, `\Sent`, ...).
    pub attributes: Vec<String>,
    /// Hierarchy delimiter.
    pub delimiter: Option<char>,
    /// The raw name.
    pub name: String,
}

/// The personal namespace and the prefixes of the others (RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespaces {
    /// Personal namespace prefix and delimiter.
    pub personal: Option<(String, Option<char>)>,
    /// Prefixes of other users' and shared namespaces.
    pub others: Vec<String>,
}

/// What EXAMINE reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selected {
    /// EXISTS.
    pub exists: u32,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT (0 if the server did not say).
    pub uidnext: u32,
    /// FLAGS.
    pub flags: Vec<String>,
    /// PERMANENTFLAGS (empty on EXAMINE for most servers).
    pub permanent_flags: Vec<String>,
    /// HIGHESTMODSEQ.
    pub highestmodseq: Option<u64>,
}

/// One FETCH response, with the items the engine asks for.
#[derive(Debug, Clone, Default)]
pub struct FetchItem {
    /// UID.
    pub uid: u32,
    /// FLAGS (without `\Recent`, which no client can set).
    pub flags: Vec<String>,
    /// INTERNALDATE.
    pub internal_date: Option<DateTime<FixedOffset>>,
    /// RFC822.SIZE.
    pub size: Option<u64>,
    /// `BODY[]` contents.
    pub body: Option<Bytes>,
    /// `BODY[HEADER.FIELDS (...)]` contents.
    pub header: Option<Bytes>,
    /// MODSEQ (RFC 7162).
    pub modseq: Option<u64>,
}

fn check(conn: &Connection, done: Completion, what: &str) -> ImapResult<Completion> {
    match done.status {
        Status::Ok => Ok(done),
        _ => {
            let code = done
                .code
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let e = conn.err(
                super::conn::classify_code(&code),
                format!(
                    "{what} failed: {}{}",
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!("[{code}] ")
                    },
                    done.text
                ),
            );
            Err(match super::error::throttle_hint(&done.text) {
                Some(hint) => e.throttled(hint),
                None => e,
            })
        }
    }
}

/// A folder name as a command argument: the raw bytes its text form stands for (see
/// [`raw_name_bytes`]), quoted when they can be, a literal otherwise.
pub fn mailbox_arg<'a>(raw: &'a str, bytes: &'a [u8]) -> Arg<'a> {
    if bytes == raw.as_bytes() {
        astring(raw)
    } else {
        Arg::Literal(bytes)
    }
}

/// A folder name in a response, in its reversible text form: a quoted string or literal keeps
/// every byte the server sent (see [`raw_name_text`]); an atom is text already.
fn name_of(v: &Value) -> Option<String> {
    match v {
        Value::Str(bytes) => Some(raw_name_text(bytes)),
        other => other.as_text(),
    }
}

fn char_of(v: &Value) -> Option<char> {
    let t = v.as_text()?;
    let mut chars = t.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

/// RFC 3501 §9 date-time: `"dd-Mon-yyyy hh:mm:ss +zzzz"` (day may be space-padded).
pub fn parse_internal_date(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z").ok()
}

/// Formats an INTERNALDATE for APPEND, keeping the zone.
pub fn format_internal_date(d: &DateTime<FixedOffset>) -> String {
    d.format("%d-%b-%Y %H:%M:%S %z").to_string()
}

fn parse_list(rest: &[Value]) -> Option<ListEntry> {
    let attributes = rest
        .first()?
        .as_list()?
        .iter()
        .filter_map(Value::as_text)
        .collect();
    let delimiter = rest.get(1).and_then(char_of);
    let name = name_of(rest.get(2)?)?;
    Some(ListEntry {
        attributes,
        delimiter,
        name,
    })
}

/// STATUS commands sent before the first answer is read. Bounded so that neither side's socket
/// buffer can fill while the other waits (a mailbox may have thousands of folders).
pub const STATUS_WINDOW: usize = 64;

const ZERO_STATUS: FolderStatus = FolderStatus {
    messages: 0,
    uidnext: 0,
    uidvalidity: 0,
    highestmodseq: None,
};

/// A folder the server would not report on or open: gone since LIST, or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRefusal {
    /// The folder no longer exists (`[NONEXISTENT]`, `[TRYCREATE]`, RFC 5530): deleted on the
    /// source while the run went on. Otherwise it exists but was refused (`[NOPERM]`, …).
    pub vanished: bool,
    /// What the server said, for people: `STATUS of folder "x" was refused: [NOPERM] …`.
    pub message: String,
}

impl FolderRefusal {
    /// The refusal `done` of `command` on folder `raw`.
    pub fn of(raw: &str, command: &str, done: &Completion) -> FolderRefusal {
        let code = done.code.as_ref().map(|c| c.name.as_str()).unwrap_or("");
        let text = done.text.to_ascii_lowercase();
        // Servers without RFC 5530 codes say it in words.
        let vanished = matches!(code, "NONEXISTENT" | "TRYCREATE")
            || (code.is_empty()
                && [
                    "doesn't exist",
                    "does not exist",
                    "no such",
                    "not found",
                    "unknown mailbox",
                ]
                .iter()
                .any(|w| text.contains(w)));
        let code = match code {
            "" => String::new(),
            c => format!("[{c}] "),
        };
        FolderRefusal {
            vanished,
            message: format!(
                "{command} of folder {raw:?} was refused: {code}{}",
                done.text
            ),
        }
    }

    /// The error kind of the refusal: a folder's refusal is permanent for that folder.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Permanent
    }
}

/// What NAMESPACE, LIST and LSUB report, asked together by [`Connection::folder_tree`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderTree {
    /// NAMESPACE (the default without the capability).
    pub namespaces: Namespaces,
    /// `LIST "" "*"`.
    pub entries: Vec<ListEntry>,
    /// `LSUB "" "*"`.
    pub subscribed: Vec<ListEntry>,
}

fn list_command(lsub: bool) -> &'static str {
    match lsub {
        true => "LSUB \"\" \"*\"",
        false => "LIST \"\" \"*\"",
    }
}

fn list_kind(lsub: bool) -> &'static str {
    if lsub { "LSUB" } else { "LIST" }
}

fn parse_list_entries(done: &Completion, lsub: bool) -> Vec<ListEntry> {
    done.data(list_kind(lsub)).filter_map(parse_list).collect()
}

fn parse_namespaces(done: &Completion) -> Namespaces {
    let mut ns = Namespaces::default();
    for rest in done.data("NAMESPACE") {
        let descr = |v: Option<&Value>| -> Vec<(String, Option<char>)> {
            v.and_then(Value::as_list)
                .unwrap_or_default()
                .iter()
                .filter_map(|d| {
                    let l = d.as_list()?;
                    Some((l.first()?.as_text()?, l.get(1).and_then(char_of)))
                })
                .collect()
        };
        ns.personal = descr(rest.first()).into_iter().next();
        ns.others = descr(rest.get(1))
            .into_iter()
            .chain(descr(rest.get(2)))
            .map(|(p, _)| p)
            .collect();
    }
    ns
}

/// The `* STATUS name (items)` responses of one command, with the folder name each reports.
type StatusAnswers = Vec<(Option<String>, FolderStatus)>;

fn parse_statuses(done: &Completion) -> StatusAnswers {
    done.data("STATUS")
        .map(|rest| {
            let mut st = ZERO_STATUS;
            let items = rest.get(1).and_then(Value::as_list).unwrap_or_default();
            for pair in items.chunks(2) {
                let (Some(k), Some(v)) = (
                    pair.first().and_then(Value::as_atom),
                    pair.get(1).and_then(Value::as_u64),
                ) else {
                    continue;
                };
                let v32 = u32::try_from(v).unwrap_or(u32::MAX);
                match k.to_ascii_uppercase().as_str() {
                    "MESSAGES" => st.messages = v32,
                    "UIDNEXT" => st.uidnext = v32,
                    "UIDVALIDITY" => st.uidvalidity = v32,
                    "HIGHESTMODSEQ" => st.highestmodseq = Some(v),
                    _ => {}
                }
            }
            (rest.first().and_then(name_of), st)
        })
        .collect()
}

/// Pairs pipelined STATUS answers with the folders asked. A server may run pipelined commands
/// at once (RFC 3501 §5.5), so an untagged answer is matched by the name it reports, wherever
/// it arrived; a lone answer under its own command counts even if the server spelled the name
/// differently. Without any answer the figures are zero, as for a single STATUS.
fn match_statuses(raws: &[&str], answers: &[StatusAnswers]) -> Vec<FolderStatus> {
    raws.iter()
        .enumerate()
        .map(|(i, raw)| {
            let by_name = |a: &StatusAnswers| {
                a.iter()
                    .find(|(n, _)| n.as_deref() == Some(*raw))
                    .map(|(_, s)| *s)
            };
            let own = answers.get(i);
            own.and_then(by_name)
                .or_else(|| answers.iter().find_map(by_name))
                .or_else(|| match own.map(Vec::as_slice) {
                    Some([(_, s)]) => Some(*s),
                    _ => None,
                })
                .unwrap_or(ZERO_STATUS)
        })
        .collect()
}

impl Connection {
    /// NAMESPACE (RFC 2342); without the capability, the personal namespace is `""` with the
    /// delimiter LIST reports.
    pub async fn namespaces(&mut self) -> ImapResult<Namespaces> {
        if !self.has_capability("NAMESPACE") {
            return Ok(Namespaces::default());
        }
        let done = self.run("NAMESPACE").await?;
        Ok(parse_namespaces(&check(self, done, "NAMESPACE")?))
    }

    /// `LIST "" "*"` (or LSUB).
    pub async fn list(&mut self, lsub: bool) -> ImapResult<Vec<ListEntry>> {
        let done = self.run(list_command(lsub)).await?;
        Ok(parse_list_entries(
            &check(self, done, list_kind(lsub))?,
            lsub,
        ))
    }

    /// NAMESPACE, `LIST "" "*"` and `LSUB "" "*"` in one round trip: all three are sent before
    /// the first answer is read (RFC 3501 §5.5: none changes what the others report).
    pub async fn folder_tree(&mut self) -> ImapResult<FolderTree> {
        let ns = self.has_capability("NAMESPACE");
        let mut tags = Vec::with_capacity(3);
        if ns {
            tags.push(("NAMESPACE", self.send_line("NAMESPACE").await?));
        }
        for lsub in [false, true] {
            tags.push((list_kind(lsub), self.send_line(list_command(lsub)).await?));
        }
        // Every completion is read, even after a refusal, so the connection stays in step.
        let mut done = Vec::with_capacity(tags.len());
        for (cmd, tag) in &tags {
            let d = self.finish(tag).await?;
            done.push(check(self, d, cmd));
        }
        let mut done = done.into_iter();
        let namespaces = match ns {
            true => done.next().transpose()?.map(|d| parse_namespaces(&d)),
            false => None,
        };
        let entries = done.next().transpose()?;
        let subscribed = done.next().transpose()?;
        Ok(FolderTree {
            namespaces: namespaces.unwrap_or_default(),
            entries: entries.map_or_else(Vec::new, |d| parse_list_entries(&d, false)),
            subscribed: subscribed.map_or_else(Vec::new, |d| parse_list_entries(&d, true)),
        })
    }

    /// STATUS of a folder; a refusal is an error.
    pub async fn status(&mut self, raw: &str) -> ImapResult<FolderStatus> {
        let mut st = self.statuses(&[raw]).await?;
        match st.pop() {
            Some(Ok(st)) => Ok(st),
            Some(Err(refused)) => Err(self.err(refused.kind(), refused.message)),
            None => Ok(ZERO_STATUS),
        }
    }

    /// STATUS of each folder of `raws`, in their order, pipelined: up to [`STATUS_WINDOW`]
    /// commands are sent before the first answer is read, so a dozen folders cost one round trip
    /// instead of twelve. A folder name that would need a synchronising literal (8-bit, without
    /// LITERAL+) is asked alone, since waiting for `+` would skip the other commands' answers.
    ///
    /// A folder the server refuses (deleted since LIST, no right to read it) is reported as such
    /// in its place: one folder must not stop the others (issue 10). Only a broken connection
    /// is an error.
    pub async fn statuses(
        &mut self,
        raws: &[&str],
    ) -> ImapResult<Vec<Result<FolderStatus, FolderRefusal>>> {
        let items = if self.has_capability("CONDSTORE") {
            " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            " (MESSAGES UIDNEXT UIDVALIDITY)"
        };
        let nonsync = self.has_capability("LITERAL+") || self.has_capability("LITERAL-");
        let quotable = |r: &str| raw_name_bytes(r) == r.as_bytes() && wire::quote(r).is_some();
        let window = match raws.iter().all(|r| nonsync || quotable(r)) {
            true => STATUS_WINDOW,
            false => 1,
        };
        let mut out = Vec::with_capacity(raws.len());
        for chunk in raws.chunks(window) {
            let mut sent = Vec::with_capacity(chunk.len());
            for raw in chunk {
                let bytes = raw_name_bytes(raw);
                let args = [
                    Arg::text("STATUS "),
                    mailbox_arg(raw, &bytes),
                    Arg::text(items),
                ];
                sent.push(self.send_args(&args, usize::MAX).await?);
            }
            let mut answers = Vec::with_capacity(chunk.len());
            let mut refusals = Vec::with_capacity(chunk.len());
            for (raw, tag) in chunk.iter().zip(sent) {
                let done = match tag {
                    Ok(tag) => self.finish(&tag).await?,
                    Err(done) => done,
                };
                // Every completion is read before a refusal is reported, so the connection
                // stays in step.
                match done.status {
                    Status::Ok => {
                        answers.push(parse_statuses(&done));
                        refusals.push(None);
                    }
                    _ => {
                        answers.push(Vec::new());
                        refusals.push(Some(FolderRefusal::of(raw, "STATUS", &done)));
                    }
                }
            }
            let figures = match_statuses(chunk, &answers);
            out.extend(
                figures
                    .into_iter()
                    .zip(refusals)
                    .map(|(st, refused)| refused.map_or(Ok(st), Err)),
            );
        }
        Ok(out)
    }

    /// EXAMINE: opens a folder read-only (the source is never changed; the target is only read).
    pub async fn examine(&mut self, raw: &str) -> ImapResult<Selected> {
        self.open_folder("EXAMINE ", raw).await
    }

    async fn open_folder(&mut self, verb: &'static str, raw: &str) -> ImapResult<Selected> {
        let bytes = raw_name_bytes(raw);
        let done = self
            .run_args(&[Arg::text(verb), mailbox_arg(raw, &bytes)])
            .await?;
        // Even a refused SELECT leaves the previous folder deselected (RFC 3501 §6.3.1).
        self.selected = done.status == Status::Ok;
        self.read_only = verb.starts_with("EXAMINE")
            || done.code.as_ref().is_some_and(|c| c.name == "READ-ONLY");
        let done = check(self, done, &format!("opening folder {raw:?}"))?;
        let mut sel = Selected::default();
        let apply = |code: &Code, sel: &mut Selected| match code.name.as_str() {
            "UIDVALIDITY" => {
                sel.uidvalidity = code
                    .args
                    .first()
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0)
            }
            "UIDNEXT" => {
                sel.uidnext = code
                    .args
                    .first()
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0)
            }
            "HIGHESTMODSEQ" => sel.highestmodseq = code.args.first().and_then(Value::as_u64),
            "PERMANENTFLAGS" => {
                sel.permanent_flags = code
                    .args
                    .first()
                    .and_then(Value::as_list)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Value::as_text)
                    .collect();
            }
            _ => {}
        };
        for r in &done.untagged {
            match r {
                Response::UntaggedStatus {
                    code: Some(code), ..
                } => apply(code, &mut sel),
                _ => {
                    if let Some((n, kw, _)) = r.numbered() {
                        if kw == "EXISTS" {
                            sel.exists = n;
                        }
                    } else if let Some((kw, rest)) = r.keyword()
                        && kw == "FLAGS"
                    {
                        sel.flags = rest
                            .first()
                            .and_then(Value::as_list)
                            .unwrap_or_default()
                            .iter()
                            .filter_map(Value::as_text)
                            .collect();
                    }
                }
            }
        }
        if let Some(code) = &done.code {
            apply(code, &mut sel);
        }
        if sel.uidvalidity == 0 {
            return Err(self.err(
                ErrorKind::Protocol,
                format!("the server reported no UIDVALIDITY for folder {raw:?}"),
            ));
        }
        Ok(sel)
    }

    /// Starts `UID FETCH set (items)`; read the results with [`Connection::next_fetch`].
    pub async fn start_uid_fetch(&mut self, set: &str, items: &str) -> ImapResult<String> {
        self.send_line(&format!("UID FETCH {set} ({items})")).await
    }

    /// The next FETCH result of the command `tag`, or `None` once it completed.
    pub async fn next_fetch(&mut self, tag: &str) -> ImapResult<Option<FetchItem>> {
        loop {
            let r = self.read_response().await?;
            match r {
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } if t == tag => {
                    let done = Completion {
                        status,
                        code,
                        text,
                        untagged: Vec::new(),
                    };
                    check(self, done, "UID FETCH")?;
                    return Ok(None);
                }
                Response::UntaggedStatus {
                    status: Status::Bye,
                    code,
                    text,
                } => {
                    return Err(self.bye_error(code.as_ref(), &text));
                }
                Response::Untagged(mut v) => {
                    let is_fetch = v
                        .get(1)
                        .and_then(Value::as_atom)
                        .is_some_and(|k| k.eq_ignore_ascii_case("FETCH"));
                    if !is_fetch {
                        continue;
                    }
                    let Some(Value::List(items)) = v.pop() else {
                        continue;
                    };
                    if let Some(item) = fetch_item(items) {
                        return Ok(Some(item));
                    }
                }
                _ => {}
            }
        }
    }

    /// `UID FETCH` collecting every result (for small responses only: headers, flags).
    /// What is kept is bounded like any command's untagged data
    /// ([`super::conn::MAX_COLLECTED_BYTES`]), whatever number of answers the server sends.
    pub async fn uid_fetch_all(&mut self, set: &str, items: &str) -> ImapResult<Vec<FetchItem>> {
        let tag = self.start_uid_fetch(set, items).await?;
        let mut out = Vec::new();
        let mut kept = 0usize;
        while let Some(item) = self.next_fetch(&tag).await? {
            kept = kept
                .saturating_add(64)
                .saturating_add(item.body.as_ref().map_or(0, |b| b.len()))
                .saturating_add(item.header.as_ref().map_or(0, |h| h.len()))
                .saturating_add(item.flags.iter().map(String::len).sum());
            if kept > super::conn::MAX_COLLECTED_BYTES {
                return Err(self.err(
                    ErrorKind::Protocol,
                    format!(
                        "the server answered UID FETCH {set} with more than {} MiB; it is not answering what was asked",
                        super::conn::MAX_COLLECTED_BYTES >> 20
                    ),
                ));
            }
            out.push(item);
        }
        Ok(out)
    }

    /// CREATE; an existing folder is not an error (`[ALREADYEXISTS]`, RFC 5530).
    pub async fn create(&mut self, raw: &str) -> ImapResult<Result<(), Completion>> {
        let bytes = raw_name_bytes(raw);
        let done = self
            .run_args(&[Arg::text("CREATE "), mailbox_arg(raw, &bytes)])
            .await?;
        Ok(match done.status {
            Status::Ok => Ok(()),
            _ if done
                .code
                .as_ref()
                .is_some_and(|c| c.name == "ALREADYEXISTS") =>
            {
                Ok(())
            }
            _ => Err(done),
        })
    }

    /// SUBSCRIBE.
    pub async fn subscribe(&mut self, raw: &str) -> ImapResult<()> {
        let done = self
            .run_args(&[
                Arg::text("SUBSCRIBE "),
                mailbox_arg(raw, &raw_name_bytes(raw)),
            ])
            .await?;
        check(self, done, &format!("subscribing folder {raw:?}")).map(|_| ())
    }

    /// SELECT: opens a target folder read-write (UpdateTarget tasks, and a copy into an empty
    /// folder whose UIDVALIDITY changed since planning, see `engine::copy`). Same answer as
    /// [`Connection::examine`], with the PERMANENTFLAGS the folder really keeps.
    pub async fn select(&mut self, raw: &str) -> ImapResult<Selected> {
        self.open_folder("SELECT ", raw).await
    }

    /// `UID STORE set FLAGS.SILENT (flags)`: replaces the flags of the messages in `set`.
    /// Every flag must be an atom (the caller filters).
    pub async fn uid_store_flags(&mut self, set: &str, flags: &[String]) -> ImapResult<()> {
        let cmd = format!("UID STORE {set} FLAGS.SILENT ({})", flags.join(" "));
        let done = self.run(&cmd).await?;
        check(self, done, "setting flags (UID STORE)").map(|_| ())
    }

    /// `UID STORE set +FLAGS.SILENT (\Deleted)` then `UID EXPUNGE set` (RFC 4315): removes
    /// exactly those messages, never another message marked `\Deleted`.
    pub async fn uid_expunge(&mut self, set: &str) -> ImapResult<()> {
        let done = self
            .run(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        check(self, done, "marking copies deleted (UID STORE)")?;
        let done = self.run(&format!("UID EXPUNGE {set}")).await?;
        check(self, done, "UID EXPUNGE").map(|_| ())
    }

    /// GETQUOTAROOT of INBOX (RFC 9208); `None` without QUOTA or without a quota.
    pub async fn inbox_quota(&mut self) -> ImapResult<Option<Quota>> {
        if !self
            .capabilities()
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("QUOTA"))
        {
            return Ok(None);
        }
        let done = self.run("GETQUOTAROOT INBOX").await?;
        if done.status != Status::Ok {
            return Ok(None);
        }
        let mut q = Quota {
            storage_used: None,
            storage_limit: None,
            messages_used: None,
            messages_limit: None,
        };
        let mut any = false;
        for rest in done.data("QUOTA") {
            let res = rest.get(1).and_then(Value::as_list).unwrap_or_default();
            for triple in res.chunks(3) {
                let (Some(name), Some(used), Some(limit)) = (
                    triple.first().and_then(Value::as_atom),
                    triple.get(1).and_then(Value::as_u64),
                    triple.get(2).and_then(Value::as_u64),
                ) else {
                    continue;
                };
                any = true;
                match name.to_ascii_uppercase().as_str() {
                    // RFC 9208 §5.1: STORAGE is in units of 1024 octets.
                    "STORAGE" => {
                        q.storage_used = Some(used.saturating_mul(1024));
                        q.storage_limit = Some(limit.saturating_mul(1024));
                    }
                    "MESSAGE" => {
                        q.messages_used = Some(used);
                        q.messages_limit = Some(limit);
                    }
                    _ => {}
                }
            }
        }
        Ok(any.then_some(q))
    }
}

fn fetch_item(items: Vec<Value>) -> Option<FetchItem> {
    let mut out = FetchItem::default();
    let mut it = items.into_iter();
    while let Some(name) = it.next() {
        let Some(name) = name.as_atom().map(str::to_ascii_uppercase) else {
            continue;
        };
        let Some(value) = it.next() else { break };
        match name.as_str() {
            "UID" => out.uid = value.as_u64().and_then(|v| u32::try_from(v).ok())?,
            "FLAGS" => {
                out.flags = value
                    .as_list()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Value::as_text)
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .collect();
            }
            "INTERNALDATE" => {
                out.internal_date = value.as_text().as_deref().and_then(parse_internal_date)
            }
            "RFC822.SIZE" => out.size = value.as_u64(),
            "MODSEQ" => {
                out.modseq = value
                    .as_list()
                    .and_then(|l| l.first().and_then(Value::as_u64))
            }
            "BODY[]" => out.body = value.into_bytes(),
            n if n.starts_with("BODY[HEADER") => out.header = value.into_bytes(),
            _ => {}
        }
    }
    (out.uid != 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::ConnectOptions;
    use mailferry_proto::task::{Endpoint, Side, TlsMode};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    type Reply = Box<dyn Fn(&[(String, String)]) -> String + Send>;

    /// A server on port 0 that answers in rounds: it reads a round's number of command lines
    /// (tag, rest) before it writes a word, so a client that waited for an answer between
    /// pipelined commands would hang (the test's timeout catches that).
    async fn scripted(rounds: Vec<(usize, Reply)>) -> Connection {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ CONDSTORE NAMESPACE] ready\r\n")
                .await
                .unwrap();
            for (n, reply) in rounds {
                let mut got = Vec::new();
                while got.len() < n {
                    let line = lines.next_line().await.unwrap().unwrap();
                    let (tag, rest) = line.split_once(' ').unwrap();
                    got.push((tag.to_owned(), rest.to_owned()));
                }
                w.write_all(reply(&got).as_bytes()).await.unwrap();
            }
        });
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            tls: TlsMode::None,
            ca_file: None,
            insecure_skip_verify: false,
            auth_mechanism: None,
        };
        Connection::connect(&ep, Side::Source, &ConnectOptions::default())
            .await
            .unwrap()
    }

    async fn within<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(5), f)
            .await
            .expect("the client waited for an answer between pipelined commands")
    }

    /// Answers each `STATUS "name" ...` with figures derived from its position, the untagged
    /// answers of the round in reverse order (a server running them at once may do that).
    fn status_reply(refuse: Option<&'static str>) -> Reply {
        Box::new(move |got| {
            let mut untagged = String::new();
            let mut tagged = String::new();
            for (i, (tag, rest)) in got.iter().enumerate().rev() {
                // The name as sent (quoted), echoed as it came.
                let token = &rest["STATUS ".len()..rest.find(" (MESSAGES").unwrap()];
                let name = token.trim_matches('"');
                if Some(name) == refuse {
                    tagged = format!("{tag} NO [NONEXISTENT] no such folder\r\n{tagged}");
                    continue;
                }
                assert!(rest.ends_with("(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"));
                untagged.push_str(&format!(
                    "* STATUS {token} (MESSAGES {i} UIDNEXT {} UIDVALIDITY 7 HIGHESTMODSEQ {})\r\n",
                    i + 10,
                    i + 100
                ));
                tagged = format!("{tag} OK done\r\n{tagged}");
            }
            untagged + &tagged
        })
    }

    #[tokio::test]
    async fn statuses_are_pipelined_and_matched_by_name() {
        let mut c = scripted(vec![(3, status_reply(None))]).await;
        let st = within(c.statuses(&["INBOX", "INBOX.a b", "INBOX.\"q\""]))
            .await
            .unwrap();
        let figures: Vec<_> = st
            .iter()
            .flatten()
            .map(|s| (s.messages, s.uidnext, s.uidvalidity, s.highestmodseq))
            .collect();
        assert_eq!(
            figures,
            vec![
                (0, 10, 7, Some(100)),
                (1, 11, 7, Some(101)),
                (2, 12, 7, Some(102)),
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_status_is_reported_in_its_place_after_every_answer_was_read() {
        let noop: Reply = Box::new(|got| format!("{} OK noop\r\n", got[0].0));
        let mut c = scripted(vec![(3, status_reply(Some("INBOX.gone"))), (1, noop)]).await;
        let st = within(c.statuses(&["INBOX", "INBOX.gone", "INBOX.x"]))
            .await
            .unwrap();
        assert!(st[0].is_ok() && st[2].is_ok(), "{st:?}");
        let refused = st[1].as_ref().unwrap_err();
        assert!(refused.vanished, "{refused:?}");
        assert!(
            refused.message.contains("STATUS of folder \"INBOX.gone\"")
                && refused.message.contains("[NONEXISTENT]"),
            "{}",
            refused.message
        );
        // The connection is still in step: the next command gets its own answer.
        let done = within(c.run("NOOP")).await.unwrap();
        assert_eq!(done.text, "noop");
    }

    #[tokio::test]
    async fn namespace_list_and_lsub_go_out_together() {
        let reply: Reply = Box::new(|got| {
            let kinds: Vec<&str> = got.iter().map(|(_, r)| r.as_str()).collect();
            assert_eq!(kinds, ["NAMESPACE", "LIST \"\" \"*\"", "LSUB \"\" \"*\""]);
            format!(
                "* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"Public.\" \".\"))\r\n{} OK ns\r\n\
                 * LIST (\\HasNoChildren) \".\" INBOX\r\n* LIST (\\Noselect) \".\" \"INBOX.a\"\r\n{} OK list\r\n\
                 * LSUB () \".\" INBOX\r\n{} OK lsub\r\n",
                got[0].0, got[1].0, got[2].0
            )
        });
        let mut c = scripted(vec![(3, reply)]).await;
        let tree = within(c.folder_tree()).await.unwrap();
        assert_eq!(
            tree.namespaces.personal,
            Some(("INBOX.".to_owned(), Some('.')))
        );
        assert_eq!(tree.namespaces.others, vec!["Public."]);
        let names: Vec<&str> = tree.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["INBOX", "INBOX.a"]);
        assert_eq!(tree.entries[1].attributes, vec!["\\Noselect"]);
        assert_eq!(tree.subscribed.len(), 1);
    }

    #[test]
    fn status_answers_match_by_name_then_by_command() {
        let st = |m| FolderStatus {
            messages: m,
            ..ZERO_STATUS
        };
        let named = |n: &str, m| (Some(n.to_owned()), st(m));
        let cases: Vec<(Vec<StatusAnswers>, Vec<u32>)> = vec![
            // Each under its own command.
            (vec![vec![named("a", 1)], vec![named("b", 2)]], vec![1, 2]),
            // Interleaved: b's answer arrived while a's command ran, and the other way round.
            (vec![vec![named("b", 2)], vec![named("a", 1)]], vec![1, 2]),
            // A lone answer under its own command, with a name spelled differently.
            (vec![vec![named("A", 1)], vec![named("b", 2)]], vec![1, 2]),
            // No answer at all: zero, as a single STATUS gives.
            (vec![vec![], vec![named("b", 2)]], vec![0, 2]),
        ];
        for (answers, want) in cases {
            let got: Vec<u32> = match_statuses(&["a", "b"], &answers)
                .iter()
                .map(|s| s.messages)
                .collect();
            assert_eq!(got, want, "{answers:?}");
        }
    }

    #[test]
    fn internal_dates_parse_with_padded_days_and_keep_zones() {
        let d = parse_internal_date(" 1-Jan-2020 10:11:12 +0200").unwrap();
        assert_eq!(d.offset().local_minus_utc(), 7200);
        assert_eq!(format_internal_date(&d), "01-Jan-2020 10:11:12 +0200");
        assert!(parse_internal_date("garbage").is_none());
    }

    #[test]
    fn fetch_items_are_extracted() {
        let r = wire::parse(&Bytes::from_static(b"* 1 FETCH (UID 9 FLAGS (\\Seen \\Recent x) RFC822.SIZE 4 BODY[] {4}\r\nabcd INTERNALDATE \"01-Jan-2020 10:11:12 +0000\")\r\n")).unwrap();
        let Response::Untagged(mut v) = r else {
            panic!()
        };
        let Some(Value::List(items)) = v.pop() else {
            panic!()
        };
        let f = fetch_item(items).unwrap();
        assert_eq!(f.uid, 9);
        assert_eq!(f.flags, vec!["\\Seen", "x"]);
        assert_eq!(f.body.as_deref(), Some(&b"abcd"[..]));
        assert_eq!(f.size, Some(4));
        assert!(f.internal_date.is_some());
    }
}
