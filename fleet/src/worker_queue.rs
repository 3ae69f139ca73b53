//! A fleet worker's view of the task queue: before a task is handed to the engine, the pair's
//! sealed accounts are loaded from the store and opened into process memory. A task whose
//! accounts the store no longer holds (Redis flushed, migration deleted or completed) is never
//! run: it is dead-lettered as `StateLost`. Publishing the outcome settles the task.

use std::sync::Arc;
use std::time::Duration;

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{OutcomeEnvelope, Side, TaskEnvelope};

use crate::amqp::AmqpQueue;
use crate::credentials::MemoryCredentials;
use crate::queue::TaskQueue;
use crate::redis_store::RedisStore;
use crate::seal::{FleetKeys, open_account};

/// Tasks with their accounts loaded.
pub struct WorkerQueue {
    queue: Arc<AmqpQueue>,
    store: RedisStore,
    keys: Arc<FleetKeys>,
    creds: MemoryCredentials,
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
        }
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
                Ok(true) => return Some(task),
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
        self.queue.publish_outcome(outcome).await
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
