//! The fleet's connection slots in Redis: the Lua scripts that take, renew and give back slots,
//! and the fair queue of `crate::slots` (first come, first served across all workers), with
//! exactly the semantics of the embedded twin (`crate::sqlite_slots`).
//!
//! Per slot set four keys of one cluster slot (`{coord}`, shared with the lease counter that
//! issues the tokens; `mailferry_proto::keys`): the slots (tokens scored by expiry), the queue
//! (waiter ids scored by first arrival), the waiters' expiries and their needs. A try is one
//! script, so checking every set and taking from all of them, or queueing in all of them, is
//! atomic. Times are Redis's own (`TIME`). This module must not decide when to try again or what
//! to do while waiting (the engine does).

use std::sync::LazyLock;
use std::time::Duration;

use mailferry_proto::keys;
use redis::Script;

use crate::redis_store::{RedisStore, ttl_ms};
use crate::slots::{Queued, SlotPlan, SlotTry, SlotWaiter};
use crate::store::StoreError;

/// Lua shared by the slot scripts: Redis's clock in ms, `int` (a number without Lua's exponent
/// notation), and `drop_dead` (removes the waiters whose place lapsed from one set's queue).
const SLOT_LUA: &str = r"
local function int(n) return string.format('%.0f', n) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop_dead(queue, waiting, need)
  local dead = redis.call('ZRANGE', waiting, '-inf', now, 'BYSCORE')
  for _, w in ipairs(dead) do
    redis.call('ZREM', queue, w)
    redis.call('HDEL', need, w)
  end
  if #dead > 0 then
    redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
  end
end
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end
";

/// KEYS: the lease counter, then per set: slots, queue, waiting, need.
/// ARGV: slot ttl ms, waiter id, waiter ttl ms, first arrival ms (or empty), then per set its
/// limit and need, then per session the count of its sets followed by their 1-based indexes.
/// Returns `{1, token per session}` when taken, `{0, arrival, most waiters ahead, blocked set
/// indexes}` when queued. A set's keys expire with their last-renewed member.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SLOT_LUA}
local ttl = tonumber(ARGV[1])
local me = ARGV[2]
local wttl = tonumber(ARGV[3])
local arrival = tonumber(ARGV[4]) or now
local k = (#KEYS - 1) / 4
local blocked = {{}}
for i = 1, k do
  local slots, queue, waiting, need = KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i], KEYS[4*i+1]
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  drop_dead(queue, waiting, need)
  local room = tonumber(ARGV[3+2*i]) - redis.call('ZCARD', slots) - tonumber(ARGV[4+2*i])
  local ahead = 0
  if room >= 0 then
    -- Those queued before this waiter (arrival, then id), no more than can change the answer.
    local before = redis.call('ZRANGE', queue, '-inf', int(arrival), 'BYSCORE',
      'LIMIT', 0, room + 1, 'WITHSCORES')
    for j = 1, #before, 2 do
      local w = before[j]
      if w == me or (tonumber(before[j+1]) == arrival and w > me) then break end
      ahead = ahead + (tonumber(redis.call('HGET', need, w)) or 1)
      if ahead > room then break end
    end
  end
  if room < ahead or room < 0 then
    blocked[#blocked+1] = i
  end
end
if #blocked > 0 then
  local most = 0
  for i = 1, k do
    local queue, waiting, need = KEYS[4*i-1], KEYS[4*i], KEYS[4*i+1]
    redis.call('ZADD', queue, 'NX', int(arrival), me)
    redis.call('ZADD', waiting, int(now + wttl), me)
    redis.call('HSET', need, me, ARGV[4+2*i])
    keep(queue, wttl)
    keep(waiting, wttl)
    keep(need, wttl)
    local rank = redis.call('ZRANK', queue, me)
    if rank and rank > most then most = rank end
  end
  local out = {{0, arrival, most}}
  for _, i in ipairs(blocked) do out[#out+1] = i end
  return out
end
-- A counter lost with a flush restarts above every token issued before it (1000 per ms).
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], int(now * 1000))
end
local out = {{1}}
local p = 5 + 2 * k
while p <= #ARGV do
  local count = tonumber(ARGV[p])
  local token = redis.call('INCR', KEYS[1])
  for j = 1, count do
    local slots = KEYS[4 * tonumber(ARGV[p+j]) - 2]
    redis.call('ZADD', slots, int(now + ttl), int(token))
    keep(slots, ttl)
  end
  out[#out+1] = token
  p = p + count + 1
end
for i = 1, k do
  redis.call('ZREM', KEYS[4*i-1], me)
  redis.call('ZREM', KEYS[4*i], me)
  redis.call('HDEL', KEYS[4*i+1], me)
end
return out
"
    ))
});

