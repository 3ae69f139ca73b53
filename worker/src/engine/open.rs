//! Opening sessions: the pool of idle logged-in sessions between a pair's tasks, the connection
//! slots of a task's new sessions taken together from the fleet's fair queue, and the logins.
//!
//! A task asks for every session it needs at once ([`Engine::open_both`] for a task that reads
//! the source and writes the target): idle pooled sessions where there are, new ones for the
//! rest, whose slots are taken in one store call. A task that must wait holds no session (its
//! pooled ones go back to the pool), keeps its place in the queue of every set it asks for, and
//! closes this engine's idle sessions in the sets that block it; other engines close theirs
//! when they see it waiting (`slots::maintain`). So no task waits for ever while others keep
//! coming, and a task never holds one side's slot while waiting for the other's. This module
//! must not run IMAP commands beyond a NOOP on a pooled session and the login.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailferry_fleet::slots::SlotPlan;
use mailferry_fleet::{CredentialSource, Credentials, SlotSets, Store};
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{Endpoint, Side, Waiting};

use super::Engine;
use super::slots::{self, Session};
use crate::imap::{Connection, ImapError, ImapResult};

/// Logged-in sessions between tasks of one pair and side, so a batch does not pay a login.
pub(crate) type Pool = std::sync::Mutex<HashMap<(String, Side), Vec<(Session, Instant)>>>;

/// How long an idle pooled session is kept. Providers count idle sessions against their
/// connection limits, so they are not kept long (DESIGN.md, "Leases and leadership").
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How often the pool is swept for sessions idle longer than [`POOL_IDLE`].
const POOL_SWEEP: Duration = Duration::from_secs(5);

/// How long a task waits in the slot queues before it is handed back to be retried. Its place is
/// kept while it waits, so this is long: the wait is the queue moving, not a poll that may lose.
pub(crate) const SLOT_WAIT: Duration = Duration::from_secs(60);

/// After how long a wait for slots is logged (once per task).
const SLOT_WAIT_LOGGED: Duration = Duration::from_secs(10);

/// `d` plus up to half of it again, so workers waiting for the same slots do not ask in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// One side of a pair as a task opens it.
struct Account {
    side: Side,
    endpoint: Endpoint,
    creds: Credentials,
    sets: SlotSets,
}

impl<S: Store, C: CredentialSource> Engine<S, C> {
    /// A logged-in session to one side of a pair: an idle pooled one when there is one, a new
    /// one otherwise. Give it back with [`Engine::release`] when the task succeeded.
    pub async fn open(&self, pair_id: &str, side: Side) -> ImapResult<Session> {
        let mut sessions = self.open_sides(pair_id, &[side]).await?;
        sessions.pop().ok_or_else(|| {
            ImapError::new(ErrorKind::Transient, side, "no session was opened (a bug)")
        })
    }

    /// Logged-in sessions to both sides of a pair, `(source, target)`, their slots taken
    /// together: a task never holds one while it waits for the other.
    pub async fn open_both(&self, pair_id: &str) -> ImapResult<(Session, Session)> {
        let mut sessions = self
            .open_sides(pair_id, &[Side::Source, Side::Target])
            .await?;
        match (sessions.pop(), sessions.pop()) {
            (Some(dst), Some(src)) => Ok((src, dst)),
            _ => Err(ImapError::new(
                ErrorKind::Transient,
                Side::Source,
                "no session was opened (a bug)",
            )),
        }
    }

