//! The task runner: takes tasks from the queue, runs up to `concurrency` at once, publishes each
//! outcome. On shutdown it stops taking tasks and lets the ones in hand finish.

use std::sync::Arc;

use mailferry_fleet::{CredentialSource, Store, TaskQueue};
use tokio::sync::Semaphore;

use crate::engine::Engine;

/// Runs tasks until the queue closes or `shutdown` resolves.
pub async fn run<Q, S, C>(
    queue: Arc<Q>,
    engine: Arc<Engine<S, C>>,
    concurrency: usize,
    shutdown: impl Future<Output = ()>,
) where
    Q: TaskQueue,
    S: Store,
    C: CredentialSource,
{
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    tokio::pin!(shutdown);
    loop {
        // Take a slot before taking a task, so no task waits in this worker while it is busy.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let task = tokio::select! {
            _ = &mut shutdown => break,
            t = queue.next_task() => match t { Some(t) => t, None => break },
        };
        let (queue, engine) = (queue.clone(), engine.clone());
        tokio::spawn(async move {
            let outcome = engine.run(&task).await;
            if !queue.publish_outcome(outcome).await {
                tracing::warn!(task = %task.task_id, "outcome could not be published");
            }
            drop(permit);
        });
    }
    // Drain: wait for the tasks in hand.
    let _ = slots
        .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .await;
}
