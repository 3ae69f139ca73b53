//! The fleet's control plane: migrations kept as records in the store, each pass run by the
//! driver (`migration::run`) over the fleet queue, summaries saved per pair as pairs finish.
//!
//! What makes a coordinator restartable: the record says which pass runs and over which pairs,
//! and a pair's summary is saved, tagged with its pass, the moment the pair finishes. A
//! coordinator that starts finds the passes that were running and runs again the pairs that have
//! no summary of that pass yet; the re-run plans from the target's contents, so what the killed
//! coordinator had copied is found, not copied twice.
//!
//! This module never opens IMAP and never sees a secret in the clear except to seal it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use mailferry_fleet::Credentials;
use mailferry_fleet::amqp::AmqpQueue;
use mailferry_fleet::redis_store::RedisStore;
use mailferry_fleet::seal::{FleetKeys, seal_account};
use mailferry_proto::report::{CheckReport, PairStatus, PairSummary};
use mailferry_proto::task::{Endpoint, OutcomeBody, Side, TaskFailure, Waiting};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::dispatch::Router;
use crate::migration::{PairSpec, Progress, RunOptions};
use crate::options::OptionsSpec;
use crate::record::{MigrationRecord, MigrationState, PairRecord, StoredSummary};
use crate::schedule::{Clock, Scheduler};

mod probe;

/// Why a control-plane request failed; maps one to one onto gRPC status codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// No such migration, pair or dead letter.
    #[error("{0}")]
    NotFound(String),
    /// A field of the request is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `pairs[2].source.host`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Well-formed but not possible now (a login refused, a migration already complete).
    #[error("{0}")]
    Precondition(String),
    /// A probe or check got no answer in time (no worker running?).
    #[error("{0}")]
    Deadline(String),
    /// The store or the broker is unreachable.
    #[error("{0}")]
    Unavailable(String),
}

/// Tunables of the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// How long a probe or check waits for a worker's answer.
    pub probe_timeout: Duration,
    /// Task attempts before a failure is final.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            probe_timeout: Duration::from_secs(120),
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
        }
    }
}

/// A new mailbox pair, with its secrets (sealed before they are stored).
#[derive(Debug, Clone)]
pub struct NewPair {
    /// Source endpoint.
    pub source: Endpoint,
    /// Source login.
    pub source_credentials: Credentials,
    /// Target endpoint.
    pub target: Endpoint,
    /// Target login.
    pub target_credentials: Credentials,
}

/// A migration to create.
#[derive(Debug, Clone)]
pub struct NewMigration {
    /// The client's idempotency key.
    pub request_id: String,
    /// A name for people.
    pub name: String,
    /// The pairs.
    pub pairs: Vec<NewPair>,
    /// The options (already validated by the caller; validated again here).
    pub options: OptionsSpec,
    /// Do not log into every mailbox before creating.
    pub skip_probe: bool,
}

/// Running totals of a pair in the pass now running.
#[derive(Debug, Clone, Default)]
struct LivePair {
    planned: u64,
    copied: u64,
    bytes: u64,
}

/// A migration as the API shows it.
#[derive(Debug, Clone)]
pub struct MigrationView {
    /// The record.
    pub record: MigrationRecord,
    /// Totals over the pairs (the running pass's figures for pairs that run now).
    pub totals: Totals,
    /// Pairs finished in the current or last pass.
    pub pairs_finished: u32,
    /// Pairs whose last summary is not `completed`.
    pub pairs_failed: u32,
    /// What the running pass waits for now, for people (see [`FRESH_STORE_README`]).
    pub waiting: Option<String>,
}

/// Where the README explains the wait of a fresh or flushed fleet store.
pub const FRESH_STORE_README: &str = "see README, \"A fresh or flushed Redis\"";

/// Totals of a migration or a pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Folders.
    pub folders: u64,
    /// Folders created.
    pub folders_created: u64,
    /// Messages planned.
    pub planned: u64,
    /// Messages copied.
    pub messages_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Messages already on the target.
    pub already_present: u64,
    /// Messages excluded by options.
    pub excluded: u64,
    /// Messages failed.
    pub failed: u64,
    /// Copies whose flags were updated.
    pub flags_updated: u64,
    /// Copies expunged.
    pub expunged: u64,
    /// Messages waiting for the daily upload budget.
    pub deferred: u64,
}

impl Totals {
    fn of(s: &PairSummary) -> Totals {
        Totals {
            folders: s.folders,
            folders_created: s.folders_created,
            planned: s.planned,
            messages_copied: s.messages_copied,
            bytes_copied: s.bytes_copied,
            already_present: s.already_present,
            excluded: s.excluded,
            failed: s.failed,
            flags_updated: s.flags_updated,
            expunged: s.expunged,
            deferred: s.deferred,
        }
    }

    fn add(&mut self, o: &Totals) {
        self.folders += o.folders;
        self.folders_created += o.folders_created;
        self.planned += o.planned;
        self.messages_copied += o.messages_copied;
        self.bytes_copied += o.bytes_copied;
        self.already_present += o.already_present;
        self.excluded += o.excluded;
        self.failed += o.failed;
        self.flags_updated += o.flags_updated;
        self.expunged += o.expunged;
        self.deferred += o.deferred;
    }
}

/// A pair as the API shows it.
#[derive(Debug, Clone)]
pub struct PairView {
    /// The pair.
    pub record: PairRecord,
    /// `None` while it runs in the current pass (or has never finished a pass).
    pub summary: Option<StoredSummary>,
    /// Its figures (live while it runs).
    pub totals: Totals,
    /// Whether it runs now.
    pub running: bool,
}

