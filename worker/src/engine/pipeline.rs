//! The copy pipeline of a batch: the source is fetched in UID chunks that fit the byte budget
//! while earlier messages are appended to the target: pipelined commands, MULTIAPPEND groups
//! (RFC 3502) where offered, LITERAL+ for small messages and synchronising literals for large
//! ones, and flags read back afterwards. Deciding *what* to copy is `copy.rs`'s job; what a
//! refusal means, `refusal.rs`'s.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, FixedOffset};
use mailferry_fleet::{CopyEntry, CredentialSource, EntryScope, Store};
use mailferry_proto::report::{Warning, WarningCode};
use mailferry_proto::task::{BatchItem, CopiedMessage, CopyBatchTask, CopyResult};
use mailferry_proto::{ErrorKind, FailureKind, MessageKey};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::Engine;
use super::copy::{failure, store_err};
use super::refusal::{self, FolderProbe};
use crate::imap::conn::{Arg, Completion};
use crate::imap::ops::{FetchItem, format_internal_date, mailbox_arg};
use crate::imap::wire::{Status, Value};
use crate::imap::{Connection, ImapResult};
use crate::mailbox::key::{self, KEY_HEADER_FIELDS};
use crate::mailbox::name::raw_name_bytes;
use crate::mailbox::uid_set::{self, UidSetError};

/// A fetched message on its way to the target.
pub(super) struct Fetched {
    item: BatchItem,
    flags: Vec<String>,
    date: Option<DateTime<FixedOffset>>,
    body: bytes::Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Fetched {
    /// What precedes the literal of this message in APPEND: ` (flags) "date" ` (RFC 3501 §6.3.11).
    fn append_head(&self) -> String {
        let flags: Vec<&str> = self
            .flags
            .iter()
            .map(String::as_str)
            .filter(|x| is_sendable_flag(x))
            .collect();
        let date = self
            .date
            .map(|d| format!(" \"{}\"", format_internal_date(&d)))
            .unwrap_or_default();
        format!(" ({}){date} ", flags.join(" "))
    }
}

/// What the producer could not hand over as asked, and what it noticed on the way.
#[derive(Debug, Default)]
pub(super) struct Produced {
    /// UIDs the source did not return: deleted during the run.
    pub vanished: Vec<u32>,
    /// (UID asked, UID received): the source answered with another message.
    pub wrong: Vec<(u32, u32)>,
    /// (UID, announced RFC822.SIZE, bytes received): bodies of another size than announced,
    /// also when fetched again; handed over as served.
    pub size_mismatch: Vec<(u32, u64, u64)>,
}

/// Fetches `todo` from the source in chunks that fit the byte budget and hands the messages to
/// `tx` in UID order.
pub(super) async fn produce<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    src: &mut Connection,
    todo: &[BatchItem],
    tx: mpsc::Sender<Fetched>,
) -> ImapResult<Produced> {
    let mut out = Produced::default();
    let chunk_bytes = (engine.config.budget_bytes / 4).max(1);
    let mut start = 0;
    while start < todo.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < todo.len()
            && end - start < engine.config.fetch_chunk
            && (end == start || bytes.saturating_add(todo[end].size) <= chunk_bytes)
        {
            bytes = bytes.saturating_add(todo[end].size);
            end += 1;
        }
        let chunk = &todo[start..end];
        start = end;
        if !produce_chunk(engine, src, chunk, &tx, &mut out).await? {
            break;
        }
    }
    Ok(out)
}

