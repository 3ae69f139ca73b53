//! Connection slots and their fair queue: the contract both stores keep (the Redis twin in
//! `crate::redis_slots`, the SQLite one in `crate::sqlite_slots`).
//!
//! A task that opens IMAP sessions takes one slot per session in every set the session counts
//! against (its account's and its host's), for all its new sessions in one store call: all or
//! nothing, so a task never holds some slots while it waits for others (DESIGN.md, "Leases and
//! leadership"). When a set is full the task does not simply try again later, which lets the
//! quickest poller win and can starve a task for ever: it takes a place in the **queue of every
//! set it asks for**, ordered by when it first asked (the store's clock), and keeps it by asking
//! again before its place expires. A waiter may take its slots only when, in every set, the slots
//! free cover its own need plus the needs of everyone queued ahead of it there: at the head of
//! every queue it waits in, or with room enough for all ahead. A waiter keeps its first arrival
//! whatever it asks for later, so the order is one order across all sets and the first waiter of
//! the fleet always gets its slots once holders give them back. A waiter that stops asking (its
//! worker died) is dropped once its place expires.
//!
//! This module owns the request and answer types and the contract tests both stores run. It must
//! not talk to a store itself.

use std::time::Duration;

/// The slot sets one session counts against, each with its limit: `(set, limit)`.
pub type SlotSets = Vec<(String, u32)>;

/// A task waiting for connection slots: who it is and where it stands in the queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotWaiter {
    /// Unique across the fleet; it starts with its engine's prefix (see
    /// [`crate::Store::wanted_slots`]).
    pub id: String,
    /// When it first queued (the store's clock, ms since the Unix epoch): `None` on its first
    /// try, then the `arrival` of its first [`SlotTry::Queued`] answer.
    pub arrival: Option<u64>,
    /// How long its place lasts unless it asks again.
    pub ttl: Duration,
}

/// The answer to one try at connection slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotTry {
    /// Taken: one token per session asked for, in the order asked.
    Taken(Vec<u64>),
    /// Not now: the waiter has its place in the queue of every set asked for.
    Queued(Queued),
}

/// Where a waiter stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// When it first queued (keep it in [`SlotWaiter::arrival`]).
    pub arrival: u64,
    /// The most waiters ahead of it in any one set.
    pub ahead: u32,
    /// The sets without room for it (and those ahead of it) now.
    pub blocked: Vec<String>,
}

/// A request for slots in the shape both stores work on: each distinct set once, with its limit
/// and how many of the asked sessions count against it, and each session as indexes into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    /// `(set, limit, need)`, in order of first mention.
    pub sets: Vec<(String, u32, u32)>,
    /// Per session, the indexes of its sets.
    pub sessions: Vec<Vec<usize>>,
}

impl SlotPlan {
    /// The plan of `sessions`. A set named twice with different limits keeps the smaller one.
    pub fn new(sessions: &[SlotSets]) -> SlotPlan {
        let mut sets: Vec<(String, u32, u32)> = Vec::new();
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            let mut indexes = Vec::with_capacity(session.len());
            for (name, limit) in session {
                let i = match sets.iter().position(|(n, _, _)| n == name) {
                    Some(i) => i,
                    None => {
                        sets.push((name.clone(), *limit, 0));
                        sets.len() - 1
                    }
                };
                if let Some(set) = sets.get_mut(i) {
                    set.1 = set.1.min(*limit);
                    set.2 = set.2.saturating_add(1);
                }
                indexes.push(i);
            }
            out.push(indexes);
        }
        SlotPlan {
            sets,
            sessions: out,
        }
    }

    /// The sets whose limit is below what the request alone needs: it can never be granted.
    pub fn impossible(&self) -> Vec<String> {
        self.sets
            .iter()
            .filter(|(_, limit, need)| need > limit)
            .map(|(name, _, _)| name.clone())
            .collect()
    }
}

