//! Connection slots: the fleet-wide limits on IMAP sessions per account and per host
//! (DESIGN.md, Principle 4 and "Leases and leadership"). Providers count every open session,
//! idle ones included (Gmail allows about 15 per account), and the limit must hold across all
//! workers, so each session holds one slot in its account's set and one in its host's set of the
//! store for its whole life, pooled idle time included. A task takes the slots of all its new
//! sessions in one store call, from the fair queue of `mailferry_fleet::slots`.
//!
//! This module owns the [`Session`] (a logged-in connection with its [`SlotGuard`]), the record of
//! the slots an engine holds and of the sets others wait for, and the engine's background task
//! that renews slots, gives back the slots of dropped sessions and closes pooled sessions left
//! idle too long or wanted by a waiter. It must not decide which sessions to pool or evict (the
//! engine does), and must not talk IMAP beyond LOGOUT.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mailferry_fleet::metrics::OpenConnection;
use mailferry_fleet::{Queued, SlotSets, SlotTry, SlotWaiter, Store};
use mailferry_proto::task::{Endpoint, Side};
use tokio::sync::mpsc;

use crate::imap::Connection;

/// Slots to give back: their sets and token.
pub(crate) type GiveBack = (Arc<[String]>, u64);

/// The slots one engine holds, and the queue of slots its dropped sessions give back.
pub(crate) struct Slots {
    held: Mutex<HashMap<u64, Held>>,
    give_back: mpsc::UnboundedSender<GiveBack>,
    /// Taken by the background task when it starts (on the engine's first connect).
    queue: Mutex<Option<mpsc::UnboundedReceiver<GiveBack>>>,
    /// Woken when this engine gives slots back or pools a session, so its tasks waiting for a
    /// slot try again at once instead of at their next poll.
    pub(crate) freed: tokio::sync::Notify,
    /// Sets of this engine's sessions that another engine's task waits for (as of the last look,
    /// every [`WANTED_EVERY`]): a session there is closed when its task ends, not pooled.
    wanted: Mutex<HashSet<String>>,
    /// Starts the id of every waiter of this engine (`mailferry_fleet::Store::wanted_slots`).
    prefix: String,
    next_waiter: AtomicU64,
}

struct Held {
    sets: Arc<[String]>,
    lost: Arc<AtomicBool>,
}

/// How long a waiter's place in the slot queues lasts unless it asks again (it asks at least
/// every [`POLL_MAX`]).
pub(crate) const WAITER_TTL: Duration = Duration::from_secs(5);

/// The longest pause between two tries of a waiting task (a slot given back by another worker is
/// seen within it; this engine's own are seen at once).
pub(crate) const POLL_MAX: Duration = Duration::from_millis(250);

impl Slots {
    /// The record of one engine whose lease holder name is `holder`.
    pub(crate) fn new(holder: &str) -> Slots {
        // Several engines may share a holder name (one process, tests): each gets its own prefix.
        static ENGINES: AtomicU64 = AtomicU64::new(1);
        let (give_back, queue) = mpsc::unbounded_channel();
        Slots {
            held: Mutex::default(),
            give_back,
            queue: Mutex::new(Some(queue)),
            freed: tokio::sync::Notify::new(),
            wanted: Mutex::default(),
            prefix: format!("{holder}~{}/", ENGINES.fetch_add(1, Ordering::Relaxed)),
            next_waiter: AtomicU64::new(1),
        }
    }

    fn forget(&self, token: u64) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&token);
        }
    }

    /// A new waiter of this engine, for one task's sessions.
    pub(crate) fn waiter(&self) -> SlotWaiter {
        SlotWaiter {
            id: format!(
                "{}{}",
                self.prefix,
                self.next_waiter.fetch_add(1, Ordering::Relaxed)
            ),
            arrival: None,
            ttl: WAITER_TTL,
        }
    }

    /// Whether another engine's task waits for a slot in one of `sets`.
    pub(crate) fn wanted_by_others(&self, sets: &[String]) -> bool {
        self.wanted
            .lock()
            .is_ok_and(|w| sets.iter().any(|s| w.contains(s)))
    }

    /// The receiving end of the give-back queue, once (the background task is started once).
    pub(crate) fn take_queue(&self) -> Option<mpsc::UnboundedReceiver<GiveBack>> {
        self.queue.lock().ok().and_then(|mut q| q.take())
    }

    /// Every set this engine holds a slot in.
    fn held_sets(&self) -> Vec<String> {
        let mut sets: Vec<String> = match self.held.lock() {
            Ok(held) => held.values().flat_map(|h| h.sets.iter().cloned()).collect(),
            Err(_) => Vec::new(),
        };
        sets.sort_unstable();
        sets.dedup();
        sets
    }
}