/// One UID FETCH of `chunk`; `false` when the consumer has gone.
async fn produce_chunk<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    src: &mut Connection,
    chunk: &[BatchItem],
    tx: &mpsc::Sender<Fetched>,
    out: &mut Produced,
) -> ImapResult<bool> {
    let sizes: Vec<u64> = chunk.iter().map(|i| i.size).collect();
    let mut permits: HashMap<u32, Option<OwnedSemaphorePermit>> = chunk
        .iter()
        .map(|i| i.uid)
        .zip(engine.budget.acquire_chunk(&sizes).await)
        .collect();
    let set = uid_set(chunk.iter().map(|i| i.uid));
    // The bodies may take what the plan says they weigh (plus slack), not what the server
    // decides to send: the byte budget was taken for these sizes.
    src.expect_messages(chunk.iter().map(|i| i.size));
    let tag = src.start_uid_fetch(&set, FETCH_ITEMS).await?;
    let mut seen = HashSet::new();
    // UIDs the server answered that were not asked (bounded by the chunk: more is noise).
    let mut strangers = Vec::new();
    // Once a body needs a second look, later messages wait behind it, so the target still
    // receives them in UID order (DESIGN.md, "Order").
    let mut held: Vec<Fetched> = Vec::new();
    while let Some(f) = src.next_fetch(&tag).await? {
        let Some(item) = chunk.iter().find(|i| i.uid == f.uid) else {
            if strangers.len() < chunk.len() && !strangers.contains(&f.uid) {
                strangers.push(f.uid);
            }
            continue;
        };
        let Some(body) = f.body else { continue };
        mailferry_fleet::failpoint::hit("fetch");
        if !seen.insert(f.uid) {
            continue;
        }
        let fetched = Fetched {
            item: item.clone(),
            flags: f.flags,
            date: f.internal_date,
            body,
            _permit: permits.remove(&f.uid).flatten(),
        };
        if !held.is_empty() || fetched.body.len() as u64 != item.size {
            held.push(fetched);
        } else if tx.send(fetched).await.is_err() {
            return Ok(false);
        }
    }
    for f in held {
        let f = match f.body.len() as u64 == f.item.size {
            true => f,
            false => refetch(src, f, out).await?,
        };
        if tx.send(f).await.is_err() {
            return Ok(false);
        }
    }
    let missing = chunk.iter().map(|i| i.uid).filter(|u| !seen.contains(u));
    // A server that answers with other UIDs than asked answered those in their place: pair
    // them in order, so the report names both (issue 10: not "deleted during the run").
    let mut strangers = strangers.into_iter();
    for asked in missing {
        match strangers.next() {
            Some(got) => out.wrong.push((asked, got)),
            None => out.vanished.push(asked),
        }
    }
    Ok(true)
}

/// What the pipeline fetches of each message.
const FETCH_ITEMS: &str = "UID FLAGS INTERNALDATE BODY.PEEK[]";

/// Fetches a message whose body was not its announced RFC822.SIZE once more: a body cut in
/// transit comes whole the second time. A server that announces approximate sizes (Exchange)
/// serves the same body again; it is then copied as served and reported (issue 10).
async fn refetch(src: &mut Connection, f: Fetched, out: &mut Produced) -> ImapResult<Fetched> {
    let uid = f.item.uid;
    src.expect_message(f.item.size.max(f.body.len() as u64));
    let again = src
        .uid_fetch_all(&uid.to_string(), FETCH_ITEMS)
        .await?
        .into_iter()
        .find(|g| g.uid == uid);
    let f = match again {
        Some(FetchItem {
            body: Some(body),
            flags,
            internal_date,
            ..
        }) => Fetched {
            body,
            flags,
            date: internal_date.or(f.date),
            ..f
        },
        _ => f,
    };
    let received = f.body.len() as u64;
    if received != f.item.size {
        out.size_mismatch.push((uid, f.item.size, received));
    }
    Ok(f)
}

/// `1:3,7,9:10` from ascending UIDs.
pub fn uid_set(uids: impl Iterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let push = |out: &mut String, (a, b): (u32, u32)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}:{b}"));
        }
    };
    for u in uids {
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(u) => Some((a, u)),
            Some(r) => {
                push(&mut out, r);
                Some((u, u))
            }
            None => Some((u, u)),
        };
    }
    if let Some(r) = run {
        push(&mut out, r);
    }
    out
}

/// The target UIDs an APPEND's `[APPENDUID uidvalidity uid-set]` (RFC 4315 §3) gives the
/// `group` messages, in order. `Ok(None)` without the code or for another UIDVALIDITY (the
/// folder was renumbered: the UIDs mean nothing here); `Err` when the set is malformed or
/// names another number of UIDs than messages appended, which no server may answer.
fn appended_uids(
    done: &Completion,
    uidvalidity: u32,
    group: usize,
) -> Result<Option<Vec<u32>>, String> {
    let Some(code) = done.code.as_ref().filter(|c| c.name == "APPENDUID") else {
        return Ok(None);
    };
    let (Some(v), Some(set)) = (
        code.args.first().and_then(Value::as_u64),
        code.args.get(1).and_then(Value::as_atom),
    ) else {
        return Err("a malformed APPENDUID".into());
    };
    if v != u64::from(uidvalidity) {
        return Ok(None);
    }
    match uid_set::parse(set, group) {
        Ok(uids) if uids.len() == group => Ok(Some(uids)),
        Ok(uids) => Err(format!(
            "an APPENDUID naming {} UIDs for {group} messages",
            uids.len()
        )),
        Err(UidSetError::TooMany { count, .. }) => Err(format!(
            "an APPENDUID naming {count} UIDs for {group} messages"
        )),
        Err(e) => Err(format!("an invalid APPENDUID ({e})")),
    }
}