/// The store-independent contract of connection slots and their queue, run against the SQLite
/// store and the Redis store alike.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::Store;

    const SLOT_TTL: Duration = Duration::from_secs(60);

    fn sets(list: &[(&str, u32)]) -> SlotSets {
        list.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn waiter(id: &str) -> SlotWaiter {
        SlotWaiter {
            id: id.to_owned(),
            arrival: None,
            ttl: Duration::from_secs(30),
        }
    }

    /// One try; a queued answer updates the waiter's arrival.
    async fn try_take<S: Store>(store: &S, sessions: &[SlotSets], w: &mut SlotWaiter) -> SlotTry {
        let got = store
            .acquire_slots(sessions, "holder", SLOT_TTL, w)
            .await
            .expect("store");
        if let SlotTry::Queued(q) = &got {
            w.arrival = Some(q.arrival);
        }
        got
    }

    async fn taken<S: Store>(store: &S, sessions: &[SlotSets], w: &mut SlotWaiter) -> Vec<u64> {
        match try_take(store, sessions, w).await {
            SlotTry::Taken(t) => t,
            SlotTry::Queued(q) => panic!("{} queued, expected slots: {q:?}", w.id),
        }
    }

    async fn queued<S: Store>(store: &S, sessions: &[SlotSets], w: &mut SlotWaiter) -> Queued {
        match try_take(store, sessions, w).await {
            SlotTry::Queued(q) => q,
            SlotTry::Taken(t) => panic!("{} took {t:?}, expected to queue", w.id),
        }
    }

    /// Every limit holds, a refused try takes nothing, a released or lapsed slot is free again,
    /// and one request's sessions on one host need two of the host's slots.
    pub async fn limits_hold_all_or_nothing<S: Store>(store: S) {
        let both = sets(&[("acct:source:a@h:993", 2), ("host:h:993", 3)]);
        let t1 = taken(&store, std::slice::from_ref(&both), &mut waiter("w1")).await[0];
        let t2 = taken(&store, std::slice::from_ref(&both), &mut waiter("w2")).await[0];
        assert_ne!(t1, t2, "tokens differ");
        let q = queued(&store, std::slice::from_ref(&both), &mut waiter("w3")).await;
        assert_eq!(q.blocked, names(&["acct:source:a@h:993"]), "{q:?}");
        store
            .leave_slot_queue(&names(&["acct:source:a@h:993", "host:h:993"]), "w3")
            .await
            .expect("leave");
        // The refused try took nothing from the host: one more fits there.
        let other = sets(&[("acct:source:b@h:993", 2), ("host:h:993", 3)]);
        let t3 = taken(&store, std::slice::from_ref(&other), &mut waiter("w4")).await[0];
        let q = queued(&store, std::slice::from_ref(&other), &mut waiter("w5")).await;
        assert_eq!(q.blocked, names(&["host:h:993"]), "the host limit holds");
        store
            .leave_slot_queue(&names(&["acct:source:b@h:993", "host:h:993"]), "w5")
            .await
            .expect("leave");
        let held = names(&["acct:source:a@h:993", "host:h:993"]);
        store.release_slots(&held, t1).await.expect("release");
        assert!(
            !store.renew_slots(&held, t1, SLOT_TTL).await.expect("renew"),
            "released"
        );
        assert!(
            store
                .renew_slots(&names(&["acct:source:b@h:993", "host:h:993"]), t3, SLOT_TTL)
                .await
                .expect("renew")
        );
        taken(&store, std::slice::from_ref(&both), &mut waiter("w6")).await;

        // Both sides of a pair on one server: two of its slots, or none.
        let src = sets(&[("acct:source:c@one:143", 8), ("host:one:143", 3)]);
        let dst = sets(&[("acct:target:d@one:143", 8), ("host:one:143", 3)]);
        let solo = sets(&[("acct:source:e@one:143", 8), ("host:one:143", 3)]);
        taken(&store, std::slice::from_ref(&solo), &mut waiter("w7")).await;
        taken(&store, std::slice::from_ref(&solo), &mut waiter("w8")).await;
        let pair = [src.clone(), dst.clone()];
        let q = queued(&store, &pair, &mut waiter("w9")).await;
        assert_eq!(q.blocked, names(&["host:one:143"]));
        store
            .leave_slot_queue(
                &names(&[
                    "acct:source:c@one:143",
                    "acct:target:d@one:143",
                    "host:one:143",
                ]),
                "w9",
            )
            .await
            .expect("leave");
        // The one slot left was not taken by the refused pair.
        taken(&store, std::slice::from_ref(&src), &mut waiter("w10")).await;

        // Slots whose holder stopped renewing lapse.
        let one = sets(&[("acct:target:x@h:143", 1)]);
        let short = store
            .acquire_slots(
                std::slice::from_ref(&one),
                "holder",
                Duration::from_millis(200),
                &waiter("w11"),
            )
            .await
            .expect("store");
        let SlotTry::Taken(short) = short else {
            panic!("free set refused: {short:?}")
        };
        queued(&store, std::slice::from_ref(&one), &mut waiter("w12")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !store
                .renew_slots(&names(&["acct:target:x@h:143"]), short[0], SLOT_TTL)
                .await
                .expect("renew"),
            "lapsed"
        );
        let later = taken(&store, std::slice::from_ref(&one), &mut waiter("w12")).await;
        assert!(later[0] > short[0], "tokens keep increasing");
    }

    /// First come, first served: a slot given back goes to the first waiter, not to whoever asks
    /// first after it is free; a waiter that needs less than what is free for everyone ahead of
    /// it goes at once; the queue empties as waiters get their slots or leave.
    pub async fn the_first_waiter_is_served_first<S: Store>(store: S) {
        let host = sets(&[("host:q:993", 2)]);
        let acct = |u: &str| sets(&[(&format!("acct:source:{u}@q:993"), 1), ("host:q:993", 2)]);
        let a = taken(&store, &[acct("a")], &mut waiter("a")).await[0];
        let _b = taken(&store, &[acct("b")], &mut waiter("b")).await[0];
        let mut first = waiter("first");
        let mut second = waiter("second");
        let q1 = queued(&store, &[acct("c")], &mut first).await;
        assert_eq!(q1.ahead, 0);
        let q2 = queued(&store, &[acct("d")], &mut second).await;
        assert_eq!(q2.ahead, 1, "{q2:?}");
        assert!(q2.arrival >= q1.arrival);
        assert_eq!(
            store
                .wanted_slots(&names(&["host:q:993", "acct:source:a@q:993"]), "")
                .await
                .expect("wanted"),
            names(&["host:q:993"])
        );
        assert!(
            store
                .wanted_slots(&names(&["host:q:993"]), "fir")
                .await
                .expect("wanted")
                .contains(&"host:q:993".to_owned()),
            "another engine's waiter counts"
        );
        assert!(
            store
                .wanted_slots(&names(&["acct:source:c@q:993"]), "fir")
                .await
                .expect("wanted")
                .is_empty(),
            "an engine's own waiters do not count for it"
        );
        store
            .release_slots(&names(&["acct:source:a@q:993", "host:q:993"]), a)
            .await
            .expect("release");
        // One slot free: the second waiter asks first, but it is the first waiter's.
        let q = queued(&store, &[acct("d")], &mut second).await;
        assert_eq!(q.blocked, names(&["host:q:993"]));
        assert_eq!(q.arrival, q2.arrival, "a waiter keeps its place");
        // A newcomer is behind both.
        let q3 = queued(&store, std::slice::from_ref(&host), &mut waiter("third")).await;
        assert_eq!(q3.ahead, 2);
        store
            .leave_slot_queue(&names(&["host:q:993"]), "third")
            .await
            .expect("leave");
        taken(&store, &[acct("c")], &mut first).await;
        // The first waiter left the queues with its slots: nobody is ahead of the second now.
        let q = queued(&store, &[acct("d")], &mut second).await;
        assert_eq!(q.ahead, 0, "{q:?}");
        store
            .leave_slot_queue(&names(&["acct:source:d@q:993", "host:q:993"]), "second")
            .await
            .expect("leave");
        assert!(
            store
                .wanted_slots(&names(&["host:q:993", "acct:source:d@q:993"]), "")
                .await
                .expect("wanted")
                .is_empty(),
            "nobody waits any more"
        );

        // Room for everyone ahead: a waiter behind one that waits for its own account goes. (Ids
        // order waiters that arrive in the same millisecond: these are named in arrival order.)
        let wide = sets(&[("host:r:993", 5)]);
        let busy = sets(&[("acct:source:busy@r:993", 1), ("host:r:993", 5)]);
        taken(&store, std::slice::from_ref(&busy), &mut waiter("a-holder")).await;
        let mut stuck = waiter("a-stuck");
        queued(&store, std::slice::from_ref(&busy), &mut stuck).await;
        taken(&store, std::slice::from_ref(&wide), &mut waiter("b-pass1")).await;
        // ...unless it would take the slot the one ahead needs.
        taken(&store, std::slice::from_ref(&wide), &mut waiter("b-pass2")).await;
        taken(&store, std::slice::from_ref(&wide), &mut waiter("b-pass3")).await;
        let q = queued(&store, std::slice::from_ref(&wide), &mut waiter("b-pass4")).await;
        assert_eq!((q.ahead, q.blocked.clone()), (1, names(&["host:r:993"])));
    }

    /// A waiter that stops asking loses its place when it expires, so a dead worker cannot block
    /// the queue; a waiter that asks for more later keeps its first arrival in the new sets too.
    pub async fn dead_waiters_expire_and_arrival_is_kept<S: Store>(store: S) {
        let full = sets(&[("acct:source:f@x:993", 1), ("host:x:993", 9)]);
        let t = taken(&store, std::slice::from_ref(&full), &mut waiter("h")).await[0];
        let mut dead = SlotWaiter {
            ttl: Duration::from_millis(200),
            ..waiter("dead")
        };
        queued(&store, std::slice::from_ref(&full), &mut dead).await;
        let mut live = waiter("live");
        let q = queued(&store, std::slice::from_ref(&full), &mut live).await;
        assert_eq!(q.ahead, 1);
        store
            .release_slots(&names(&["acct:source:f@x:993", "host:x:993"]), t)
            .await
            .expect("release");
        assert!(matches!(
            try_take(&store, std::slice::from_ref(&full), &mut live).await,
            SlotTry::Queued(_)
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        taken(&store, std::slice::from_ref(&full), &mut live).await;
        assert!(
            store
                .wanted_slots(&names(&["acct:source:f@x:993"]), "")
                .await
                .expect("wanted")
                .is_empty(),
            "the dead waiter is gone"
        );

        // `early` queues for one set; `late` then queues for a second one; when `early` asks for
        // both, it is ahead of `late` in the second set as well.
        let s1 = sets(&[("acct:source:s1@y:993", 1)]);
        let s2 = sets(&[("acct:target:s2@z:993", 1)]);
        let h1 = taken(&store, std::slice::from_ref(&s1), &mut waiter("h1")).await[0];
        let h2 = taken(&store, std::slice::from_ref(&s2), &mut waiter("h2")).await[0];
        let mut early = waiter("early");
        let mut late = waiter("late");
        queued(&store, std::slice::from_ref(&s1), &mut early).await;
        queued(&store, std::slice::from_ref(&s2), &mut late).await;
        let q = queued(&store, &[s1.clone(), s2.clone()], &mut early).await;
        assert_eq!(q.ahead, 0, "{q:?}");
        store
            .release_slots(&names(&["acct:target:s2@z:993"]), h2)
            .await
            .expect("release");
        let q = queued(&store, std::slice::from_ref(&s2), &mut late).await;
        assert_eq!(q.ahead, 1, "early is ahead of late in s2: {q:?}");
        store
            .release_slots(&names(&["acct:source:s1@y:993"]), h1)
            .await
            .expect("release");
        assert_eq!(taken(&store, &[s1, s2.clone()], &mut early).await.len(), 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_counts_each_set_once_with_its_need() {
        let plan = SlotPlan::new(&[
            vec![("acct:source:a@h:143".into(), 8), ("host:h:143".into(), 4)],
            vec![("acct:target:b@h:143".into(), 8), ("host:h:143".into(), 3)],
        ]);
        assert_eq!(
            plan.sets,
            vec![
                ("acct:source:a@h:143".to_owned(), 8, 1),
                ("host:h:143".to_owned(), 3, 2),
                ("acct:target:b@h:143".to_owned(), 8, 1),
            ]
        );
        assert_eq!(plan.sessions, vec![vec![0, 1], vec![2, 1]]);
        assert!(plan.impossible().is_empty());
        let tight = SlotPlan::new(&[
            vec![("host:h:143".into(), 1)],
            vec![("host:h:143".into(), 1)],
        ]);
        assert_eq!(tight.impossible(), vec!["host:h:143".to_owned()]);
    }
}
