//! The task runner: takes tasks from the queue, runs up to `concurrency` at once, publishes each
//! outcome. On shutdown it stops taking tasks and lets the ones in hand finish: all of them, or
//! (with a grace period, as `mailferry migrate` on Ctrl-C) those that finish within it, the rest
//! dropped where they wait. Dropping a task at any await is safe: the next run decides from the
//! target's contents (DESIGN.md, "Idempotency"), as after a kill.
//!
//! Every task runs inside one `task` span carrying its ids (migration, pair, task, and a target
//! folder id, never a folder name) and kind; the span continues the trace its publisher sent
//! along with the task, if any. The runner sees every outcome, so it is where the fleet's task
//! metrics (`mailferry_fleet::metrics`) are recorded.
//!
//! A task that panics is that task's failure, never a dead worker: the unwind is caught around
//! the task's future and reported as its outcome (`mailferry_fleet::poison::panic_outcome`), so
//! the delivery is settled, the slot freed, and the pair told why.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use mailferry_fleet::telemetry::{self, TaskStep};
use mailferry_fleet::{CredentialSource, Store, TaskQueue, metrics, poison};
use mailferry_proto::task::Side;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::engine::Engine;

/// Runs tasks until the queue closes or `shutdown` resolves, then waits for the tasks in hand:
/// until they finish, or with `grace`, at most that long before dropping the rest (which then
/// publish no outcome).
pub async fn run<Q, S, C>(
    queue: Arc<Q>,
    engine: Arc<Engine<S, C>>,
    concurrency: usize,
    shutdown: impl Future<Output = ()>,
    grace: Option<std::time::Duration>,
) where
    Q: TaskQueue,
    S: Store,
    C: CredentialSource,
{
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    // Aborted all at once when dropped (after the grace period).
    let mut in_hand = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished tasks leave the set as they go, so it holds at most `concurrency`.
        while in_hand.try_join_next().is_some() {}
        // Take a slot before taking a task, so no task waits in this worker while it is busy.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let task = tokio::select! {
            _ = &mut shutdown => break,
            t = queue.next_task() => match t { Some(t) => t, None => break },
        };
        let span = telemetry::task_span(&task, TaskStep::Run, None);
        telemetry::set_parent_from_headers(&span, &queue.trace_headers(&task));
        let (queue, engine) = (queue.clone(), engine.clone());
        in_hand.spawn(
            async move {
                let started = std::time::Instant::now();
                let run = async {
                    if mailferry_fleet::failpoint::task_point_armed()
                        && let Some((endpoint, _)) =
                            engine.creds.account(&task.pair_id, Side::Source)
                    {
                        mailferry_fleet::failpoint::hit_task(&endpoint.user);
                    }
                    engine.run(&task).await
                };
                // The engine's state after a panic: guards (leases, slots, budget) were dropped
                // by the unwind; pooled sessions the task held were dropped with it.
                let outcome = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(payload) => {
                        let outcome = poison::panic_outcome(&task, payload.as_ref());
                        tracing::error!(task = %task.task_id, pair = %task.pair_id,
                            "task panicked (a bug in mailferry): {}", poison::panic_message(payload.as_ref()));
                        outcome
                    }
                };
                let kind = metrics::task_type(&task.body);
                metrics::record_outcome(kind, &outcome, started.elapsed());
                tracing::Span::current().record("outcome", metrics::outcome_label(&outcome.body));
                if !queue.publish_outcome(outcome).await {
                    tracing::warn!(task = %task.task_id, "outcome could not be published");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
    // Drain: wait for the tasks in hand (within the grace period, if there is one).
    let drained = async { while in_hand.join_next().await.is_some() {} };
    match grace {
        None => drained.await,
        Some(grace) => {
            if tokio::time::timeout(grace, drained).await.is_err() {
                tracing::info!(
                    tasks = in_hand.len(),
                    "tasks still in hand after the grace period are dropped"
                );
            }
        }
    }
    in_hand.shutdown().await;
}
