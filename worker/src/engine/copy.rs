//! CopyBatch task: copy a batch of source messages to the target, exactly once.
//!
//! Before sending anything the worker decides, from the target's own contents, which messages an
//! earlier attempt already appended (DESIGN.md, "The rule": a source UID is already copied iff its
//! rank ≤ A(k), the number of target messages at UID ≥ `dst_uidnext_at_plan` with key k). The store
//! only saves work: target UIDs it knows from APPENDUID need no header fetch.
//!
//! Then `pipeline.rs` fetches the rest from the source while appending it to the target.

use std::collections::{HashMap, HashSet};

use mailferry_fleet::{CredentialSource, EntryScope, Store, StoreError};
use mailferry_proto::report::{Warning, WarningCode};
use mailferry_proto::task::{
    BatchItem, CopiedMessage, CopyBatchTask, CopyResult, FolderRefusal, MessageFailure, Side,
};
use mailferry_proto::{ErrorKind, FailureKind, MessageKey};
use tokio::sync::mpsc;

use super::pipeline::{Appender, produce};
use super::{Engine, Session};
use crate::imap::{Connection, ImapError, ImapResult};
use crate::mailbox::key::{self, KEY_HEADER_FIELDS};

pub(super) fn store_err(e: StoreError) -> ImapError {
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
        deferred: Vec::new(),
        folder_refused: None,
    };
    if task.items.is_empty() {
        return Ok(result);
    }
    let lease = format!("folder:{pair}:{}", task.target_raw);
    // One holder per run of a batch, not per process: a redelivered copy of a batch still
    // running in this same worker must wait for it like any other writer.
    let holder = format!("{}#{}", engine.config.holder, run_tag());
    let Some(token) = engine
        .store
        .acquire_lease(&lease, &holder, engine.config.lease_ttl)
        .await
        .map_err(store_err)?
    else {
        if let Some(wait) = engine
            .store
            .epoch_wait(engine.config.lease_ttl)
            .await
            .map_err(store_err)?
        {
            return Err(fresh_store(wait));
        }
        // A holder that died keeps the lease until it expires: ask to be retried in a third of
        // the lease time, so the retries outlast it.
        let mut e = ImapError::new(
            ErrorKind::Transient,
            Side::Target,
            format!(
                "target folder {:?} is being written by another mailferry run; it will be retried",
                task.target.display_slash()
            ),
        );
        e.retry_after = Some(engine.config.lease_ttl / 3);
        return Err(e);
    };
    // The lease is renewed while the batch runs; once it cannot be (taken over after expiry, or
    // the store was flushed), the batch stops writing at once: another writer may be counting.
    let outcome = tokio::select! {
        r = copy_locked(engine, pair, task, &mut result) => r,
        why = keep_lease(engine, &lease, token) => Err(ImapError::new(
            ErrorKind::Transient,
            Side::Target,
            format!(
                "stopped writing to target folder {:?}: {why}; the batch will be retried",
                task.target.display_slash()
            ),
        )),
    };
    let _ = engine.store.release_lease(&lease, token).await;
    outcome.map(|()| result)
}

/// The store is new (a fresh or flushed Redis): no folder is written until one lease TTL after
/// its epoch, in case a worker from before a flush still holds a lease (DESIGN.md,
/// "Idempotency"). Not a failure: the batch comes back when the wait is over.
fn fresh_store(wait: std::time::Duration) -> ImapError {
    ImapError::new(
        ErrorKind::Transient,
        Side::Target,
        format!(
            "waiting {} s before the first copy: a fresh or flushed Redis (see README, \"A fresh or flushed Redis\")",
            wait.as_secs_f64().ceil()
        ),
    )
    .waiting(
        mailferry_proto::task::Waiting::FreshStore,
        wait + std::time::Duration::from_millis(100),
    )
}

/// A tag unique to one run of a batch in this process.
fn run_tag() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Renews a folder lease every third of its lifetime; returns (why) only when it is lost, or
/// when the store has been unreachable for two thirds of the lifetime (so the lease may lapse
/// before the next renewal).
async fn keep_lease<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    lease: &str,
    token: u64,
) -> &'static str {
    let ttl = engine.config.lease_ttl;
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match engine.store.renew_lease(lease, token, ttl).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => return "its lease was lost (expired, or the store was flushed)",
            Err(e) => {
                tracing::warn!(%lease, "lease not renewed: {e}");
                if renewed.elapsed() >= ttl * 2 / 3 {
                    return "its lease could not be renewed (the store is unreachable)";
                }
            }
        }
    }
}