/// The slot sets of a session to `endpoint` on `side`: its account's (user, host and port) and
/// its server's (host and port only, whatever the user or side: the per-host limit is one for
/// the whole server). Host names are compared without case.
pub(crate) fn slot_sets(
    side: Side,
    endpoint: &Endpoint,
    account_limit: u32,
    host_limit: u32,
) -> SlotSets {
    let host = endpoint.host.to_ascii_lowercase();
    vec![
        (
            format!("acct:{side}:{}@{host}:{}", endpoint.user, endpoint.port),
            account_limit,
        ),
        (format!("host:{host}:{}", endpoint.port), host_limit),
    ]
}

/// One try at slots for new sessions (one `SlotSets` each): a guard per session, or where the
/// waiter stands.
pub(crate) async fn acquire<S: Store>(
    slots: &Arc<Slots>,
    store: &S,
    sessions: &[SlotSets],
    holder: &str,
    ttl: Duration,
    waiter: &SlotWaiter,
) -> Result<Result<Vec<SlotGuard>, Queued>, mailferry_fleet::StoreError> {
    let tokens = match store.acquire_slots(sessions, holder, ttl, waiter).await? {
        SlotTry::Taken(tokens) => tokens,
        SlotTry::Queued(q) => return Ok(Err(q)),
    };
    let mut guards = Vec::with_capacity(tokens.len());
    for (token, sets) in tokens.into_iter().zip(sessions) {
        let names: Arc<[String]> = sets.iter().map(|(name, _)| name.clone()).collect();
        let lost = Arc::new(AtomicBool::new(false));
        if let Ok(mut held) = slots.held.lock() {
            held.insert(
                token,
                Held {
                    sets: names.clone(),
                    lost: lost.clone(),
                },
            );
        }
        guards.push(SlotGuard {
            token,
            sets: names,
            lost,
            slots: slots.clone(),
            armed: true,
        });
    }
    Ok(Ok(guards))
}

/// The slots one session holds. Dropping it gives them back (through the engine's background
/// task, since a drop cannot wait on the store).
pub struct SlotGuard {
    token: u64,
    sets: Arc<[String]>,
    lost: Arc<AtomicBool>,
    slots: Arc<Slots>,
    armed: bool,
}

impl SlotGuard {
    /// Whether a renewal failed: another worker may have the slot now, so the session must close.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Whether this guard holds a slot in `set`.
    pub fn holds(&self, set: &str) -> bool {
        self.sets.iter().any(|s| s == set)
    }

    /// Gives the slots back now, waiting for the store.
    async fn release<S: Store>(mut self, store: &S) {
        self.armed = false;
        self.slots.forget(self.token);
        if let Err(e) = store.release_slots(&self.sets, self.token).await {
            // The slots expire one TTL after their last renewal.
            not_released(self.token, &e);
        }
        self.slots.freed.notify_waiters();
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.armed {
            self.slots.forget(self.token);
            let _ = self.slots.give_back.send((self.sets.clone(), self.token));
        }
    }
}

impl std::fmt::Debug for SlotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotGuard")
            .field("token", &self.token)
            .field("sets", &self.sets)
            .finish_non_exhaustive()
    }
}

/// A logged-in IMAP session and the connection slots it holds. Derefs to the [`Connection`]. The
/// connection is declared first so that it closes before its slots are given back. It counts
/// itself in the `mailferry_imap_connections` gauge for its whole life, however it ends.
pub struct Session {
    conn: Connection,
    slot: SlotGuard,
    _open: OpenConnection,
}

