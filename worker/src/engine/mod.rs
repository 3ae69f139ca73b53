//! The engine: runs one task into one outcome. Each task kind has its own file; this module holds
//! what they share: the settings, the process-wide in-flight byte budget and the engine itself,
//! whose sessions (each holding its account's and host's connection slots, see `slots`) are
//! opened, pooled and given back in `open`.

pub mod copy;
pub mod folders;
pub mod inventory;
pub mod keys;
pub mod list;
mod open;
pub mod pipeline;
pub mod rate;
mod refusal;
pub mod slots;
pub mod sync;

use std::sync::Arc;

use chrono::Utc;
use mailferry_fleet::{CredentialSource, Store};
use mailferry_proto::task::{OutcomeBody, OutcomeEnvelope, TaskBody, TaskEnvelope, TaskFailure};
use tokio::sync::Semaphore;

use crate::imap::ConnectOptions;
pub use slots::Session;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Connection settings.
    pub connect: ConnectOptions,
    /// In-flight byte budget shared by every connection of the process.
    pub budget_bytes: u64,
    /// Commands in flight per target connection.
    pub append_window: usize,
    /// Messages per MULTIAPPEND command.
    pub multiappend_max_messages: usize,
    /// Bytes per MULTIAPPEND command.
    pub multiappend_max_bytes: u64,
    /// Messages above this size are sent alone with a synchronising literal.
    pub sync_literal_above: u64,
    /// Messages fetched per UID FETCH command.
    pub fetch_chunk: usize,
    /// Most folders an account may list: every folder costs memory and a task, and a server
    /// may list any number (issue 10: 100,000 folders took 765 MB).
    pub max_folders: usize,
    /// Bytes of APPEND data sent ahead of the server's answers (beyond one command).
    pub max_unanswered_bytes: u64,
    /// How long a target folder must stay unchanged before messages of unknown origin are
    /// counted (a killed run's last APPENDs may still be landing).
    pub settle: std::time::Duration,
    /// Per pair: message bytes per second, fetched and appended together.
    pub max_bytes_per_second: Option<u64>,
    /// Per pair: messages per second.
    pub max_messages_per_second: Option<u64>,
    /// A name for lease holders (host and process).
    pub holder: String,
    /// How long a folder lease lasts without renewal (renewed every third of it while a batch
    /// runs). Also how long a fresh or flushed fleet store waits before granting folder leases.
    pub lease_ttl: std::time::Duration,
    /// IMAP sessions per account and side across every process sharing the store (idle pooled
    /// ones included: providers count them).
    pub account_connections: u32,
    /// IMAP sessions per server (host and port) across every process sharing the store.
    pub host_connections: u32,
    /// How long a connection slot lasts without renewal (renewed every third of it): how long
    /// the slots of a killed worker stay taken.
    pub slot_ttl: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            connect: ConnectOptions::default(),
            budget_bytes: 64 << 20,
            append_window: 16,
            multiappend_max_messages: 100,
            multiappend_max_bytes: 8 << 20,
            sync_literal_above: 1 << 20,
            fetch_chunk: 200,
            max_folders: DEFAULT_MAX_FOLDERS,
            max_unanswered_bytes: 4 << 20,
            settle: std::time::Duration::from_secs(1),
            max_bytes_per_second: None,
            max_messages_per_second: None,
            holder: mailferry_fleet::embedded_holder(),
            lease_ttl: std::time::Duration::from_secs(60),
            account_connections: 8,
            host_connections: 200,
            slot_ttl: std::time::Duration::from_secs(60),
        }
    }
}

/// Default of [`EngineConfig::max_folders`]: far above real mailboxes (a few thousand folders
/// is already rare), far below what exhausts memory.
pub const DEFAULT_MAX_FOLDERS: usize = 50_000;

/// The byte budget, in KiB permits so a `u32` of permits covers terabytes.
#[derive(Clone)]
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    total_kib: u32,
}

impl ByteBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> ByteBudget {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        ByteBudget {
            sem: Arc::new(Semaphore::new(kib as usize)),
            total_kib: kib,
        }
    }

    /// Waits until `bytes` (capped at the whole budget, so one huge message still passes alone)
    /// may be held in memory. The semaphore is never closed, so `None` does not happen in
    /// practice; callers then go on without a permit rather than stall.
    pub async fn acquire(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        self.sem.clone().acquire_many_owned(kib).await.ok()
    }

    /// Budget for a whole chunk of messages at once, one permit per message. Taking them in
    /// one request matters: the semaphore is fair, so a task holding part of a chunk while
    /// queued behind a request for the whole budget would wait forever.
    pub async fn acquire_chunk(
        &self,
        sizes: &[u64],
    ) -> Vec<Option<tokio::sync::OwnedSemaphorePermit>> {
        let kibs: Vec<u32> = sizes
            .iter()
            .map(|b| u32::try_from(b.div_ceil(1024)).unwrap_or(u32::MAX).max(1))
            .collect();
        let total = kibs
            .iter()
            .fold(0u32, |a, k| a.saturating_add(*k))
            .clamp(1, self.total_kib);
        let Ok(mut all) = self.sem.clone().acquire_many_owned(total).await else {
            return sizes.iter().map(|_| None).collect();
        };
        let mut out = Vec::with_capacity(sizes.len());
        for (i, k) in kibs.iter().enumerate() {
            if i + 1 == kibs.len() {
                break;
            }
            let n = (*k as usize).min(all.num_permits().saturating_sub(1));
            out.push(if n == 0 { None } else { all.split(n) });
        }
        out.push(Some(all));
        out
    }
}