async fn copy_locked<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &CopyBatchTask,
    result: &mut CopyResult,
) -> ImapResult<()> {
    // Both sessions at once: their slots are taken together (open.rs), so a batch never holds
    // the target's slot while it waits for the source's.
    let (src, mut dst) = engine.open_both(pair).await?;
    let mut sel = match dst.examine(&task.target_raw).await {
        Ok(sel) => sel,
        Err(e) if e.kind == ErrorKind::Permanent => {
            engine.release(pair, src);
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
    if sel.exists == 0 && task.dst_uidvalidity.is_some_and(|v| v != sel.uidvalidity) {
        // Some servers keep no UID state for an empty folder never opened read-write: every
        // STATUS and EXAMINE of it makes up a new UIDVALIDITY, and the first SELECT or APPEND
        // fixes one (issue 15). Open it read-write once and take that value: an empty folder
        // holds nothing an earlier attempt could have copied, so a UIDVALIDITY other than the
        // planned one misleads no count. Appending into a read-write selection is what RFC 3501
        // expects; there is nothing to flag or expunge in it. A refused SELECT changes nothing
        // that matters: the folder is still empty.
        match dst.select(&task.target_raw).await {
            Ok(selected) => sel = selected,
            Err(e) if e.kind == ErrorKind::Permanent => {
                tracing::debug!("SELECT of an empty target folder refused: {}", e.message);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(v) = task.dst_uidvalidity
        && v != sel.uidvalidity
        && sel.exists > 0
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
    let (todo, spent) = match task.daily_upload_budget {
        Some(limit) if !todo.is_empty() => {
            spend_budget(engine, pair, task, todo, limit, result).await?
        }
        _ => (todo, None),
    };
    if todo.is_empty() {
        engine.release(pair, src);
        engine.release(pair, dst);
        return Ok(());
    }
    let copied = copy_todo(engine, pair, task, &scope, (src, dst), todo, result).await;
    if let Some(spent) = spent {
        // Bytes counted for messages that were not sent after all go back to the budget.
        let sent: HashSet<u32> = result.copied.iter().map(|c| c.src_uid).collect();
        let unsent: u64 = spent
            .items
            .iter()
            .filter(|(uid, _)| !sent.contains(uid))
            .fold(0u64, |a, (_, size)| a.saturating_add(*size));
        if unsent > 0
            && let Err(e) = engine
                .store
                .refund_daily(&spent.account, &spent.day, unsent)
                .await
        {
            tracing::warn!("daily upload budget not refunded: {e}");
        }
    }
    copied
}

/// What a batch counted against its target account's daily upload budget.
struct Spent {
    account: String,
    day: String,
    items: Vec<(u32, u64)>,
}

/// Counts the messages to send against the target account's daily upload budget, in order,
/// until it is spent: those are sent; the rest are deferred to the next day (and a message
/// larger than the whole budget fails, since no day would take it).
async fn spend_budget<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &CopyBatchTask,
    todo: Vec<BatchItem>,
    limit: u64,
    result: &mut CopyResult,
) -> ImapResult<(Vec<BatchItem>, Option<Spent>)> {
    let Some((endpoint, _)) = engine.creds.account(pair, Side::Target) else {
        return Ok((todo, None));
    };
    let account = endpoint.display();
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (fits, too_large): (Vec<BatchItem>, Vec<BatchItem>) =
        todo.into_iter().partition(|i| i.size <= limit);
    for item in &too_large {
        result.failed.push(failure(
            task,
            item,
            FailureKind::TooLarge,
            format!(
                "the message ({} bytes) is larger than the daily upload budget of {account} ({limit} bytes), so no day could take it",
                item.size
            ),
        ));
    }
    // The whole batch in one call when it fits, which is the common case.
    let total = fits.iter().fold(0u64, |a, i| a.saturating_add(i.size));
    let mut send = Vec::new();
    if engine
        .store
        .spend_daily(&account, &day, total, limit)
        .await
        .map_err(store_err)?
    {
        send = fits;
    } else {
        let mut rest = fits.into_iter();
        for item in rest.by_ref() {
            if engine
                .store
                .spend_daily(&account, &day, item.size, limit)
                .await
                .map_err(store_err)?
            {
                send.push(item);
            } else {
                result.deferred.push(item.uid);
                break;
            }
        }
        result.deferred.extend(rest.map(|i| i.uid));
        result.warnings.push(Warning {
            code: WarningCode::DailyBudgetReached,
            folder: Some(task.target.display_slash()),
            message: format!(
                "the daily upload budget of {account} ({}) is spent for {day} (UTC); the remaining messages wait for the next sync after midnight UTC",
                human_bytes(limit)
            ),
        });
    }
    let items = send.iter().map(|i| (i.uid, i.size)).collect();
    Ok((
        send,
        Some(Spent {
            account,
            day,
            items,
        }),
    ))
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30))
    } else if n >= 1 << 20 {
        format!("{:.0} MiB", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.0} KiB", n as f64 / 1024.0)
    }
}

/// Fetches `todo` from the source and appends it to the target.
async fn copy_todo<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &CopyBatchTask,
    scope: &EntryScope,
    (mut src, mut dst): (Session, Session),
    todo: Vec<BatchItem>,
    result: &mut CopyResult,
) -> ImapResult<()> {
    let src_sel = src.examine(&task.source.raw).await?;
    if src_sel.uidvalidity != task.src_uidvalidity {
        return Err(src.err(ErrorKind::Transient, format!(
            "UIDVALIDITY of source folder {:?} changed since planning (the server renumbered it); run again to plan it anew",
            task.source.path.display_slash()
        )));
    }
    let (tx, rx) = mpsc::channel(4096);
    let producer = produce(engine, &mut src, &todo, tx);
    let mut appender = Appender::new(engine, &mut dst, task, scope, result);
    let consumer = appender.consume(rx);
    let (p, c) = tokio::join!(producer, consumer);
    c?;
    let produced = p?;
    appender.verify().await?;
    let refused = appender.folder_refused();
    report_produced(task, &todo, produced, result);
    if let Some(answer) = refused {
        // Every message sent was refused alike and the rest was not sent: the batch's messages
        // that are neither copied nor failed on their own count in the folder's failure.
        let done: HashSet<u32> = result
            .copied
            .iter()
            .map(|c| c.src_uid)
            .chain(result.failed.iter().map(|f| f.uid))
            .collect();
        let uids = todo
            .iter()
            .map(|i| i.uid)
            .filter(|u| !done.contains(u))
            .collect();
        tracing::warn!(folder = %task.target.display_slash(), "the target refuses every message sent into this folder: {answer}");
        result.folder_refused = Some(FolderRefusal { answer, uids });
    }
    engine.release(pair, src);
    engine.release(pair, dst);
    Ok(())
}