/// KEYS: the sorted sets of the slots. ARGV: token, ttl ms. Returns 1 if the token still holds a
/// live slot in every set (and extends them all), 0 otherwise (and changes nothing).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SLOT_LUA}
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  local expires = tonumber(redis.call('ZSCORE', KEYS[i], ARGV[1]) or '')
  if not expires or expires <= now then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', int(now + ttl), ARGV[1])
  keep(KEYS[i], ttl)
end
return 1
"
    ))
});

/// KEYS: per set: queue, waiting, need. ARGV: the prefix of waiters that do not count (empty:
/// all count). Returns per set 1 if a live waiter that counts is queued there, else 0.
static WANTED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SLOT_LUA}
local except = ARGV[1]
local out = {{}}
for i = 1, #KEYS / 3 do
  local queue, waiting, need = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  drop_dead(queue, waiting, need)
  local found = 0
  if except == '' then
    if redis.call('ZCARD', queue) > 0 then found = 1 end
  else
    for _, w in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
      if string.sub(w, 1, #except) ~= except then
        found = 1
        break
      end
    end
  end
  out[#out+1] = found
end
return out
"
    ))
});

impl RedisStore {
    /// One try at slots (see `Store::acquire_slots`).
    pub(crate) async fn slots_acquire(
        &self,
        plan: &SlotPlan,
        ttl: Duration,
        waiter: &SlotWaiter,
    ) -> Result<SlotTry, StoreError> {
        let ns = self.namespace();
        let mut key_list = vec![keys::lease_counter(ns)];
        for (set, _, _) in &plan.sets {
            key_list.extend([
                keys::slots(ns, set),
                keys::slots_queue(ns, set),
                keys::slots_waiting(ns, set),
                keys::slots_need(ns, set),
            ]);
        }
        let mut args = vec![
            ttl_ms(ttl).to_string(),
            waiter.id.clone(),
            ttl_ms(waiter.ttl).to_string(),
            waiter.arrival.map(|a| a.to_string()).unwrap_or_default(),
        ];
        for (_, limit, need) in &plan.sets {
            args.extend([limit.to_string(), need.to_string()]);
        }
        for session in &plan.sessions {
            args.push(session.len().to_string());
            args.extend(session.iter().map(|i| (i + 1).to_string()));
        }
        let key_refs: Vec<&str> = key_list.iter().map(String::as_str).collect();
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply: Vec<i64> = self
            .invoke("acquire_slots", &ACQUIRE, &key_refs, &arg_refs)
            .await?;
        let corrupt = || StoreError::Corrupt(format!("an acquire_slots reply {reply:?}"));
        let number = |n: i64| u64::try_from(n).map_err(|_| corrupt());
        match reply.split_first() {
            Some((1, tokens)) if tokens.len() == plan.sessions.len() => Ok(SlotTry::Taken(
                tokens
                    .iter()
                    .map(|t| number(*t))
                    .collect::<Result<_, _>>()?,
            )),
            Some((0, [arrival, ahead, blocked @ ..])) => Ok(SlotTry::Queued(Queued {
                arrival: number(*arrival)?,
                ahead: u32::try_from(*ahead).unwrap_or(u32::MAX),
                blocked: blocked
                    .iter()
                    .map(|i| {
                        usize::try_from(*i - 1)
                            .ok()
                            .and_then(|i| plan.sets.get(i))
                            .map(|(name, _, _)| name.clone())
                            .ok_or_else(corrupt)
                    })
                    .collect::<Result<_, _>>()?,
            })),
            _ => Err(corrupt()),
        }
    }