/// Whether a flag can be sent in an APPEND flag list (RFC 3501 §9: flag-keyword is an atom).
pub(super) fn is_sendable_flag(f: &str) -> bool {
    let body = f.strip_prefix('\\').unwrap_or(f);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b))
        && !f.eq_ignore_ascii_case("\\Recent")
}

struct InFlight {
    tag: String,
    group: Vec<Fetched>,
}

pub(super) struct Appender<'a, S: Store, C: CredentialSource> {
    engine: &'a Engine<S, C>,
    dst: &'a mut Connection,
    task: &'a CopyBatchTask,
    scope: &'a EntryScope,
    result: &'a mut CopyResult,
    multi: bool,
    inflight: VecDeque<InFlight>,
    /// Bytes sent in commands the server has not answered yet.
    inflight_bytes: u64,
    keys_in_flight: HashMap<MessageKey, u32>,
    failed_keys: HashSet<MessageKey>,
    /// Source flags that cannot be expressed in an APPEND (not an atom), reported as not kept.
    unsendable: Vec<String>,
    /// Flags requested per appended target UID, checked afterwards.
    requested: HashMap<u32, (u32, Vec<String>, Option<MessageKey>)>,
    /// The batch's first answers: whether the folder takes mail at all.
    probe: FolderProbe<BatchItem>,
}

impl<'a, S: Store, C: CredentialSource> Appender<'a, S, C> {
    pub(super) fn new(
        engine: &'a Engine<S, C>,
        dst: &'a mut Connection,
        task: &'a CopyBatchTask,
        scope: &'a EntryScope,
        result: &'a mut CopyResult,
    ) -> Self {
        let multi = dst.has_capability("MULTIAPPEND");
        Appender {
            engine,
            dst,
            task,
            scope,
            result,
            multi,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            keys_in_flight: HashMap::new(),
            failed_keys: HashSet::new(),
            unsendable: Vec::new(),
            requested: HashMap::new(),
            probe: FolderProbe::default(),
        }
    }

    /// The target's words when the folder takes no mail (every message sent into it refused
    /// alike; the batch stopped sending).
    pub(super) fn folder_refused(&self) -> Option<String> {
        self.probe.folder_refused().map(str::to_owned)
    }

    /// Records failures as messages' own.
    fn record_failures(&mut self, failed: Vec<refusal::Failed<BatchItem>>) {
        for (item, kind, reason) in failed {
            self.result
                .failed
                .push(failure(self.task, &item, kind, reason));
        }
    }

    pub(super) async fn consume(&mut self, rx: mpsc::Receiver<Fetched>) -> ImapResult<()> {
        let r = self.consume_inner(rx).await;
        if r.is_err() {
            // Give the byte budget back at once: the producer may be waiting for it, and the
            // messages in flight are decided again by the retry (DESIGN.md, "The rule").
            self.inflight.clear();
            self.inflight_bytes = 0;
        }
        r
    }