/// Runs tasks. Generic over the store and the credential source, so the embedded mode and the
/// fleet share every line of it.
pub struct Engine<S: Store, C: CredentialSource> {
    /// The store.
    pub store: S,
    /// Endpoints and secrets.
    pub creds: C,
    /// Settings.
    pub config: EngineConfig,
    /// The byte budget.
    pub budget: ByteBudget,
    pool: Arc<open::Pool>,
    slots: Arc<slots::Slots>,
    limits: std::sync::Mutex<std::collections::HashMap<String, Arc<rate::RateLimiter>>>,
}

impl<S: Store, C: CredentialSource> Engine<S, C> {
    /// Builds an engine.
    pub fn new(store: S, creds: C, config: EngineConfig) -> Self {
        let budget = ByteBudget::new(config.budget_bytes);
        let slots = Arc::new(slots::Slots::new(&config.holder));
        Engine {
            store,
            creds,
            config,
            budget,
            pool: Arc::default(),
            slots,
            limits: std::sync::Mutex::default(),
        }
    }

    /// The rate limiter of a pair (shared by all its tasks).
    pub fn limiter(&self, pair_id: &str) -> Arc<rate::RateLimiter> {
        let make = || {
            Arc::new(rate::RateLimiter::new(
                self.config.max_bytes_per_second,
                self.config.max_messages_per_second,
            ))
        };
        match self.limits.lock() {
            Ok(mut map) => map.entry(pair_id.to_owned()).or_insert_with(make).clone(),
            Err(_) => make(),
        }
    }

    /// Runs one task into its outcome. Never panics on server input; every failure becomes an
    /// outcome whose kind decides what the coordinator does next.
    pub async fn run(&self, task: &TaskEnvelope) -> OutcomeEnvelope {
        // The caller's span (the runner's `task` span) covers this: a guard entered here would
        // stay entered across the awaits below and mis-parent other tasks' spans on this thread.
        let body = match &task.body {
            TaskBody::List(t) => list::run(self, &task.pair_id, t)
                .await
                .map(|r| OutcomeBody::List(Box::new(r))),
            TaskBody::Inventory(t) => inventory::run(self, &task.pair_id, t)
                .await
                .map(|r| OutcomeBody::Inventory(Box::new(r))),
            TaskBody::CreateFolders(t) => folders::run(self, &task.pair_id, t)
                .await
                .map(OutcomeBody::Folders),
            TaskBody::CopyBatch(t) => copy::run(self, &task.pair_id, t)
                .await
                .map(|r| OutcomeBody::Copy(Box::new(r))),
            TaskBody::UpdateTarget(t) => sync::run(self, &task.pair_id, t)
                .await
                .map(OutcomeBody::Updated),
        };
        let body = body.unwrap_or_else(|e| {
            OutcomeBody::Failed(TaskFailure {
                kind: e.kind,
                side: Some(e.side),
                message: e.message,
                retry_after_ms: e
                    .retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                login: e.login,
                waiting: e.waiting,
            })
        });
        OutcomeEnvelope {
            task_id: task.task_id.clone(),
            migration_id: task.migration_id.clone(),
            pair_id: task.pair_id.clone(),
            attempt: task.attempt,
            finished_at: Utc::now(),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_take_their_budget_at_once_and_release_per_message() {
        let budget = ByteBudget::new(100 * 1024);
        let mut permits = budget
            .acquire_chunk(&[10 * 1024, 20 * 1024, 5 * 1024])
            .await;
        assert_eq!(permits.len(), 3);
        let held: Vec<usize> = permits
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.num_permits()))
            .collect();
        assert_eq!(held, vec![10, 20, 5]);
        assert_eq!(budget.sem.available_permits(), 65);
        permits.remove(1);
        assert_eq!(budget.sem.available_permits(), 85);
        // A message larger than the whole budget passes alone.
        drop(permits);
        let big = budget.acquire_chunk(&[500 * 1024]).await;
        assert_eq!(big[0].as_ref().map(|p| p.num_permits()), Some(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_holder_never_waits_behind_a_whole_budget_request() {
        // Two producers: one needs the whole budget for a huge message, the other holds a chunk.
        let budget = ByteBudget::new(64 * 1024);
        let held = budget.acquire_chunk(&[16 * 1024, 16 * 1024]).await;
        let b2 = budget.clone();
        let huge = tokio::spawn(async move { b2.acquire_chunk(&[10 << 20]).await.len() });
        tokio::task::yield_now().await;
        drop(held);
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), huge).await;
        assert!(
            matches!(n, Ok(Ok(1))),
            "the huge message got the budget once the chunk was released"
        );
    }
}