impl Session {
    pub(crate) fn new(conn: Connection, slot: SlotGuard) -> Session {
        let open = OpenConnection::new(conn.side);
        Session {
            conn,
            slot,
            _open: open,
        }
    }

    /// Whether the session's slots were lost (it must not be reused).
    pub fn slot_lost(&self) -> bool {
        self.slot.lost()
    }

    pub(crate) fn holds(&self, set: &str) -> bool {
        self.slot.holds(set)
    }

    /// The slot sets this session holds a slot in.
    pub(crate) fn sets(&self) -> &[String] {
        &self.slot.sets
    }

    /// Logs out (politely, bounded by a short timeout) when `polite`, closes the connection, then
    /// gives the slots back before returning, so a waiting task can take them at once.
    pub(crate) async fn close<S: Store>(self, store: &S, polite: bool) {
        let Session {
            conn,
            slot,
            _open: open,
        } = self;
        if polite {
            conn.logout().await;
        } else {
            drop(conn);
        }
        drop(open);
        slot.release(store).await;
    }
}

impl std::ops::Deref for Session {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// How often an engine holding slots looks for other engines' tasks waiting for them.
pub(crate) const WANTED_EVERY: Duration = Duration::from_secs(1);

/// What the background task asks of the engine's pool of idle sessions.
pub(crate) struct PoolHooks<A, C> {
    /// Removes and hands over the sessions idle too long (or whose slots were lost).
    pub sweep: A,
    /// Removes and hands over the idle sessions holding a slot in any of these sets.
    pub evict: C,
}

/// The engine's background task: renews every held slot every third of `ttl`, gives back the
/// slots of dropped sessions, every `sweep_every` closes the pooled sessions idle too long, and
/// every [`WANTED_EVERY`] looks which of its sets another engine's task waits for, records them
/// (so busy sessions there are closed when their task ends) and closes the idle sessions there.
/// Ends when the engine and all its sessions are gone.
pub(crate) async fn maintain<S, A, C>(
    store: S,
    slots: Weak<Slots>,
    mut queue: mpsc::UnboundedReceiver<GiveBack>,
    ttl: Duration,
    sweep_every: Duration,
    pool: PoolHooks<A, C>,
) where
    S: Store,
    A: Fn() -> Vec<Session> + Send + 'static,
    C: Fn(&[String]) -> Vec<Session> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let mut renew = tokio::time::interval_at(start + ttl / 3, ttl / 3);
    let mut sweeper = tokio::time::interval_at(start + sweep_every, sweep_every);
    let mut wanted = tokio::time::interval_at(start + WANTED_EVERY, WANTED_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweeper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    wanted.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            back = queue.recv() => match back {
                Some((sets, token)) => {
                    if let Err(e) = store.release_slots(&sets, token).await {
                        not_released(token, &e);
                    }
                    if let Some(slots) = slots.upgrade() {
                        slots.freed.notify_waiters();
                    }
                }
                // Every sender (the engine's slot record) is gone.
                None => return,
            },
            _ = renew.tick() => {
                let Some(slots) = slots.upgrade() else { return };
                if renew_all(&store, &slots, ttl, &mut renewed).await.is_err() {
                    return;
                }
            }
            _ = sweeper.tick() => {
                for session in (pool.sweep)() {
                    let store = store.clone();
                    tokio::spawn(async move { session.close(&store, true).await });
                }
            }
            _ = wanted.tick() => {
                let Some(slots) = slots.upgrade() else { return };
                look_for_waiters(&store, &slots, &pool.evict).await;
            }
        }
    }
}

/// Records which held sets other engines' tasks wait for, and closes the idle sessions there.
async fn look_for_waiters<S, C>(store: &S, slots: &Slots, evict: &C)
where
    S: Store,
    C: Fn(&[String]) -> Vec<Session>,
{
    let sets = slots.held_sets();
    let want = if sets.is_empty() {
        Vec::new()
    } else {
        match store.wanted_slots(&sets, &slots.prefix).await {
            Ok(want) => want,
            Err(e) => {
                // Waiters are advice: the worst is a longer wait for them.
                tracing::debug!("slot queues not read: {e}");
                return;
            }
        }
    };
    if let Ok(mut wanted) = slots.wanted.lock() {
        *wanted = want.iter().cloned().collect();
    }
    if want.is_empty() {
        return;
    }
    for session in evict(&want) {
        let store = store.clone();
        tokio::spawn(async move { session.close(&store, true).await });
    }
}