/// Records what the producer could not copy as asked, and the bodies of another size than
/// announced.
fn report_produced(
    task: &CopyBatchTask,
    todo: &[BatchItem],
    produced: super::pipeline::Produced,
    result: &mut CopyResult,
) {
    let item = |uid: u32| todo.iter().find(|i| i.uid == uid);
    for uid in produced.vanished {
        if let Some(item) = item(uid) {
            result.failed.push(failure(
                task,
                item,
                FailureKind::VanishedFromSource,
                "the message was no longer on the source when it was fetched".into(),
            ));
        }
    }
    for (asked, got) in produced.wrong {
        if let Some(item) = item(asked) {
            result.failed.push(failure(
                task,
                item,
                FailureKind::WrongMessage,
                format!("asked for UID {asked}, the source answered with UID {got}; the message was not copied"),
            ));
        }
    }
    let folder = task.source.path.display_slash();
    for (uid, announced, received) in produced.size_mismatch {
        result.warnings.push(Warning {
            code: WarningCode::SizeMismatch,
            folder: Some(folder.clone()),
            message: format!(
                "message UID {uid} in source folder {folder:?}: the source announced {announced} bytes (RFC822.SIZE) but served {received}, also when fetched again; it was copied as served"
            ),
        });
    }
}

pub(super) fn failure(
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
        let items = dst
            .uid_fetch_all(
                &format!("{fetch_from}:*"),
                &format!("UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({KEY_HEADER_FIELDS})]"),
            )
            .await?;
        // RFC 3501 §6.4.8: `n:*` also matches the last message when n is past the end.
        for t in items.into_iter().filter(|t| t.uid >= fetch_from) {
            let hk = key::header_key(&t.header.unwrap_or_default());
            let k = match hk {
                Some(h) if refined.contains(&h) => body_of(dst, t.uid, t.size)
                    .await?
                    .map(|b| key::refine(h, key::body_digest(&b))),
                Some(h) => Some(h),
                // Rendered with no identifying field: keyed from the whole message as the
                // inventory keys it (engine/keys.rs), so a server that renders an odd header
                // as nothing still finds the copy.
                None => body_of(dst, t.uid, t.size)
                    .await?
                    .map(|b| match key::header_key(&b) {
                        Some(h) if refined.contains(&h) => key::refine(h, key::body_digest(&b)),
                        Some(h) => h,
                        None => key::fallback_key(&b),
                    }),
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

/// One message's body, of the size the server announced for it (a server that announced none
/// gets the default allowance of a response).
async fn body_of(
    conn: &mut Connection,
    uid: u32,
    size: Option<u64>,
) -> ImapResult<Option<bytes::Bytes>> {
    if let Some(size) = size {
        conn.expect_message(size);
    }
    let items = conn
        .uid_fetch_all(&uid.to_string(), "UID BODY.PEEK[]")
        .await?;
    Ok(items
        .into_iter()
        .find(|f| f.uid == uid)
        .and_then(|f| f.body))
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
}
