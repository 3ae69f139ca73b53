//! The fleet's Redis store: the [`Store`] operations (copy entries, watermarks, fenced leases,
//! connection slots and their queue, see `crate::redis_slots`) with exactly the semantics of the
//! embedded `SqliteStore`, plus the coordinator's records (migrations, request claims, pair
//! summaries, sealed accounts, dead letters) as opaque strings.
//!
//! It owns the commands and Lua scripts behind the key layout of `mailferry_proto::keys`, the
//! epoch rule (no `folder:` lease within one lease TTL of the store's epoch being created, so a
//! flushed Redis cannot admit a second writer; DESIGN.md, "Idempotency") and fencing tokens that
//! keep increasing across a flush. It must not interpret the coordinator's records, must not see a
//! credential in plaintext (accounts arrive sealed, see `crate::seal`), and must never name the
//! server URL's userinfo (password) in an error or log.
//!
//! Times that decide leases are Redis's own (`TIME` inside the scripts), so clients' clocks never
//! matter. One server (`ConnectionManager`); the hash tags of the key layout keep each script's
//! keys in one slot for a later cluster client.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use mailferry_proto::MessageKey;
use mailferry_proto::keys;
use mailferry_proto::task::Side;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, Script};

use crate::slots::{SlotPlan, SlotSets, SlotTry, SlotWaiter};
use crate::store::{CopyEntry, EntryScope, FolderWatermark, Store, StoreError};

/// How long a CreateMigration request id stays claimed: retries within this window return the
/// migration the first attempt created.
pub const REQUEST_CLAIM_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Wait for one reply (scripts and pipelines over large folders take longer than the crate's
/// 500 ms default).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait for one connection attempt.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries per command or transaction, so no single command blocks Redis for long.
const CHUNK: usize = 500;
/// Longest lease TTL accepted (longer ones are clamped): ten years.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Lua shared by the lease scripts: Redis's clock in ms, and the epoch (KEYS[1]) re-created
/// whenever it is missing. `int` writes a number without Lua's exponent notation.
const EPOCH_LUA: &str = r"
local function int(n) return string.format('%.0f', n) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local created = tonumber(redis.call('GET', KEYS[1]) or '')
if not created then
  redis.call('SET', KEYS[1], int(now))
  created = now
end
";

/// KEYS: epoch, lease, counter. ARGV: holder, ttl ms, `1` if the epoch rule applies.
/// Returns the new token, 0 if another holder has the lease, -1 if the epoch rule refuses.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{EPOCH_LUA}
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' and now < created + ttl then
  return -1
end
local holder = redis.call('HGET', KEYS[2], 'holder')
if holder and holder ~= ARGV[1] then
  return 0
end
-- A counter lost with a flush restarts above every token issued before it (1000 per ms).
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], int(now * 1000))
end
local token = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'holder', ARGV[1], 'token', int(token))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return token
"
    ))
});

/// KEYS: epoch, lease. ARGV: token, ttl ms. Returns 1 if the token still holds the lease.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{EPOCH_LUA}
if redis.call('HGET', KEYS[2], 'token') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"
    ))
});

/// KEYS: lease. ARGV: token. Compare-and-delete.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// KEYS: a folder's `done` hash and `done-by-dst` sorted set. ARGV: target UIDs. Removes the
/// entries at those UIDs from both, so the two indexes keep agreeing.
static FORGET_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for _, uid in ipairs(ARGV) do
  for _, field in ipairs(redis.call('ZRANGE', KEYS[2], uid, uid, 'BYSCORE')) do
    redis.call('ZREM', KEYS[2], field)
    redis.call('HDEL', KEYS[1], field)
    n = n + 1
  end
end
return n
",
    )
});

/// KEYS: one account's upload counter of one day. ARGV: bytes, limit. Counts the bytes unless
/// the day's total would pass the limit; the counter outlives its day by a day.
static SPEND_DAILY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return 0
end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return 1
",
    )
});

/// KEYS: an upload counter. ARGV: bytes to give back (never below zero).
static REFUND_DAILY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = used - tonumber(ARGV[1])
if left < 0 then left = 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[1], left, 'KEEPTTL')
end
return left
",
    )
});

/// KEYS: epoch. Returns the epoch's age in ms (creating it if missing).
static EPOCH_AGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{EPOCH_LUA}\nreturn now - created\n")));

/// KEYS: dead letters, counter. ARGV: json. Returns the new id.
static PUSH_DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], string.format('%.0f', id), ARGV[1])
return id
",
    )
});

/// The fleet's store over one Redis server, in one namespace. Cheap to clone (one multiplexed,
/// auto-reconnecting connection). A failed command is not retried here: callers retry.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    ns: Arc<str>,
    /// The server without userinfo, for messages.
    server: Arc<str>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.server)
            .field("namespace", &self.ns)
            .finish_non_exhaustive()
    }
}

/// The server a URL names, without userinfo or query: `redis://host:port`.
fn server_name(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        format!("{scheme}://{path}")
    } else {
        format!("{scheme}://{host}")
    }
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(MAX_TTL_MS)
        .clamp(1, MAX_TTL_MS)
}

/// The hash field (and sorted set member) of one source message of a copy entry.
fn source_field(src_folder: &str, src_uidvalidity: u32, src_uid: u32) -> String {
    format!("{}:{src_uidvalidity}:{src_uid}", keys::segment(src_folder))
}

/// The inverse of [`source_field`]: `(src_folder, src_uidvalidity, src_uid)`.
fn parse_source_field(field: &str) -> Option<(String, u32, u32)> {
    let mut parts = field.rsplitn(3, ':');
    let uid = parts.next()?.parse().ok()?;
    let uidvalidity = parts.next()?.parse().ok()?;
    let seg = parts.next()?;
    let folder = match seg.strip_prefix('~') {
        None => seg.to_owned(),
        Some(hex) => {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            String::from_utf8(bytes).ok()?
        }
    };
    Some((folder, uidvalidity, uid))
}

