//! The login probe at create (and the listings of a health check): one List task per pair
//! through the workers, a bounded number at once, each closing its sessions afterwards.
//!
//! A probe waits its turn for connection slots like any task (`mailferry_fleet::slots`); one that
//! a worker hands back because its slots stayed busy is sent again while the probe timeout lasts,
//! and a pair whose slots stayed busy all along is created unprobed rather than failing the
//! create. This module must not open IMAP itself (workers do) and never sees a secret.

use std::sync::Arc;
use std::time::Duration;

use mailferry_fleet::TaskQueue;
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{
    ENVELOPE_VERSION, ListResult, ListTask, OutcomeBody, Side, TaskBody, TaskEnvelope, TaskFailure,
    Waiting,
};

use super::{Control, ControlError};
use crate::record::PairRecord;

/// How often a probe of many pairs logs how far it got.
const PROBE_PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Control {
    /// Logs into both sides of every pair (through workers); the first refusal is the error,
    /// naming the pair by its index from `first_index`. A pair whose logins could not be tried
    /// within the probe timeout because the fleet's connection slots were busy all along is not
    /// an error: the migration goes ahead, and the pair's first task logs in when its turn comes.
    pub(super) async fn probe(
        &self,
        pairs: &[PairRecord],
        first_index: usize,
    ) -> Result<(), ControlError> {
        let results = self.list_all(pairs.to_vec(), false, None, 32).await;
        let mut unprobed = 0;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(_) => {}
                Err(f) if f.waiting == Some(Waiting::ConnectionSlots) => unprobed += 1,
                Err(f) => return Err(failure_error(&pairs[i], first_index + i, &f)),
            }
        }
        if unprobed > 0 {
            tracing::warn!(
                pairs = unprobed,
                "logins not probed: the fleet's connection slots stayed busy for the whole probe timeout; those pairs log in when they run"
            );
        }
        Ok(())
    }

    /// One List task per pair, at most `parallel` at once; results in the pairs' order. Logs
    /// its progress every few seconds while it runs (a large create waits for it).
    pub(super) async fn list_all(
        &self,
        pairs: Vec<PairRecord>,
        with_sizes: bool,
        report_larger_than: Option<u64>,
        parallel: usize,
    ) -> Vec<Result<ListResult, TaskFailure>> {
        let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let n = pairs.len();
        for (i, p) in pairs.into_iter().enumerate() {
            let (me, sem) = (self.clone(), sem.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, me.list_once(&p, with_sizes, report_larger_than).await)
            });
        }
        let mut out: Vec<Option<Result<_, TaskFailure>>> = (0..n).map(|_| None).collect();
        let mut done = 0usize;
        let mut report = tokio::time::interval(PROBE_PROGRESS_EVERY);
        report.tick().await;
        loop {
            tokio::select! {
                joined = set.join_next() => match joined {
                    Some(Ok((i, r))) => {
                        out[i] = Some(r);
                        done += 1;
                    }
                    Some(Err(_)) => done += 1,
                    None => break,
                },
                _ = report.tick() => {
                    tracing::info!("logging into mailboxes through the workers: {done} of {n} pairs answered");
                }
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(TaskFailure {
                        kind: ErrorKind::Transient,
                        side: None,
                        message: "the probe stopped unexpectedly".into(),
                        retry_after_ms: None,
                        waiting: None,
                        login: false,
                    })
                })
            })
            .collect()
    }

    /// One List task for one pair, awaited with the probe deadline. A task handed back because
    /// it waited its time in the connection slot queues is sent again while the deadline allows.
    async fn list_once(
        &self,
        pair: &PairRecord,
        with_sizes: bool,
        report_larger_than: Option<u64>,
    ) -> Result<ListResult, TaskFailure> {
        let deadline = tokio::time::Instant::now() + self.inner.config.probe_timeout;
        let mut busy = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .list_task(pair, with_sizes, report_larger_than, left)
                .await
            {
                Some(Err(f)) if f.waiting == Some(Waiting::ConnectionSlots) => {
                    if deadline <= tokio::time::Instant::now() {
                        return Err(f);
                    }
                    tracing::debug!(pair = %pair.id, "probe sent again: {}", f.message);
                    busy = Some(f);
                }
                Some(answer) => return answer,
                // A worker had the task while it waited for slots: the slots, not the workers,
                // kept it.
                None => {
                    return Err(busy.unwrap_or_else(|| no_worker(self.inner.config.probe_timeout)));
                }
            }
        }
    }

    /// One List task for one pair, its outcome awaited for `wait`; `None` without an answer.
    async fn list_task(
        &self,
        pair: &PairRecord,
        with_sizes: bool,
        report_larger_than: Option<u64>,
        wait: Duration,
    ) -> Option<Result<ListResult, TaskFailure>> {
        let run_id = format!("probe.{}", uuid::Uuid::new_v4().simple());
        let view = self
            .inner
            .router
            .open(run_id.clone(), self.inner.queue.clone());
        let task = TaskEnvelope {
            version: ENVELOPE_VERSION,
            task_id: format!("{run_id}-1"),
            migration_id: run_id.clone(),
            pair_id: pair.id.clone(),
            attempt: 0,
            body: TaskBody::List(ListTask {
                with_sizes,
                report_larger_than,
                // A probe or a check: no task of the pair follows at once.
                close_sessions: true,
            }),
        };
        if !view.publish_task(task).await {
            return Some(Err(TaskFailure {
                kind: ErrorKind::Transient,
                side: None,
                message: "the task queue refused the probe task; is RabbitMQ up?".into(),
                retry_after_ms: None,
                waiting: None,
                login: false,
            }));
        }
        let outcome = tokio::time::timeout(wait, view.next_outcome())
            .await
            .ok()??;
        Some(match outcome.body {
            OutcomeBody::List(l) => Ok(*l),
            OutcomeBody::Failed(f) => Err(f),
            _ => Err(TaskFailure {
                kind: ErrorKind::Protocol,
                side: None,
                message: "a worker answered a probe with an unexpected outcome".into(),
                retry_after_ms: None,
                waiting: None,
                login: false,
            }),
        })
    }
}

