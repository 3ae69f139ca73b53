//! The embedded store's connection slots and their fair queue: the SQLite twin of
//! `crate::redis_slots`, with exactly the semantics of `crate::slots` (one transaction per call,
//! so a try is as atomic as the Redis script).
//!
//! Tables: `slot` (one row per set and token, with its holder and expiry) and `slot_waiter` (one
//! row per set and waiter: arrival, need, expiry). Besides expiry, a slot of an embedded holder
//! whose local process is gone does not count (`crate::store::holder_alive`). This module must not
//! open or lock the database itself: the store hands it a connection.

use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::slots::{Queued, SlotPlan, SlotTry, SlotWaiter};
use crate::store::{holder_alive, now_ms};

/// The tables (part of the store's schema). `slot_wanted` held the marks that the queue
/// replaced.
pub(crate) const SCHEMA: &str = "
DROP TABLE IF EXISTS slot_wanted;
CREATE TABLE IF NOT EXISTS slot (
    set_name TEXT NOT NULL, token INTEGER NOT NULL, holder TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (set_name, token)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slot_waiter (
    set_name TEXT NOT NULL, waiter TEXT NOT NULL, arrival_ms INTEGER NOT NULL,
    need INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (set_name, waiter)
) WITHOUT ROWID;
";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Live slots of `set`, after dropping lapsed ones and those of dead local holders.
fn live_slots(tx: &Transaction<'_>, set: &str, now: i64) -> rusqlite::Result<u32> {
    tx.execute(
        "DELETE FROM slot WHERE set_name = ?1 AND expires_ms <= ?2",
        params![set, now],
    )?;
    let holders: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached("SELECT token, holder FROM slot WHERE set_name = ?1")?;
        let rows = stmt.query_map(params![set], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut live = 0u32;
    for (token, holder) in holders {
        if holder_alive(&holder) {
            live = live.saturating_add(1);
        } else {
            tx.execute(
                "DELETE FROM slot WHERE set_name = ?1 AND token = ?2",
                params![set, token],
            )?;
        }
    }
    Ok(live)
}

/// `(waiters, their need)` queued ahead of `waiter` (arriving at `arrival`) in `set`.
fn ahead_of(
    tx: &Transaction<'_>,
    set: &str,
    arrival: i64,
    waiter: &str,
) -> rusqlite::Result<(u32, i64)> {
    // Order: arrival, then the waiter id byte by byte (as Redis orders equal scores).
    tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(need), 0) FROM slot_waiter
         WHERE set_name = ?1 AND waiter != ?3
           AND (arrival_ms < ?2 OR (arrival_ms = ?2 AND waiter < ?3))",
        params![set, arrival, waiter],
        |r| Ok((r.get::<_, u32>(0)?, r.get(1)?)),
    )
}

/// One try (see `Store::acquire_slots`).
pub(crate) fn acquire(
    conn: &mut Connection,
    plan: &SlotPlan,
    holder: &str,
    ttl: Duration,
    waiter: &SlotWaiter,
) -> rusqlite::Result<SlotTry> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    tx.execute(
        "DELETE FROM slot_waiter WHERE expires_ms <= ?1",
        params![now],
    )?;
    // A waiter keeps its first arrival, even in sets it asks for only now.
    let arrival = waiter
        .arrival
        .and_then(|a| i64::try_from(a).ok())
        .unwrap_or(now);
    let mut blocked = Vec::new();
    let mut most_ahead = 0u32;
    for (set, limit, need) in &plan.sets {
        let held = live_slots(&tx, set, now)?;
        let (ahead, ahead_need) = ahead_of(&tx, set, arrival, &waiter.id)?;
        most_ahead = most_ahead.max(ahead);
        let room = i64::from(*limit) - i64::from(held) - i64::from(*need);
        if room < ahead_need {
            blocked.push(set.clone());
        }
    }
    if !blocked.is_empty() {
        let expires = now.saturating_add(ms(waiter.ttl));
        for (set, _, need) in &plan.sets {
            tx.execute(
                "INSERT INTO slot_waiter (set_name, waiter, arrival_ms, need, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (set_name, waiter) DO UPDATE
                 SET need = excluded.need, expires_ms = excluded.expires_ms",
                params![set, waiter.id, arrival, need, expires],
            )?;
        }
        tx.commit()?;
        return Ok(SlotTry::Queued(Queued {
            arrival: u64::try_from(arrival).unwrap_or(0),
            ahead: most_ahead,
            blocked,
        }));
    }
    let mut tokens = Vec::with_capacity(plan.sessions.len());
    for session in &plan.sessions {
        tx.execute(
            "INSERT INTO lease_token (id, next) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET next = next + 1",
            [],
        )?;
        let token: i64 = tx.query_row("SELECT next FROM lease_token WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        for i in session {
            if let Some((set, _, _)) = plan.sets.get(*i) {
                tx.execute(
                    "INSERT INTO slot (set_name, token, holder, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![set, token, holder, now.saturating_add(ms(ttl))],
                )?;
            }
        }
        tokens.push(u64::try_from(token).unwrap_or(0));
    }
    for (set, _, _) in &plan.sets {
        tx.execute(
            "DELETE FROM slot_waiter WHERE set_name = ?1 AND waiter = ?2",
            params![set, waiter.id],
        )?;
    }
    tx.commit()?;
    Ok(SlotTry::Taken(tokens))
}