fn corrupt(what: &str, key: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} in {key}"))
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for
    /// TLS) and uses the keys of `namespace` (1-64 characters of `A-Z a-z 0-9 _ . -`). Creates the
    /// epoch if it is missing.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with(url, namespace, ConnectionManagerConfig::new()).await
    }

    async fn connect_with(
        url: &str,
        namespace: &str,
        config: ConnectionManagerConfig,
    ) -> Result<RedisStore, StoreError> {
        let server: Arc<str> = server_name(url).into();
        if !keys::valid_namespace(namespace) {
            return Err(StoreError::Redis {
                op: "connect",
                message: format!(
                    "namespace {namespace:?} is not 1-{} characters of A-Z a-z 0-9 _ . -",
                    keys::MAX_NAMESPACE_LEN
                ),
            });
        }
        // The crate's URL errors never quote the URL.
        let client = redis::Client::open(url).map_err(|e| StoreError::Redis {
            op: "connect",
            message: format!("the Redis URL for {server} is invalid: {e}"),
        })?;
        let config = config
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::Redis {
                op: "connect",
                message: format!(
                    "cannot connect to {server}: {e} (check the Redis URL and that the server is up)"
                ),
            })?;
        let store = RedisStore {
            conn,
            ns: namespace.into(),
            server,
        };
        store.epoch_age().await?;
        Ok(store)
    }

    /// The namespace every key of this store starts with.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    fn fail(&self, op: &'static str) -> impl FnOnce(RedisError) -> StoreError + '_ {
        move |e| {
            let hint = if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                " (is Redis reachable? the command was not retried)"
            } else {
                ""
            };
            StoreError::Redis {
                op,
                message: format!("{e} at {}{hint}", self.server),
            }
        }
    }

    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        cmd.query_async(&mut self.conn.clone())
            .await
            .map_err(self.fail(op))
    }

    pub(crate) async fn exec(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<(), StoreError> {
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(self.fail(op))
    }

    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, StoreError> {
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(*key);
        }
        for arg in args {
            call.arg(*arg);
        }
        call.invoke_async(&mut self.conn.clone())
            .await
            .map_err(self.fail(op))
    }

    /// How long ago the store's epoch was created (creating it now if it is missing): a young
    /// epoch means the store was just created or flushed, and folder leases wait.
    pub async fn epoch_age(&self) -> Result<Duration, StoreError> {
        let ms: i64 = self
            .invoke("epoch_age", &EPOCH_AGE, &[&keys::epoch(&self.ns)], &[])
            .await?;
        Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// Extends a lease held by `token` to `ttl` from now; false if the token no longer holds it
    /// (expired, released, taken over, or the store was flushed): the holder must stop writing.
    pub async fn renew_held_lease(
        &self,
        name: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let renewed: i64 = self
            .invoke(
                "renew_lease",
                &RENEW,
                &[&keys::epoch(&self.ns), &keys::lease(&self.ns, name)],
                &[&token.to_string(), &ttl_ms(ttl).to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Saves (or replaces) a migration record; `created_ms` orders [`RedisStore::list_migrations`]
    /// and is kept from the first save.
    pub async fn save_migration(
        &self,
        id: &str,
        created_ms: i64,
        json: &str,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys::migration(&self.ns, id))
            .arg(json)
            .ignore()
            .cmd("ZADD")
            .arg(keys::migrations_index(&self.ns))
            .arg("NX")
            .arg(created_ms)
            .arg(id)
            .ignore();
        self.exec("save_migration", &pipe).await
    }

    /// A migration record, if saved.
    pub async fn load_migration(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.query(
            "load_migration",
            redis::cmd("GET").arg(keys::migration(&self.ns, id)),
        )
        .await
    }

    /// Every migration id, oldest first.
    pub async fn list_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.query(
            "list_migrations",
            redis::cmd("ZRANGE")
                .arg(keys::migrations_index(&self.ns))
                .arg(0)
                .arg(-1),
        )
        .await
    }

    /// Deletes a migration: first everything of its pairs (copy entries, watermarks, sealed
    /// accounts), then its summaries, record and index entry, so an interrupted delete can be
    /// repeated with the same pair ids. Stop the pairs' tasks first: a copy recorded meanwhile
    /// would survive. Request claims stay until they expire, so a late retry of the request
    /// does not re-create a deleted migration.
    pub async fn delete_migration(&self, id: &str, pair_ids: &[String]) -> Result<(), StoreError> {
        for pair in pair_ids {
            self.delete_pair(pair).await?;
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("UNLINK")
            .arg(keys::pair_summaries(&self.ns, id))
            .arg(keys::migration(&self.ns, id))
            .ignore()
            .cmd("ZREM")
            .arg(keys::migrations_index(&self.ns))
            .arg(id)
            .ignore();
        self.exec("delete_migration", &pipe).await
    }

    /// Deletes every key of one pair. The pair's key set is emptied a chunk at a time (SPOP), so
    /// memory stays bounded and a repeat after an interruption finishes the job.
    async fn delete_pair(&self, pair: &str) -> Result<(), StoreError> {
        let set = keys::pair_done_keys(&self.ns, pair);
        loop {
            let chunk: Vec<String> = self
                .query("delete_migration", redis::cmd("SPOP").arg(&set).arg(CHUNK))
                .await?;
            if chunk.is_empty() {
                break;
            }
            self.query::<()>("delete_migration", redis::cmd("UNLINK").arg(&chunk))
                .await?;
        }
        self.query::<()>(
            "delete_migration",
            redis::cmd("UNLINK")
                .arg(&set)
                .arg(keys::watermark(&self.ns, pair))
                .arg(keys::account(&self.ns, pair, &Side::Source.to_string()))
                .arg(keys::account(&self.ns, pair, &Side::Target.to_string())),
        )
        .await
    }

    /// Claims a CreateMigration `request_id` for `migration_id` (for [`REQUEST_CLAIM_TTL`]).
    /// `None`: the claim is this migration's (new, or a retry of the same claim); `Some(id)`: the
    /// request already created migration `id`.
    pub async fn claim_request(
        &self,
        request_id: &str,
        migration_id: &str,
    ) -> Result<Option<String>, StoreError> {
        // SET NX GET (Redis 7): one atomic step that also returns the earlier claim.
        let earlier: Option<String> = self
            .query(
                "claim_request",
                redis::cmd("SET")
                    .arg(keys::request(&self.ns, request_id))
                    .arg(migration_id)
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(REQUEST_CLAIM_TTL.as_secs()),
            )
            .await?;
        Ok(earlier.filter(|id| id != migration_id))
    }

    /// The migration a CreateMigration `request_id` created, if its claim is still held.
    pub async fn request_owner(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        self.query(
            "request_owner",
            redis::cmd("GET").arg(keys::request(&self.ns, request_id)),
        )
        .await
    }

    /// Saves (or replaces) one pair's summary in a migration.
    pub async fn save_pair_summary(
        &self,
        migration_id: &str,
        pair_id: &str,
        json: &str,
    ) -> Result<(), StoreError> {
        self.query(
            "save_pair_summary",
            redis::cmd("HSET")
                .arg(keys::pair_summaries(&self.ns, migration_id))
                .arg(pair_id)
                .arg(json),
        )
        .await
    }

    /// Every pair summary of a migration as `(pair id, json)`, by pair id.
    pub async fn pair_summaries(
        &self,
        migration_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let all: BTreeMap<String, String> = self
            .query(
                "pair_summaries",
                redis::cmd("HGETALL").arg(keys::pair_summaries(&self.ns, migration_id)),
            )
            .await?;
        Ok(all.into_iter().collect())
    }

    /// Stores one side's sealed endpoint and credentials (see `crate::seal::seal_account`).
    pub async fn save_account(
        &self,
        pair_id: &str,
        side: Side,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.query(
            "save_account",
            redis::cmd("SET")
                .arg(keys::account(&self.ns, pair_id, &side.to_string()))
                .arg(sealed),
        )
        .await
    }

    /// One side's sealed endpoint and credentials, if stored.
    pub async fn load_account(
        &self,
        pair_id: &str,
        side: Side,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(
            "load_account",
            redis::cmd("GET").arg(keys::account(&self.ns, pair_id, &side.to_string())),
        )
        .await
    }

    /// Drops both sides' sealed credentials of a pair (CompleteMigration).
    pub async fn drop_accounts(&self, pair_id: &str) -> Result<(), StoreError> {
        self.query(
            "drop_accounts",
            redis::cmd("UNLINK")
                .arg(keys::account(&self.ns, pair_id, &Side::Source.to_string()))
                .arg(keys::account(&self.ns, pair_id, &Side::Target.to_string())),
        )
        .await
    }

    /// Keeps a dead letter; returns its id.
    pub async fn push_dead_letter(&self, json: &str) -> Result<u64, StoreError> {
        self.invoke(
            "push_dead_letter",
            &PUSH_DEAD_LETTER,
            &[
                &keys::dead_letters(&self.ns),
                &keys::dead_letter_counter(&self.ns),
            ],
            &[json],
        )
        .await
    }

    /// Every dead letter as `(id, json)`, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let key = keys::dead_letters(&self.ns);
        let all: Vec<(String, String)> = self
            .query("dead_letters", redis::cmd("HGETALL").arg(&key))
            .await?;
        let mut out = all
            .into_iter()
            .map(|(id, json)| {
                id.parse::<u64>()
                    .map(|id| (id, json))
                    .map_err(|_| corrupt("a dead letter id that is not a number", &key))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Removes dead letters by id (unknown ids are ignored).
    pub async fn remove_dead_letters(&self, ids: &[u64]) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK) {
            self.query::<()>(
                "remove_dead_letters",
                redis::cmd("HDEL")
                    .arg(keys::dead_letters(&self.ns))
                    .arg(chunk),
            )
            .await?;
        }
        Ok(())
    }
}

impl Store for RedisStore {
    async fn record_done(
        &self,
        scope: &EntryScope,
        entries: Vec<CopyEntry>,
    ) -> Result<(), StoreError> {
        let (ns, pair) = (&*self.ns, scope.pair.as_str());
        let by_src = keys::done(ns, pair, &scope.dst_folder, scope.dst_uidvalidity);
        let by_dst = keys::done_by_dst(ns, pair, &scope.dst_folder, scope.dst_uidvalidity);
        // Each chunk writes both indexes in one transaction, so they always agree; a later
        // record of the same source message replaces the earlier (ZADD moves its score).
        for chunk in entries.chunks(CHUNK) {
            let mut hset = redis::cmd("HSET");
            let mut zadd = redis::cmd("ZADD");
            hset.arg(&by_src);
            zadd.arg(&by_dst);
            for e in chunk {
                let field = source_field(&e.src_folder, e.src_uidvalidity, e.src_uid);
                hset.arg(&field).arg(e.key.to_hex());
                zadd.arg(e.dst_uid).arg(field);
            }
            let mut pipe = redis::pipe();
            pipe.atomic()
                .add_command(hset)
                .ignore()
                .add_command(zadd)
                .ignore()
                .cmd("SADD")
                .arg(keys::pair_done_keys(ns, pair))
                .arg(&by_src)
                .arg(&by_dst)
                .ignore();
            self.exec("record_done", &pipe).await?;
        }
        Ok(())
    }

    async fn done_for(
        &self,
        scope: &EntryScope,
        src_folder: &str,
        src_uidvalidity: u32,
        src_uids: Vec<u32>,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        let by_dst = keys::done_by_dst(
            &self.ns,
            &scope.pair,
            &scope.dst_folder,
            scope.dst_uidvalidity,
        );
        let mut out = Vec::new();
        for chunk in src_uids.chunks(CHUNK) {
            let mut cmd = redis::cmd("ZMSCORE");
            cmd.arg(&by_dst);
            for uid in chunk {
                cmd.arg(source_field(src_folder, src_uidvalidity, *uid));
            }
            let scores: Vec<Option<f64>> = self.query("done_for", &cmd).await?;
            for (uid, score) in chunk.iter().zip(scores) {
                if let Some(score) = score {
                    out.push((*uid, uid_of(score, &by_dst)?));
                }
            }
        }
        Ok(out)
    }

    async fn done_entries(
        &self,
        scope: &EntryScope,
        from_uid: u32,
    ) -> Result<Vec<CopyEntry>, StoreError> {
        let (ns, pair) = (&*self.ns, scope.pair.as_str());
        let by_src = keys::done(ns, pair, &scope.dst_folder, scope.dst_uidvalidity);
        let by_dst = keys::done_by_dst(ns, pair, &scope.dst_folder, scope.dst_uidvalidity);
        let members: Vec<(String, f64)> = self
            .query(
                "done_entries",
                redis::cmd("ZRANGE")
                    .arg(&by_dst)
                    .arg(from_uid)
                    .arg("+inf")
                    .arg("BYSCORE")
                    .arg("WITHSCORES"),
            )
            .await?;
        let mut out = Vec::with_capacity(members.len());
        for chunk in members.chunks(CHUNK) {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&by_src);
            for (field, _) in chunk {
                cmd.arg(field);
            }
            let found: Vec<Option<String>> = self.query("done_entries", &cmd).await?;
            for ((field, score), key) in chunk.iter().zip(found) {
                let key = key
                    .as_deref()
                    .and_then(MessageKey::from_hex)
                    .ok_or_else(|| corrupt("a copy entry without a valid message key", &by_src))?;
                let (src_folder, src_uidvalidity, src_uid) = parse_source_field(field)
                    .ok_or_else(|| corrupt("a copy entry with an unreadable source", &by_dst))?;
                out.push(CopyEntry {
                    src_folder,
                    src_uidvalidity,
                    src_uid,
                    dst_uid: uid_of(*score, &by_dst)?,
                    key,
                });
            }
        }
        Ok(out)
    }

    async fn forget_done(&self, scope: &EntryScope, dst_uids: Vec<u32>) -> Result<(), StoreError> {
        let (ns, pair) = (&*self.ns, scope.pair.as_str());
        let by_src = keys::done(ns, pair, &scope.dst_folder, scope.dst_uidvalidity);
        let by_dst = keys::done_by_dst(ns, pair, &scope.dst_folder, scope.dst_uidvalidity);
        for chunk in dst_uids.chunks(CHUNK) {
            let args: Vec<String> = chunk.iter().map(u32::to_string).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _: i64 = self
                .invoke("forget_done", &FORGET_DONE, &[&by_src, &by_dst], &args)
                .await?;
        }
        Ok(())
    }

    async fn watermark(
        &self,
        pair: &str,
        dst_folder: &str,
    ) -> Result<Option<FolderWatermark>, StoreError> {
        let key = keys::watermark(&self.ns, pair);
        let text: Option<String> = self
            .query("watermark", redis::cmd("HGET").arg(&key).arg(dst_folder))
            .await?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("watermark in {key}: {e}")))
        })
        .transpose()
    }

    async fn watermarks(
        &self,
        pair: &str,
    ) -> Result<std::collections::HashMap<String, FolderWatermark>, StoreError> {
        let key = keys::watermark(&self.ns, pair);
        let all: Vec<(String, String)> = self
            .query("watermarks", redis::cmd("HGETALL").arg(&key))
            .await?;
        all.into_iter()
            .map(|(folder, t)| {
                serde_json::from_str(&t)
                    .map(|m| (folder, m))
                    .map_err(|e| StoreError::Corrupt(format!("watermark in {key}: {e}")))
            })
            .collect()
    }

    async fn set_watermark(
        &self,
        pair: &str,
        dst_folder: &str,
        mark: Option<FolderWatermark>,
    ) -> Result<(), StoreError> {
        let key = keys::watermark(&self.ns, pair);
        let cmd = match mark {
            Some(m) => {
                let text =
                    serde_json::to_string(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let mut cmd = redis::cmd("HSET");
                cmd.arg(&key).arg(dst_folder).arg(text);
                cmd
            }
            None => {
                let mut cmd = redis::cmd("HDEL");
                cmd.arg(&key).arg(dst_folder);
                cmd
            }
        };
        self.query("set_watermark", &cmd).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let guarded = if name.starts_with(keys::FOLDER_LEASE_PREFIX) {
            "1"
        } else {
            "0"
        };
        let token: i64 = self
            .invoke(
                "acquire_lease",
                &ACQUIRE,
                &[
                    &keys::epoch(&self.ns),
                    &keys::lease(&self.ns, name),
                    &keys::lease_counter(&self.ns),
                ],
                &[holder, &ttl_ms(ttl).to_string(), guarded],
            )
            .await?;
        if token == -1 {
            tracing::debug!(
                lease = name,
                "folder lease refused: the store's epoch is younger than the lease TTL"
            );
        }
        Ok(u64::try_from(token).ok().filter(|t| *t > 0))
    }

    async fn renew_lease(&self, name: &str, token: u64, ttl: Duration) -> Result<bool, StoreError> {
        self.renew_held_lease(name, token, ttl).await
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<(), StoreError> {
        let _deleted: i64 = self
            .invoke(
                "release_lease",
                &RELEASE,
                &[&keys::lease(&self.ns, name)],
                &[&token.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn acquire_slots(
        &self,
        sessions: &[SlotSets],
        _holder: &str,
        ttl: Duration,
        waiter: &SlotWaiter,
    ) -> Result<SlotTry, StoreError> {
        // A dead holder's slots simply expire (it stops renewing), so the holder is not stored.
        self.slots_acquire(&SlotPlan::new(sessions), ttl, waiter)
            .await
    }

    async fn renew_slots(
        &self,
        sets: &[String],
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.slots_renew(sets, token, ttl).await
    }

    async fn release_slots(&self, sets: &[String], token: u64) -> Result<(), StoreError> {
        self.slots_release(sets, token).await
    }

    async fn leave_slot_queue(&self, sets: &[String], waiter: &str) -> Result<(), StoreError> {
        self.slots_leave(sets, waiter).await
    }

    async fn wanted_slots(&self, sets: &[String], except: &str) -> Result<Vec<String>, StoreError> {
        self.slots_wanted(sets, except).await
    }

    async fn epoch_wait(&self, ttl: Duration) -> Result<Option<Duration>, StoreError> {
        let age = self.epoch_age().await?;
        Ok(ttl.checked_sub(age).filter(|d| !d.is_zero()))
    }

    async fn spend_daily(
        &self,
        account: &str,
        day: &str,
        bytes: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let key = keys::daily_upload(&self.ns, account, day);
        let (bytes, limit) = (bytes.to_string(), limit.to_string());
        let took: i64 = self
            .invoke("spend_daily", &SPEND_DAILY, &[&key], &[&bytes, &limit])
            .await?;
        Ok(took == 1)
    }

    async fn refund_daily(&self, account: &str, day: &str, bytes: u64) -> Result<(), StoreError> {
        let key = keys::daily_upload(&self.ns, account, day);
        let _: i64 = self
            .invoke(
                "refund_daily",
                &REFUND_DAILY,
                &[&key],
                &[&bytes.to_string()],
            )
            .await?;
        Ok(())
    }
}

/// A target UID from a sorted set score.
fn uid_of(score: f64, key: &str) -> Result<u32, StoreError> {
    if score.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&score) {
        // Integral and in range: the cast is exact.
        Ok(score as u32)
    } else {
        Err(corrupt("a target UID that is not a UID", key))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::credentials::{Credentials, Secret};
    use crate::seal::{FleetKeys, open_account, seal_account};
    use mailferry_proto::task::{Endpoint, TlsMode};

    fn url() -> String {
        std::env::var("MAILFERRY_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn random_hex(bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        getrandom::fill(&mut buf).expect("random");
        buf.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sync_conn() -> redis::Connection {
        redis::Client::open(url())
            .and_then(|c| c.get_connection())
            .expect("test Redis (MAILFERRY_TEST_REDIS_URL, default redis://127.0.0.1:6379)")
    }

    /// A fresh namespace; its keys are removed when the test ends, passed or failed.
    pub(crate) struct Namespace(pub(crate) String);

    impl Namespace {
        pub(crate) fn new() -> Namespace {
            Namespace(format!("test-{}", random_hex(8)))
        }

        pub(crate) async fn store(&self) -> RedisStore {
            RedisStore::connect(&url(), &self.0).await.expect("connect")
        }

        /// Every key of the namespace (SCAN, never KEYS).
        pub(crate) fn keys(&self) -> Vec<String> {
            let mut conn = sync_conn();
            let mut cursor = 0u64;
            let mut out = Vec::new();
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}:*", self.0))
                    .arg("COUNT")
                    .arg(500)
                    .query(&mut conn)
                    .expect("scan");
                out.extend(batch);
                if next == 0 {
                    out.sort();
                    return out;
                }
                cursor = next;
            }
        }

        /// Deletes every key of the namespace: what a FLUSHALL does to it.
        fn flush(&self) {
            let keys = self.keys();
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query::<()>(&mut sync_conn())
                    .expect("unlink");
            }
        }

        /// Makes the epoch old, as in a store that has run for a while.
        fn age_epoch(&self) {
            redis::cmd("SET")
                .arg(keys::epoch(&self.0))
                .arg(0)
                .query::<()>(&mut sync_conn())
                .expect("set epoch");
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            self.flush();
        }
    }

    fn scope(pair: &str, dst_uidvalidity: u32) -> EntryScope {
        EntryScope {
            pair: pair.into(),
            dst_folder: "Archiv/2019: {x} ü".into(),
            dst_uidvalidity,
        }
    }

    fn entry(src_uid: u32, dst_uid: u32) -> CopyEntry {
        CopyEntry {
            src_folder: "Sent Items".into(),
            src_uidvalidity: 1,
            src_uid,
            dst_uid,
            key: MessageKey([u8::try_from(src_uid).expect("small uid"); 16]),
        }
    }

    fn mark() -> FolderWatermark {
        FolderWatermark {
            dst: (1, 5, 4),
            sources: vec![("INBOX".into(), (9, 5, 4))],
            present: 4,
            excluded: 0,
            options: "x".into(),
            complete: true,
            modseqs: vec![],
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test]
    async fn done_entries_round_trip_and_scope_by_uidvalidity() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let s = scope("p", 7);
        store
            .record_done(&s, vec![entry(1, 10), entry(2, 11)])
            .await
            .expect("record");
        store
            .record_done(&s, vec![])
            .await
            .expect("nothing to record");
        assert_eq!(
            store
                .done_for(&s, "Sent Items", 1, vec![1, 2, 3])
                .await
                .expect("done_for"),
            vec![(1, 10), (2, 11)]
        );
        assert!(
            store
                .done_for(&s, "Sent Items", 2, vec![1])
                .await
                .expect("done_for")
                .is_empty()
        );
        assert!(
            store
                .done_for(&s, "INBOX", 1, vec![1])
                .await
                .expect("done_for")
                .is_empty()
        );
        assert!(
            store
                .done_keys_from(&scope("p", 8), 0)
                .await
                .expect("keys")
                .is_empty()
        );
        assert!(
            store
                .done_keys_from(&scope("q", 7), 0)
                .await
                .expect("keys")
                .is_empty()
        );
        let keys = store.done_keys_from(&s, 11).await.expect("keys");
        assert_eq!(keys, vec![(11, MessageKey([2; 16]))]);
        // A later record of the same source message replaces the earlier one.
        store
            .record_done(&s, vec![entry(1, 12)])
            .await
            .expect("record");
        assert_eq!(
            store.done_keys_from(&s, 0).await.expect("keys"),
            vec![(11, MessageKey([2; 16])), (12, MessageKey([1; 16]))]
        );
        let reconnected = ns.store().await;
        assert_eq!(
            reconnected.done_keys_from(&s, 0).await.expect("keys").len(),
            2
        );
        let many: Vec<CopyEntry> = (0..1200u32)
            .map(|i| CopyEntry {
                src_uid: 1000 + i,
                dst_uid: 5000 + i,
                ..entry(3, 0)
            })
            .collect();
        store.record_done(&s, many).await.expect("record chunks");
        let uids: Vec<u32> = (1000..2200).collect();
        assert_eq!(
            store
                .done_for(&s, "Sent Items", 1, uids)
                .await
                .expect("done_for")
                .len(),
            1200
        );
        assert_eq!(
            store.done_keys_from(&s, 5000).await.expect("keys").len(),
            1200
        );
    }

    #[tokio::test]
    async fn a_lease_excludes_other_holders_until_released() {
        let ns = Namespace::new();
        let store = ns.store().await;
        ns.age_epoch();
        let ttl = Duration::from_secs(60);
        let name = "folder:p:INBOX";
        let t1 = store
            .acquire_lease(name, "a", ttl)
            .await
            .expect("acquire")
            .expect("free");
        assert_eq!(
            store.acquire_lease(name, "b", ttl).await.expect("acquire"),
            None
        );
        let t2 = store
            .acquire_lease(name, "a", ttl)
            .await
            .expect("acquire")
            .expect("same holder");
        assert!(t2 > t1, "renewal issues a newer fencing token");
        store.release_lease(name, t1).await.expect("release");
        assert_eq!(
            store.acquire_lease(name, "b", ttl).await.expect("acquire"),
            None,
            "stale token cannot release"
        );
        store.release_lease(name, t2).await.expect("release");
        let t3 = store
            .acquire_lease(name, "b", ttl)
            .await
            .expect("acquire")
            .expect("released");
        assert!(t3 > t2);
        assert!(
            store
                .acquire_lease("folder:p:Other", "a", ttl)
                .await
                .expect("acquire")
                .is_some(),
            "leases are per name"
        );
    }

    #[tokio::test]
    async fn leases_expire_renew_and_tokens_increase() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let t1 = store
            .acquire_lease("leader", "a", MS(200))
            .await
            .expect("acquire")
            .expect("free");
        assert!(
            store
                .renew_lease("leader", t1, MS(200))
                .await
                .expect("renew")
        );
        assert_eq!(
            store
                .acquire_lease("leader", "b", MS(200))
                .await
                .expect("acquire"),
            None
        );
        tokio::time::sleep(MS(300)).await;
        assert!(
            !store
                .renew_lease("leader", t1, MS(200))
                .await
                .expect("renew"),
            "expired"
        );
        let t2 = store
            .acquire_lease("leader", "b", MS(60_000))
            .await
            .expect("acquire")
            .expect("expired");
        assert!(t2 > t1);
        assert!(
            !store
                .renew_lease("leader", t1, MS(60_000))
                .await
                .expect("renew"),
            "taken over"
        );
        assert!(
            store
                .renew_lease("leader", t2, MS(60_000))
                .await
                .expect("renew")
        );
    }

    #[tokio::test]
    async fn a_daily_upload_budget_is_shared_refunded_and_per_day() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let other = ns.store().await;
        let acct = "u@gmail.com:993";
        assert!(
            store
                .spend_daily(acct, "2026-11-26", 60, 100)
                .await
                .expect("spend")
        );
        // Another worker of the fleet sees the same counter.
        assert!(
            !other
                .spend_daily(acct, "2026-11-26", 50, 100)
                .await
                .expect("spend")
        );
        assert!(
            other
                .spend_daily(acct, "2026-11-26", 40, 100)
                .await
                .expect("spend")
        );
        assert!(
            !store
                .spend_daily(acct, "2026-11-26", 1, 100)
                .await
                .expect("spend")
        );
        store
            .refund_daily(acct, "2026-11-26", 30)
            .await
            .expect("refund");
        assert!(
            store
                .spend_daily(acct, "2026-11-26", 30, 100)
                .await
                .expect("spend")
        );
        // The next day and another account start from zero.
        assert!(
            store
                .spend_daily(acct, "2026-11-27", 100, 100)
                .await
                .expect("spend")
        );
        assert!(
            store
                .spend_daily("v@x:993", "2026-11-26", 100, 100)
                .await
                .expect("spend")
        );
        // A refund never goes below zero, and of a day never spent creates nothing.
        store
            .refund_daily(acct, "2026-11-28", 500)
            .await
            .expect("refund");
        assert!(
            !store
                .spend_daily(acct, "2026-11-28", 101, 100)
                .await
                .expect("spend")
        );
    }

    #[tokio::test]
    async fn watermarks_set_and_clear() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let folder = "Archiv/2019: {x} ü";
        store
            .set_watermark("p", folder, Some(mark()))
            .await
            .expect("set");
        store
            .set_watermark("p", "INBOX", Some(mark()))
            .await
            .expect("set");
        assert_eq!(
            store.watermark("p", folder).await.expect("get"),
            Some(mark())
        );
        assert_eq!(store.watermark("q", folder).await.expect("get"), None);
        let all = store.watermarks("p").await.expect("all");
        assert_eq!(all.len(), 2);
        assert_eq!(all.get(folder), Some(&mark()));
        assert!(store.watermarks("q").await.expect("none").is_empty());
        store.set_watermark("p", folder, None).await.expect("clear");
        assert_eq!(store.watermark("p", folder).await.expect("get"), None);
        assert_eq!(
            store.watermark("p", "INBOX").await.expect("get"),
            Some(mark())
        );
    }

    #[tokio::test]
    async fn a_flushed_store_refuses_folder_leases_for_one_ttl() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let ttl = MS(300);
        let name = "folder:p:INBOX";
        assert!(store.epoch_age().await.expect("age") < ttl);
        assert_eq!(
            store.acquire_lease(name, "a", ttl).await.expect("acquire"),
            None,
            "a new store admits no folder writer for one TTL"
        );
        assert!(
            store
                .acquire_lease("leader", "a", ttl)
                .await
                .expect("acquire")
                .is_some()
        );
        tokio::time::sleep(MS(350)).await;
        let t1 = store
            .acquire_lease(name, "a", ttl)
            .await
            .expect("acquire")
            .expect("epoch aged");

        ns.flush();
        assert_eq!(
            store.acquire_lease(name, "b", ttl).await.expect("acquire"),
            None,
            "the old writer may still be appending"
        );
        assert!(
            store.epoch_age().await.expect("age") < ttl,
            "epoch re-created"
        );
        assert!(
            !store.renew_lease(name, t1, ttl).await.expect("renew"),
            "the old writer stops"
        );
        tokio::time::sleep(MS(350)).await;
        let t2 = store
            .acquire_lease(name, "b", ttl)
            .await
            .expect("acquire")
            .expect("epoch aged");
        assert!(t2 > t1, "fencing tokens keep increasing across a flush");
    }

    #[tokio::test]
    async fn records_round_trip() {
        let ns = Namespace::new();
        let store = ns.store().await;
        store
            .save_migration("m2", 2000, r#"{"n":2}"#)
            .await
            .expect("save");
        store
            .save_migration("m:1", 1000, r#"{"n":1}"#)
            .await
            .expect("save");
        store
            .save_migration("m:1", 3000, r#"{"n":11}"#)
            .await
            .expect("update");
        assert_eq!(store.list_migrations().await.expect("list"), ["m:1", "m2"]);
        assert_eq!(
            store.load_migration("m:1").await.expect("load").as_deref(),
            Some(r#"{"n":11}"#)
        );
        assert_eq!(store.load_migration("m3").await.expect("load"), None);

        assert_eq!(store.claim_request("r1", "m:1").await.expect("claim"), None);
        assert_eq!(store.claim_request("r1", "m:1").await.expect("retry"), None);
        assert_eq!(
            store
                .claim_request("r1", "m9")
                .await
                .expect("dup")
                .as_deref(),
            Some("m:1")
        );

        store
            .save_pair_summary("m2", "p2", "b")
            .await
            .expect("summary");
        store
            .save_pair_summary("m2", "p1", "a")
            .await
            .expect("summary");
        store
            .save_pair_summary("m2", "p2", "c")
            .await
            .expect("replace");
        assert_eq!(
            store.pair_summaries("m2").await.expect("summaries"),
            [
                ("p1".to_owned(), "a".to_owned()),
                ("p2".to_owned(), "c".to_owned())
            ]
        );
        assert!(
            store
                .pair_summaries("m:1")
                .await
                .expect("summaries")
                .is_empty()
        );

        store
            .save_account("p1", Side::Source, b"\x01sealed\xff")
            .await
            .expect("account");
        assert_eq!(
            store
                .load_account("p1", Side::Source)
                .await
                .expect("load")
                .as_deref(),
            Some(&b"\x01sealed\xff"[..])
        );
        assert_eq!(
            store.load_account("p1", Side::Target).await.expect("load"),
            None
        );
        store.drop_accounts("p1").await.expect("drop");
        assert_eq!(
            store.load_account("p1", Side::Source).await.expect("load"),
            None
        );

        let d1 = store.push_dead_letter(r#"{"d":1}"#).await.expect("push");
        let d2 = store.push_dead_letter(r#"{"d":2}"#).await.expect("push");
        assert!(d2 > d1);
        assert_eq!(store.dead_letters().await.expect("list").len(), 2);
        store.remove_dead_letters(&[d1, 999]).await.expect("remove");
        assert_eq!(
            store.dead_letters().await.expect("list"),
            [(d2, r#"{"d":2}"#.to_owned())]
        );
    }

    /// Copy entries, a watermark and accounts for a pair.
    async fn fill_pair(store: &RedisStore, pair: &str) {
        for uidvalidity in [7, 8] {
            store
                .record_done(&scope(pair, uidvalidity), vec![entry(1, 10)])
                .await
                .expect("record");
        }
        store
            .set_watermark(pair, "INBOX", Some(mark()))
            .await
            .expect("mark");
        store
            .save_account(pair, Side::Source, b"s")
            .await
            .expect("account");
        store
            .save_account(pair, Side::Target, b"t")
            .await
            .expect("account");
    }

    #[tokio::test]
    async fn delete_migration_removes_its_pairs_and_nothing_else() {
        let (ns, other_ns) = (Namespace::new(), Namespace::new());
        let (store, other) = (ns.store().await, other_ns.store().await);
        for s in [&store, &other] {
            s.save_migration("m1", 1, "{}").await.expect("save");
            s.save_pair_summary("m1", "p1", "{}")
                .await
                .expect("summary");
            fill_pair(s, "p1").await;
        }
        fill_pair(&store, "p:2").await;
        store.save_migration("m2", 2, "{}").await.expect("save");
        store
            .save_pair_summary("m2", "p3", "{}")
            .await
            .expect("summary");
        fill_pair(&store, "p3").await;
        let other_keys = other_ns.keys();

        store
            .delete_migration("m1", &["p1".into(), "p:2".into()])
            .await
            .expect("delete");
        store
            .delete_migration("m1", &["p1".into(), "p:2".into()])
            .await
            .expect("a repeat is harmless");

        let left = ns.keys();
        let gone = [
            keys::pair_prefix(&ns.0, "p1"),
            keys::pair_prefix(&ns.0, "p:2"),
            keys::migration(&ns.0, "m1"),
        ];
        for key in &left {
            assert!(
                !gone.iter().any(|g| key.starts_with(g.as_str())),
                "{key} survived"
            );
        }
        assert_eq!(store.list_migrations().await.expect("list"), ["m2"]);
        assert_eq!(store.load_migration("m1").await.expect("load"), None);
        assert_eq!(store.watermark("p1", "INBOX").await.expect("mark"), None);
        assert_eq!(
            store
                .load_account("p:2", Side::Target)
                .await
                .expect("account"),
            None
        );
        assert!(
            store
                .done_keys_from(&scope("p1", 7), 0)
                .await
                .expect("keys")
                .is_empty()
        );
        // The other migration's pair and the other namespace are untouched.
        assert_eq!(
            store
                .done_keys_from(&scope("p3", 8), 0)
                .await
                .expect("keys")
                .len(),
            1
        );
        assert_eq!(
            store.watermark("p3", "INBOX").await.expect("mark"),
            Some(mark())
        );
        assert_eq!(
            store.pair_summaries("m2").await.expect("summaries").len(),
            1
        );
        assert_eq!(other_ns.keys(), other_keys);
        assert_eq!(other.list_migrations().await.expect("list"), ["m1"]);
    }

    /// Every byte string stored in the namespace: key names and values of every type.
    fn stored_bytes(ns: &Namespace) -> Vec<Vec<u8>> {
        let mut conn = sync_conn();
        let mut out = Vec::new();
        for key in ns.keys() {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).expect("type");
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&key).query(&mut conn).expect("get")],
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query(&mut conn)
                    .expect("hgetall"),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query(&mut conn)
                    .expect("zrange"),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query(&mut conn)
                    .expect("smembers"),
                other => panic!("{key} has an unexpected type {other}"),
            };
            out.push(key.into_bytes());
            out.extend(values);
        }
        out
    }

    #[tokio::test]
    async fn sealed_accounts_are_not_stored_in_plaintext() {
        let ns = Namespace::new();
        let store = ns.store().await;
        let keys = FleetKeys::parse(&FleetKeys::generate_line().expect("keygen")).expect("keys");
        let password = "pw-Zebra-7731-unique";
        let endpoint = Endpoint {
            host: "imap.example.org".into(),
            port: 993,
            user: "alice".into(),
            tls: TlsMode::Implicit,
            ca_file: None,
            insecure_skip_verify: false,
            auth_mechanism: None,
        };
        let creds = Credentials::Password(Secret::new(password));
        let sealed = seal_account(&keys, "p1", Side::Source, &endpoint, &creds).expect("seal");
        store
            .save_account("p1", Side::Source, &sealed)
            .await
            .expect("save");
        store
            .save_migration("m1", 1, r#"{"pairs":["p1"]}"#)
            .await
            .expect("save");
        fill_pair(&store, "p2").await;

        let stored = stored_bytes(&ns);
        assert!(stored.len() > 5, "the scan saw the records");
        for value in &stored {
            assert!(
                !value
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "a stored value holds the password"
            );
        }
        let loaded = store
            .load_account("p1", Side::Source)
            .await
            .expect("load")
            .expect("stored");
        let (_, opened) = open_account(&keys, "p1", Side::Source, &loaded).expect("open");
        assert!(matches!(opened, Credentials::Password(s) if s.expose() == password));
        assert!(format!("{store:?}").contains(&ns.0));
    }

    #[tokio::test]
    async fn connect_errors_never_show_the_password() {
        // One connection attempt each: the default retries take seconds.
        let once = || ConnectionManagerConfig::new().set_number_of_retries(0);
        let err =
            RedisStore::connect_with("redis://:pw-Secret-991@127.0.0.1:1/0", "test-x", once())
                .await
                .expect_err("nothing listens on port 1");
        let shown = err.to_string();
        assert!(!shown.contains("pw-Secret-991"), "{shown}");
        assert!(shown.contains("redis://127.0.0.1:1"), "{shown}");
        let err = RedisStore::connect(&url(), "a:b")
            .await
            .expect_err("bad namespace");
        assert!(err.to_string().contains("namespace"), "{err}");
        if let Some(rest) = url().strip_prefix("redis://").filter(|r| !r.contains('@')) {
            // The test server has no such password: AUTH fails.
            let wrong = format!("redis://:pw-Secret-991@{rest}");
            let err = RedisStore::connect_with(&wrong, "test-x", once())
                .await
                .expect_err("wrong password");
            assert!(!err.to_string().contains("pw-Secret-991"), "{err}");
        }
    }

    #[test]
    fn server_names_drop_userinfo_and_query() {
        let cases = [
            ("redis://:pw@h:6379/0", "redis://h:6379"),
            (
                "rediss://user:p%40w@h.example:6380",
                "rediss://h.example:6380",
            ),
            ("redis://h", "redis://h"),
            (
                "redis+unix:///run/redis.sock?pass=pw",
                "redis+unix:///run/redis.sock",
            ),
            ("user:pw@h:1", "redis://h:1"),
        ];
        for (url, want) in cases {
            assert_eq!(server_name(url), want, "{url}");
        }
    }
}
