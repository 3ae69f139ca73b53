//! Connection slots: the fleet-wide limits on IMAP sessions per account and per host
//! (DESIGN.md, Principle 4 and "Leases and leadership"). Providers count every open session,
//! idle ones included (Gmail allows about 15 per account), and the limit must hold across all
//! workers, so each session holds one slot in its account's set and one in its host's set of the
//! store for its whole life, pooled idle time included.
//!
//! This module owns the [`Session`] (a logged-in connection with its [`SlotGuard`]), the record of
//! the slots an engine holds, and the engine's background task that renews them, gives back the
//! slots of dropped sessions and closes pooled sessions left idle too long. It must not decide
//! which sessions to pool or evict (the engine does), and must not talk IMAP beyond LOGOUT.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mailferry_fleet::Store;
use mailferry_fleet::metrics::OpenConnection;
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
    /// slot try again at once instead of at their next backoff.
    pub(crate) freed: tokio::sync::Notify,
    /// Sets this engine itself marked wanted, and when: its own marks are not a reason to close
    /// its own idle sessions (its waiting tasks already take those directly).
    pub(crate) own_marks: Mutex<HashMap<String, tokio::time::Instant>>,
}

struct Held {
    sets: Arc<[String]>,
    lost: Arc<AtomicBool>,
}

impl Slots {
    pub(crate) fn new() -> Slots {
        let (give_back, queue) = mpsc::unbounded_channel();
        Slots {
            held: Mutex::default(),
            give_back,
            queue: Mutex::new(Some(queue)),
            freed: tokio::sync::Notify::new(),
            own_marks: Mutex::default(),
        }
    }

    fn forget(&self, token: u64) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&token);
        }
    }

    /// Records that this engine marked `set` wanted (or, with `false`, cleared its mark).
    pub(crate) fn own_mark(&self, set: &str, on: bool) {
        if let Ok(mut marks) = self.own_marks.lock() {
            if on {
                marks.insert(set.to_owned(), tokio::time::Instant::now());
            } else {
                marks.remove(set);
            }
        }
    }

    /// Whether `set` is wanted by this engine itself (a mark it set that has not expired).
    fn marked_by_us(&self, set: &str) -> bool {
        self.own_marks
            .lock()
            .is_ok_and(|m| m.get(set).is_some_and(|at| at.elapsed() < WANTED_TTL))
    }

    /// The receiving end of the give-back queue, once (the background task is started once).
    pub(crate) fn take_queue(&self) -> Option<mpsc::UnboundedReceiver<GiveBack>> {
        self.queue.lock().ok().and_then(|mut q| q.take())
    }
}

