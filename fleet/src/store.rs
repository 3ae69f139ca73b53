//! The store: a cache of what was copied (so a retried batch is cheap), folder watermarks (so a
//! rerun over unchanged folders costs one STATUS each), leases (so two runs never write one
//! target folder at once) and connection slots (so the fleet as a whole keeps a provider's
//! per-account and per-host connection limits).
//!
//! The store is a cache, never the truth: losing it must never cause a duplicate, because a worker
//! can always decide from the target's own contents (DESIGN.md, "Idempotency"). [`SqliteStore`] is
//! the embedded implementation; it holds no credentials.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailferry_proto::MessageKey;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::slots::{SlotPlan, SlotSets, SlotTry, SlotWaiter};
use crate::sqlite_slots;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite database failed.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be read back.
    #[error("state database holds an unreadable value: {0}")]
    Corrupt(String),
    /// A blocking task panicked.
    #[error("state database task failed: {0}")]
    Task(String),
    /// The process is shutting down: the runtime cancelled the call before it ran. Nothing to
    /// report; what it would have stored (a slot given back) expires by itself.
    #[error("state database call cancelled: the process is stopping")]
    ShuttingDown,
    /// A Redis command failed (the message never holds the server URL's password).
    #[error("redis {op}: {message}")]
    Redis {
        /// The store operation that failed.
        op: &'static str,
        /// What happened.
        message: String,
    },
}

/// What a copy entry is keyed by: the pair, the target folder and its UIDVALIDITY.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryScope {
    /// Pair id.
    pub pair: String,
    /// Target folder (raw name).
    pub dst_folder: String,
    /// Target folder UIDVALIDITY.
    pub dst_uidvalidity: u32,
}

/// One recorded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEntry {
    /// Source folder (raw name).
    pub src_folder: String,
    /// Source UIDVALIDITY.
    pub src_uidvalidity: u32,
    /// Source UID.
    pub src_uid: u32,
    /// Target UID.
    pub dst_uid: u32,
    /// The message key the copy was made for.
    pub key: MessageKey,
}

/// What a folder pair looked like when a pass over it ended with nothing failed. A later run that
/// sees the same STATUS on both sides skips the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderWatermark {
    /// Target UIDVALIDITY, UIDNEXT, MESSAGES after the pass.
    pub dst: (u32, u32, u32),
    /// Per source folder (raw name): UIDVALIDITY, UIDNEXT, MESSAGES.
    pub sources: Vec<(String, (u32, u32, u32))>,
    /// Source messages present on the target after the pass (copied + already present).
    pub present: u64,
    /// Source messages excluded by options in that pass.
    pub excluded: u64,
    /// Fingerprint of the options that decide exclusion; a change voids the watermark.
    pub options: String,
    /// Whether the pass over the folder ended with nothing failed: only a complete watermark
    /// lets a later pass skip the folder. An incomplete one still carries `modseqs`.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// Per source folder (raw name): the HIGHESTMODSEQ before the last pass whose flag updates
    /// all succeeded. Source messages with a higher MODSEQ get their copy's flags compared.
    #[serde(default)]
    pub modseqs: Vec<(String, u64)>,
}

fn complete_by_default() -> bool {
    true
}