    async fn consume_inner(&mut self, mut rx: mpsc::Receiver<Fetched>) -> ImapResult<()> {
        let limiter = self.engine.limiter(&self.scope.pair);
        let cfg = &self.engine.config;
        let mut group: Vec<Fetched> = Vec::new();
        let mut group_bytes = 0u64;
        loop {
            // Never wait for the source while holding finished appends: drain them first, so
            // their budget returns to the producer (no deadlock on the byte budget).
            let next = if self.inflight.is_empty() && group.is_empty() {
                rx.recv().await
            } else {
                match rx.try_recv() {
                    Ok(f) => Some(f),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if !group.is_empty() {
                            self.send(std::mem::take(&mut group)).await?;
                            group_bytes = 0;
                        } else {
                            self.finish_oldest().await?;
                        }
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(f) = next else { break };
            // --max-bytes-per-second counts both directions: fetched and appended.
            limiter.take(2 * f.body.len() as u64, 1).await;
            if self.failed_keys.contains(&f.item.key) {
                // DESIGN.md "Order": after a rank fails, later ranks of that key are not sent.
                let why = "not sent because an earlier copy of the same message failed";
                let now = self
                    .probe
                    .not_sent(f.item.clone(), FailureKind::Transient, why.into());
                self.record_failures(now.into_iter().collect());
                continue;
            }
            if self.probe.probing() {
                // Until the folder has taken a message, one at a time: a folder that takes
                // none is told by its first answers, before more is sent (refusal.rs).
                self.send(vec![f]).await?;
                self.finish_oldest().await?;
                if self.probe.folder_refused().is_some() {
                    return Ok(());
                }
                continue;
            }
            let key_busy = self.keys_in_flight.contains_key(&f.item.key)
                && !group.iter().any(|g| g.item.key == f.item.key);
            let large = f.item.size > cfg.sync_literal_above
                || f.body.len() as u64 > cfg.sync_literal_above;
            if key_busy || large || !self.multi {
                if !group.is_empty() {
                    self.send(std::mem::take(&mut group)).await?;
                    group_bytes = 0;
                }
                if key_busy {
                    while !self.inflight.is_empty() {
                        self.finish_oldest().await?;
                    }
                }
            }
            if large || !self.multi {
                self.send(vec![f]).await?;
            } else {
                group_bytes += f.body.len() as u64;
                group.push(f);
                if group.len() >= cfg.multiappend_max_messages
                    || group_bytes >= cfg.multiappend_max_bytes
                {
                    self.send(std::mem::take(&mut group)).await?;
                    group_bytes = 0;
                }
            }
            // Bounded by commands and by bytes: what the server has not answered yet is what a
            // killed run leaves behind for it to finish, so it stays small.
            while self.inflight.len() >= cfg.append_window
                || (!self.inflight.is_empty() && self.inflight_bytes > cfg.max_unanswered_bytes)
            {
                self.finish_oldest().await?;
            }
        }
        if !group.is_empty() {
            self.send(group).await?;
        }
        while !self.inflight.is_empty() {
            self.finish_oldest().await?;
        }
        let held = self.probe.finish();
        self.record_failures(held);
        Ok(())
    }

    /// Sends one APPEND (one message) or MULTIAPPEND (several) without waiting for it.
    async fn send(&mut self, group: Vec<Fetched>) -> ImapResult<()> {
        if group.is_empty() {
            return Ok(());
        }
        // Some servers refuse an APPEND into the folder the session holds read-only ("Current
        // box is selected READ-ONLY"); the target folder was EXAMINEd to count what it holds.
        self.dst.ready_to_append().await?;
        let sync_above = if group.len() == 1 {
            self.engine.config.sync_literal_above as usize
        } else {
            usize::MAX
        };
        for f in &group {
            for flag in f
                .flags
                .iter()
                .filter(|x| !is_sendable_flag(x) && !x.eq_ignore_ascii_case("\\Recent"))
            {
                if !self.unsendable.contains(flag) {
                    self.unsendable.push(flag.clone());
                }
            }
        }
        let parts: Vec<(String, &[u8])> = group
            .iter()
            .map(|f| (f.append_head(), &f.body[..]))
            .collect();
        let folder = raw_name_bytes(&self.task.target_raw);
        let mut args: Vec<Arg<'_>> = vec![
            Arg::text("APPEND "),
            mailbox_arg(&self.task.target_raw, &folder),
        ];
        for (head, body) in &parts {
            args.push(Arg::Text(head.as_str().into()));
            args.push(Arg::Literal(body));
        }
        let sent = self.dst.send_args(&args, sync_above).await?;
        for f in &group {
            *self.keys_in_flight.entry(f.item.key).or_default() += 1;
        }
        match sent {
            Ok(tag) => {
                self.inflight_bytes += group.iter().map(|f| f.body.len() as u64).sum::<u64>();
                self.inflight.push_back(InFlight { tag, group });
            }
            Err(refused) => self.complete(group, refused).await?,
        }
        Ok(())
    }

    async fn finish_oldest(&mut self) -> ImapResult<()> {
        let Some(f) = self.inflight.pop_front() else {
            return Ok(());
        };
        self.inflight_bytes = self
            .inflight_bytes
            .saturating_sub(f.group.iter().map(|g| g.body.len() as u64).sum());
        let done = self.dst.finish(&f.tag).await?;
        self.complete(f.group, done).await
    }

    async fn complete(&mut self, group: Vec<Fetched>, done: Completion) -> ImapResult<()> {
        for f in &group {
            if let Some(c) = self.keys_in_flight.get_mut(&f.item.key) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.keys_in_flight.remove(&f.item.key);
                }
            }
        }
        if done.status == Status::Ok {
            let held = self.probe.accepted();
            self.record_failures(held);
            let uids = match appended_uids(&done, self.scope.dst_uidvalidity, group.len()) {
                Ok(uids) => uids,
                Err(why) => {
                    // The copies are found by key on the next run; only their target UIDs
                    // (the store's shortcut) are lost.
                    self.protocol_warning(format!(
                        "the target answered APPEND with {why}; the copies' target UIDs are treated as unknown"
                    ));
                    None
                }
            };
            let mut entries = Vec::new();
            for (i, f) in group.iter().enumerate() {
                let dst_uid = uids.as_ref().and_then(|u| u.get(i).copied());
                if let Some(d) = dst_uid {
                    entries.push(CopyEntry {
                        src_folder: self.task.source.raw.clone(),
                        src_uidvalidity: self.task.src_uidvalidity,
                        src_uid: f.item.uid,
                        dst_uid: d,
                        key: f.item.key,
                    });
                    let flags = f
                        .flags
                        .iter()
                        .filter(|x| is_sendable_flag(x))
                        .cloned()
                        .collect();
                    self.requested
                        .insert(d, (f.item.uid, flags, f.item.header_key));
                }
                self.result.copied.push(CopiedMessage {
                    src_uid: f.item.uid,
                    dst_uid,
                    bytes: f.body.len() as u64,
                });
            }
            mailferry_fleet::failpoint::hit("appended");
            self.engine
                .store
                .record_done(self.scope, entries)
                .await
                .map_err(store_err)?;
            for f in group {
                self.engine.config.connect.buffers.give(f.body);
            }
            return Ok(());
        }
        if group.len() > 1 {
            // RFC 3502: MULTIAPPEND is all or nothing and the NO names no message; send them one
            // by one to learn which failed.
            for f in group {
                let head = f.append_head();
                let folder = raw_name_bytes(&self.task.target_raw);
                let a = [
                    Arg::text("APPEND "),
                    mailbox_arg(&self.task.target_raw, &folder),
                    Arg::Text(head.as_str().into()),
                    Arg::Literal(&f.body),
                ];
                self.dst.ready_to_append().await?;
                let done = self.dst.run_args(&a).await?;
                *self.keys_in_flight.entry(f.item.key).or_default() += 1;
                Box::pin(self.complete(vec![f], done)).await?;
            }
            return Ok(());
        }
        for f in group {
            let limit = self
                .dst
                .capability_value("APPENDLIMIT")
                .and_then(|v| v.parse().ok());
            let (kind, reason) = refusal::classify(&done, f.body.len() as u64, limit);
            if kind == FailureKind::Transient {
                let e = self
                    .dst
                    .err(ErrorKind::Transient, format!("APPEND failed: {reason}"));
                return Err(match crate::imap::error::throttle_hint(&done.text) {
                    Some(hint) => e.throttled(hint),
                    None => e,
                });
            }
            self.failed_keys.insert(f.item.key);
            let now = self.probe.refused(f.item, kind, reason, &done);
            self.record_failures(now);
        }
        Ok(())
    }

    /// Reports a protocol violation of the target once per batch (a server that does it once
    /// does it for every group).
    fn protocol_warning(&mut self, message: String) {
        let folder = self.task.target.display_slash();
        if self
            .result
            .warnings
            .iter()
            .any(|w| w.code == WarningCode::ProtocolError && w.folder.as_deref() == Some(&folder))
        {
            return;
        }
        tracing::warn!(folder = %folder, "{message}");
        self.result.warnings.push(Warning {
            code: WarningCode::ProtocolError,
            folder: Some(folder.clone()),
            message: format!("in target folder {folder:?}, {message}"),
        });
    }

    /// After appending: fetches the copies' flags and identifying headers by target UID; warns
    /// about flags the target did not keep (DESIGN.md: never silent) and about a target that
    /// rewrites what it stores (its idempotency then rests on the store).
    pub(super) async fn verify(&mut self) -> ImapResult<()> {
        let folder = self.task.target.display_slash();
        for flag in std::mem::take(&mut self.unsendable) {
            self.result.warnings.push(Warning {
                code: WarningCode::FlagNotKept,
                folder: Some(folder.clone()),
                message: format!("the source flag {flag:?} is not a valid IMAP keyword and cannot be set on the target; messages in {folder:?} were copied without it"),
            });
        }
        if self.requested.is_empty() {
            return Ok(());
        }
        if !self.dst.is_selected() {
            // Left before appending (`ready_to_append`); reading the copies back needs it open.
            self.dst.examine(&self.task.target_raw).await?;
        }
        let mut uids: Vec<u32> = self.requested.keys().copied().collect();
        uids.sort_unstable();
        // Flags of every copy; identifying headers of a sample (the first and the last copy):
        // a target that rewrites what it stores does so to every message, and hashing every
        // header again would cost as much CPU as the inventory.
        let items = self
            .dst
            .uid_fetch_all(&uid_set(uids.iter().copied()), "UID FLAGS")
            .await?;
        let mut not_kept: Vec<String> = Vec::new();
        for it in &items {
            let Some((_, wanted, _)) = self.requested.get(&it.uid) else {
                continue;
            };
            for w in wanted {
                if !it.flags.iter().any(|f| f.eq_ignore_ascii_case(w))
                    && !not_kept.iter().any(|n| n.eq_ignore_ascii_case(w))
                {
                    not_kept.push(w.clone());
                }
            }
        }
        let mut sample: Vec<u32> = uids
            .first()
            .into_iter()
            .chain(uids.last())
            .copied()
            .collect();
        sample.dedup();
        let heads = self
            .dst
            .uid_fetch_all(
                &uid_set(sample.into_iter()),
                &format!("UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({KEY_HEADER_FIELDS})]"),
            )
            .await?;
        let mut unstable = false;
        for it in heads {
            let Some(expected) = self.requested.get(&it.uid).and_then(|(_, _, k)| *k) else {
                continue;
            };
            if key::header_key(&it.header.unwrap_or_default()) == Some(expected) {
                continue;
            }
            // Rendered otherwise, or changed? The copy's own header section tells: the same
            // identifying fields there mean the target only renders them differently, which
            // the inventory's keying from content (engine/keys.rs) recognises.
            if let Some(size) = it.size {
                self.dst.expect_message(size);
            }
            let copy = self
                .dst
                .uid_fetch_all(&it.uid.to_string(), "UID BODY.PEEK[]")
                .await?
                .into_iter()
                .find(|f| f.uid == it.uid)
                .and_then(|f| f.body);
            unstable |= copy.is_some_and(|b| key::header_key(&b) != Some(expected));
        }
        for flag in not_kept {
            self.result.warnings.push(Warning {
                code: WarningCode::FlagNotKept,
                folder: Some(folder.clone()),
                message: format!(
                    "the target folder {folder:?} did not keep the flag {flag} on some messages"
                ),
            });
        }
        if unstable {
            self.result.warnings.push(Warning {
                code: WarningCode::KeyUnstable,
                folder: Some(folder.clone()),
                message: format!("the target changed the identifying header fields (Message-ID, Date, From, To, Subject, Received) of messages appended to {folder:?}; a rerun without the --state directory could copy them again"),
            });
        }
        self.requested.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set([1, 2, 3, 7, 9, 10].into_iter()), "1:3,7,9:10");
        assert_eq!(
            uid_set([u32::MAX - 1, u32::MAX].into_iter()),
            "4294967294:4294967295"
        );
    }

    #[test]
    fn appenduid_sets_must_name_one_uid_per_message() {
        let done = |code: &str| {
            crate::imap::wire::parse(&bytes::Bytes::from(format!("a1 OK [{code}] done\r\n")))
                .unwrap()
        };
        let completion = |code: &str| match done(code) {
            crate::imap::wire::Response::Tagged {
                status, code, text, ..
            } => Completion {
                status,
                code,
                text,
                untagged: vec![],
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(
            appended_uids(&completion("APPENDUID 777 5:6"), 777, 2),
            Ok(Some(vec![5, 6]))
        );
        assert_eq!(
            appended_uids(&completion("APPENDUID 778 5:6"), 777, 2),
            Ok(None)
        );
        let bomb = format!("APPENDUID 777 {}", vec!["1:1000001"; 100].join(","));
        let err = appended_uids(&completion(&bomb), 777, 2).unwrap_err();
        assert!(err.contains("100000100 UIDs for 2 messages"), "{err}");
        assert!(appended_uids(&completion("APPENDUID 777 5"), 777, 2).is_err());
        assert!(appended_uids(&completion("APPENDUID 777 0:1"), 777, 2).is_err());
    }

    #[test]
    fn flags_that_cannot_be_sent_are_filtered() {
        assert!(is_sendable_flag("\\Seen"));
        assert!(is_sendable_flag("$Label1"));
        assert!(!is_sendable_flag("\\Recent"));
        assert!(!is_sendable_flag("bad flag"));
        assert!(!is_sendable_flag("a(b"));
        assert!(!is_sendable_flag(""));
    }
}