/// One failure as the API lists it.
#[derive(Debug, Clone)]
pub struct FailureView {
    /// Pair id.
    pub pair_id: String,
    /// Source account.
    pub source: String,
    /// Target account.
    pub target: String,
    /// Folder (empty for a failure of the whole pair).
    pub folder: String,
    /// Source UID (0 for a folder or pair failure).
    pub uid: u32,
    /// Subject.
    pub subject: String,
    /// Size.
    pub size: u64,
    /// Kind, snake_case.
    pub kind: String,
    /// What happened.
    pub reason: String,
    /// What to do.
    pub advice: String,
}

/// A dead-lettered task as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The task id.
    pub task_id: String,
    /// Its migration.
    pub migration_id: String,
    /// Its pair.
    pub pair_id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// How many times RabbitMQ dead-lettered it.
    pub deaths: u64,
    /// When the coordinator received it.
    pub at: chrono::DateTime<Utc>,
}

struct Live {
    record: Mutex<MigrationRecord>,
    summaries: Mutex<HashMap<String, StoredSummary>>,
    running: Mutex<HashMap<String, LivePair>>,
    changed: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    runs: AtomicUsize,
    /// Until when folder leases are refused because the fleet's store is new (a fresh or
    /// flushed Redis), as the workers last reported it.
    fresh_store_until: Mutex<Option<std::time::Instant>>,
}

impl Live {
    fn record(&self) -> MigrationRecord {
        match self.record.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut MigrationRecord) -> T) -> T {
        let out = match self.record.lock() {
            Ok(mut r) => f(&mut r),
            Err(p) => f(&mut p.into_inner()),
        };
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// What the pass waits for now: the young store's wait while it lasts.
    fn waiting(&self) -> Option<String> {
        let until = (*self.fresh_store_until.lock().ok()?)?;
        let left = until.checked_duration_since(std::time::Instant::now())?;
        Some(format!(
            "waiting {} s before the first copy: a fresh or flushed Redis ({FRESH_STORE_README})",
            left.as_secs_f64().ceil()
        ))
    }

    fn view(&self) -> MigrationView {
        let record = self.record();
        let summaries = self.summaries.lock().map(|s| s.clone()).unwrap_or_default();
        let running = self.running.lock().map(|r| r.clone()).unwrap_or_default();
        let mut totals = Totals::default();
        let (mut finished, mut failed) = (0, 0);
        for p in &record.pairs {
            if let Some(l) = running.get(&p.id) {
                totals.add(&Totals {
                    planned: l.planned,
                    messages_copied: l.copied,
                    bytes_copied: l.bytes,
                    ..Totals::default()
                });
                continue;
            }
            if let Some(s) = summaries.get(&p.id) {
                totals.add(&Totals::of(&s.summary));
                let in_pass = record.pass_pairs.contains(&p.id);
                if !in_pass || s.pass == record.passes {
                    finished += 1;
                }
                if s.summary.status != PairStatus::Completed {
                    failed += 1;
                }
            }
        }
        MigrationView {
            record,
            totals,
            pairs_finished: finished,
            pairs_failed: failed,
            waiting: self.waiting(),
        }
    }
}

/// The control plane.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: RedisStore,
    queue: Arc<AmqpQueue>,
    keys: Arc<FleetKeys>,
    router: Arc<Router>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Serialises state changes, so two requests never start two passes of one migration.
    transitions: tokio::sync::Mutex<()>,
    config: ControlConfig,
    /// Next automatic sync of every idle migration that syncs.
    scheduler: Scheduler,
    clock: Clock,
}

/// The state-lost failure of tasks whose pair the store no longer knows.
fn unavailable(e: impl std::fmt::Display) -> ControlError {
    ControlError::Unavailable(format!("the fleet's store is unavailable: {e}"))
}