    /// Sessions to `sides` of a pair, in that order (see the module documentation).
    async fn open_sides(&self, pair_id: &str, sides: &[Side]) -> ImapResult<Vec<Session>> {
        self.start_maintenance();
        let accounts = sides
            .iter()
            .map(|side| self.account(pair_id, *side))
            .collect::<ImapResult<Vec<Account>>>()?;
        let mut waiter = self.slots.waiter();
        // Every set this task queued in and has not left: it leaves them when it is done.
        let mut queued_in: HashSet<String> = HashSet::new();
        let started = Instant::now();
        let mut logged = false;
        let mut pause = Duration::from_millis(20);
        let result = loop {
            // Registered before trying, so a slot this engine frees meanwhile is not missed.
            let freed = self.slots.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let missing: Vec<usize> = (0..sides.len())
                .filter(|i| !self.has_pooled(pair_id, sides[*i]))
                .collect();
            let mut guards = Vec::new();
            if let Some(first) = missing.first().map(|i| &accounts[*i]) {
                let request: Vec<SlotSets> =
                    missing.iter().map(|i| accounts[*i].sets.clone()).collect();
                if let Some(set) = SlotPlan::new(&request).impossible().first() {
                    break Err(impossible(first, set));
                }
                let tried = slots::acquire(
                    &self.slots,
                    &self.store,
                    &request,
                    &self.config.holder,
                    self.config.slot_ttl,
                    &waiter,
                )
                .await;
                match tried {
                    Err(e) => {
                        break Err(ImapError::new(
                            ErrorKind::Transient,
                            first.side,
                            format!(
                                "{}: cannot take a connection slot (the state store failed: {e}); the task will be retried",
                                first.side
                            ),
                        ));
                    }
                    Ok(Ok(taken)) => {
                        // The store took the waiter out of the queues of these sets.
                        for (name, _) in request.iter().flatten() {
                            queued_in.remove(name);
                        }
                        guards = taken;
                    }
                    Ok(Err(queued)) => {
                        // Waiting, the task holds nothing: the pooled sessions it will use stay
                        // in the pool, where a waiter ahead of it may have them closed.
                        waiter.arrival = Some(queued.arrival);
                        queued_in.extend(request.iter().flatten().map(|(name, _)| name.clone()));
                        // This engine's own idle sessions in the sets that block the task only
                        // keep those slots from whoever is first in line.
                        for set in &queued.blocked {
                            if let Some(idle) = self.take_idle(set) {
                                idle.close(&self.store, true).await;
                            }
                        }
                        let waited = started.elapsed();
                        if waited >= SLOT_WAIT {
                            break Err(slots_busy(first, &self.config, waited));
                        }
                        if waited >= SLOT_WAIT_LOGGED && !logged {
                            logged = true;
                            tracing::info!(
                                pair = pair_id,
                                ahead = queued.ahead,
                                blocked = ?queued.blocked,
                                "waiting {} s for connection slots so far",
                                waited.as_secs()
                            );
                        }
                        tokio::select! {
                            () = freed => {}
                            () = tokio::time::sleep(jitter(pause).min(SLOT_WAIT - waited)) => {}
                        }
                        pause = (pause * 2).min(slots::POLL_MAX);
                        continue;
                    }
                }
            }
            let mut have = Vec::with_capacity(sides.len());
            let mut gone = false;
            for (i, side) in sides.iter().enumerate() {
                if missing.contains(&i) {
                    have.push(None);
                    continue;
                }
                let pooled = self.pooled(pair_id, *side).await;
                gone |= pooled.is_none();
                have.push(pooled);
            }
            if gone {
                // A pooled session went (taken, or found closed) since the look above: ask
                // again for every side without one; the slots just taken go back.
                drop(guards);
                self.put_back(pair_id, have);
                continue;
            }
            break self
                .log_in(pair_id, &accounts, have, &missing, guards)
                .await;
        };
        if !queued_in.is_empty() {
            let sets: Vec<String> = queued_in.into_iter().collect();
            if let Err(e) = self.store.leave_slot_queue(&sets, &waiter.id).await {
                // The place lapses by itself within the waiter's TTL.
                tracing::debug!("slot queues not left: {e}");
            }
        }
        result
    }

    /// Whether the pool holds an idle session of `pair_id` and `side` that no other engine's
    /// task waits for.
    fn has_pooled(&self, pair_id: &str, side: Side) -> bool {
        self.pool.lock().is_ok_and(|pool| {
            pool.get(&(pair_id.to_owned(), side)).is_some_and(|l| {
                l.iter()
                    .any(|(s, _)| !self.slots.wanted_by_others(s.sets()))
            })
        })
    }

    /// The endpoint, credentials and slot sets of one side of a pair.
    fn account(&self, pair_id: &str, side: Side) -> ImapResult<Account> {
        let Some((endpoint, creds)) = self.creds.account(pair_id, side) else {
            return Err(ImapError::new(
                ErrorKind::Config,
                side,
                format!("{side}: no credentials are known for this mailbox pair"),
            ));
        };
        let sets = slots::slot_sets(
            side,
            &endpoint,
            self.config.account_connections,
            self.config.host_connections,
        );
        Ok(Account {
            side,
            endpoint,
            creds,
            sets,
        })
    }