    /// Extends the slots of `token` in `sets` (see `Store::renew_slots`).
    pub(crate) async fn slots_renew(
        &self,
        sets: &[String],
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let set_keys: Vec<String> = sets
            .iter()
            .map(|set| keys::slots(self.namespace(), set))
            .collect();
        let key_refs: Vec<&str> = set_keys.iter().map(String::as_str).collect();
        let renewed: i64 = self
            .invoke(
                "renew_slots",
                &RENEW,
                &key_refs,
                &[&token.to_string(), &ttl_ms(ttl).to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Gives back the slots of `token` in `sets`.
    pub(crate) async fn slots_release(
        &self,
        sets: &[String],
        token: u64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for set in sets {
            pipe.zrem(keys::slots(self.namespace(), set), token.to_string())
                .ignore();
        }
        self.exec("release_slots", &pipe).await
    }

    /// Takes `waiter` out of the queues of `sets`.
    pub(crate) async fn slots_leave(
        &self,
        sets: &[String],
        waiter: &str,
    ) -> Result<(), StoreError> {
        let ns = self.namespace();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for set in sets {
            pipe.zrem(keys::slots_queue(ns, set), waiter).ignore();
            pipe.zrem(keys::slots_waiting(ns, set), waiter).ignore();
            pipe.hdel(keys::slots_need(ns, set), waiter).ignore();
        }
        self.exec("leave_slot_queue", &pipe).await
    }

    /// The sets with a live waiter not starting with `except`.
    pub(crate) async fn slots_wanted(
        &self,
        sets: &[String],
        except: &str,
    ) -> Result<Vec<String>, StoreError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let ns = self.namespace();
        let key_list: Vec<String> = sets
            .iter()
            .flat_map(|set| {
                [
                    keys::slots_queue(ns, set),
                    keys::slots_waiting(ns, set),
                    keys::slots_need(ns, set),
                ]
            })
            .collect();
        let key_refs: Vec<&str> = key_list.iter().map(String::as_str).collect();
        let found: Vec<i64> = self
            .invoke("wanted_slots", &WANTED, &key_refs, &[except])
            .await?;
        Ok(sets
            .iter()
            .zip(found)
            .filter(|(_, f)| *f == 1)
            .map(|(s, _)| s.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::redis_store::tests::Namespace;
    use crate::slots::contract;

    #[tokio::test]
    async fn limits_hold_all_or_nothing() {
        let ns = Namespace::new();
        contract::limits_hold_all_or_nothing(ns.store().await).await;
        for key in ns.keys().iter().filter(|k| k.contains(":slots")) {
            assert!(
                key.starts_with(&format!("{}:{{coord}}:slots", ns.0)),
                "{key}"
            );
        }
    }

    #[tokio::test]
    async fn the_first_waiter_is_served_first() {
        let ns = Namespace::new();
        contract::the_first_waiter_is_served_first(ns.store().await).await;
    }

    #[tokio::test]
    async fn dead_waiters_expire_and_arrival_is_kept() {
        let ns = Namespace::new();
        contract::dead_waiters_expire_and_arrival_is_kept(ns.store().await).await;
    }

    #[tokio::test]
    async fn an_abandoned_queue_leaves_no_keys() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let full: crate::slots::SlotSets = vec![("acct:source:z@h:993".into(), 1)];
        let waiter = |id: &str| SlotWaiter {
            id: id.into(),
            arrival: None,
            ttl: Duration::from_millis(150),
        };
        let taken = store
            .acquire_slots(
                std::slice::from_ref(&full),
                "h",
                Duration::from_millis(150),
                &waiter("a"),
            )
            .await
            .expect("store");
        assert!(matches!(taken, SlotTry::Taken(_)));
        let queued = store
            .acquire_slots(
                std::slice::from_ref(&full),
                "h",
                Duration::from_millis(150),
                &waiter("b"),
            )
            .await
            .expect("store");
        assert!(matches!(queued, SlotTry::Queued(_)), "{queued:?}");
        assert_eq!(
            ns.keys().iter().filter(|k| k.contains(":slots")).count(),
            4,
            "{:?}",
            ns.keys()
        );
        // Nobody renews the slot or asks again: every key of the set lapses.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let left: Vec<String> = ns
            .keys()
            .into_iter()
            .filter(|k| k.contains(":slots"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
