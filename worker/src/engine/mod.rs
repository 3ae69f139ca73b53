//! The engine: runs one task into one outcome. Each task kind has its own file; this module holds
//! what they share: opening logged-in sessions (each holding its account's and host's connection
//! slots, see `slots`), the pool of idle sessions, and the process-wide in-flight byte budget.

pub mod copy;
pub mod folders;
pub mod inventory;
pub mod keys;
pub mod list;
pub mod pipeline;
pub mod rate;
mod refusal;
pub mod slots;
pub mod sync;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mailferry_fleet::{CredentialSource, Credentials, Store};
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{
    Endpoint, OutcomeBody, OutcomeEnvelope, Side, TaskBody, TaskEnvelope, TaskFailure,
};
use tokio::sync::Semaphore;

use crate::imap::{ConnectOptions, Connection, ImapError, ImapResult};
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

/// How long an idle pooled session is kept. Providers count idle sessions against their
/// connection limits, so they are not kept long (DESIGN.md, "Leases and leadership").
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How often the pool is swept for sessions idle longer than [`POOL_IDLE`].
const POOL_SWEEP: Duration = Duration::from_secs(5);

/// How long a new session waits for a free connection slot before its task is handed back as
/// throttled.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// `d` plus up to half of it again, so workers waiting for the same slots do not retry in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// Logged-in sessions between tasks of one pair and side, so a batch does not pay a login.
type Pool = std::sync::Mutex<std::collections::HashMap<(String, Side), Vec<(Session, Instant)>>>;

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
    pool: Arc<Pool>,
    slots: Arc<slots::Slots>,
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
            pool: Arc::default(),
            slots: Arc::new(slots::Slots::new()),
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
    pub async fn open(&self, pair_id: &str, side: Side) -> ImapResult<Session> {
        loop {
            let pooled = self.pool.lock().ok().and_then(|mut pool| {
                let list = pool.get_mut(&(pair_id.to_owned(), side))?;
                list.pop()
            });
            let Some((mut s, since)) = pooled else { break };
            if since.elapsed() >= POOL_IDLE || s.slot_lost() {
                s.close(&self.store, false).await;
                continue;
            }
            // A session idle for a while may have been closed by the server: one NOOP tells.
            if since.elapsed() < Duration::from_secs(5) || s.run("NOOP").await.is_ok() {
                return Ok(s);
            }
            s.close(&self.store, false).await;
        }
        self.connect(pair_id, side).await
    }

    /// Closes every idle pooled session and gives its slots back (a worker that stops, so
    /// the fleet's other workers do not wait for the slots to expire).
    pub async fn close_idle(&self) {
        let idle: Vec<Session> = match self.pool.lock() {
            Ok(mut pool) => pool
                .drain()
                .flat_map(|(_, list)| list)
                .map(|(s, _)| s)
                .collect(),
            Err(_) => Vec::new(),
        };
        for s in idle {
            s.close(&self.store, true).await;
        }
    }

    /// Returns a session after a task that ended cleanly; a session that saw an error is
    /// dropped instead, since its state is unknown (dropping it gives its slots back).
    pub fn release(&self, pair_id: &str, session: Session) {
        if session.slot_lost() {
            return;
        }
        if let Ok(mut pool) = self.pool.lock() {
            let side = session.side;
            pool.entry((pair_id.to_owned(), side))
                .or_default()
                .push((session, Instant::now()));
        }
        // A task waiting for a slot may take this idle session's.
        self.slots.freed.notify_waiters();
    }

    /// Starts the background task that renews slots and sweeps the pool, once per engine.
    fn start_maintenance(&self) {
        let Some(queue) = self.slots.take_queue() else {
            return;
        };
        let pool = Arc::downgrade(&self.pool);
        let sweep = move || {
            let Some(pool) = pool.upgrade() else {
                return Vec::new();
            };
            let Ok(mut pool) = pool.lock() else {
                return Vec::new();
            };
            let mut stale = Vec::new();
            for list in pool.values_mut() {
                let (old, keep) = std::mem::take(list)
                    .into_iter()
                    .partition(|(s, since)| since.elapsed() >= POOL_IDLE || s.slot_lost());
                *list = keep;
                stale.extend(old.into_iter().map(|(s, _): (Session, Instant)| s));
            }
            pool.retain(|_, list| !list.is_empty());
            stale
        };
        let pool = Arc::downgrade(&self.pool);
        let idle_sets = move || {
            let Some(pool) = pool.upgrade() else {
                return Vec::new();
            };
            let Ok(pool) = pool.lock() else {
                return Vec::new();
            };
            let mut sets: Vec<String> = pool
                .values()
                .flatten()
                .flat_map(|(s, _)| s.sets().iter().cloned())
                .collect();
            sets.sort_unstable();
            sets.dedup();
            sets
        };
        let pool = Arc::downgrade(&self.pool);
        let evict = move |wanted: &[String]| {
            let Some(pool) = pool.upgrade() else {
                return Vec::new();
            };
            let Ok(mut pool) = pool.lock() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for list in pool.values_mut() {
                let (go, keep) = std::mem::take(list)
                    .into_iter()
                    .partition(|(s, _)| wanted.iter().any(|w| s.holds(w)));
                *list = keep;
                out.extend(go.into_iter().map(|(s, _): (Session, Instant)| s));
            }
            pool.retain(|_, list| !list.is_empty());
            out
        };
        tokio::spawn(slots::maintain(
            self.store.clone(),
            Arc::downgrade(&self.slots),
            queue,
            self.config.slot_ttl,
            POOL_SWEEP,
            slots::PoolHooks {
                sweep,
                idle_sets,
                evict,
            },
        ));
    }

    /// Removes from the pool the idle session that has been idle longest among those holding a
    /// slot in `set`.
    fn take_idle(&self, set: &str) -> Option<Session> {
        let mut pool = self.pool.lock().ok()?;
        let (key, index) = pool
            .iter()
            .flat_map(|(key, list)| {
                list.iter()
                    .enumerate()
                    .filter(|(_, (s, _))| s.holds(set))
                    .map(move |(i, (_, since))| (key, i, *since))
            })
            .min_by_key(|(_, _, since)| *since)
            .map(|(key, i, _)| (key.clone(), i))?;
        let list = pool.get_mut(&key)?;
        let (session, _) = list.remove(index);
        if list.is_empty() {
            pool.remove(&key);
        }
        Some(session)
    }

    /// Takes a slot for a new session to `endpoint` in its account's and its host's sets. When
    /// they are full, closes this engine's longest-idle pooled session of that account (or, once,
    /// of that host) and takes its slot; otherwise waits a little, then hands the task back as
    /// throttled so it is retried when other workers have closed sessions.
    async fn take_slot(&self, endpoint: &Endpoint, side: Side) -> ImapResult<slots::SlotGuard> {
        self.start_maintenance();
        let account = format!(
            "acct:{side}:{}@{}:{}",
            endpoint.user, endpoint.host, endpoint.port
        );
        let host = format!("host:{}:{}", endpoint.host, endpoint.port);
        let sets = [
            (account.clone(), self.config.account_connections),
            (host.clone(), self.config.host_connections),
        ];
        let deadline = Instant::now() + SLOT_WAIT;
        let mut backoff = Duration::from_millis(20);
        let mut host_evicted = false;
        let mut marked = false;
        loop {
            // Registered before trying, so a slot freed meanwhile is not missed.
            let freed = self.slots.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let taken = slots::try_acquire(
                &self.slots,
                &self.store,
                &sets,
                &self.config.holder,
                self.config.slot_ttl,
            )
            .await
            .map_err(|e| {
                ImapError::new(
                    ErrorKind::Transient,
                    side,
                    format!("{side}: cannot take a connection slot (the state store failed: {e}); the task will be retried"),
                )
            })?;
            if let Some(guard) = taken {
                if marked {
                    // Others need not close their idle sessions for us any more.
                    self.slots.own_mark(&account, false);
                    let _ = self.store.want_slots(&[account], Duration::ZERO).await;
                }
                return Ok(guard);
            }
            let idle = self.take_idle(&account).or_else(|| {
                // Only once: if the host was not what was full, closing more sessions of other
                // accounts would not help.
                (!host_evicted).then(|| self.take_idle(&host)).flatten()
            });
            if let Some(idle) = idle {
                host_evicted |= !idle.holds(&account);
                idle.close(&self.store, true).await;
                continue;
            }
            // Ask the fleet: a worker holding this account's slot by an idle pooled session
            // closes it within about a second, instead of when its idle time runs out.
            match self
                .store
                .want_slots(std::slice::from_ref(&account), slots::WANTED_TTL)
                .await
            {
                Ok(()) => {
                    marked = true;
                    self.slots.own_mark(&account, true);
                }
                Err(e) => tracing::debug!("slot wanted mark not set: {e}"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ImapError::new(
                    ErrorKind::Throttled,
                    side,
                    format!(
                        "{side}: all {} connections allowed to {}@{} are in use by other mailferry workers (or all {} allowed to {}:{}); the task will be retried",
                        self.config.account_connections,
                        endpoint.user,
                        endpoint.host,
                        self.config.host_connections,
                        endpoint.host,
                        endpoint.port,
                    ),
                )
                .throttled(Some(POOL_IDLE)));
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep(jitter(backoff).min(deadline - now)) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn connect(&self, pair_id: &str, side: Side) -> ImapResult<Session> {
        let Some((endpoint, creds)) = self.creds.account(pair_id, side) else {
            return Err(ImapError::new(
                ErrorKind::Config,
                side,
                format!("{side}: no credentials are known for this mailbox pair"),
            ));
        };
        let slot = self.take_slot(&endpoint, side).await?;
        let conn = self
            .login(&endpoint, &creds, side)
            .await
            .map_err(ImapError::at_login)?;
        Ok(Session::new(conn, slot))
    }

    async fn login(
        &self,
        endpoint: &Endpoint,
        creds: &Credentials,
        side: Side,
    ) -> ImapResult<Connection> {
        let mut conn = Connection::connect(endpoint, side, &self.config.connect).await?;
        let mechanism = endpoint.auth_mechanism;
        match creds {
            Credentials::Password(p) => {
                conn.login_as(&endpoint.user, None, p.expose(), mechanism)
                    .await?
            }
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
                let advice = "check that the access token is current and belongs to this user";
                let server = (endpoint.host.as_str(), endpoint.port);
                conn.login_oauth2(&endpoint.user, &token, server, advice, mechanism)
                    .await?
            }
            Credentials::OAuth2Token(token) => {
                // The fleet API took this token; providers' tokens last about an hour, and the
                // caller refreshes them (migration.proto, OAuth2Token).
                let advice = "check that the access token belongs to this user and has not \
                    expired (providers' tokens last about an hour): push a fresh one with \
                    UpdatePairCredentials, then RetryFailures";
                let server = (endpoint.host.as_str(), endpoint.port);
                conn.login_oauth2(&endpoint.user, token.expose(), server, advice, mechanism)
                    .await?
            }
            Credentials::Admin { admin, secret } => {
                conn.login_as(&endpoint.user, Some(admin), secret.expose(), mechanism)
                    .await?
            }
        }
        Ok(conn)
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