/// One try at a slot in every set `(name, limit)`; `None` when a set is full.
pub(crate) async fn try_acquire<S: Store>(
    slots: &Arc<Slots>,
    store: &S,
    sets: &[(String, u32)],
    holder: &str,
    ttl: Duration,
) -> Result<Option<SlotGuard>, mailferry_fleet::StoreError> {
    let Some(token) = store.acquire_slots(sets, holder, ttl).await? else {
        return Ok(None);
    };
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
    Ok(Some(SlotGuard {
        token,
        sets: names,
        lost,
        slots: slots.clone(),
        armed: true,
    }))
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

/// How often an engine with idle pooled sessions looks for other workers waiting for their
/// slots.
pub(crate) const WANTED_EVERY: Duration = Duration::from_secs(1);

/// How long a waiting task's "slot wanted" mark lasts unless renewed by its next try.
pub(crate) const WANTED_TTL: Duration = Duration::from_secs(3);

/// What the background task asks of the engine's pool of idle sessions.
pub(crate) struct PoolHooks<A, B, C> {
    /// Removes and hands over the sessions idle too long (or whose slots were lost).
    pub sweep: A,
    /// The slot sets that idle pooled sessions hold.
    pub idle_sets: B,
    /// Removes and hands over the idle sessions holding a slot in any of these sets.
    pub evict: C,
}

/// The engine's background task: renews every held slot every third of `ttl`, gives back the
/// slots of dropped sessions, every `sweep_every` closes the pooled sessions idle too long, and
/// every [`WANTED_EVERY`] closes the idle sessions whose slots a task (of any worker) waits for.
/// Ends when the engine and all its sessions are gone.
pub(crate) async fn maintain<S, A, B, C>(
    store: S,
    slots: Weak<Slots>,
    mut queue: mpsc::UnboundedReceiver<GiveBack>,
    ttl: Duration,
    sweep_every: Duration,
    pool: PoolHooks<A, B, C>,
) where
    S: Store,
    A: Fn() -> Vec<Session> + Send + 'static,
    B: Fn() -> Vec<String> + Send + 'static,
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
                let sets = (pool.idle_sets)();
                if sets.is_empty() {
                    continue;
                }
                match store.wanted_slots(&sets).await {
                    Ok(mut want) => {
                        if let Some(slots) = slots.upgrade() {
                            want.retain(|s| !slots.marked_by_us(s));
                        }
                        if want.is_empty() {
                            continue;
                        }
                        for session in (pool.evict)(&want) {
                            let store = store.clone();
                            tokio::spawn(async move { session.close(&store, true).await });
                        }
                    }
                    Err(e) => tracing::debug!("slot marks not read: {e}"),
                }
            }
        }
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

    fn sets(limit: u32) -> Vec<(String, u32)> {
        vec![
            ("acct:source:a@h:143".into(), limit),
            ("host:h:143".into(), 200),
        ]
    }

    #[tokio::test]
    async fn dropped_guards_give_their_slots_back_and_renewal_keeps_them() {
        let store = SqliteStore::in_memory().expect("store");
        let slots = Arc::new(Slots::new());
        let queue = slots.take_queue().expect("queue");
        let ttl = Duration::from_millis(300);
        tokio::spawn(maintain(
            store.clone(),
            Arc::downgrade(&slots),
            queue,
            ttl,
            Duration::from_secs(3600),
            PoolHooks {
                sweep: Vec::new,
                idle_sets: Vec::new,
                evict: |_: &[String]| Vec::new(),
            },
        ));
        let g = try_acquire(&slots, &store, &sets(1), "w", ttl)
            .await
            .expect("store")
            .expect("free");
        assert!(g.holds("host:h:143"));
        // Held past several TTLs: the background task renews it.
        tokio::time::sleep(ttl * 3).await;
        assert!(!g.lost());
        assert!(
            try_acquire(&slots, &store, &sets(1), "w", ttl)
                .await
                .expect("store")
                .is_none(),
            "still held"
        );
        drop(g);
        let mut again = None;
        for _ in 0..50 {
            again = try_acquire(&slots, &store, &sets(1), "w", ttl)
                .await
                .expect("store");
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
        let slots = Arc::new(Slots::new());
        let queue = slots.take_queue().expect("queue");
        let ttl = Duration::from_millis(300);
        let g = try_acquire(&slots, &store, &sets(1), "w", ttl)
            .await
            .expect("store")
            .expect("free");
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
            PoolHooks {
                sweep: Vec::new,
                idle_sets: Vec::new,
                evict: |_: &[String]| Vec::new(),
            },
        ));
        tokio::time::sleep(ttl / 2).await;
        assert!(g.lost());
    }

    #[tokio::test]
    async fn idle_sessions_whose_slots_another_worker_wants_are_handed_over() {
        // Two engines of the fleet share one store: this one holds the account's only slot by
        // an idle pooled session; another marks the account wanted.
        let store = SqliteStore::in_memory().expect("store");
        let slots = Arc::new(Slots::new());
        let queue = slots.take_queue().expect("queue");
        let account = "acct:source:a@h:143".to_string();
        let evicted: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let (pool_sets, seen) = (
            vec![account.clone(), "acct:target:b@h:143".to_string()],
            evicted.clone(),
        );
        tokio::spawn(maintain(
            store.clone(),
            Arc::downgrade(&slots),
            queue,
            Duration::from_secs(60),
            Duration::from_secs(3600),
            PoolHooks {
                sweep: Vec::new,
                idle_sets: move || pool_sets.clone(),
                evict: move |want: &[String]| {
                    seen.lock().expect("lock").push(want.to_vec());
                    Vec::new()
                },
            },
        ));
        // Nobody wants anything: nothing is handed over.
        tokio::time::sleep(WANTED_EVERY * 2).await;
        assert!(evicted.lock().expect("lock").is_empty());
        store
            .want_slots(std::slice::from_ref(&account), WANTED_TTL)
            .await
            .expect("mark");
        let mut waited = Duration::ZERO;
        while evicted.lock().expect("lock").is_empty() && waited < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert_eq!(
            evicted.lock().expect("lock").first(),
            Some(&vec![account.clone()])
        );
        // Cleared once the waiter has its slot.
        store
            .want_slots(std::slice::from_ref(&account), Duration::ZERO)
            .await
            .expect("clear");
        assert!(
            store
                .wanted_slots(&[account])
                .await
                .expect("read")
                .is_empty()
        );
    }
}
