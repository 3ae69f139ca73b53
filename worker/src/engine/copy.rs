//! CopyBatch task: fetch a batch of source messages and append them to the target, exactly once.
//!
//! Before sending anything the worker decides, from the target's own contents, which messages an
//! earlier attempt already appended (DESIGN.md, "The rule": a source UID is already copied iff its
//! rank ≤ A(k), the number of target messages at UID ≥ `dst_uidnext_at_plan` with key k). The store
//! only saves work: target UIDs it knows from APPENDUID need no header fetch.
//!
//! Then the source is fetched in UID chunks while earlier messages are appended: pipelined
//! commands, MULTIAPPEND groups (RFC 3502) where offered, LITERAL+ for small messages and
//! synchronising literals for large ones. Memory is bounded by the process-wide byte budget.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, FixedOffset};
use mailferry_fleet::{CopyEntry, CredentialSource, EntryScope, Store, StoreError};
use mailferry_proto::report::{Warning, WarningCode};
use mailferry_proto::task::{
    BatchItem, CopiedMessage, CopyBatchTask, CopyResult, MessageFailure, Side,
};
use mailferry_proto::{ErrorKind, FailureKind, MessageKey};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::Engine;
use crate::imap::conn::{Arg, Completion, astring};
use crate::imap::ops::format_internal_date;
use crate::imap::wire::Status;
use crate::imap::{Connection, ImapError, ImapResult};
use crate::mailbox::key::{self, KEY_HEADER_FIELDS};

/// How long a folder lease lasts without renewal; above the IMAP inactivity timeout.
const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

fn store_err(e: StoreError) -> ImapError {
    ImapError::new(
        ErrorKind::Transient,
        Side::Target,
        format!("state database: {e}"),
    )
}

/// Runs a CopyBatch task.
pub async fn run<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &CopyBatchTask,
) -> ImapResult<CopyResult> {
    let mut result = CopyResult {
        target: task.target.clone(),
        dst_uidvalidity: task.dst_uidvalidity,
        copied: Vec::new(),
        failed: Vec::new(),
        warnings: Vec::new(),
    };
    if task.items.is_empty() {
        return Ok(result);
    }
    let lease = format!("folder:{pair}:{}", task.target_raw);
    let Some(token) = engine
        .store
        .acquire_lease(&lease, &engine.config.holder, LEASE_TTL)
        .await
        .map_err(store_err)?
    else {
        return Err(ImapError::new(
            ErrorKind::Transient,
            Side::Target,
            format!(
                "target folder {:?} is being written by another mailferry run; it will be retried",
                task.target.display_slash()
            ),
        ));
    };
    let outcome = copy_locked(engine, pair, task, &mut result).await;
    let _ = engine.store.release_lease(&lease, token).await;
    outcome.map(|()| result)
}

