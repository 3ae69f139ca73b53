//! Typed IMAP commands on a [`Connection`]: what the engine asks of a server, and nothing that
//! changes the source. The only commands that change the target are CREATE, SUBSCRIBE and APPEND.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{FolderStatus, Quota};

use super::conn::{Arg, Completion, Connection, astring};
use super::error::ImapResult;
use super::wire::{Code, Response, Status, Value};

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
    let name = rest.get(2)?.as_text()?;
    Some(ListEntry {
        attributes,
        delimiter,
        name,
    })
}

impl Connection {
    /// NAMESPACE (RFC 2342); without the capability, the personal namespace is `""` with the
    /// delimiter LIST reports.
    pub async fn namespaces(&mut self) -> ImapResult<Namespaces> {
        if !self.has_capability("NAMESPACE") {
            return Ok(Namespaces::default());
        }
        let done = self.run("NAMESPACE").await?;
        let done = check(self, done, "NAMESPACE")?;
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
        Ok(ns)
    }

    /// `LIST "" "*"` (or LSUB).
    pub async fn list(&mut self, lsub: bool) -> ImapResult<Vec<ListEntry>> {
        let cmd = if lsub {
            "LSUB \"\" \"*\""
        } else {
            "LIST \"\" \"*\""
        };
        let done = self.run(cmd).await?;
        let done = check(self, done, if lsub { "LSUB" } else { "LIST" })?;
        let want = if lsub { "LSUB" } else { "LIST" };
        Ok(done
            .untagged
            .iter()
            .filter_map(|r| {
                let (kw, rest) = r.keyword()?;
                (kw == want).then(|| parse_list(rest)).flatten()
            })
            .collect())
    }

    /// STATUS of a folder.
    pub async fn status(&mut self, raw: &str) -> ImapResult<FolderStatus> {
        let items = if self.has_capability("CONDSTORE") {
            " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            " (MESSAGES UIDNEXT UIDVALIDITY)"
        };
        let done = self
            .run_args(&[Arg::text("STATUS "), astring(raw), Arg::text(items)])
            .await?;
        let done = check(self, done, &format!("STATUS of folder {raw:?}"))?;
        let mut st = FolderStatus {
            messages: 0,
            uidnext: 0,
            uidvalidity: 0,
            highestmodseq: None,
        };
        for rest in done.data("STATUS") {
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
        }
        Ok(st)
    }

    /// EXAMINE: opens a folder read-only (the source is never changed; the target is only read).
    pub async fn examine(&mut self, raw: &str) -> ImapResult<Selected> {
        self.open_folder("EXAMINE ", raw).await
    }

    async fn open_folder(&mut self, verb: &'static str, raw: &str) -> ImapResult<Selected> {
        let done = self.run_args(&[Arg::text(verb), astring(raw)]).await?;
        // Even a refused SELECT leaves the previous folder deselected (RFC 3501 §6.3.1).
        self.selected = done.status == Status::Ok;
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
    pub async fn uid_fetch_all(&mut self, set: &str, items: &str) -> ImapResult<Vec<FetchItem>> {
        let tag = self.start_uid_fetch(set, items).await?;
        let mut out = Vec::new();
        while let Some(item) = self.next_fetch(&tag).await? {
            out.push(item);
        }
        Ok(out)
    }

    /// CREATE; an existing folder is not an error (`[ALREADYEXISTS]`, RFC 5530).
    pub async fn create(&mut self, raw: &str) -> ImapResult<Result<(), Completion>> {
        let done = self.run_args(&[Arg::text("CREATE "), astring(raw)]).await?;
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
            .run_args(&[Arg::text("SUBSCRIBE "), astring(raw)])
            .await?;
        check(self, done, &format!("subscribing folder {raw:?}")).map(|_| ())
    }

    /// SELECT: opens a target folder read-write (only UpdateTarget tasks do). Same answer as
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
    use crate::imap::wire;

    #[test]
    fn internal_dates_parse_with_padded_days_and_keep_zones() {
        let d = parse_internal_date(" 1-Jan-2020 10:11:12 +0200").unwrap();
        assert_eq!(d.offset().local_minus_utc(), 7200);
        assert_eq!(format_internal_date(&d), "01-Jan-2020 10:11:12 +0200");
        assert!(parse_internal_date("garbage").is_none());
    }

    #[test]
    fn fetch_items_are_extracted() {
        let r = wire::parse(&Bytes::from_static(b"* 1 FETCH (UID 9 FLAGS (\\Seen \\Recent x) RFC822.SIZE 4 BODY[] {4}\r\nabcd INTERNALDATE \"01-Jan-2020 10:11:12 +0000\")\r\n"));
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