/// Renews each held token; marks lost the ones the store refuses, and all of them once the store
/// has been unreachable for two thirds of the TTL (they may lapse before the next renewal).
async fn renew_all<S: Store>(
    store: &S,
    slots: &Slots,
    ttl: Duration,
    renewed: &mut tokio::time::Instant,
) -> Result<(), ()> {
    let held: Vec<(u64, Arc<[String]>, Arc<AtomicBool>)> = match slots.held.lock() {
        Ok(held) => held
            .iter()
            .map(|(t, h)| (*t, h.sets.clone(), h.lost.clone()))
            .collect(),
        Err(_) => return Err(()),
    };
    let mut failed = false;
    for (token, sets, lost) in &held {
        match store.renew_slots(sets, *token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(token, sets = ?sets, "connection slot lost; its session will be closed");
                lost.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(token, "connection slot not renewed: {e}");
                failed = true;
            }
        }
    }
    if !failed {
        *renewed = tokio::time::Instant::now();
    } else if renewed.elapsed() >= ttl * 2 / 3 {
        for (_, _, lost) in &held {
            lost.store(true, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Reports slots the store did not take back: worth a warning, unless the process is stopping
/// (then they expire one TTL later, as designed, and a finished run should not end with noise).
fn not_released(token: u64, e: &mailferry_fleet::StoreError) {
    match e {
        mailferry_fleet::StoreError::ShuttingDown => {
            tracing::debug!(token, "connection slots left to expire: {e}")
        }
        _ => tracing::warn!(token, "connection slots not released: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailferry_fleet::SqliteStore;
    use mailferry_proto::task::TlsMode;

    fn sets(limit: u32) -> Vec<(String, u32)> {
        vec![
            ("acct:source:a@h:143".into(), limit),
            ("host:h:143".into(), 200),
        ]
    }

    /// One try for one session; a refused try leaves the queue at once.
    async fn take(
        slots: &Arc<Slots>,
        store: &SqliteStore,
        sets: &SlotSets,
        ttl: Duration,
    ) -> Option<SlotGuard> {
        let waiter = slots.waiter();
        match acquire(slots, store, std::slice::from_ref(sets), "w", ttl, &waiter)
            .await
            .expect("store")
        {
            Ok(mut guards) => guards.pop(),
            Err(_) => {
                let names: Vec<String> = sets.iter().map(|(n, _)| n.clone()).collect();
                store
                    .leave_slot_queue(&names, &waiter.id)
                    .await
                    .expect("leave");
                None
            }
        }
    }

    type NoPool = PoolHooks<fn() -> Vec<Session>, fn(&[String]) -> Vec<Session>>;

    fn no_pool() -> NoPool {
        PoolHooks {
            sweep: Vec::new,
            evict: |_| Vec::new(),
        }
    }

    #[tokio::test]
    async fn dropped_guards_give_their_slots_back_and_renewal_keeps_them() {
        let store = SqliteStore::in_memory().expect("store");
        let slots = Arc::new(Slots::new("w"));
        let queue = slots.take_queue().expect("queue");
        let ttl = Duration::from_millis(300);
        tokio::spawn(maintain(
            store.clone(),
            Arc::downgrade(&slots),
            queue,
            ttl,
            Duration::from_secs(3600),
            no_pool(),
        ));
        let g = take(&slots, &store, &sets(1), ttl).await.expect("free");
        assert!(g.holds("host:h:143"));
        // Held past several TTLs: the background task renews it.
        tokio::time::sleep(ttl * 3).await;
        assert!(!g.lost());
        assert!(
            take(&slots, &store, &sets(1), ttl).await.is_none(),
            "still held"
        );
        drop(g);
        let mut again = None;
        for _ in 0..50 {
            again = take(&slots, &store, &sets(1), ttl).await;
            if again.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(again.is_some(), "a dropped guard's slot came back");
    }

    #[tokio::test]
    async fn a_slot_taken_away_is_marked_lost() {
        let store = SqliteStore::in_memory().expect("store");
        let slots = Arc::new(Slots::new("w"));
        let queue = slots.take_queue().expect("queue");
        let ttl = Duration::from_millis(300);
        let g = take(&slots, &store, &sets(1), ttl).await.expect("free");
        // Someone else removed it (as a flushed store would).
        store
            .release_slots(&["acct:source:a@h:143".to_owned()], g.token)
            .await
            .expect("release");
        tokio::spawn(maintain(
            store.clone(),
            Arc::downgrade(&slots),
            queue,
            ttl,
            Duration::from_secs(3600),
            no_pool(),
        ));
        tokio::time::sleep(ttl / 2).await;
        assert!(g.lost());
    }

    #[tokio::test]
    async fn idle_sessions_whose_slots_another_engine_waits_for_are_handed_over() {
        // Two engines of the fleet share one store: this one holds the account's only slot; a
        // task of the other queues for it.
        let store = SqliteStore::in_memory().expect("store");
        let (ours, theirs) = (Arc::new(Slots::new("w")), Arc::new(Slots::new("w")));
        let queue = ours.take_queue().expect("queue");
        let account = "acct:source:a@h:143".to_string();
        let evicted: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let seen = evicted.clone();
        let _held = take(&ours, &store, &sets(1), Duration::from_secs(60))
            .await
            .expect("free");
        tokio::spawn(maintain(
            store.clone(),
            Arc::downgrade(&ours),
            queue,
            Duration::from_secs(60),
            Duration::from_secs(3600),
            PoolHooks {
                sweep: Vec::new,
                evict: move |want: &[String]| {
                    seen.lock().expect("lock").push(want.to_vec());
                    Vec::new()
                },
            },
        ));
        let wait_for = |engine: &Arc<Slots>| {
            let (engine, store) = (engine.clone(), store.clone());
            async move {
                let waiter = engine.waiter();
                let got = acquire(
                    &engine,
                    &store,
                    &[sets(1)],
                    "w",
                    Duration::from_secs(60),
                    &waiter,
                )
                .await
                .expect("store");
                assert!(got.is_err(), "the slot is held");
                waiter
            }
        };
        // A task of this same engine waits: that is no reason to close its idle sessions (the
        // task takes them itself).
        let own = wait_for(&ours).await;
        tokio::time::sleep(WANTED_EVERY * 2).await;
        assert!(evicted.lock().expect("lock").is_empty());
        assert!(!ours.wanted_by_others(std::slice::from_ref(&account)));
        store
            .leave_slot_queue(&[account.clone(), "host:h:143".into()], &own.id)
            .await
            .expect("leave");
        // Another engine's task waits: handed over within about a second.
        let _other = wait_for(&theirs).await;
        let mut waited = Duration::ZERO;
        while evicted.lock().expect("lock").is_empty() && waited < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        let first = evicted.lock().expect("lock").first().cloned();
        let first = first.expect("handed over");
        assert!(first.contains(&account), "{first:?}");
        assert!(ours.wanted_by_others(std::slice::from_ref(&account)));
    }

    #[test]
    fn the_host_set_is_one_per_server_whatever_the_user_or_side() {
        let at = |user: &str, host: &str| Endpoint {
            host: host.into(),
            port: 993,
            user: user.into(),
            tls: TlsMode::Implicit,
            ca_file: None,
            insecure_skip_verify: false,
            auth_mechanism: None,
        };
        let a = slot_sets(Side::Source, &at("alice", "IMAP.Example.com"), 8, 4);
        let b = slot_sets(Side::Target, &at("bob", "imap.example.com"), 8, 4);
        assert_eq!(a[1], ("host:imap.example.com:993".to_owned(), 4));
        assert_eq!(a[1], b[1], "one host set for every mailbox and side");
        assert_eq!(
            a[0],
            ("acct:source:alice@imap.example.com:993".to_owned(), 8)
        );
        assert_ne!(a[0], b[0]);
    }
}