async fn copy_locked<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &CopyBatchTask,
    result: &mut CopyResult,
) -> ImapResult<()> {
    let mut dst = engine.open(pair, Side::Target).await?;
    let sel = match dst.examine(&task.target_raw).await {
        Ok(sel) => sel,
        Err(e) if e.kind == ErrorKind::Permanent => {
            for item in &task.items {
                result.failed.push(failure(
                    task,
                    item,
                    FailureKind::FolderRefused,
                    format!("the target folder could not be opened ({})", e.message),
                ));
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if let Some(v) = task.dst_uidvalidity
        && v != sel.uidvalidity
    {
        return Err(dst.err(ErrorKind::Transient, format!(
            "UIDVALIDITY of target folder {:?} changed since planning (the server renumbered it); run again to plan it anew",
            task.target.display_slash()
        )));
    }
    result.dst_uidvalidity = Some(sel.uidvalidity);
    let scope = EntryScope {
        pair: pair.to_owned(),
        dst_folder: task.target_raw.clone(),
        dst_uidvalidity: sel.uidvalidity,
    };

    let present = already_copied(engine, &mut dst, &scope, task, sel.uidnext).await?;
    for item in &task.items {
        if let Some(dst_uid) = present.get(&item.uid) {
            // Appended by an earlier attempt of this batch: counted with its size, so the
            // summary's bytes equal what is on the target.
            result.copied.push(CopiedMessage {
                src_uid: item.uid,
                dst_uid: *dst_uid,
                bytes: item.size,
            });
        }
    }
    let todo: Vec<BatchItem> = task
        .items
        .iter()
        .filter(|i| !present.contains_key(&i.uid))
        .cloned()
        .collect();
    if todo.is_empty() {
        engine.release(pair, dst);
        return Ok(());
    }

    let mut src = engine.open(pair, Side::Source).await?;
    let src_sel = src.examine(&task.source.raw).await?;
    if src_sel.uidvalidity != task.src_uidvalidity {
        return Err(src.err(ErrorKind::Transient, format!(
            "UIDVALIDITY of source folder {:?} changed since planning (the server renumbered it); run again to plan it anew",
            task.source.path.display_slash()
        )));
    }
    let (tx, rx) = mpsc::channel(4096);
    let producer = produce(engine, &mut src, &todo, tx);
    let mut appender = Appender::new(engine, &mut dst, task, &scope, result);
    let consumer = appender.consume(rx);
    let (p, c) = tokio::join!(producer, consumer);
    c?;
    let vanished = p?;
    appender.verify().await?;
    for uid in vanished {
        if let Some(item) = todo.iter().find(|i| i.uid == uid) {
            result.failed.push(failure(
                task,
                item,
                FailureKind::VanishedFromSource,
                "the message was no longer on the source when it was fetched".into(),
            ));
        }
    }
    engine.release(pair, src);
    engine.release(pair, dst);
    Ok(())
}

fn failure(
    task: &CopyBatchTask,
    item: &BatchItem,
    kind: FailureKind,
    reason: String,
) -> MessageFailure {
    MessageFailure {
        folder: task.source.path.display_slash(),
        uid: item.uid,
        subject: item.subject.clone(),
        size: item.size,
        kind,
        reason,
        advice: kind.advice().to_owned(),
    }
}

/// Source UIDs of the batch already on the target, with their target UID when known.
async fn already_copied<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    dst: &mut Connection,
    scope: &EntryScope,
    task: &CopyBatchTask,
    dst_uidnext: u32,
) -> ImapResult<HashMap<u32, Option<u32>>> {
    let uids: Vec<u32> = task.items.iter().map(|i| i.uid).collect();
    let done = engine
        .store
        .done_for(scope, &task.source.raw, task.src_uidvalidity, uids)
        .await
        .map_err(store_err)?;
    let mut present: HashMap<u32, Option<u32>> =
        done.into_iter().map(|(s, d)| (s, Some(d))).collect();
    if present.len() == task.items.len() {
        return Ok(present);
    }
    let from = task.dst_uidnext_at_plan.max(1);
    let known = engine
        .store
        .done_keys_from(scope, from)
        .await
        .map_err(store_err)?;
    let mut counts: HashMap<MessageKey, u32> = HashMap::new();
    let mut fetch_from = from;
    for (uid, k) in &known {
        *counts.entry(*k).or_default() += 1;
        fetch_from = fetch_from.max(uid.saturating_add(1));
    }
    if dst_uidnext > fetch_from {
        // The target holds messages this pair's store does not know: an earlier attempt (or a
        // killed run) appended them, or another writer did. A killed run's last pipelined
        // APPENDs may still be landing: wait until the folder is quiet before counting, or a
        // late one would be counted too early and copied twice.
        settle(dst, &task.target_raw, dst_uidnext, engine.config.settle).await?;
        let refined: HashSet<MessageKey> = task
            .items
            .iter()
            .filter_map(|i| i.header_key.filter(|h| *h != i.key))
            .collect();
        let any_fallback = task.items.iter().any(|i| i.header_key.is_none());
        let items = dst
            .uid_fetch_all(
                &format!("{fetch_from}:*"),
                &format!("UID BODY.PEEK[HEADER.FIELDS ({KEY_HEADER_FIELDS})]"),
            )
            .await?;
        // RFC 3501 §6.4.8: `n:*` also matches the last message when n is past the end.
        for t in items.into_iter().filter(|t| t.uid >= fetch_from) {
            let hk = key::header_key(&t.header.unwrap_or_default());
            let k = match hk {
                Some(h) if refined.contains(&h) => body_of(dst, t.uid)
                    .await?
                    .map(|b| key::refine(h, key::body_digest(&b))),
                Some(h) => Some(h),
                None if any_fallback => body_of(dst, t.uid).await?.map(|b| key::fallback_key(&b)),
                None => None,
            };
            if let Some(k) = k {
                *counts.entry(k).or_default() += 1;
            }
        }
    }
    apply_rule(&task.items, &counts, &mut present);
    Ok(present)
}

/// DESIGN.md, "The rule": a source UID is already copied iff its rank ≤ A(k), the number of
/// target messages with its key at UID ≥ `dst_uidnext_at_plan`. Copies the store knows of stay
/// as they are (with their target UID).
fn apply_rule(
    items: &[BatchItem],
    counts: &HashMap<MessageKey, u32>,
    present: &mut HashMap<u32, Option<u32>>,
) {
    for item in items {
        if !present.contains_key(&item.uid)
            && item.rank <= counts.get(&item.key).copied().unwrap_or(0)
        {
            present.insert(item.uid, None);
        }
    }
}

/// Waits until the folder's UIDNEXT stays the same for `quiet` (at most 60 checks).
async fn settle(
    dst: &mut Connection,
    raw: &str,
    mut last: u32,
    quiet: std::time::Duration,
) -> ImapResult<()> {
    for _ in 0..60 {
        tokio::time::sleep(quiet).await;
        let now = dst.examine(raw).await?.uidnext;
        if now == last {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}

async fn body_of(conn: &mut Connection, uid: u32) -> ImapResult<Option<bytes::Bytes>> {
    let items = conn
        .uid_fetch_all(&uid.to_string(), "UID BODY.PEEK[]")
        .await?;
    Ok(items
        .into_iter()
        .find(|f| f.uid == uid)
        .and_then(|f| f.body))
}

/// A fetched message on its way to the target.
struct Fetched {
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

/// Fetches `todo` from the source in chunks that fit the byte budget; returns UIDs not found.
async fn produce<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    src: &mut Connection,
    todo: &[BatchItem],
    tx: mpsc::Sender<Fetched>,
) -> ImapResult<Vec<u32>> {
    let mut vanished = Vec::new();
    let chunk_bytes = (engine.config.budget_bytes / 4).max(1);
    let mut start = 0;
    while start < todo.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < todo.len()
            && end - start < engine.config.fetch_chunk
            && (end == start || bytes + todo[end].size <= chunk_bytes)
        {
            bytes += todo[end].size;
            end += 1;
        }
        let chunk = &todo[start..end];
        start = end;
        let sizes: Vec<u64> = chunk.iter().map(|i| i.size).collect();
        let mut permits: HashMap<u32, Option<OwnedSemaphorePermit>> = chunk
            .iter()
            .map(|i| i.uid)
            .zip(engine.budget.acquire_chunk(&sizes).await)
            .collect();
        let set = uid_set(chunk.iter().map(|i| i.uid));
        let tag = src
            .start_uid_fetch(&set, "UID FLAGS INTERNALDATE BODY.PEEK[]")
            .await?;
        let mut seen = HashSet::new();
        while let Some(f) = src.next_fetch(&tag).await? {
            let Some(item) = chunk.iter().find(|i| i.uid == f.uid) else {
                continue;
            };
            let Some(body) = f.body else { continue };
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
            if tx.send(fetched).await.is_err() {
                return Ok(vanished);
            }
        }
        vanished.extend(
            chunk
                .iter()
                .filter(|i| !seen.contains(&i.uid))
                .map(|i| i.uid),
        );
    }
    Ok(vanished)
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
            Some((a, b)) if u == b + 1 => Some((a, u)),
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

/// Expands an APPENDUID/COPYUID uid-set (`3955:3957,4000`).
pub fn expand_uid_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if hi - lo > 1_000_000 {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Whether a flag can be sent in an APPEND flag list (RFC 3501 §9: flag-keyword is an atom).
fn is_sendable_flag(f: &str) -> bool {
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

struct Appender<'a, S: Store, C: CredentialSource> {
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
}

impl<'a, S: Store, C: CredentialSource> Appender<'a, S, C> {
    fn new(
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
        }
    }

    async fn consume(&mut self, rx: mpsc::Receiver<Fetched>) -> ImapResult<()> {
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
            if self.failed_keys.contains(&f.item.key) {
                // DESIGN.md "Order": after a rank fails, later ranks of that key are not sent.
                self.result.failed.push(failure(
                    self.task,
                    &f.item,
                    FailureKind::Transient,
                    "not sent because an earlier copy of the same message failed".into(),
                ));
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
        Ok(())
    }

    /// Sends one APPEND (one message) or MULTIAPPEND (several) without waiting for it.
    async fn send(&mut self, group: Vec<Fetched>) -> ImapResult<()> {
        if group.is_empty() {
            return Ok(());
        }
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
        let mut args: Vec<Arg<'_>> = vec![Arg::text("APPEND "), astring(&self.task.target_raw)];
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
            let uids = done
                .code
                .as_ref()
                .filter(|c| c.name == "APPENDUID")
                .and_then(|c| {
                    Some((
                        c.args.first()?.as_u64()?,
                        expand_uid_set(c.args.get(1)?.as_atom()?)?,
                    ))
                })
                .filter(|(v, uids)| {
                    *v == u64::from(self.scope.dst_uidvalidity) && uids.len() == group.len()
                });
            let mut entries = Vec::new();
            for (i, f) in group.iter().enumerate() {
                let dst_uid = uids.as_ref().and_then(|(_, u)| u.get(i).copied());
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
                let a = [
                    Arg::text("APPEND "),
                    astring(&self.task.target_raw),
                    Arg::Text(head.as_str().into()),
                    Arg::Literal(&f.body),
                ];
                let done = self.dst.run_args(&a).await?;
                *self.keys_in_flight.entry(f.item.key).or_default() += 1;
                Box::pin(self.complete(vec![f], done)).await?;
            }
            return Ok(());
        }
        for f in group {
            let (kind, reason) = classify_append_refusal(&done, f.body.len() as u64);
            if kind == FailureKind::Transient {
                return Err(self
                    .dst
                    .err(ErrorKind::Transient, format!("APPEND failed: {reason}")));
            }
            self.failed_keys.insert(f.item.key);
            self.result
                .failed
                .push(failure(self.task, &f.item, kind, reason));
        }
        Ok(())
    }

    /// After appending: fetches the copies' flags and identifying headers by target UID; warns
    /// about flags the target did not keep (DESIGN.md: never silent) and about a target that
    /// rewrites what it stores (its idempotency then rests on the store).
    async fn verify(&mut self) -> ImapResult<()> {
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
                &format!("UID BODY.PEEK[HEADER.FIELDS ({KEY_HEADER_FIELDS})]"),
            )
            .await?;
        let unstable = heads.into_iter().any(|it| {
            let expected = self.requested.get(&it.uid).and_then(|(_, _, k)| *k);
            expected.is_some() && key::header_key(&it.header.unwrap_or_default()) != expected
        });
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
                message: format!("the target rewrote the headers of messages appended to {folder:?}; a rerun without the --state directory could copy them again"),
            });
        }
        self.requested.clear();
        Ok(())
    }
}

