//! Routing outcomes to the run that is waiting for them.
//!
//! The fleet has one outcomes queue; every run of the driver (a pass over some pairs, a probe, a
//! check) gets its own run id, which prefixes its task ids (`<run id>-<n>`). The dispatcher reads
//! outcomes and hands each to the run of its task id's prefix; outcomes of runs that no longer
//! exist (an earlier coordinator's, a stopped pass's) are dropped, which is safe because the
//! target, not the outcome, is the truth (DESIGN.md, "Idempotency").
//!
//! Tracing: a run's view publishes each task inside a `publish` task span, a child of the span the
//! run was opened in (a `pass` span from [`spawn_traced`], or the API call of a probe), so the
//! trace context that goes out with the task (`fleet/src/amqp.rs`) makes the worker's task span
//! a grandchild of the request that started the pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailferry_fleet::TaskQueue;
use mailferry_fleet::telemetry::{self, TaskStep};
use mailferry_proto::task::{OutcomeEnvelope, TaskEnvelope};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Spawns a pass (or any run of the driver) inside a new `pass` span, a child of the caller's
/// current span: a pass started by a CreateMigration call belongs to that call's trace. The run
/// records its migration and run ids on the span when it opens its view ([`Router::open`]).
pub fn spawn_traced<F>(run: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let span = tracing::info_span!(
        "pass",
        migration_id = tracing::field::Empty,
        run_id = tracing::field::Empty
    );
    tokio::spawn(run.instrument(span))
}

/// Open runs by run id.
#[derive(Default)]
pub struct Router {
    routes: Mutex<HashMap<String, mpsc::UnboundedSender<OutcomeEnvelope>>>,
}

impl Router {
    /// Opens a run: a queue view whose outcomes are this run's only.
    pub fn open<Q: TaskQueue>(self: &Arc<Self>, run_id: String, queue: Arc<Q>) -> RunQueue<Q> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(run_id.clone(), tx);
        }
        let span = tracing::Span::current();
        if let Some((migration, _)) = run_id.split_once('.') {
            span.record("migration_id", migration);
        }
        span.record("run_id", run_id.as_str());
        RunQueue {
            queue,
            run_id,
            rx: tokio::sync::Mutex::new(rx),
            router: self.clone(),
            span,
        }
    }

    /// Hands an outcome to its run; false when no run waits for it.
    pub fn route(&self, outcome: OutcomeEnvelope) -> bool {
        let Some(run) = run_of(&outcome.task_id) else {
            return false;
        };
        let Ok(routes) = self.routes.lock() else {
            return false;
        };
        routes.get(run).is_some_and(|tx| tx.send(outcome).is_ok())
    }

    fn close(&self, run_id: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(run_id);
        }
    }
}

/// The run id of a task id (`<run id>-<n>`).
pub fn run_of(task_id: &str) -> Option<&str> {
    task_id.rsplit_once('-').map(|(run, _)| run)
}

/// One run's view of the fleet queue: tasks go to the shared queue, outcomes come from the
/// router. Closing the view (dropping it) stops the routing.
pub struct RunQueue<Q> {
    queue: Arc<Q>,
    run_id: String,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<OutcomeEnvelope>>,
    router: Arc<Router>,
    /// The span the run was opened in: the parent of its tasks' `publish` spans.
    span: tracing::Span,
}

impl<Q> RunQueue<Q> {
    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
}

impl<Q> Drop for RunQueue<Q> {
    fn drop(&mut self) {
        self.router.close(&self.run_id);
    }
}

impl<Q: TaskQueue> TaskQueue for RunQueue<Q> {
    async fn publish_task(&self, task: TaskEnvelope) -> bool {
        let span = telemetry::task_span(&task, TaskStep::Publish, self.span.id());
        self.queue.publish_task(task).instrument(span).await
    }

    async fn publish_task_after(&self, task: TaskEnvelope, delay: std::time::Duration) -> bool {
        let span = telemetry::task_span(&task, TaskStep::Publish, self.span.id());
        self.queue
            .publish_task_after(task, delay)
            .instrument(span)
            .await
    }

    /// A run view only publishes tasks; workers read the shared queue.
    async fn next_task(&self) -> Option<TaskEnvelope> {
        None
    }

    /// Outcomes reach a run through the router only.
    async fn publish_outcome(&self, _outcome: OutcomeEnvelope) -> bool {
        false
    }

    async fn next_outcome(&self) -> Option<OutcomeEnvelope> {
        self.rx.lock().await.recv().await
    }

    fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use mailferry_fleet::InProcessQueue;
    use mailferry_proto::ErrorKind;
    use mailferry_proto::task::{OutcomeBody, TaskFailure};

    use super::*;

    fn outcome(task_id: &str) -> OutcomeEnvelope {
        OutcomeEnvelope {
            task_id: task_id.into(),
            migration_id: "m".into(),
            pair_id: "p".into(),
            attempt: 0,
            finished_at: chrono::Utc::now(),
            body: OutcomeBody::Failed(TaskFailure {
                kind: ErrorKind::Transient,
                side: None,
                message: "x".into(),
                retry_after_ms: None,
                login: false,
                waiting: None,
            }),
        }
    }

    #[tokio::test]
    async fn outcomes_reach_their_run_only_while_it_is_open() {
        let router = Arc::new(Router::default());
        let q = Arc::new(InProcessQueue::new());
        let a = router.open("m1.r1.aa".into(), q.clone());
        let b = router.open("m1.r2.bb".into(), q.clone());
        assert!(router.route(outcome("m1.r1.aa-3")));
        assert!(router.route(outcome("m1.r2.bb-1")));
        assert!(!router.route(outcome("m1.r0.zz-1")), "unknown run");
        assert!(!router.route(outcome("no-dash-prefix-known")));
        assert_eq!(
            a.next_outcome().await.map(|o| o.task_id).as_deref(),
            Some("m1.r1.aa-3")
        );
        assert_eq!(
            b.next_outcome().await.map(|o| o.task_id).as_deref(),
            Some("m1.r2.bb-1")
        );
        drop(a);
        assert!(!router.route(outcome("m1.r1.aa-4")), "closed run");
    }
}
