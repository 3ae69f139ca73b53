//! The engine: runs one task into one outcome. Each task kind has its own file; this module holds
//! what they share: opening logged-in sessions and the process-wide in-flight byte budget.

pub mod copy;
pub mod folders;
pub mod inventory;
pub mod list;
pub mod pipeline;
pub mod rate;

use std::sync::Arc;

use chrono::Utc;
use mailferry_fleet::{CredentialSource, Credentials, Store};
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{
    OutcomeBody, OutcomeEnvelope, Side, TaskBody, TaskEnvelope, TaskFailure,
};
use tokio::sync::Semaphore;

use crate::imap::{ConnectOptions, Connection, ImapError, ImapResult};

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
            max_unanswered_bytes: 4 << 20,
            settle: std::time::Duration::from_secs(1),
            max_bytes_per_second: None,
            max_messages_per_second: None,
            holder: mailferry_fleet::embedded_holder(),
            lease_ttl: std::time::Duration::from_secs(60),
        }
    }
}

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

/// How long an idle pooled session is kept. Providers count idle sessions against their
/// connection limits, so they are not kept long (DESIGN.md, "Leases and leadership").
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Logged-in sessions between tasks of one account and side, so a batch does not pay a login.
type Pool = std::sync::Mutex<
    std::collections::HashMap<(String, Side), Vec<(Connection, std::time::Instant)>>,
>;

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
    pool: Pool,
    limits: std::sync::Mutex<std::collections::HashMap<String, Arc<rate::RateLimiter>>>,
}

impl<S: Store, C: CredentialSource> Engine<S, C> {
    /// Builds an engine.
    pub fn new(store: S, creds: C, config: EngineConfig) -> Self {
        let budget = ByteBudget::new(config.budget_bytes);
        Engine {
            store,
            creds,
            config,
            budget,
            pool: Pool::default(),
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

    /// A logged-in session to one side of a pair: an idle pooled one when there is one, a new
    /// one otherwise. Give it back with [`Engine::release`] when the task succeeded.
    pub async fn open(&self, pair_id: &str, side: Side) -> ImapResult<Connection> {
        let pooled = self.pool.lock().ok().and_then(|mut pool| {
            let list = pool.get_mut(&(pair_id.to_owned(), side))?;
            list.retain(|(_, since)| since.elapsed() < POOL_IDLE);
            list.pop()
        });
        if let Some((mut c, since)) = pooled {
            // A session idle for a while may have been closed by the server: one NOOP tells.
            if since.elapsed() < std::time::Duration::from_secs(5) || c.run("NOOP").await.is_ok() {
                return Ok(c);
            }
        }
        self.connect(pair_id, side).await
    }

    /// Returns a session after a task that ended cleanly; a session that saw an error is
    /// dropped instead, since its state is unknown.
    pub fn release(&self, pair_id: &str, conn: Connection) {
        if let Ok(mut pool) = self.pool.lock() {
            let side = conn.side;
            pool.entry((pair_id.to_owned(), side))
                .or_default()
                .push((conn, std::time::Instant::now()));
        }
    }

    async fn connect(&self, pair_id: &str, side: Side) -> ImapResult<Connection> {
        let Some((endpoint, creds)) = self.creds.account(pair_id, side) else {
            return Err(ImapError::new(
                ErrorKind::Config,
                side,
                format!("{side}: no credentials are known for this mailbox pair"),
            ));
        };
        let mut conn = Connection::connect(&endpoint, side, &self.config.connect).await?;
        match &creds {
            Credentials::Password(p) => conn.login(&endpoint.user, p.expose()).await?,
            Credentials::OAuth2 { token_file } => {
                let token = std::fs::read_to_string(token_file)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| {
                        ImapError::new(
                            ErrorKind::Config,
                            side,
                            format!(
                                "{side}: cannot read the OAuth2 token file {}: {e}",
                                token_file.display()
                            ),
                        )
                    })?;
                if token.is_empty() {
                    return Err(ImapError::new(
                        ErrorKind::Auth,
                        side,
                        format!(
                            "{side}: the OAuth2 token file {} is empty",
                            token_file.display()
                        ),
                    ));
                }
                conn.login_oauth2(&endpoint.user, &token, &endpoint.host, endpoint.port)
                    .await?
            }
            Credentials::Admin { admin, secret } => {
                conn.login_as(&endpoint.user, Some(admin), secret.expose())
                    .await?
            }
        }
        Ok(conn)
    }

    /// Runs one task into its outcome. Never panics on server input; every failure becomes an
    /// outcome whose kind decides what the coordinator does next.
    pub async fn run(&self, task: &TaskEnvelope) -> OutcomeEnvelope {
        let span = tracing::info_span!("task", migration = %task.migration_id, pair = %task.pair_id, task = %task.task_id);
        let _enter = span.enter();
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
        };
        let body = body.unwrap_or_else(|e| {
            OutcomeBody::Failed(TaskFailure {
                kind: e.kind,
                side: Some(e.side),
                message: e.message,
                retry_after_ms: e
                    .retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
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