/// What an APPEND refusal means (RFC 5530 codes; RFC 7889 `[TOOBIG]`).
fn classify_append_refusal(done: &Completion, size: u64) -> (FailureKind, String) {
    let code = done.code.as_ref().map(|c| c.name.as_str()).unwrap_or("");
    let text = done.text.trim();
    let size_mb = size as f64 / 1_048_576.0;
    match code {
        "OVERQUOTA" => (
            FailureKind::OverQuota,
            format!("target over quota ({text})"),
        ),
        "TOOBIG" | "LIMIT" => (
            FailureKind::TooLarge,
            format!("message of {size_mb:.1} MB larger than the target allows ({text})"),
        ),
        "UNAVAILABLE" | "SERVERBUG" | "INUSE" => {
            (FailureKind::Transient, format!("[{code}] {text}"))
        }
        _ if text.to_ascii_lowercase().contains("quota") => (
            FailureKind::OverQuota,
            format!("target over quota ({text})"),
        ),
        _ if text.to_ascii_lowercase().contains("too large")
            || text.to_ascii_lowercase().contains("too big") =>
        {
            (
                FailureKind::TooLarge,
                format!("message of {size_mb:.1} MB larger than the target allows ({text})"),
            )
        }
        _ => (
            FailureKind::Rejected,
            format!(
                "the target refused the message: {}{text}",
                if code.is_empty() {
                    String::new()
                } else {
                    format!("[{code}] ")
                }
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(uid: u32, k: u8, rank: u32) -> BatchItem {
        BatchItem {
            uid,
            size: 1,
            key: MessageKey([k; 16]),
            header_key: Some(MessageKey([k; 16])),
            rank,
            subject: String::new(),
        }
    }

    #[test]
    fn the_rule_counts_copies_by_rank() {
        // Three genuine duplicates (ranks 1..3) and one other message; an earlier attempt got
        // two of the duplicates onto the target, one of them recorded in the store.
        let items = [item(1, 7, 1), item(2, 7, 2), item(3, 7, 3), item(4, 8, 1)];
        let counts = HashMap::from([(MessageKey([7; 16]), 2)]);
        let mut present = HashMap::from([(1, Some(40))]);
        apply_rule(&items, &counts, &mut present);
        assert_eq!(
            present.get(&1),
            Some(&Some(40)),
            "the store's target UID is kept"
        );
        assert_eq!(
            present.get(&2),
            Some(&None),
            "rank 2 ≤ A = 2: already copied"
        );
        assert!(!present.contains_key(&3), "rank 3 > A: still owed");
        assert!(!present.contains_key(&4), "a key not on the target is owed");
    }

    #[test]
    fn uid_sets_compress_runs_and_expand_back() {
        let s = uid_set([1, 2, 3, 7, 9, 10].into_iter());
        assert_eq!(s, "1:3,7,9:10");
        assert_eq!(expand_uid_set(&s), Some(vec![1, 2, 3, 7, 9, 10]));
        assert_eq!(expand_uid_set("5:3"), Some(vec![3, 4, 5]));
        assert_eq!(expand_uid_set("x"), None);
        assert_eq!(expand_uid_set("1:4000000000"), None);
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

    #[test]
    fn append_refusals_are_classified() {
        let c = |code: &str, text: &str| Completion {
            status: Status::No,
            code: (!code.is_empty()).then(|| crate::imap::wire::Code {
                name: code.into(),
                args: vec![],
            }),
            text: text.into(),
            untagged: vec![],
        };
        assert_eq!(
            classify_append_refusal(&c("OVERQUOTA", "Quota exceeded"), 10).0,
            FailureKind::OverQuota
        );
        assert_eq!(
            classify_append_refusal(&c("TOOBIG", "too big"), 10).0,
            FailureKind::TooLarge
        );
        assert_eq!(
            classify_append_refusal(&c("LIMIT", "limit"), 10).0,
            FailureKind::TooLarge
        );
        assert_eq!(
            classify_append_refusal(&c("", "Quota exceeded (mailbox for user is full)"), 10).0,
            FailureKind::OverQuota
        );
        assert_eq!(
            classify_append_refusal(&c("", "Invalid message"), 10).0,
            FailureKind::Rejected
        );
        assert_eq!(
            classify_append_refusal(&c("UNAVAILABLE", "later"), 10).0,
            FailureKind::Transient
        );
    }
}