/// A probe no worker answered in time.
fn no_worker(timeout: Duration) -> TaskFailure {
    TaskFailure {
        kind: ErrorKind::Config,
        side: None,
        message: format!(
            "no worker answered within {} s: are `mailferry worker` processes running on this namespace?",
            timeout.as_secs()
        ),
        retry_after_ms: None,
        waiting: None,
        login: false,
    }
}

/// A probe failure as the API reports it, naming the pair and side.
fn failure_error(pair: &PairRecord, index: usize, f: &TaskFailure) -> ControlError {
    let side = match f.side {
        Some(Side::Source) => "source",
        Some(Side::Target) => "target",
        None => "",
    };
    let field = if side.is_empty() {
        format!("pairs[{index}]")
    } else {
        format!("pairs[{index}].{side}")
    };
    let who = match f.side {
        Some(Side::Target) => pair.target.display(),
        _ => pair.source.display(),
    };
    match f.kind {
        ErrorKind::Config => ControlError::Deadline(f.message.clone()),
        ErrorKind::Auth => ControlError::Precondition(format!(
            "{field}: login refused for {who}: {}{}",
            f.message,
            advice_unless_given(&f.message, "check the user name and password")
        )),
        ErrorKind::Connect => ControlError::Precondition(format!(
            "{field}: cannot reach {who}: {}{}",
            f.message,
            advice_unless_given(&f.message, "check host, port and TLS mode")
        )),
        _ => ControlError::Precondition(format!("{field}: {who}: {}", f.message)),
    }
}

/// ` — ADVICE`, unless the worker's message already says what to check (it usually does, and
/// saying it twice reads as a stutter).
fn advice_unless_given(message: &str, advice: &str) -> String {
    if message.contains("check ") {
        String::new()
    } else {
        format!(" — {advice}")
    }
}
