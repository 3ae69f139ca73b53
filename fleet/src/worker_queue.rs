//! A fleet worker's view of the task queue: before a task is handed to the engine, the pair's
//! sealed accounts are loaded from the store and opened into process memory. A task whose
//! accounts the store no longer holds (Redis flushed, migration deleted or completed) is never
//! run: it is dead-lettered as `StateLost`. Publishing the outcome settles the task.
//!
//! It also keeps the crash marks of [`crate::poison`]: a run is marked started when its task is
//! handed to the runner and ended when its outcome is published; a task that already has
//! [`WorkerQueue::with_max_task_deliveries`] runs that never ended (its workers died on it) is
//! dead-lettered instead of run again.

use std::sync::Arc;
use std::time::Duration;

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{OutcomeEnvelope, Side, TaskEnvelope};

use crate::amqp::AmqpQueue;
use crate::credentials::MemoryCredentials;
use crate::poison;
use crate::queue::TaskQueue;
use crate::redis_store::RedisStore;
use crate::seal::{FleetKeys, open_account};

/// Tasks with their accounts loaded.
pub struct WorkerQueue {
    queue: Arc<AmqpQueue>,
    store: RedisStore,
    keys: Arc<FleetKeys>,
    creds: MemoryCredentials,
    max_deliveries: u32,
}

impl WorkerQueue {
    /// A view over `queue` that fills `creds` from `store`.
    pub fn new(
        queue: Arc<AmqpQueue>,
        store: RedisStore,
        keys: Arc<FleetKeys>,
        creds: MemoryCredentials,
    ) -> WorkerQueue {
        WorkerQueue {
            queue,
            store,
            keys,
            creds,
            max_deliveries: poison::DEFAULT_MAX_TASK_DELIVERIES,
        }
    }

    /// Dead-letters a task once `max` runs of it started and none ended with an outcome
    /// (default [`poison::DEFAULT_MAX_TASK_DELIVERIES`]; at least 1).
    pub fn with_max_task_deliveries(mut self, max: u32) -> WorkerQueue {
        self.max_deliveries = max.max(1);
        self
    }

    /// Marks a run of `task` as started; `false` when its earlier runs all died, and it was
    /// dead-lettered instead. A store that cannot keep the mark lets the task run (RabbitMQ's
    /// delivery limit still bounds it).
    async fn admit(&self, task: &TaskEnvelope) -> bool {
        let runs = match self
            .store
            .task_run_started(&task.task_id, task.attempt)
            .await
        {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(task = %task.task_id, "crash mark not kept, the task runs: {e}");
                return true;
            }
        };
        let died = runs.saturating_sub(1);
        if died < u64::from(self.max_deliveries) {
            return true;
        }
        tracing::error!(task = %task.task_id, pair = %task.pair_id, runs = died,
            "workers died on this task every time they ran it: dead-lettering it");
        let reason = poison::crashed_reason(died);
        self.queue
            .reject_task(&task.task_id, ErrorKind::Permanent, &reason)
            .await;
        false
    }

    /// Loads both accounts of a pair: `Ok(false)` when the store does not know them.
    async fn load(&self, pair: &str) -> Result<bool, String> {
        for side in [Side::Source, Side::Target] {
            let sealed = self
                .store
                .load_account(pair, side)
                .await
                .map_err(|e| e.to_string())?;
            let Some(sealed) = sealed else {
                return Ok(false);
            };
            let (endpoint, creds) =
                open_account(&self.keys, pair, side, &sealed).map_err(|e| e.to_string())?;
            self.creds.insert(pair, side, endpoint, creds);
        }
        Ok(true)
    }
}

impl TaskQueue for WorkerQueue {
    async fn publish_task(&self, task: TaskEnvelope) -> bool {
        self.queue.publish_task(task).await
    }

    async fn next_task(&self) -> Option<TaskEnvelope> {
        loop {
            let task = self.queue.next_task().await?;
            match self.load(&task.pair_id).await {
                Ok(true) => {
                    if self.admit(&task).await {
                        return Some(task);
                    }
                }
                Ok(false) => {
                    tracing::warn!(task = %task.task_id, pair = %task.pair_id,
                        "the store no longer knows this pair (flushed or deleted): dead-lettering the task as state_lost");
                    self.queue
                        .reject_task(
                            &task.task_id,
                            ErrorKind::StateLost,
                            "the fleet's store no longer knows this task's mailbox pair (Redis flushed, or the migration deleted); re-create the migration to run it again",
                        )
                        .await;
                }
                Err(e) => {
                    // The store is down or the key file cannot open the account: give the task
                    // back and wait, rather than run it without credentials.
                    tracing::warn!(task = %task.task_id, "accounts not loaded, task requeued: {e}");
                    self.queue.requeue_task(&task.task_id).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn publish_outcome(&self, outcome: OutcomeEnvelope) -> bool {
        let (task_id, attempt) = (outcome.task_id.clone(), outcome.attempt);
        let published = self.queue.publish_outcome(outcome).await;
        // Published or requeued, this run ended without killing its worker.
        if let Err(e) = self.store.task_run_ended(&task_id, attempt).await {
            tracing::warn!(task = %task_id, "crash mark not cleared: {e}");
        }
        published
    }

    async fn next_outcome(&self) -> Option<OutcomeEnvelope> {
        None
    }

    fn close(&self) {
        self.queue.close();
    }

    fn trace_headers(&self, task: &TaskEnvelope) -> crate::telemetry::TraceHeaders {
        self.queue.trace_headers(task)
    }
}
