//! The task queue: tasks from the coordinator to workers, outcomes back.
//!
//! [`InProcessQueue`] is the embedded mode's queue: unbounded channels inside one process. The
//! coordinator releases one batch per folder chain at a time, so the number of queued tasks is
//! bounded by the number of chains, not by the size of the mailbox.

use std::sync::Arc;

use mailferry_proto::task::{OutcomeEnvelope, TaskEnvelope};
use tokio::sync::{Mutex, mpsc};

/// Tasks out, outcomes back.
pub trait TaskQueue: Send + Sync + 'static {
    /// Publishes a task.
    fn publish_task(&self, task: TaskEnvelope) -> impl Future<Output = bool> + Send;
    /// Publishes a task that should reach workers after `delay` (a retry with backoff). The
    /// default waits in this process; the fleet's queue parks it in the broker instead, so a
    /// retry survives the publisher.
    fn publish_task_after(
        &self,
        task: TaskEnvelope,
        delay: std::time::Duration,
    ) -> impl Future<Output = bool> + Send {
        async move {
            tokio::time::sleep(delay).await;
            self.publish_task(task).await
        }
    }
    /// Waits for the next task; `None` when the queue is closed.
    fn next_task(&self) -> impl Future<Output = Option<TaskEnvelope>> + Send;
    /// Publishes an outcome.
    fn publish_outcome(&self, outcome: OutcomeEnvelope) -> impl Future<Output = bool> + Send;
    /// Waits for the next outcome; `None` when the queue is closed.
    fn next_outcome(&self) -> impl Future<Output = Option<OutcomeEnvelope>> + Send;
    /// Stops handing out tasks; workers see `None` once the queue is drained.
    fn close(&self);
    /// The trace context its publisher sent with `task`, a task handed out by
    /// [`TaskQueue::next_task`] and not yet answered (W3C headers, see [`crate::telemetry`]).
    /// Empty by default: a queue inside one process carries none.
    fn trace_headers(&self, task: &TaskEnvelope) -> crate::telemetry::TraceHeaders {
        let _ = task;
        Vec::new()
    }
}

/// The embedded queue.
#[derive(Clone)]
pub struct InProcessQueue {
    tasks_tx: Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<TaskEnvelope>>>>,
    tasks_rx: Arc<Mutex<mpsc::UnboundedReceiver<TaskEnvelope>>>,
    outcomes_tx: Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<OutcomeEnvelope>>>>,
    outcomes_rx: Arc<Mutex<mpsc::UnboundedReceiver<OutcomeEnvelope>>>,
}

impl Default for InProcessQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessQueue {
    /// A new, empty queue.
    pub fn new() -> InProcessQueue {
        let (ttx, trx) = mpsc::unbounded_channel();
        let (otx, orx) = mpsc::unbounded_channel();
        InProcessQueue {
            tasks_tx: Arc::new(std::sync::Mutex::new(Some(ttx))),
            tasks_rx: Arc::new(Mutex::new(trx)),
            outcomes_tx: Arc::new(std::sync::Mutex::new(Some(otx))),
            outcomes_rx: Arc::new(Mutex::new(orx)),
        }
    }
}

impl TaskQueue for InProcessQueue {
    async fn publish_task(&self, task: TaskEnvelope) -> bool {
        match self.tasks_tx.lock() {
            Ok(guard) => guard.as_ref().is_some_and(|tx| tx.send(task).is_ok()),
            Err(_) => false,
        }
    }

    async fn next_task(&self) -> Option<TaskEnvelope> {
        self.tasks_rx.lock().await.recv().await
    }

    async fn publish_outcome(&self, outcome: OutcomeEnvelope) -> bool {
        match self.outcomes_tx.lock() {
            Ok(guard) => guard.as_ref().is_some_and(|tx| tx.send(outcome).is_ok()),
            Err(_) => false,
        }
    }

    async fn next_outcome(&self) -> Option<OutcomeEnvelope> {
        self.outcomes_rx.lock().await.recv().await
    }

    fn close(&self) {
        if let Ok(mut guard) = self.tasks_tx.lock() {
            guard.take();
        }
    }
}

impl InProcessQueue {
    /// Ends the outcome stream: once the outcomes already published are consumed,
    /// [`TaskQueue::next_outcome`] returns `None`. Called when no worker can publish any more
    /// (all tasks in hand have finished), so a driver that is stopping knows it has seen all.
    pub fn close_outcomes(&self) {
        if let Ok(mut guard) = self.outcomes_tx.lock() {
            guard.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_outcomes_ends_the_stream_after_what_was_published() {
        let q = InProcessQueue::new();
        let o = OutcomeEnvelope {
            task_id: "t".into(),
            migration_id: "m".into(),
            pair_id: "p".into(),
            attempt: 0,
            finished_at: chrono::Utc::now(),
            body: mailferry_proto::task::OutcomeBody::Failed(mailferry_proto::task::TaskFailure {
                kind: mailferry_proto::ErrorKind::Transient,
                side: None,
                message: "x".into(),
                retry_after_ms: None,
                login: false,
                waiting: None,
            }),
        };
        assert!(q.publish_outcome(o.clone()).await);
        q.close_outcomes();
        assert!(!q.publish_outcome(o).await);
        assert!(q.next_outcome().await.is_some());
        assert!(q.next_outcome().await.is_none());
    }
}