    /// Logs the new sessions in (at once), each with its slots, and returns all of them in
    /// order. On a failure the pooled sessions go back to the pool and the new ones are closed
    /// (a refused login usually ends the pair's work, and a probe keeps no session).
    async fn log_in(
        &self,
        pair_id: &str,
        accounts: &[Account],
        mut have: Vec<Option<(Session, Instant)>>,
        missing: &[usize],
        guards: Vec<slots::SlotGuard>,
    ) -> ImapResult<Vec<Session>> {
        let logins = missing.iter().zip(guards).map(|(i, guard)| {
            let a = &accounts[*i];
            async move {
                let conn = self
                    .login(&a.endpoint, &a.creds, a.side)
                    .await
                    .map_err(ImapError::at_login)?;
                Ok::<_, ImapError>(Session::new(conn, guard))
            }
        });
        let mut new = Vec::new();
        let mut first_error = None;
        for (i, logged) in missing.iter().zip(futures::future::join_all(logins).await) {
            match logged {
                Ok(s) => new.push((*i, s)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            self.put_back(pair_id, have);
            for (_, s) in new {
                s.close(&self.store, true).await;
            }
            return Err(e);
        }
        for (i, s) in new {
            have[i] = Some((s, Instant::now()));
        }
        Ok(have.into_iter().flatten().map(|(s, _)| s).collect())
    }

    /// An idle pooled session of `pair_id` and `side` that is still good, with when it became
    /// idle. Sessions idle too long, whose slots were lost, that the server closed, or whose
    /// slots another engine's task waits for are closed instead.
    async fn pooled(&self, pair_id: &str, side: Side) -> Option<(Session, Instant)> {
        loop {
            let pooled = self.pool.lock().ok().and_then(|mut pool| {
                let list = pool.get_mut(&(pair_id.to_owned(), side))?;
                list.pop()
            })?;
            let (mut s, since) = pooled;
            if since.elapsed() >= POOL_IDLE
                || s.slot_lost()
                || self.slots.wanted_by_others(s.sets())
            {
                let polite = !s.slot_lost();
                s.close(&self.store, polite).await;
                continue;
            }
            // A session idle for a while may have been closed by the server: one NOOP tells.
            if since.elapsed() < Duration::from_secs(5) || s.run("NOOP").await.is_ok() {
                return Some((s, since));
            }
            s.close(&self.store, false).await;
        }
    }

    /// Returns sessions taken from the pool, keeping when they became idle (and waking no one:
    /// nothing was freed).
    fn put_back(&self, pair_id: &str, sessions: Vec<Option<(Session, Instant)>>) {
        let Ok(mut pool) = self.pool.lock() else {
            return;
        };
        for (s, since) in sessions.into_iter().flatten() {
            pool.entry((pair_id.to_owned(), s.side))
                .or_default()
                .push((s, since));
        }
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
    /// dropped instead, since its state is unknown (dropping it gives its slots back). A session
    /// whose slots another engine's task waits for is closed: its slot is that task's turn.
    pub fn release(&self, pair_id: &str, session: Session) {
        if session.slot_lost() {
            return;
        }
        if self.slots.wanted_by_others(session.sets()) {
            let store = self.store.clone();
            tokio::spawn(async move { session.close(&store, true).await });
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

    /// Closes a session now, giving its slots back (a task that must not keep it idle).
    pub async fn close(&self, session: Session) {
        let polite = !session.slot_lost();
        session.close(&self.store, polite).await;
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
            slots::PoolHooks { sweep, evict },
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
}

/// A task that waited [`SLOT_WAIT`] in the queues without its turn coming: handed back to be
/// retried soon (it was not refused by anyone).
fn slots_busy(a: &Account, config: &super::EngineConfig, waited: Duration) -> ImapError {
    ImapError::new(
        ErrorKind::Throttled,
        a.side,
        format!(
            "{}: waited {} s in the fleet's queue for a connection slot: the {} sessions allowed to {}@{} or the {} allowed to {}:{} (--account-connections, --host-connections) were busy all along; the task will be retried",
            a.side,
            waited.as_secs(),
            config.account_connections,
            a.endpoint.user,
            a.endpoint.host,
            config.host_connections,
            a.endpoint.host,
            a.endpoint.port,
        ),
    )
    .waiting(Waiting::ConnectionSlots, Duration::from_secs(5))
}

/// A request no limit can ever grant (both sides on one server that allows one session).
fn impossible(a: &Account, set: &str) -> ImapError {
    ImapError::new(
        ErrorKind::Config,
        a.side,
        format!(
            "{}: the task needs more sessions at once than {set} allows: both sides of this pair are on one server; allow at least 2 (--host-connections, --account-connections)",
            a.side
        ),
    )
}