/// Extends the slots of `token` in `sets`; false (and nothing changed) if one is gone.
pub(crate) fn renew(
    conn: &mut Connection,
    sets: &[String],
    token: u64,
    ttl: Duration,
) -> rusqlite::Result<bool> {
    let token = i64::try_from(token).unwrap_or(-1);
    let tx = conn.transaction()?;
    let now = now_ms();
    for set in sets {
        let n = tx.execute(
            "UPDATE slot SET expires_ms = ?3 WHERE set_name = ?1 AND token = ?2 AND expires_ms > ?4",
            params![set, token, now.saturating_add(ms(ttl)), now],
        )?;
        if n != 1 {
            // Dropping the transaction rolls back the sets already extended.
            return Ok(false);
        }
    }
    tx.commit()?;
    Ok(true)
}

/// Gives back the slots of `token` in `sets`.
pub(crate) fn release(conn: &mut Connection, sets: &[String], token: u64) -> rusqlite::Result<()> {
    let token = i64::try_from(token).unwrap_or(-1);
    let tx = conn.transaction()?;
    for set in sets {
        tx.execute(
            "DELETE FROM slot WHERE set_name = ?1 AND token = ?2",
            params![set, token],
        )?;
    }
    tx.commit()
}

/// Takes `waiter` out of the queues of `sets`.
pub(crate) fn leave(conn: &mut Connection, sets: &[String], waiter: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for set in sets {
        tx.execute(
            "DELETE FROM slot_waiter WHERE set_name = ?1 AND waiter = ?2",
            params![set, waiter],
        )?;
    }
    tx.commit()
}

/// The sets of `sets` with a live waiter not starting with `except` (empty: any waiter).
pub(crate) fn wanted(
    conn: &mut Connection,
    sets: &[String],
    except: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM slot_waiter WHERE set_name = ?1 AND expires_ms > ?2
           AND (?3 = '' OR substr(waiter, 1, length(?3)) != ?3) LIMIT 1",
    )?;
    let now = now_ms();
    let mut out = Vec::new();
    for set in sets {
        if stmt.exists(params![set, now, except])? {
            out.push(set.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::{SlotSets, contract};
    use crate::store::{SqliteStore, Store, embedded_holder, host_name};

    #[tokio::test]
    async fn limits_hold_all_or_nothing() {
        contract::limits_hold_all_or_nothing(SqliteStore::in_memory().expect("store")).await;
    }

    #[tokio::test]
    async fn the_first_waiter_is_served_first() {
        contract::the_first_waiter_is_served_first(SqliteStore::in_memory().expect("store")).await;
    }

    #[tokio::test]
    async fn dead_waiters_expire_and_arrival_is_kept() {
        contract::dead_waiters_expire_and_arrival_is_kept(SqliteStore::in_memory().expect("store"))
            .await;
    }

    async fn try_as(store: &SqliteStore, sets: &SlotSets, holder: &str) -> SlotTry {
        let waiter = SlotWaiter {
            id: format!("w-{holder}"),
            arrival: None,
            ttl: Duration::from_secs(30),
        };
        let got = store
            .acquire_slots(
                std::slice::from_ref(sets),
                holder,
                Duration::from_secs(600),
                &waiter,
            )
            .await
            .expect("store");
        store
            .leave_slot_queue(&[sets[0].0.clone()], &waiter.id)
            .await
            .expect("leave");
        got
    }

    #[tokio::test]
    async fn the_slots_of_a_dead_local_process_do_not_count() {
        let store = SqliteStore::in_memory().expect("store");
        let one: SlotSets = vec![("acct:a".into(), 1)];
        let dead = format!("embedded:{}:0", host_name());
        let SlotTry::Taken(t2) = try_as(&store, &one, &dead).await else {
            panic!("free set refused")
        };
        let SlotTry::Taken(t3) = try_as(&store, &one, &embedded_holder()).await else {
            panic!("a dead local holder's slot is free")
        };
        assert!(t3[0] > t2[0]);
        assert!(
            matches!(
                try_as(&store, &one, "embedded:elsewhere:1").await,
                SlotTry::Queued(_)
            ),
            "a live holder's slot is not"
        );
    }
}