/// The store's operations. Cheap to clone (a handle), so a background task (the engine's slot
/// renewal) can hold its own.
pub trait Store: Clone + Send + Sync + 'static {
    /// Records completed copies.
    fn record_done(
        &self,
        scope: &EntryScope,
        entries: Vec<CopyEntry>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Completed copies of one source folder's UIDs, as `(src_uid, dst_uid)`.
    fn done_for(
        &self,
        scope: &EntryScope,
        src_folder: &str,
        src_uidvalidity: u32,
        src_uids: Vec<u32>,
    ) -> impl Future<Output = Result<Vec<(u32, u32)>, StoreError>> + Send;

    /// Every recorded copy in the target folder at `dst_uid >= from_uid`, in target UID order.
    fn done_entries(
        &self,
        scope: &EntryScope,
        from_uid: u32,
    ) -> impl Future<Output = Result<Vec<CopyEntry>, StoreError>> + Send;

    /// Keys of every recorded copy in the target folder at `dst_uid >= from_uid`, as `(dst_uid, key)`.
    fn done_keys_from(
        &self,
        scope: &EntryScope,
        from_uid: u32,
    ) -> impl Future<Output = Result<Vec<(u32, MessageKey)>, StoreError>> + Send {
        async move {
            Ok(self
                .done_entries(scope, from_uid)
                .await?
                .into_iter()
                .map(|e| (e.dst_uid, e.key))
                .collect())
        }
    }

    /// Forgets the recorded copies at these target UIDs (they were expunged).
    fn forget_done(
        &self,
        scope: &EntryScope,
        dst_uids: Vec<u32>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The watermark of a target folder, if one was recorded.
    fn watermark(
        &self,
        pair: &str,
        dst_folder: &str,
    ) -> impl Future<Output = Result<Option<FolderWatermark>, StoreError>> + Send;

    /// Every watermark of a pair, by target folder (raw name): one read where a pass needs
    /// them all.
    fn watermarks(
        &self,
        pair: &str,
    ) -> impl Future<Output = Result<HashMap<String, FolderWatermark>, StoreError>> + Send;

    /// Records (or with `None`, clears) a target folder's watermark.
    fn set_watermark(
        &self,
        pair: &str,
        dst_folder: &str,
        mark: Option<FolderWatermark>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes the named lease for `ttl` unless another holder has it; returns a fencing token.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Extends a lease held by `token` to `ttl` from now; false when the token no longer holds
    /// it (expired and taken, released, or the store was flushed): the holder must stop writing.
    fn renew_lease(
        &self,
        name: &str,
        token: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a lease back (only if `token` still holds it).
    fn release_lease(
        &self,
        name: &str,
        token: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One try at connection slots for new sessions, all in one call: one slot per session in
    /// each of its sets, for `ttl`, or none at all. Slots whose holder stopped renewing (expired)
    /// or, embedded, whose local process is gone do not count. When the slots cannot be taken
    /// now, `waiter` keeps (or takes) its place in the queue of every set asked for, first come
    /// first served (see `crate::slots` for the rule); ask again within `waiter.ttl` to keep it,
    /// with `waiter.arrival` set from the answer.
    fn acquire_slots(
        &self,
        sessions: &[SlotSets],
        holder: &str,
        ttl: Duration,
        waiter: &SlotWaiter,
    ) -> impl Future<Output = Result<SlotTry, StoreError>> + Send;

    /// Extends the slots `token` holds in `sets` to `ttl` from now; false when any of them is
    /// lost (expired, released, or the store was flushed): its session must be closed.
    fn renew_slots(
        &self,
        sets: &[String],
        token: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back the slots `token` holds in `sets`.
    fn release_slots(
        &self,
        sets: &[String],
        token: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes `waiter` out of the queues of `sets` (it gave up, or got its slots elsewhere).
    fn leave_slot_queue(
        &self,
        sets: &[String],
        waiter: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Which of `sets` have a live waiter whose id does not start with `except` (an engine's
    /// prefix: its own waiters take its idle sessions themselves; an empty `except` counts every
    /// waiter). Whoever holds a slot there by an idle pooled session should close it.
    fn wanted_slots(
        &self,
        sets: &[String],
        except: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// How long folder leases are still refused because the store is new (a fresh or flushed
    /// fleet store grants none within `ttl` of its epoch; DESIGN.md, "Idempotency"); `None` when
    /// they are not (always, embedded).
    fn epoch_wait(
        &self,
        _ttl: Duration,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// Counts `bytes` against a target account's upload budget of one UTC day (`YYYY-MM-DD`),
    /// unless that would exceed `limit`: then nothing is counted and the answer is false.
    fn spend_daily(
        &self,
        account: &str,
        day: &str,
        bytes: u64,
        limit: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back bytes counted by [`Store::spend_daily`] that were not sent after all.
    fn refund_daily(
        &self,
        account: &str,
        day: &str,
        bytes: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The embedded store: one SQLite file in the state directory.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: String,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS daily_upload (
    account TEXT NOT NULL, day TEXT NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (account, day)
);
CREATE TABLE IF NOT EXISTS copy_entry (
    pair TEXT NOT NULL, dst_folder TEXT NOT NULL, dst_uidvalidity INTEGER NOT NULL,
    src_folder TEXT NOT NULL, src_uidvalidity INTEGER NOT NULL, src_uid INTEGER NOT NULL,
    dst_uid INTEGER NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (pair, dst_folder, dst_uidvalidity, src_folder, src_uidvalidity, src_uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS copy_entry_by_dst ON copy_entry (pair, dst_folder, dst_uidvalidity, dst_uid);
CREATE TABLE IF NOT EXISTS watermark (
    pair TEXT NOT NULL, dst_folder TEXT NOT NULL, mark TEXT NOT NULL,
    PRIMARY KEY (pair, dst_folder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL, expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease_token (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL);
";

impl SqliteStore {
    /// Opens (creating if needed) `state.sqlite` in `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("state.sqlite");
        let display = path.display().to_string();
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: display.clone(),
            source,
        })?;
        Self::init(conn, display)
    }

    /// An in-memory store (tests, `--dry-run`).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        Self::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, path: String) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(Duration::from_secs(10))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .and_then(|_| conn.execute_batch(crate::sqlite_slots::SCHEMA))
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("state database lock poisoned".into()))?;
            f(&mut guard).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|e| match e.is_cancelled() {
            true => StoreError::ShuttingDown,
            false => StoreError::Task(e.to_string()),
        })?
    }
}

/// Lease holders of the embedded mode are named `embedded:<host>:<pid>`. A holder on this host
/// whose process is gone (killed) holds nothing any more: its lease is taken over at once
/// instead of blocking the next run until the lease expires. Other holders count as alive.
pub fn embedded_holder() -> String {
    format!("embedded:{}:{}", host_name(), std::process::id())
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn holder_alive(holder: &str) -> bool {
    // `embedded:<host>:<pid>`, optionally followed by `#<task>` (one holder per task run).
    let holder = holder.split_once('#').map_or(holder, |(h, _)| h);
    let Some(rest) = holder.strip_prefix("embedded:") else {
        return true;
    };
    let Some((host, pid)) = rest.rsplit_once(':') else {
        return true;
    };
    if host != host_name() || !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid).exists()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Store for SqliteStore {
    async fn record_done(
        &self,
        scope: &EntryScope,
        entries: Vec<CopyEntry>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let scope = scope.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO copy_entry (pair, dst_folder, dst_uidvalidity, src_folder,
                     src_uidvalidity, src_uid, dst_uid, key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for e in &entries {
                    stmt.execute(params![
                        scope.pair,
                        scope.dst_folder,
                        scope.dst_uidvalidity,
                        e.src_folder,
                        e.src_uidvalidity,
                        e.src_uid,
                        e.dst_uid,
                        &e.key.0[..],
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn done_for(
        &self,
        scope: &EntryScope,
        src_folder: &str,
        src_uidvalidity: u32,
        src_uids: Vec<u32>,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        let scope = scope.clone();
        let src_folder = src_folder.to_owned();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT dst_uid FROM copy_entry WHERE pair = ?1 AND dst_folder = ?2 AND dst_uidvalidity = ?3
                 AND src_folder = ?4 AND src_uidvalidity = ?5 AND src_uid = ?6",
            )?;
            let mut out = Vec::new();
            for uid in src_uids {
                let found: Option<u32> = stmt
                    .query_row(
                        params![scope.pair, scope.dst_folder, scope.dst_uidvalidity, src_folder, src_uidvalidity, uid],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(dst) = found {
                    out.push((uid, dst));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn done_entries(
        &self,
        scope: &EntryScope,
        from_uid: u32,
    ) -> Result<Vec<CopyEntry>, StoreError> {
        type Row = (String, u32, u32, u32, Vec<u8>);
        let scope = scope.clone();
        let rows: Vec<Row> = self
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT src_folder, src_uidvalidity, src_uid, dst_uid, key FROM copy_entry
                     WHERE pair = ?1 AND dst_folder = ?2 AND dst_uidvalidity = ?3 AND dst_uid >= ?4
                     ORDER BY dst_uid",
                )?;
                let rows = stmt.query_map(
                    params![
                        scope.pair,
                        scope.dst_folder,
                        scope.dst_uidvalidity,
                        from_uid
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
                rows.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(src_folder, src_uidvalidity, src_uid, dst_uid, key)| {
                let arr: [u8; 16] = key
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("message key of the wrong length".into()))?;
                Ok(CopyEntry {
                    src_folder,
                    src_uidvalidity,
                    src_uid,
                    dst_uid,
                    key: MessageKey(arr),
                })
            })
            .collect()
    }

    async fn forget_done(&self, scope: &EntryScope, dst_uids: Vec<u32>) -> Result<(), StoreError> {
        if dst_uids.is_empty() {
            return Ok(());
        }
        let scope = scope.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM copy_entry WHERE pair = ?1 AND dst_folder = ?2
                     AND dst_uidvalidity = ?3 AND dst_uid = ?4",
                )?;
                for uid in &dst_uids {
                    stmt.execute(params![
                        scope.pair,
                        scope.dst_folder,
                        scope.dst_uidvalidity,
                        uid
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn watermark(
        &self,
        pair: &str,
        dst_folder: &str,
    ) -> Result<Option<FolderWatermark>, StoreError> {
        let (pair, dst) = (pair.to_owned(), dst_folder.to_owned());
        let text: Option<String> = self
            .with(move |conn| {
                conn.query_row(
                    "SELECT mark FROM watermark WHERE pair = ?1 AND dst_folder = ?2",
                    params![pair, dst],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        match text {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    async fn watermarks(&self, pair: &str) -> Result<HashMap<String, FolderWatermark>, StoreError> {
        let pair = pair.to_owned();
        let rows: Vec<(String, String)> = self
            .with(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT dst_folder, mark FROM watermark WHERE pair = ?1")?;
                let rows = stmt.query_map(params![pair], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(folder, t)| {
                serde_json::from_str(&t)
                    .map(|m| (folder, m))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn set_watermark(
        &self,
        pair: &str,
        dst_folder: &str,
        mark: Option<FolderWatermark>,
    ) -> Result<(), StoreError> {
        let (pair, dst) = (pair.to_owned(), dst_folder.to_owned());
        let text = match mark {
            Some(m) => {
                Some(serde_json::to_string(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            None => None,
        };
        self.with(move |conn| {
            match text {
                Some(t) => conn.execute(
                    "INSERT OR REPLACE INTO watermark (pair, dst_folder, mark) VALUES (?1, ?2, ?3)",
                    params![pair, dst, t],
                )?,
                None => conn.execute(
                    "DELETE FROM watermark WHERE pair = ?1 AND dst_folder = ?2",
                    params![pair, dst],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            let current: Option<(String, i64)> = tx
                .query_row(
                    "SELECT holder, expires_ms FROM lease WHERE name = ?1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((h, expires)) = current
                && h != holder
                && expires > now
                && holder_alive(&h)
            {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO lease_token (id, next) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET next = next + 1",
                [],
            )?;
            let token: i64 = tx.query_row("SELECT next FROM lease_token WHERE id = 1", [], |r| r.get(0))?;
            tx.execute(
                "INSERT OR REPLACE INTO lease (name, holder, token, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, holder, token, now.saturating_add(ttl_ms)],
            )?;
            tx.commit()?;
            Ok(u64::try_from(token).ok())
        })
        .await
    }

    async fn renew_lease(&self, name: &str, token: u64, ttl: Duration) -> Result<bool, StoreError> {
        let name = name.to_owned();
        let token = i64::try_from(token).unwrap_or(-1);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        self.with(move |conn| {
            let n = conn.execute(
                "UPDATE lease SET expires_ms = ?3 WHERE name = ?1 AND token = ?2",
                params![name, token, now_ms().saturating_add(ttl_ms)],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        let token = i64::try_from(token).unwrap_or(-1);
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM lease WHERE name = ?1 AND token = ?2",
                params![name, token],
            )?;
            Ok(())
        })
        .await
    }

    async fn acquire_slots(
        &self,
        sessions: &[SlotSets],
        holder: &str,
        ttl: Duration,
        waiter: &SlotWaiter,
    ) -> Result<SlotTry, StoreError> {
        let plan = SlotPlan::new(sessions);
        let (holder, waiter) = (holder.to_owned(), waiter.clone());
        self.with(move |conn| sqlite_slots::acquire(conn, &plan, &holder, ttl, &waiter))
            .await
    }

    async fn renew_slots(
        &self,
        sets: &[String],
        token: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let sets = sets.to_vec();
        self.with(move |conn| sqlite_slots::renew(conn, &sets, token, ttl))
            .await
    }

    async fn release_slots(&self, sets: &[String], token: u64) -> Result<(), StoreError> {
        let sets = sets.to_vec();
        self.with(move |conn| sqlite_slots::release(conn, &sets, token))
            .await
    }

    async fn leave_slot_queue(&self, sets: &[String], waiter: &str) -> Result<(), StoreError> {
        let (sets, waiter) = (sets.to_vec(), waiter.to_owned());
        self.with(move |conn| sqlite_slots::leave(conn, &sets, &waiter))
            .await
    }

    async fn wanted_slots(&self, sets: &[String], except: &str) -> Result<Vec<String>, StoreError> {
        let (sets, except) = (sets.to_vec(), except.to_owned());
        self.with(move |conn| sqlite_slots::wanted(conn, &sets, &except))
            .await
    }

    async fn spend_daily(
        &self,
        account: &str,
        day: &str,
        bytes: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let (account, day) = (account.to_owned(), day.to_owned());
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let used: i64 = tx
                .query_row(
                    "SELECT bytes FROM daily_upload WHERE account = ?1 AND day = ?2",
                    params![account, day],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            if used.saturating_add(bytes) > limit {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO daily_upload (account, day, bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account, day) DO UPDATE SET bytes = bytes + excluded.bytes",
                params![account, day, bytes],
            )?;
            // Older days are never read again.
            tx.execute(
                "DELETE FROM daily_upload WHERE account = ?1 AND day < ?2",
                params![account, day],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn refund_daily(&self, account: &str, day: &str, bytes: u64) -> Result<(), StoreError> {
        let (account, day) = (account.to_owned(), day.to_owned());
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.with(move |conn| {
            conn.execute(
                "UPDATE daily_upload SET bytes = MAX(0, bytes - ?3) WHERE account = ?1 AND day = ?2",
                params![account, day, bytes],
            )
            .map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> EntryScope {
        EntryScope {
            pair: "p".into(),
            dst_folder: "INBOX".into(),
            dst_uidvalidity: 7,
        }
    }

    #[tokio::test]
    async fn done_entries_round_trip_and_scope_by_uidvalidity() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let e = |src_uid, dst_uid| CopyEntry {
            src_folder: "INBOX".into(),
            src_uidvalidity: 1,
            src_uid,
            dst_uid,
            key: MessageKey([src_uid as u8; 16]),
        };
        store
            .record_done(&scope(), vec![e(1, 10), e(2, 11)])
            .await
            .unwrap();
        assert_eq!(
            store
                .done_for(&scope(), "INBOX", 1, vec![1, 2, 3])
                .await
                .unwrap(),
            vec![(1, 10), (2, 11)]
        );
        assert!(
            store
                .done_for(&scope(), "INBOX", 2, vec![1])
                .await
                .unwrap()
                .is_empty()
        );
        let other = EntryScope {
            dst_uidvalidity: 8,
            ..scope()
        };
        assert!(store.done_keys_from(&other, 0).await.unwrap().is_empty());
        let keys = store.done_keys_from(&scope(), 11).await.unwrap();
        assert_eq!(keys, vec![(11, MessageKey([2; 16]))]);
        drop(store);
        let reopened = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(reopened.done_keys_from(&scope(), 0).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_lease_excludes_other_holders_until_released() {
        let store = SqliteStore::in_memory().unwrap();
        let ttl = Duration::from_secs(60);
        let t1 = store
            .acquire_lease("folder:p:INBOX", "a", ttl)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .acquire_lease("folder:p:INBOX", "b", ttl)
                .await
                .unwrap(),
            None
        );
        let t2 = store
            .acquire_lease("folder:p:INBOX", "a", ttl)
            .await
            .unwrap()
            .unwrap();
        assert!(t2 > t1, "renewal issues a newer fencing token");
        store.release_lease("folder:p:INBOX", t1).await.unwrap();
        assert_eq!(
            store
                .acquire_lease("folder:p:INBOX", "b", ttl)
                .await
                .unwrap(),
            None,
            "stale token cannot release"
        );
        store.release_lease("folder:p:INBOX", t2).await.unwrap();
        assert!(
            store
                .acquire_lease("folder:p:INBOX", "b", ttl)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_lease_of_a_dead_local_process_is_taken_over() {
        let store = SqliteStore::in_memory().unwrap();
        let ttl = Duration::from_secs(600);
        let host = host_name();
        // pid 0 is never a user process: the holder is dead.
        let dead = format!("embedded:{host}:0");
        assert!(
            store
                .acquire_lease("l", &dead, ttl)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .acquire_lease("l", &embedded_holder(), ttl)
                .await
                .unwrap()
                .is_some()
        );
        // A live holder (this process) is respected.
        assert_eq!(
            store
                .acquire_lease("l", "embedded:elsewhere:1", ttl)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_daily_upload_budget_counts_refunds_and_renews_each_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let acct = "u@gmail.com:993";
        assert!(
            store
                .spend_daily(acct, "2026-11-26", 60, 100)
                .await
                .unwrap()
        );
        assert!(
            !store
                .spend_daily(acct, "2026-11-26", 50, 100)
                .await
                .unwrap()
        );
        store.refund_daily(acct, "2026-11-26", 20).await.unwrap();
        assert!(
            store
                .spend_daily(acct, "2026-11-26", 50, 100)
                .await
                .unwrap()
        );
        // The count survives a restart of the process (the state directory).
        let reopened = SqliteStore::open(dir.path()).unwrap();
        assert!(
            !reopened
                .spend_daily(acct, "2026-11-26", 11, 100)
                .await
                .unwrap()
        );
        assert!(
            reopened
                .spend_daily(acct, "2026-11-27", 100, 100)
                .await
                .unwrap()
        );
        assert!(
            reopened
                .spend_daily("v@x:993", "2026-11-27", 100, 100)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn watermarks_set_and_clear() {
        let store = SqliteStore::in_memory().unwrap();
        let mark = FolderWatermark {
            dst: (1, 5, 4),
            sources: vec![("INBOX".into(), (9, 5, 4))],
            present: 4,
            excluded: 0,
            options: "x".into(),
            complete: true,
            modseqs: vec![],
        };
        store
            .set_watermark("p", "INBOX", Some(mark.clone()))
            .await
            .unwrap();
        assert_eq!(store.watermark("p", "INBOX").await.unwrap(), Some(mark));
        let all = store.watermarks("p").await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(store.watermarks("q").await.unwrap().is_empty());
        store.set_watermark("p", "INBOX", None).await.unwrap();
        assert_eq!(store.watermark("p", "INBOX").await.unwrap(), None);
    }
}
