//! Poison tasks: a task that trips a bug must fail its own pair, never the worker or the fleet.
//!
//! Two ways a task can be poison, and what this module gives each:
//! - **It panics.** The runner catches the unwind and reports [`panic_outcome`]: that task's
//!   failure (kind [`ErrorKind::Permanent`], so it is not retried into the same bug), with a
//!   message saying it is a bug in mailferry and to report it.
//! - **It kills the process** (abort, stack overflow, OOM kill): no code of the dying worker runs
//!   any more, so the *next* worker that takes the task decides. Each worker marks a task's run
//!   in the store before it starts and unmarks it once its outcome is published
//!   ([`RedisStore::task_run_started`], [`RedisStore::task_run_ended`]); a delivery that finds
//!   [`DEFAULT_MAX_TASK_DELIVERIES`] (or the configured number) runs started and never ended is
//!   dead-lettered with [`crashed_reason`] instead of run again, which fails the task's pair.
//!   RabbitMQ's own `x-delivery-limit` cannot do this: since RabbitMQ 4.0 a message returned
//!   because its consumer's connection died does not count towards it (only nacks do), and where
//!   it does count (3.x) it counts every return, also the prefetched tasks a draining worker
//!   gives back. The mark counts only runs that started.
//!
//! A mark is per task id and attempt, so a retry (a new attempt) starts from zero. A worker that
//! dies while holding several tasks marks each of them once; with the default of three, a healthy
//! task is dead-lettered only if it is in hand at three crashes. This module must not decide
//! retries (the coordinator does, from the kind) and must not settle deliveries itself.

use std::any::Any;

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{OutcomeBody, OutcomeEnvelope, TaskBody, TaskEnvelope, TaskFailure};

/// Runs of one task (started, no outcome) after which the next delivery is dead-lettered.
pub const DEFAULT_MAX_TASK_DELIVERIES: u32 = 3;

/// Longest panic message carried into an outcome; a longer one is cut (a panic payload is
/// arbitrary text, and outcomes end up in summaries and JSON).
const MAX_PANIC_MESSAGE: usize = 500;

/// Why a task was dead-lettered after `runs` runs that never ended, for people.
pub fn crashed_reason(runs: u64) -> String {
    format!(
        "workers crashed on this mailbox {runs} times: see `mailferry ctl dead-letters` (the task is not run again; `mailferry ctl dead-letters --replay` runs its pair again once the cause is fixed)"
    )
}

/// The failure outcome of `task`, whose run panicked with `payload` (from
/// `futures::FutureExt::catch_unwind` or a `JoinError`).
pub fn panic_outcome(task: &TaskEnvelope, payload: &(dyn Any + Send)) -> OutcomeEnvelope {
    OutcomeEnvelope {
        task_id: task.task_id.clone(),
        migration_id: task.migration_id.clone(),
        pair_id: task.pair_id.clone(),
        attempt: task.attempt,
        finished_at: chrono::Utc::now(),
        body: OutcomeBody::Failed(TaskFailure {
            kind: ErrorKind::Permanent,
            side: None,
            message: format!(
                "internal error while {} (a bug in mailferry): {}; please report it",
                doing(&task.body),
                panic_message(payload)
            ),
            retry_after_ms: None,
            login: false,
            waiting: None,
        }),
    }
}

/// What a task of this kind was doing, as the middle of a sentence.
fn doing(body: &TaskBody) -> &'static str {
    #[allow(unreachable_patterns)]
    match body {
        TaskBody::List(_) => "listing the folders",
        TaskBody::Inventory(_) => "reading a folder's inventory",
        TaskBody::CreateFolders(_) => "creating target folders",
        TaskBody::CopyBatch(_) => "copying a batch of messages",
        TaskBody::UpdateTarget(_) => "updating copies on the target",
        _ => "running a task",
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message), cut to
/// [`MAX_PANIC_MESSAGE`] bytes.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    };
    if text.len() <= MAX_PANIC_MESSAGE {
        return text;
    }
    let mut end = MAX_PANIC_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(feature = "redis")]
mod marks {
    use std::sync::LazyLock;
    use std::time::Duration;

    use mailferry_proto::keys;
    use redis::Script;

    use crate::redis_store::RedisStore;
    use crate::store::StoreError;

    /// How long a mark outlives its last run: a task is redelivered within minutes, and one
    /// left in the queue for longer than this starts counting afresh.
    const MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

    /// KEYS[1] the mark, ARGV[1] its TTL in ms: one more run started; the runs not ended.
    static STARTED: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n",
        )
    });

    /// KEYS[1] the mark: one run ended; the mark goes once no run is left.
    static ENDED: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n",
        )
    });

    impl RedisStore {
        /// Marks a run of `task_id`'s `attempt` as started; returns how many runs of it have
        /// started and not ended, this one included.
        pub async fn task_run_started(
            &self,
            task_id: &str,
            attempt: u32,
        ) -> Result<u64, StoreError> {
            let key = keys::task_runs(self.namespace(), task_id, attempt);
            let ttl = MARK_TTL.as_millis().to_string();
            self.invoke("task_run_started", &STARTED, &[&key], &[&ttl])
                .await
        }

        /// Marks a run of `task_id`'s `attempt` as ended (its outcome was published, or it was
        /// given back on purpose).
        pub async fn task_run_ended(&self, task_id: &str, attempt: u32) -> Result<(), StoreError> {
            let key = keys::task_runs(self.namespace(), task_id, attempt);
            self.invoke::<i64>("task_run_ended", &ENDED, &[&key], &[])
                .await
                .map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_either_payload_and_cut() {
        let literal: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_message(literal.as_ref()), "boom");
        let formatted: Box<dyn Any + Send> = Box::new(format!("index {} out of range", 7));
        assert_eq!(panic_message(formatted.as_ref()), "index 7 out of range");
        let other: Box<dyn Any + Send> = Box::new(42u8);
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
        let long: Box<dyn Any + Send> = Box::new("é".repeat(400));
        let cut = panic_message(long.as_ref());
        assert!(
            cut.len() <= MAX_PANIC_MESSAGE + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_panic_outcome_is_a_permanent_failure_that_says_it_is_a_bug() {
        let task = TaskEnvelope {
            version: 1,
            task_id: "t1".into(),
            migration_id: "m1".into(),
            pair_id: "p1".into(),
            attempt: 2,
            body: TaskBody::List(mailferry_proto::task::ListTask {
                with_sizes: false,
                report_larger_than: None,
                close_sessions: false,
            }),
        };
        let payload: Box<dyn Any + Send> = Box::new("boom");
        let o = panic_outcome(&task, payload.as_ref());
        assert_eq!((o.task_id.as_str(), o.attempt), ("t1", 2));
        let OutcomeBody::Failed(f) = o.body else {
            panic!("not a failure: {:?}", o.body);
        };
        assert_eq!(f.kind, ErrorKind::Permanent);
        assert_eq!(
            f.message,
            "internal error while listing the folders (a bug in mailferry): boom; please report it"
        );
    }
}