impl Control {
    /// Loads every migration from the store, resumes the passes that were running, and starts
    /// routing outcomes.
    pub async fn start(
        store: RedisStore,
        queue: Arc<AmqpQueue>,
        keys: Arc<FleetKeys>,
        config: ControlConfig,
    ) -> Result<Control, ControlError> {
        let control = Control {
            inner: Arc::new(Inner {
                store,
                queue,
                keys,
                router: Arc::new(Router::default()),
                live: Mutex::new(HashMap::new()),
                transitions: tokio::sync::Mutex::new(()),
                config,
                scheduler: Scheduler::default(),
                clock: Clock::default(),
            }),
        };
        control.spawn_dispatcher();
        let ids = control
            .inner
            .store
            .list_migrations()
            .await
            .map_err(unavailable)?;
        for id in ids {
            let Some(live) = control.load(&id).await? else {
                continue;
            };
            let rec = live.record();
            if rec.state == MigrationState::Idle {
                // A record from before sync schedules: its next sync is one interval after
                // its last pass.
                let due = rec.next_sync_at.or_else(|| {
                    let every = rec.options.validate("options").ok()?.sync_interval?;
                    Some(rec.pass_finished_at? + chrono::Duration::from_std(every).ok()?)
                });
                control.inner.scheduler.set(&id, due);
            }
            if !rec.state.is_active() {
                continue;
            }
            if rec.after_pass.is_some() {
                // A pause or cancel was asked and the pass had stopped: finish the transition.
                control.inner.clone().pass_ended(live).await;
                continue;
            }
            let done: Vec<String> = live
                .summaries
                .lock()
                .map(|s| {
                    s.iter()
                        .filter(|(_, v)| v.pass == rec.passes)
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            let todo: Vec<String> = rec
                .pass_pairs
                .iter()
                .filter(|p| !done.contains(p))
                .cloned()
                .collect();
            tracing::info!(migration = %id, pairs = todo.len(), pass = rec.passes, "resuming pass");
            if todo.is_empty() {
                control.inner.clone().pass_ended(live).await;
            } else {
                control.inner.clone().spawn_run(live, todo);
            }
        }
        control.spawn_scheduler();
        Ok(control)
    }

    /// Starts each migration's automatic sync when it is due.
    fn spawn_scheduler(&self) {
        let control = self.clone();
        tokio::spawn(async move {
            let inner = control.inner.clone();
            inner
                .scheduler
                .run(inner.clock, |id| {
                    let control = control.clone();
                    async move {
                        match control.sync_due(&id).await {
                            Ok(()) => tracing::info!(migration = %id, "scheduled sync started"),
                            Err(e) => {
                                tracing::warn!(migration = %id, "scheduled sync not started: {e}")
                            }
                        }
                    }
                })
                .await;
        });
    }

    /// How late the most overdue automatic sync is (zero when none is).
    pub fn sync_lag(&self) -> Duration {
        self.inner.scheduler.lag(self.inner.clock.now())
    }

    /// Starts a migration's automatic sync if it is still idle (a pass started meanwhile, a
    /// pause or a completion takes precedence).
    async fn sync_due(&self, id: &str) -> Result<(), ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        if rec.state != MigrationState::Idle {
            return Ok(());
        }
        let all = rec.pairs.iter().map(|p| p.id.clone()).collect();
        self.inner
            .clone()
            .start_pass(live.clone(), all, MigrationState::Running)
            .await
    }

    fn spawn_dispatcher(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(incoming) = inner.queue.next_incoming().await {
                match incoming {
                    mailferry_fleet::amqp::Incoming::Outcome(o) => {
                        if !inner.router.route(o) {
                            tracing::debug!("outcome of a run that has ended; dropped");
                        }
                    }
                    mailferry_fleet::amqp::Incoming::Dead {
                        task,
                        kind,
                        reason,
                        deaths,
                        ..
                    } => {
                        let Some(task) = task else {
                            tracing::warn!(%reason, "an unreadable message was dead-lettered");
                            continue;
                        };
                        let rec = DeadLetterRecord {
                            task_id: task.task_id.clone(),
                            migration_id: task.migration_id.clone(),
                            pair_id: task.pair_id.clone(),
                            reason: reason.clone(),
                            deaths,
                            at: Utc::now(),
                        };
                        tracing::warn!(task = %task.task_id, %reason, "task dead-lettered");
                        match serde_json::to_string(&rec) {
                            Ok(json) => {
                                if let Err(e) = inner.store.push_dead_letter(&json).await {
                                    tracing::warn!("dead letter not recorded: {e}");
                                }
                            }
                            Err(e) => tracing::warn!("dead letter not recorded: {e}"),
                        }
                        // The chain waiting for this task moves on with a failure.
                        inner.router.route(mailferry_proto::task::OutcomeEnvelope {
                            task_id: task.task_id,
                            migration_id: task.migration_id,
                            pair_id: task.pair_id,
                            attempt: task.attempt,
                            finished_at: Utc::now(),
                            body: OutcomeBody::Failed(TaskFailure {
                                kind,
                                side: None,
                                message: reason,
                                retry_after_ms: None,
                                login: false,
                                waiting: None,
                            }),
                        });
                    }
                }
            }
            tracing::warn!("the outcome stream ended");
        });
    }

    async fn load(&self, id: &str) -> Result<Option<Arc<Live>>, ControlError> {
        if let Some(l) = self.inner.live.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(Some(l));
        }
        let Some(json) = self
            .inner
            .store
            .load_migration(id)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let record: MigrationRecord = serde_json::from_str(&json).map_err(|e| {
            ControlError::Unavailable(format!("migration {id}: unreadable record: {e}"))
        })?;
        let mut summaries = HashMap::new();
        for (pair, json) in self
            .inner
            .store
            .pair_summaries(id)
            .await
            .map_err(unavailable)?
        {
            if let Ok(s) = serde_json::from_str::<StoredSummary>(&json) {
                summaries.insert(pair, s);
            }
        }
        let live = Arc::new(Live {
            record: Mutex::new(record),
            summaries: Mutex::new(summaries),
            running: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            stop: watch::channel(false).0,
            runs: AtomicUsize::new(0),
            fresh_store_until: Mutex::new(None),
        });
        let mut map = self
            .inner
            .live
            .lock()
            .map_err(|_| ControlError::Unavailable("control state poisoned".into()))?;
        Ok(Some(map.entry(id.to_owned()).or_insert(live).clone()))
    }

    async fn live(&self, id: &str) -> Result<Arc<Live>, ControlError> {
        let live = self
            .load(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("no migration {id:?}")))?;
        // The store is the truth: a migration it lost (Redis flushed) is gone, whatever this
        // process still remembers.
        if self.inner.forget_if_lost(id, &live).await? {
            return Err(ControlError::NotFound(format!(
                "no migration {id:?} (the fleet's store no longer holds it)"
            )));
        }
        Ok(live)
    }

    /// Creates a migration (or returns the one its request id created) and starts its first
    /// pass.
    pub async fn create(&self, req: NewMigration) -> Result<MigrationView, ControlError> {
        if let Some(existing) = self
            .inner
            .store
            .request_owner(&req.request_id)
            .await
            .map_err(unavailable)?
        {
            return self
                .get(&existing)
                .await
                .map_err(|e| used_request(e, &req.request_id, &existing));
        }
        req.options
            .validate("options")
            .map_err(|mut e| invalid(e.remove(0)))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pairs = self.store_pairs(&id, 0, &req.pairs).await?;
        if !req.skip_probe
            && let Err(e) = self.probe(&pairs, 0).await
        {
            self.drop_accounts(&pairs).await;
            return Err(e);
        }
        if let Some(other) = self
            .inner
            .store
            .claim_request(&req.request_id, &id)
            .await
            .map_err(unavailable)?
        {
            // Another request with this id won the race: it is the migration.
            self.drop_accounts(&pairs).await;
            return self
                .get(&other)
                .await
                .map_err(|e| used_request(e, &req.request_id, &other));
        }
        let now = Utc::now();
        let record = MigrationRecord {
            id: id.clone(),
            name: req.name,
            request_id: req.request_id,
            created_at: now,
            state: MigrationState::Idle,
            options: req.options,
            pairs,
            passes: 0,
            pass_pairs: Vec::new(),
            pass_started_at: None,
            pass_finished_at: None,
            after_pass: None,
            next_sync_at: None,
        };
        let json = serde_json::to_string(&record)
            .map_err(|e| ControlError::Unavailable(format!("record: {e}")))?;
        self.inner
            .store
            .save_migration(&id, now.timestamp_millis(), &json)
            .await
            .map_err(unavailable)?;
        let live = self.live(&id).await?;
        let _guard = self.inner.transitions.lock().await;
        let all = live.record().pairs.iter().map(|p| p.id.clone()).collect();
        self.inner
            .clone()
            .start_pass(live.clone(), all, MigrationState::Running)
            .await?;
        Ok(live.view())
    }

    /// Adds pairs to a migration and migrates them at once.
    pub async fn add_pairs(
        &self,
        id: &str,
        pairs: Vec<NewPair>,
        skip_probe: bool,
    ) -> Result<MigrationView, ControlError> {
        let live = self.live(id).await?;
        let first = live.record().pairs.len();
        if live.record().state.is_final() {
            return Err(ControlError::Precondition(format!(
                "migration {id} is {:?}: it takes no more pairs",
                live.record().state
            )));
        }
        let new = self.store_pairs(id, first, &pairs).await?;
        if !skip_probe && let Err(e) = self.probe(&new, 0).await {
            self.drop_accounts(&new).await;
            return Err(e);
        }
        let _guard = self.inner.transitions.lock().await;
        let ids: Vec<String> = new.iter().map(|p| p.id.clone()).collect();
        live.update(|r| r.pairs.extend(new));
        self.inner.save(&live).await?;
        let rec = live.record();
        match rec.state {
            MigrationState::Running | MigrationState::Completing => {
                live.update(|r| r.pass_pairs.extend(ids.iter().cloned()));
                self.inner.save(&live).await?;
                self.inner.clone().spawn_run(live.clone(), ids);
            }
            MigrationState::Idle => {
                self.inner
                    .clone()
                    .start_pass(live.clone(), ids, MigrationState::Running)
                    .await?;
            }
            _ => {}
        }
        Ok(live.view())
    }

    /// Seals and stores the accounts of new pairs; ids continue from `first`.
    async fn store_pairs(
        &self,
        migration_id: &str,
        first: usize,
        pairs: &[NewPair],
    ) -> Result<Vec<PairRecord>, ControlError> {
        let mut out = Vec::with_capacity(pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            let id = format!("{migration_id}.{}", first + i);
            for (side, ep, creds) in [
                (Side::Source, &p.source, &p.source_credentials),
                (Side::Target, &p.target, &p.target_credentials),
            ] {
                let sealed = seal_account(&self.inner.keys, &id, side, ep, creds)
                    .map_err(|e| ControlError::Unavailable(format!("sealing credentials: {e}")))?;
                self.inner
                    .store
                    .save_account(&id, side, &sealed)
                    .await
                    .map_err(unavailable)?;
            }
            out.push(PairRecord {
                id,
                source: p.source.clone(),
                target: p.target.clone(),
            });
        }
        Ok(out)
    }

    async fn drop_accounts(&self, pairs: &[PairRecord]) {
        for p in pairs {
            if let Err(e) = self.inner.store.drop_accounts(&p.id).await {
                tracing::warn!(pair = %p.id, "credentials not dropped: {e}");
            }
        }
    }

    /// Checks pairs without creating anything: one report (or failure) per pair, in order.
    pub async fn check(
        &self,
        pairs: Vec<NewPair>,
        options: &OptionsSpec,
    ) -> Result<Vec<Result<CheckReport, TaskFailure>>, ControlError> {
        let valid = options
            .validate("options")
            .map_err(|mut e| invalid(e.remove(0)))?;
        let tmp = format!("check.{}", uuid::Uuid::new_v4().simple());
        let stored = self.store_pairs(&tmp, 0, &pairs).await?;
        let max_size = valid.plan.max_size;
        let lists = self.list_all(stored.clone(), true, max_size, 16).await;
        let results = stored
            .iter()
            .zip(lists)
            .map(|(p, list)| {
                list.map(|list| {
                    crate::check::report(
                        &p.source.display(),
                        &p.target.display(),
                        &list,
                        &valid.rules,
                        max_size,
                    )
                })
            })
            .collect();
        self.drop_accounts(&stored).await;
        Ok(results)
    }

    /// A migration with its totals.
    pub async fn get(&self, id: &str) -> Result<MigrationView, ControlError> {
        Ok(self.live(id).await?.view())
    }

    /// Migration ids, oldest first.
    pub async fn list_ids(&self) -> Result<Vec<String>, ControlError> {
        self.inner
            .store
            .list_migrations()
            .await
            .map_err(unavailable)
    }

    /// The pairs of a migration.
    pub async fn pairs(&self, id: &str) -> Result<Vec<PairView>, ControlError> {
        let live = self.live(id).await?;
        let rec = live.record();
        let summaries = live.summaries.lock().map(|s| s.clone()).unwrap_or_default();
        let running = live.running.lock().map(|r| r.clone()).unwrap_or_default();
        Ok(rec
            .pairs
            .iter()
            .map(|p| {
                let summary = summaries.get(&p.id).cloned();
                let live_pair = running.get(&p.id);
                let totals = match (live_pair, &summary) {
                    (Some(l), _) => Totals {
                        planned: l.planned,
                        messages_copied: l.copied,
                        bytes_copied: l.bytes,
                        ..Totals::default()
                    },
                    (None, Some(s)) => Totals::of(&s.summary),
                    (None, None) => Totals::default(),
                };
                PairView {
                    record: p.clone(),
                    summary,
                    totals,
                    running: live_pair.is_some(),
                }
            })
            .collect())
    }

    /// The failures of every pair's last summary: pair-level errors first, then folders that
    /// failed as a whole (UID 0), then messages.
    pub async fn failures(&self, id: &str) -> Result<Vec<FailureView>, ControlError> {
        let mut out = Vec::new();
        for p in self.pairs(id).await? {
            let Some(s) = p.summary else { continue };
            let s = s.summary;
            let (source, target) = (s.source.clone(), s.target.clone());
            if let Some(err) = &s.error {
                let kind = match s.status {
                    PairStatus::AuthFailed => mailferry_proto::FailureKind::Auth,
                    PairStatus::ConnectFailed => mailferry_proto::FailureKind::Connect,
                    _ => mailferry_proto::FailureKind::Other,
                };
                out.push(FailureView {
                    pair_id: p.record.id.clone(),
                    source: source.clone(),
                    target: target.clone(),
                    folder: String::new(),
                    uid: 0,
                    subject: String::new(),
                    size: 0,
                    kind: kind.code().to_owned(),
                    reason: err.clone(),
                    advice: kind.advice().to_owned(),
                });
            }
            for f in &s.folder_failures {
                out.push(FailureView {
                    pair_id: p.record.id.clone(),
                    source: source.clone(),
                    target: target.clone(),
                    folder: f.folder.clone(),
                    uid: 0,
                    subject: String::new(),
                    size: 0,
                    kind: f.kind.to_string(),
                    reason: match f.messages {
                        0 => f.reason.clone(),
                        n => format!("{} ({n} message(s) not copied)", f.reason),
                    },
                    advice: f.advice.clone(),
                });
            }
            for f in &s.failures {
                out.push(FailureView {
                    pair_id: p.record.id.clone(),
                    source: source.clone(),
                    target: target.clone(),
                    folder: f.folder.clone(),
                    uid: f.uid,
                    subject: f.subject.clone(),
                    size: f.size,
                    kind: f.kind.code().to_owned(),
                    reason: f.reason.clone(),
                    advice: f.advice.clone(),
                });
            }
        }
        Ok(out)
    }

    /// A receiver that changes whenever the migration's figures or state change.
    pub async fn subscribe(&self, id: &str) -> Result<watch::Receiver<u64>, ControlError> {
        Ok(self.live(id).await?.changed.subscribe())
    }

    /// Starts a pass over the pairs whose last pass did not complete.
    pub async fn retry_failures(&self, id: &str) -> Result<MigrationView, ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        require_idle(&rec, "retry its failures")?;
        let summaries = live.summaries.lock().map(|s| s.clone()).unwrap_or_default();
        let failed: Vec<String> = rec
            .pairs
            .iter()
            .filter(|p| {
                summaries
                    .get(&p.id)
                    .is_none_or(|s| s.summary.status != PairStatus::Completed)
            })
            .map(|p| p.id.clone())
            .collect();
        if failed.is_empty() {
            return Err(ControlError::Precondition(format!(
                "migration {id} has no failed pair to retry"
            )));
        }
        self.inner
            .clone()
            .start_pass(live.clone(), failed, MigrationState::Running)
            .await?;
        Ok(live.view())
    }

    /// Starts a pass over every pair now, unless one runs.
    pub async fn sync_now(&self, id: &str) -> Result<MigrationView, ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        if rec.state.is_active() {
            return Ok(live.view());
        }
        require_idle(&rec, "sync it")?;
        let all = rec.pairs.iter().map(|p| p.id.clone()).collect();
        self.inner
            .clone()
            .start_pass(live.clone(), all, MigrationState::Running)
            .await?;
        Ok(live.view())
    }

    /// Pauses: the batches in hand finish, no new ones start.
    pub async fn pause(&self, id: &str) -> Result<MigrationView, ControlError> {
        self.stop_into(id, MigrationState::Paused).await
    }

    /// Cancels: the batches in hand finish; the credentials are dropped.
    pub async fn cancel(&self, id: &str) -> Result<MigrationView, ControlError> {
        self.stop_into(id, MigrationState::Cancelled).await
    }

    async fn stop_into(&self, id: &str, to: MigrationState) -> Result<MigrationView, ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        if rec.state.is_final() {
            return Err(ControlError::Precondition(format!(
                "migration {id} is already {}",
                state_name(rec.state)
            )));
        }
        if rec.state.is_active() {
            live.update(|r| r.after_pass = Some(to));
            self.inner.save(&live).await?;
            live.stop.send_replace(true);
        } else if rec.state != to {
            live.update(|r| {
                r.state = to;
                r.next_sync_at = None;
            });
            self.inner.scheduler.set(id, None);
            if to == MigrationState::Cancelled {
                self.drop_accounts(&rec.pairs).await;
            }
            self.inner.save(&live).await?;
        }
        Ok(live.view())
    }

    /// Resumes a paused migration with a new pass.
    pub async fn resume(&self, id: &str) -> Result<MigrationView, ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        if rec.state != MigrationState::Paused {
            return Err(ControlError::Precondition(format!(
                "migration {id} is {}, not paused",
                state_name(rec.state)
            )));
        }
        let all = rec.pairs.iter().map(|p| p.id.clone()).collect();
        self.inner
            .clone()
            .start_pass(live.clone(), all, MigrationState::Running)
            .await?;
        Ok(live.view())
    }

    /// Runs a final pass, then drops the credentials for good.
    pub async fn complete(&self, id: &str) -> Result<MigrationView, ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        match rec.state {
            MigrationState::Completed | MigrationState::Cancelled => {
                Err(ControlError::Precondition(format!(
                    "migration {id} is already {}",
                    state_name(rec.state)
                )))
            }
            MigrationState::Completing => Ok(live.view()),
            MigrationState::Running => {
                // The running pass stops at its batches in hand; the final pass follows.
                live.update(|r| r.after_pass = Some(MigrationState::Completing));
                self.inner.save(&live).await?;
                live.stop.send_replace(true);
                Ok(live.view())
            }
            MigrationState::Idle | MigrationState::Paused => {
                let all = rec.pairs.iter().map(|p| p.id.clone()).collect();
                self.inner
                    .clone()
                    .start_pass(live.clone(), all, MigrationState::Completing)
                    .await?;
                Ok(live.view())
            }
        }
    }

    /// Forgets a migration that is not running.
    pub async fn delete(&self, id: &str) -> Result<(), ControlError> {
        let live = self.live(id).await?;
        let _guard = self.inner.transitions.lock().await;
        let rec = live.record();
        if rec.state.is_active() || live.runs.load(Ordering::SeqCst) > 0 {
            return Err(ControlError::Precondition(format!(
                "migration {id} is running: pause or cancel it first"
            )));
        }
        let pair_ids: Vec<String> = rec.pairs.iter().map(|p| p.id.clone()).collect();
        self.inner
            .store
            .delete_migration(id, &pair_ids)
            .await
            .map_err(unavailable)?;
        if let Ok(mut map) = self.inner.live.lock() {
            map.remove(id);
        }
        self.inner.scheduler.set(id, None);
        Ok(())
    }

    /// Replaces one side's credentials of a pair.
    pub async fn update_credentials(
        &self,
        id: &str,
        pair_id: &str,
        side: Side,
        endpoint: Option<Endpoint>,
        creds: Credentials,
    ) -> Result<PairView, ControlError> {
        let live = self.live(id).await?;
        let rec = live.record();
        if rec.state.is_final() {
            return Err(ControlError::Precondition(format!(
                "migration {id} is {}: its credentials are gone for good",
                state_name(rec.state)
            )));
        }
        let Some(pair) = rec.pair(pair_id).cloned() else {
            return Err(ControlError::NotFound(format!(
                "migration {id} has no pair {pair_id:?}"
            )));
        };
        let ep = endpoint.unwrap_or_else(|| match side {
            Side::Source => pair.source.clone(),
            Side::Target => pair.target.clone(),
        });
        // The pair's login mechanism stays: credentials it cannot use are refused now, not at
        // the next login.
        if let Some(m) = ep.auth_mechanism
            && let Some(why) = creds.refuses(m)
        {
            return Err(ControlError::Invalid {
                field: "credentials".into(),
                message: format!(
                    "the pair's {side} logs in with {} (auth_mechanism), which {why}",
                    m.name().to_ascii_uppercase()
                ),
            });
        }
        let sealed = seal_account(&self.inner.keys, pair_id, side, &ep, &creds)
            .map_err(|e| ControlError::Unavailable(format!("sealing credentials: {e}")))?;
        self.inner
            .store
            .save_account(pair_id, side, &sealed)
            .await
            .map_err(unavailable)?;
        self.pairs(id)
            .await?
            .into_iter()
            .find(|p| p.record.id == pair_id)
            .ok_or_else(|| ControlError::NotFound(format!("no pair {pair_id:?}")))
    }

    /// Dead letters, oldest first, with their store ids.
    pub async fn dead_letters(&self) -> Result<Vec<(u64, DeadLetterRecord)>, ControlError> {
        Ok(self
            .inner
            .store
            .dead_letters()
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter_map(|(id, json)| Some((id, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// Runs the pairs of dead letters again (a new pass of their idle migrations); returns
    /// (replayed, dropped). Dead letters of running migrations stay listed.
    pub async fn replay_dead_letters(&self, ids: &[u64]) -> Result<(u32, u32), ControlError> {
        let all = self.dead_letters().await?;
        let chosen: Vec<(u64, DeadLetterRecord)> = all
            .into_iter()
            .filter(|(id, _)| ids.is_empty() || ids.contains(id))
            .collect();
        let mut by_migration: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for (id, d) in chosen {
            by_migration
                .entry(d.migration_id.clone())
                .or_default()
                .push((id, d.pair_id));
        }
        let (mut replayed, mut dropped) = (0u32, 0u32);
        let mut remove = Vec::new();
        for (mig, letters) in by_migration {
            let live = match self.load(&mig).await? {
                Some(l) if !l.record().state.is_final() => l,
                _ => {
                    dropped += letters.len() as u32;
                    remove.extend(letters.iter().map(|(id, _)| *id));
                    continue;
                }
            };
            let _guard = self.inner.transitions.lock().await;
            let rec = live.record();
            if rec.state != MigrationState::Idle {
                continue;
            }
            let mut pairs: Vec<String> = letters.iter().map(|(_, p)| p.clone()).collect();
            pairs.sort();
            pairs.dedup();
            pairs.retain(|p| rec.pair(p).is_some());
            replayed += letters.len() as u32;
            remove.extend(letters.iter().map(|(id, _)| *id));
            if !pairs.is_empty() {
                self.inner
                    .clone()
                    .start_pass(live.clone(), pairs, MigrationState::Running)
                    .await?;
            }
        }
        self.inner
            .store
            .remove_dead_letters(&remove)
            .await
            .map_err(unavailable)?;
        Ok((replayed, dropped))
    }
}

/// A request id whose migration is gone cannot create another one.
fn used_request(e: ControlError, request_id: &str, migration: &str) -> ControlError {
    match e {
        ControlError::NotFound(_) => ControlError::Precondition(format!(
            "request_id {request_id:?} already created migration {migration}, which has since been deleted; send a new request_id to create another"
        )),
        other => other,
    }
}

fn require_idle(rec: &MigrationRecord, what: &str) -> Result<(), ControlError> {
    match rec.state {
        MigrationState::Idle => Ok(()),
        s => Err(ControlError::Precondition(format!(
            "migration {} is {}: cannot {what} now",
            rec.id,
            state_name(s)
        ))),
    }
}

/// The state's API name.
pub fn state_name(s: MigrationState) -> &'static str {
    match s {
        MigrationState::Running => "running",
        MigrationState::Idle => "idle",
        MigrationState::Paused => "paused",
        MigrationState::Completing => "completing",
        MigrationState::Completed => "completed",
        MigrationState::Cancelled => "cancelled",
    }
}

fn invalid(e: crate::options::OptionError) -> ControlError {
    ControlError::Invalid {
        field: e.field,
        message: e.message,
    }
}

impl Inner {
    /// True (and the migration forgotten, its runs stopped) when the store no longer holds it.
    async fn forget_if_lost(&self, id: &str, live: &Live) -> Result<bool, ControlError> {
        if self
            .store
            .load_migration(id)
            .await
            .map_err(unavailable)?
            .is_some()
        {
            return Ok(false);
        }
        tracing::warn!(migration = %id, "the store no longer holds this migration (flushed?): forgetting it");
        live.stop.send_replace(true);
        if let Ok(mut map) = self.live.lock() {
            map.remove(id);
        }
        Ok(true)
    }

    async fn save(&self, live: &Live) -> Result<(), ControlError> {
        let rec = live.record();
        // Never write back a record the store lost: that would resurrect a migration whose
        // credentials are gone.
        if self.forget_if_lost(&rec.id, live).await? {
            return Err(ControlError::NotFound(format!(
                "no migration {:?} (the fleet's store no longer holds it)",
                rec.id
            )));
        }
        let json = serde_json::to_string(&rec)
            .map_err(|e| ControlError::Unavailable(format!("record: {e}")))?;
        self.store
            .save_migration(&rec.id, rec.created_at.timestamp_millis(), &json)
            .await
            .map_err(unavailable)
    }

    async fn start_pass(
        self: Arc<Self>,
        live: Arc<Live>,
        pairs: Vec<String>,
        state: MigrationState,
    ) -> Result<(), ControlError> {
        live.stop.send_replace(false);
        live.update(|r| {
            r.passes += 1;
            r.state = state;
            r.pass_pairs = pairs.clone();
            r.pass_started_at = Some(Utc::now());
            r.pass_finished_at = None;
            r.after_pass = None;
            r.next_sync_at = None;
        });
        self.scheduler.set(&live.record().id, None);
        self.save(&live).await?;
        self.spawn_run(live, pairs);
        Ok(())
    }

    fn spawn_run(self: Arc<Self>, live: Arc<Live>, pairs: Vec<String>) {
        live.runs.fetch_add(1, Ordering::SeqCst);
        crate::dispatch::spawn_traced(async move {
            self.run_pairs(&live, pairs).await;
            if live.runs.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.pass_ended(live).await;
            }
        });
    }

    async fn run_pairs(self: &Arc<Self>, live: &Arc<Live>, pair_ids: Vec<String>) {
        let rec = live.record();
        let pass = rec.passes;
        let valid = match rec.options.validate("options") {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(migration = %rec.id, "stored options no longer valid: {e:?}");
                return;
            }
        };
        let run_id = format!(
            "{}.r{pass}.{}",
            rec.id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let view = Arc::new(self.router.open(run_id.clone(), self.queue.clone()));
        let specs: Vec<PairSpec> = pair_ids
            .iter()
            .filter_map(|id| rec.pair(id))
            .map(|p| PairSpec {
                pair_id: p.id.clone(),
                source: p.source.display(),
                target: p.target.display(),
            })
            .collect();
        if let Ok(mut running) = live.running.lock() {
            for s in &specs {
                running.insert(s.pair_id.clone(), LivePair::default());
            }
        }
        live.changed.send_modify(|n| *n += 1);
        let opts = RunOptions {
            rules: valid.rules,
            plan: valid.plan,
            dry_run: valid.dry_run,
            max_attempts: self.config.max_attempts,
            retry_base: self.config.retry_base,
            run_id: Some(run_id),
            sync: valid.sync,
        };
        let progress = LiveProgress {
            inner: self.clone(),
            live: live.clone(),
            migration_id: rec.id.clone(),
            pass,
        };
        let mut stop = live.stop.subscribe();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let summaries = crate::migration::run(
            view,
            &self.store,
            &rec.id,
            specs.clone(),
            &opts,
            &progress,
            shutdown,
        )
        .await;
        for (spec, summary) in specs.iter().zip(summaries) {
            progress.save(&spec.pair_id, summary).await;
        }
    }

    /// The last run of a pass ended: take the state the pass leads to.
    async fn pass_ended(self: Arc<Self>, live: Arc<Live>) {
        let rec = live.record();
        let next = match (rec.after_pass, rec.state) {
            (Some(MigrationState::Completing), _) => {
                let all = rec.pairs.iter().map(|p| p.id.clone()).collect();
                if let Err(e) = self
                    .clone()
                    .start_pass(live.clone(), all, MigrationState::Completing)
                    .await
                {
                    tracing::error!(migration = %rec.id, "final pass not started: {e}");
                }
                return;
            }
            (Some(s), _) => s,
            (None, MigrationState::Completing) => MigrationState::Completed,
            (None, _) => MigrationState::Idle,
        };
        if next.is_final() {
            for p in &rec.pairs {
                if let Err(e) = self.store.drop_accounts(&p.id).await {
                    tracing::warn!(pair = %p.id, "credentials not dropped: {e}");
                }
            }
        }
        // An idle migration syncs again one interval after this pass (unless syncing is off),
        // and mail deferred by a daily upload budget goes on the next UTC day either way.
        let now = self.clock.now();
        let deferred = live.summaries.lock().is_ok_and(|s| {
            s.values()
                .any(|v| v.pass == rec.passes && v.summary.status == PairStatus::Deferred)
        });
        let next_sync = if next == MigrationState::Idle {
            let every = rec
                .options
                .validate("options")
                .ok()
                .and_then(|v| v.sync_interval);
            crate::schedule::next_sync(now, every, deferred)
        } else {
            None
        };
        live.update(|r| {
            r.state = next;
            r.after_pass = None;
            r.pass_finished_at = Some(now);
            r.next_sync_at = next_sync;
        });
        self.scheduler.set(&rec.id, next_sync);
        if let Err(e) = self.save(&live).await {
            tracing::error!(migration = %rec.id, "state not saved: {e}");
        }
        tracing::info!(migration = %rec.id, state = state_name(next), "pass ended");
    }
}

struct LiveProgress {
    inner: Arc<Inner>,
    live: Arc<Live>,
    migration_id: String,
    pass: u32,
}

impl LiveProgress {
    fn with_pair(&self, pair: &str, f: impl FnOnce(&mut LivePair)) {
        if let Ok(mut running) = self.live.running.lock()
            && let Some(p) = running.get_mut(pair)
        {
            f(p);
        }
        self.live.changed.send_modify(|n| *n += 1);
    }

    async fn save(&self, pair: &str, summary: PairSummary) {
        match self
            .inner
            .forget_if_lost(&self.migration_id, &self.live)
            .await
        {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => tracing::warn!(%pair, "summary not saved: {e}"),
        }
        let stored = StoredSummary {
            pass: self.pass,
            summary,
        };
        match serde_json::to_string(&stored) {
            Ok(json) => {
                if let Err(e) = self
                    .inner
                    .store
                    .save_pair_summary(&self.migration_id, pair, &json)
                    .await
                {
                    tracing::warn!(%pair, "summary not saved: {e}");
                }
            }
            Err(e) => tracing::warn!(%pair, "summary not saved: {e}"),
        }
        if let Ok(mut s) = self.live.summaries.lock() {
            s.insert(pair.to_owned(), stored);
        }
        if let Ok(mut running) = self.live.running.lock() {
            running.remove(pair);
        }
        self.live.changed.send_modify(|n| *n += 1);
    }
}

impl Progress for LiveProgress {
    fn planned(&self, pair: &PairSpec, messages: u64, _bytes: u64) {
        self.with_pair(&pair.pair_id, |p| p.planned = messages);
    }

    fn folder_planned(&self, _: &PairSpec, _: &str, _: u64, _: u64) {}

    fn copied(&self, pair: &PairSpec, _folder: &str, messages: u64, bytes: u64) {
        self.with_pair(&pair.pair_id, |p| {
            p.copied += messages;
            p.bytes += bytes;
        });
    }

    fn retrying(&self, pair: &PairSpec, failure: &TaskFailure, delay: Duration) {
        if failure.waiting == Some(Waiting::FreshStore) {
            let until = std::time::Instant::now() + delay;
            if let Ok(mut at) = self.live.fresh_store_until.lock() {
                *at = Some(at.map_or(until, |t| t.max(until)));
            }
            self.live.changed.send_modify(|n| *n += 1);
        }
        tracing::info!(pair = %pair.pair_id, kind = ?failure.kind, delay_ms = delay.as_millis() as u64, "retrying: {}", failure.message);
    }

    fn pair_finished(&self, pair: &PairSpec, summary: &PairSummary) {
        // Saved at once, so a coordinator that restarts does not run this pair again.
        let (inner, live, migration_id, pass) = (
            self.inner.clone(),
            self.live.clone(),
            self.migration_id.clone(),
            self.pass,
        );
        let (pair, summary) = (pair.pair_id.clone(), summary.clone());
        tokio::spawn(async move {
            LiveProgress {
                inner,
                live,
                migration_id,
                pass,
            }
            .save(&pair, summary)
            .await;
        });
    }
}
