//! Driving migrations: tasks out, outcomes in, until every pair has its summary.
//!
//! Per pair: a List task (both accounts), the folder plan, one Inventory task per target folder
//! (skipped where the folder watermark shows nothing changed), the chains planned, one
//! CreateFolders task (parents first), then each chain released one batch at a time, and finally
//! a List task whose STATUS figures become the new watermarks. Tasks that fail with a transient
//! kind are retried with backoff; the outcome of the last attempt is the one that counts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mailferry_fleet::{EntryScope, FolderWatermark, Store, TaskQueue};
use mailferry_proto::ErrorKind;
use mailferry_proto::report::{Warning, WarningCode};
use mailferry_proto::task::{
    CopyBatchTask, CopyResult, CreateFoldersTask, ENVELOPE_VERSION, FolderToPrepare,
    InventoryResult, InventoryTask, ListResult, ListTask, OutcomeBody, OutcomeEnvelope, TaskBody,
    TaskEnvelope, TaskFailure, UpdateTargetTask,
};

use crate::aggregate::PairTally;
use crate::folders::{FolderPlan, FolderRules, PlannedFolder, map_folders};
use crate::plan::{PlanOptions, plan_chain};
use crate::reconcile::{FlagScope, SyncOptions, reconcile};

/// One mailbox pair to migrate.
#[derive(Debug, Clone)]
pub struct PairSpec {
    /// Stable id (the store's entries and watermarks are keyed by it).
    pub pair_id: String,
    /// Source `user@host:port`.
    pub source: String,
    /// Target `user@host:port`.
    pub target: String,
}

/// Options of a migration run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder rules.
    pub rules: FolderRules,
    /// Plan options.
    pub plan: PlanOptions,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// Attempts per task before its failure is final.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, capped at 60 s.
    pub retry_base: Duration,
    /// Prefix of this run's task ids (default: the migration id). The fleet gives every run its
    /// own, so outcomes of an earlier run (or coordinator) are never taken for this run's.
    pub run_id: Option<String>,
    /// What a pass changes on copies already on the target.
    pub sync: SyncOptions,
}

impl RunOptions {
    /// A fingerprint of the options that decide what a pass does to a folder: what it leaves
    /// out, and whether it propagates deletions (turning that on must look at every folder
    /// again, so deletions made meanwhile are not missed). A change voids folder watermarks.
    pub fn fingerprint(&self) -> String {
        format!(
            "{};delete_propagation={}",
            self.plan.fingerprint(),
            self.sync.delete_propagation
        )
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            rules: FolderRules::default(),
            plan: PlanOptions::default(),
            dry_run: false,
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            run_id: None,
            sync: SyncOptions::default(),
        }
    }
}

/// What the driver tells the user interface while it works.
pub trait Progress: Send + Sync {
    /// The plan of a pair is known: messages and bytes to copy.
    fn planned(&self, pair: &PairSpec, messages: u64, bytes: u64);
    /// A target folder's plan is known: messages and bytes to copy into it.
    fn folder_planned(&self, pair: &PairSpec, folder: &str, messages: u64, bytes: u64);
    /// A batch finished: messages and bytes copied in a target folder.
    fn copied(&self, pair: &PairSpec, folder: &str, messages: u64, bytes: u64);
    /// A task will be retried.
    fn retrying(&self, pair: &PairSpec, failure: &TaskFailure, delay: Duration);
    /// A pair has finished its pass; `summary` is final for this run.
    fn pair_finished(&self, _pair: &PairSpec, _summary: &mailferry_proto::report::PairSummary) {}
}

/// A progress sink that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn planned(&self, _: &PairSpec, _: u64, _: u64) {}
    fn folder_planned(&self, _: &PairSpec, _: &str, _: u64, _: u64) {}
    fn copied(&self, _: &PairSpec, _: &str, _: u64, _: u64) {}
    fn retrying(&self, _: &PairSpec, _: &TaskFailure, _: Duration) {}
}

enum Phase {
    Listing,
    Inventorying { pending: usize },
    Creating,
    Copying { open_chains: usize },
    FinalListing,
    Done,
}

struct Chain {
    batches: VecDeque<CopyBatchTask>,
    failed: bool,
    /// Flag updates and expunges, sent when the copies are done.
    update: Option<UpdateTargetTask>,
    /// The update task failed: the flag baseline must not advance.
    update_failed: bool,
}

struct PairRun {
    spec: PairSpec,
    phase: Phase,
    listing: Option<ListResult>,
    folders: FolderPlan,
    chains: HashMap<String, Chain>,
    prepare: Vec<FolderToPrepare>,
    tally: PairTally,
    /// Per target raw name: inventory figures used for the watermark.
    inventories: HashMap<String, InventoryMark>,
    /// Per target raw name: the flag baseline of the previous pass (from its watermark).
    baselines: HashMap<String, HashMap<String, u64>>,
    /// An UpdateTarget task was sent: the first listing no longer describes the target.
    updated: bool,
}

#[derive(Clone)]
struct InventoryMark {
    sources: Vec<(String, (u32, u32, u32))>,
    /// Source HIGHESTMODSEQs of the listing this pass planned from.
    modseqs: Vec<(String, u64)>,
}

/// Runs migrations of `pairs` to completion (or until `shutdown`), returning one summary each.
pub async fn run<Q: TaskQueue, S: Store>(
    queue: Arc<Q>,
    store: &S,
    migration_id: &str,
    pairs: Vec<PairSpec>,
    opts: &RunOptions,
    progress: &dyn Progress,
    shutdown: impl Future<Output = ()>,
) -> Vec<mailferry_proto::report::PairSummary> {
    let mut d = Driver {
        store,
        queue,
        migration_id: migration_id.to_owned(),
        opts: opts.clone(),
        tasks: HashMap::new(),
        next_task: 0,
        stopping: false,
        login_failures: HashMap::new(),
    };
    let mut runs: HashMap<String, PairRun> = HashMap::new();
    let order: Vec<String> = pairs.iter().map(|p| p.pair_id.clone()).collect();
    for spec in pairs {
        let mut run = PairRun {
            tally: PairTally::new(&spec, opts.dry_run),
            spec,
            phase: Phase::Listing,
            listing: None,
            folders: FolderPlan::default(),
            chains: HashMap::new(),
            prepare: Vec::new(),
            inventories: HashMap::new(),
            baselines: HashMap::new(),
            updated: false,
        };
        d.publish(
            &run.spec.pair_id,
            TaskBody::List(ListTask {
                with_sizes: false,
                report_larger_than: None,
                close_sessions: false,
            }),
            0,
        )
        .await;
        run.phase = Phase::Listing;
        runs.insert(run.spec.pair_id.clone(), run);
    }
    tokio::pin!(shutdown);
    while runs.values().any(|r| !matches!(r.phase, Phase::Done)) {
        if d.stopping && d.tasks.is_empty() {
            // Every task in hand has its outcome: nothing more can arrive for this run.
            break;
        }
        // Once asked to stop, nothing new is published, but the outcomes of the tasks in hand
        // still count, so the summary says what is on the target; the stream ends when the
        // workers have finished what they held (the queue closes its outcome side).
        let mut outcome = if d.stopping {
            match d.queue.next_outcome().await {
                Some(o) => o,
                None => break,
            }
        } else {
            tokio::select! {
                _ = &mut shutdown => {
                    d.stopping = true;
                    continue;
                }
                o = d.queue.next_outcome() => match o { Some(o) => o, None => break },
            }
        };
        let Some((pair_id, task)) = d.tasks.remove(&outcome.task_id) else {
            continue;
        };
        let Some(run) = runs.get_mut(&pair_id) else {
            continue;
        };
        if d.stopping && matches!(outcome.body, OutcomeBody::Failed(_)) {
            // Not retried and not counted: the next run plans it again.
            continue;
        }
        let login_given_up = d.login_given_up(&mut outcome);
        if let OutcomeBody::Failed(f) = &outcome.body
            && !login_given_up
            && matches!(f.kind, ErrorKind::Transient | ErrorKind::Throttled)
            && task.attempt + 1 < attempts_for(f, opts.max_attempts)
        {
            // The server's own word on how long to wait wins over our backoff (at least 1 s,
            // at most 30 min).
            let delay = match f.retry_after_ms {
                Some(ms) => Duration::from_millis(ms)
                    .clamp(Duration::from_secs(1), Duration::from_secs(1800)),
                None => d.backoff(task.attempt, f.kind),
            };
            if f.kind == ErrorKind::Throttled {
                run.tally.throttled(delay);
            }
            progress.retrying(&run.spec, f, delay);
            d.retry(task, delay);
            continue;
        }
        d.handle(run, task, outcome, progress).await;
        if matches!(run.phase, Phase::Done) {
            progress.pair_finished(&run.spec, &run.tally.clone().finish());
        }
    }
    for r in runs
        .values_mut()
        .filter(|r| !matches!(r.phase, Phase::Done))
    {
        r.tally.interrupted();
        r.phase = Phase::Done;
    }
    order
        .into_iter()
        .filter_map(|id| runs.remove(&id))
        .map(|r| r.tally.finish())
        .collect()
}

/// Attempts of a login that fails the same way (the same words) every time before it is given
/// up: a server that never answers a login, or answers it with garbage, will not start to after
/// the fifth try, and each try may cost a whole `--timeout`.
pub const LOGIN_ATTEMPTS: u32 = 3;

/// Attempts a failure allows. A failure that says when to come back (a folder lease held by a
/// writer that died, a young store, a server's backoff hint) is waiting, not failing: it gets
/// four times the attempts, so two crashes in a row cannot exhaust a batch's retries.
fn attempts_for(f: &TaskFailure, max_attempts: u32) -> u32 {
    if f.retry_after_ms.is_some() {
        max_attempts.saturating_mul(4)
    } else {
        max_attempts
    }
}

struct Driver<'s, Q: TaskQueue, S: Store> {
    store: &'s S,
    queue: Arc<Q>,
    migration_id: String,
    opts: RunOptions,
    tasks: HashMap<String, (String, TaskEnvelope)>,
    next_task: u64,
    /// Asked to stop: publish nothing more, collect what is in hand.
    stopping: bool,
    /// Per task id: the words of its last login failure and how many times in a row it came.
    login_failures: HashMap<String, (String, u32)>,
}

impl<Q: TaskQueue, S: Store> Driver<'_, Q, S> {
    async fn publish(&mut self, pair_id: &str, body: TaskBody, attempt: u32) {
        if self.stopping {
            return;
        }
        self.next_task += 1;
        let task = TaskEnvelope {
            version: ENVELOPE_VERSION,
            task_id: format!(
                "{}-{}",
                self.opts.run_id.as_deref().unwrap_or(&self.migration_id),
                self.next_task
            ),
            migration_id: self.migration_id.clone(),
            pair_id: pair_id.to_owned(),
            attempt,
            body,
        };
        self.tasks
            .insert(task.task_id.clone(), (pair_id.to_owned(), task.clone()));
        self.queue.publish_task(task).await;
    }

    /// Whether `outcome` is a transient login failure seen [`LOGIN_ATTEMPTS`] times in a row
    /// with the same words: then it is final, and its message says so. Throttling is waiting,
    /// not failing, and never counts.
    fn login_given_up(&mut self, outcome: &mut OutcomeEnvelope) -> bool {
        let OutcomeBody::Failed(f) = &mut outcome.body else {
            self.login_failures.remove(&outcome.task_id);
            return false;
        };
        if !f.login || f.kind != ErrorKind::Transient {
            self.login_failures.remove(&outcome.task_id);
            return false;
        }
        let streak = match self.login_failures.get_mut(&outcome.task_id) {
            Some((words, n)) if *words == f.message => {
                *n += 1;
                *n
            }
            _ => {
                self.login_failures
                    .insert(outcome.task_id.clone(), (f.message.clone(), 1));
                1
            }
        };
        if streak < LOGIN_ATTEMPTS {
            return false;
        }
        self.login_failures.remove(&outcome.task_id);
        f.message = format!(
            "{}; the login failed this way {streak} times in a row, so it was given up",
            f.message
        );
        true
    }

    fn backoff(&self, attempt: u32, kind: ErrorKind) -> Duration {
        let factor: u32 = if kind == ErrorKind::Throttled { 4 } else { 1 };
        self.opts
            .retry_base
            .saturating_mul(factor.saturating_mul(2u32.saturating_pow(attempt)))
            .min(Duration::from_secs(60))
    }

    fn retry(&mut self, mut task: TaskEnvelope, delay: Duration) {
        task.attempt += 1;
        self.tasks
            .insert(task.task_id.clone(), (task.pair_id.clone(), task.clone()));
        let queue = self.queue.clone();
        tokio::spawn(async move {
            queue.publish_task_after(task, delay).await;
        });
    }

    async fn handle(
        &mut self,
        run: &mut PairRun,
        task: TaskEnvelope,
        outcome: OutcomeEnvelope,
        progress: &dyn Progress,
    ) {
        match (outcome.body, &task.body) {
            (OutcomeBody::List(list), _) if matches!(run.phase, Phase::Listing) => {
                self.on_listing(run, *list, progress).await
            }
            (OutcomeBody::List(list), _) => {
                self.record_watermarks(run, &list).await;
                run.phase = Phase::Done;
            }
            (OutcomeBody::Inventory(inv), TaskBody::Inventory(t)) => {
                let inv = *inv;
                // One generation per run in the embedded mode: a rerun plans afresh.
                let plan = plan_chain(&inv, &t.sources, 1, &self.opts.plan);
                run.tally.add_plan(&inv, &plan);
                for w in &inv.warnings {
                    run.tally.note(w.clone());
                }
                let (msgs, bytes) = plan.figures.iter().fold((0u64, 0u64), |a, (_, f)| {
                    (
                        a.0.saturating_add(f.planned),
                        a.1.saturating_add(f.planned_bytes),
                    )
                });
                progress.folder_planned(&run.spec, &inv.target.display_slash(), msgs, bytes);
                let modseqs = inv
                    .sources
                    .iter()
                    .filter_map(|f| {
                        let st = run.listing.as_ref().and_then(|l| {
                            l.source.folders.iter().find(|x| x.raw == f.raw)?.status
                        })?;
                        Some((f.raw.clone(), st.highestmodseq?))
                    })
                    .collect();
                run.inventories.insert(
                    inv.target_raw.clone(),
                    InventoryMark {
                        sources: inv
                            .sources
                            .iter()
                            .map(|f| {
                                (
                                    f.raw.clone(),
                                    (f.uidvalidity, f.uidnext, f.messages.len() as u32),
                                )
                            })
                            .collect(),
                        modseqs,
                    },
                );
                let update = self.plan_update(run, &inv).await;
                // Subscribe only what the target does not list as subscribed yet, so a rerun
                // sends no command at all for folders that are already right.
                let already_subscribed = run.listing.as_ref().is_some_and(|l| {
                    l.target
                        .folders
                        .iter()
                        .any(|f| f.raw == inv.target_raw && f.subscribed)
                });
                if let Some(pf) = run.folders.folders.iter().find(|f| f.target == inv.target)
                    && (pf.create || (pf.subscribe && !already_subscribed))
                {
                    run.prepare.push(FolderToPrepare {
                        path: pf.target.clone(),
                        raw: inv.target_raw.clone(),
                        create: pf.create,
                        subscribe: pf.subscribe && !already_subscribed,
                    });
                }
                run.chains.insert(
                    inv.target_raw.clone(),
                    Chain {
                        batches: plan.batches.into(),
                        failed: false,
                        update,
                        update_failed: false,
                    },
                );
                if let Phase::Inventorying { pending } = &mut run.phase {
                    *pending -= 1;
                    if *pending == 0 {
                        self.after_inventory(run, progress).await;
                    }
                }
            }
            (OutcomeBody::Folders(res), _) => {
                run.tally.add_folders(&res);
                for (raw, _) in &res.failed {
                    if let Some(chain) = run.chains.get_mut(raw) {
                        chain.failed = true;
                    }
                }
                self.start_chains(run).await;
            }
            (OutcomeBody::Copy(res), TaskBody::CopyBatch(batch)) => {
                let res: CopyResult = *res;
                let bytes = res
                    .copied
                    .iter()
                    .fold(0u64, |a, c| a.saturating_add(c.bytes));
                progress.copied(
                    &run.spec,
                    &batch.target.display_slash(),
                    res.copied.len() as u64,
                    bytes,
                );
                run.tally.add_copy(batch, &res);
                if !res.deferred.is_empty()
                    && let Some(chain) = run.chains.get_mut(&batch.target_raw)
                {
                    // The target account's budget for today is spent: the rest of the chain
                    // waits for the next pass after midnight UTC (flag updates still run).
                    for b in chain.batches.drain(..) {
                        run.tally.defer_batch(&b);
                    }
                }
                if res.folder_refused.is_some()
                    && let Some(chain) = run.chains.get_mut(&batch.target_raw)
                {
                    // The target takes no mail into this folder: the rest of the chain is not
                    // sent, and its messages count in the folder's one failure (issue 15).
                    for b in chain.batches.drain(..) {
                        run.tally.refuse_batch(&b);
                    }
                }
                self.next_batch(run, &batch.target_raw, !res.failed.is_empty())
                    .await;
            }
            (OutcomeBody::Updated(res), TaskBody::UpdateTarget(t)) => {
                run.tally.add_update(&res);
                self.next_batch(run, &t.target_raw, false).await;
            }
            (OutcomeBody::Failed(f), body) => self.on_failure(run, f, body, progress).await,
            _ => {}
        }
    }

    async fn on_listing(&mut self, run: &mut PairRun, list: ListResult, progress: &dyn Progress) {
        run.folders = map_folders(&list, &self.opts.rules);
        run.tally.set_folders(&run.folders);
        self.sync_warnings(run, &list);
        let mut pending = 0;
        let folders = run.folders.folders.clone();
        // One read for the pair's watermarks, not one per folder.
        let mut marks = if self.opts.dry_run {
            HashMap::new()
        } else {
            self.store
                .watermarks(&run.spec.pair_id)
                .await
                .unwrap_or_default()
        };
        for pf in &folders {
            let mark = pf.target_raw.as_ref().and_then(|raw| marks.remove(raw));
            if let (Some(mark), Some(raw)) = (mark, &pf.target_raw) {
                if !self.opts.sync.full_flag_sync && unchanged(&mark, pf, &list, &self.opts) {
                    run.tally.add_unchanged(pf, &mark);
                    continue;
                }
                run.baselines
                    .insert(raw.clone(), mark.modseqs.into_iter().collect());
            }
            let sources = pf
                .sources
                .iter()
                .filter(|s| s.selectable)
                .map(|s| s.folder.clone())
                .collect();
            let task = InventoryTask {
                target: pf.target.clone(),
                target_raw: pf.target_raw.clone(),
                dst_prefix: list.target.personal_prefix.clone(),
                dst_delimiter: list.target.delimiter,
                sources,
            };
            self.publish(&run.spec.pair_id, TaskBody::Inventory(task), 0)
                .await;
            pending += 1;
        }
        run.listing = Some(list);
        if pending == 0 {
            run.phase = Phase::Inventorying { pending: 0 };
            self.after_inventory(run, progress).await;
        } else {
            run.phase = Phase::Inventorying { pending };
        }
    }

    async fn after_inventory(&mut self, run: &mut PairRun, progress: &dyn Progress) {
        progress.planned(
            &run.spec,
            run.tally.planned_messages(),
            run.tally.planned_bytes(),
        );
        if self.opts.dry_run {
            run.phase = Phase::Done;
            return;
        }
        // Parents before children: the folder plan is sorted by path, and so is this list.
        run.prepare.sort_by(|a, b| a.path.cmp(&b.path));
        if run.prepare.is_empty() {
            self.start_chains(run).await;
        } else {
            let folders = std::mem::take(&mut run.prepare);
            self.publish(
                &run.spec.pair_id,
                TaskBody::CreateFolders(CreateFoldersTask { folders }),
                0,
            )
            .await;
            run.phase = Phase::Creating;
        }
    }

    async fn start_chains(&mut self, run: &mut PairRun) {
        let mut open = 0;
        let keys: Vec<String> = run.chains.keys().cloned().collect();
        for k in keys {
            let Some(chain) = run.chains.get_mut(&k) else {
                continue;
            };
            if chain.failed {
                for b in chain.batches.drain(..) {
                    run.tally.fail_batch_folder(&b);
                }
                continue;
            }
            if let Some(b) = chain.batches.pop_front() {
                self.publish(&run.spec.pair_id, TaskBody::CopyBatch(b), 0)
                    .await;
                open += 1;
            } else if let Some(u) = chain.update.take() {
                run.updated = true;
                self.publish(&run.spec.pair_id, TaskBody::UpdateTarget(u), 0)
                    .await;
                open += 1;
            }
        }
        run.phase = Phase::Copying { open_chains: open };
        if open == 0 {
            self.finish_copying(run).await;
        }
    }

    async fn next_batch(&mut self, run: &mut PairRun, target_raw: &str, had_failures: bool) {
        let Some(chain) = run.chains.get_mut(target_raw) else {
            return;
        };
        chain.failed |= had_failures;
        if let Some(b) = chain.batches.pop_front() {
            self.publish(&run.spec.pair_id, TaskBody::CopyBatch(b), 0)
                .await;
            return;
        }
        // Copies never wait for flag updates, and updates follow the copies of their folder: a
        // copy failure does not hold back the flags of the copies that exist.
        if let Some(u) = chain.update.take() {
            run.updated = true;
            self.publish(&run.spec.pair_id, TaskBody::UpdateTarget(u), 0)
                .await;
            return;
        }
        if let Phase::Copying { open_chains } = &mut run.phase {
            *open_chains -= 1;
            if *open_chains == 0 {
                self.finish_copying(run).await;
            }
        }
    }

    async fn finish_copying(&mut self, run: &mut PairRun) {
        if run.tally.planned_messages() == 0 && !run.updated {
            // Nothing was appended, so the first listing still describes both sides: record
            // the watermarks from it and save a round of logins and STATUS commands.
            if let Some(list) = run.listing.take() {
                self.record_watermarks(run, &list).await;
            }
            run.phase = Phase::Done;
            return;
        }
        run.phase = Phase::FinalListing;
        self.publish(
            &run.spec.pair_id,
            TaskBody::List(ListTask {
                with_sizes: false,
                report_larger_than: None,
                close_sessions: false,
            }),
            0,
        )
        .await;
    }

    async fn on_failure(
        &mut self,
        run: &mut PairRun,
        f: TaskFailure,
        body: &TaskBody,
        progress: &dyn Progress,
    ) {
        match body {
            TaskBody::CopyBatch(batch) => {
                run.tally.fail_batch(batch, &f);
                let raw = batch.target_raw.clone();
                self.next_batch(run, &raw, true).await;
            }
            TaskBody::UpdateTarget(t) => {
                run.tally.fail_update(t, &f);
                if let Some(chain) = run.chains.get_mut(&t.target_raw) {
                    chain.update_failed = true;
                }
                self.next_batch(run, &t.target_raw, true).await;
            }
            TaskBody::Inventory(t) => {
                run.tally.fail_inventory(t, &f);
                if let Phase::Inventorying { pending } = &mut run.phase {
                    *pending -= 1;
                    if *pending == 0 {
                        self.after_inventory(run, progress).await;
                    }
                }
            }
            // The closing listing only feeds watermarks; without it the next run inventories again.
            TaskBody::List(_) if matches!(run.phase, Phase::FinalListing) => {
                run.phase = Phase::Done
            }
            _ => {
                run.tally.fatal(&f);
                run.phase = Phase::Done;
            }
        }
    }

    async fn record_watermarks(&mut self, run: &mut PairRun, after: &ListResult) {
        for (raw, chain) in &run.chains {
            let Some(inv) = run.inventories.get(raw) else {
                continue;
            };
            // The flag baseline advances only when this pass's flag updates all went through.
            let modseqs = if chain.update_failed {
                run.baselines
                    .get(raw)
                    .map(|b| b.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default()
            } else {
                inv.modseqs.clone()
            };
            let dst = after
                .target
                .folders
                .iter()
                .find(|f| &f.raw == raw)
                .and_then(|f| f.status);
            let unchanged_sources = inv.sources.iter().all(|(src_raw, (v, n, m))| {
                after
                    .source
                    .folders
                    .iter()
                    .find(|f| &f.raw == src_raw)
                    .and_then(|f| f.status)
                    .is_some_and(|s| s.uidvalidity == *v && s.uidnext == *n && s.messages == *m)
            });
            let complete = !chain.failed
                && !run.tally.folder_failed(raw)
                && unchanged_sources
                && dst.is_some();
            let (present, excluded) = run.tally.folder_present_excluded(raw);
            let mark = FolderWatermark {
                dst: dst.map_or((0, 0, 0), |d| (d.uidvalidity, d.uidnext, d.messages)),
                sources: inv.sources.clone(),
                present,
                excluded,
                options: self.opts.fingerprint(),
                complete,
                modseqs,
            };
            let _ = self
                .store
                .set_watermark(&run.spec.pair_id, raw, Some(mark))
                .await;
        }
    }

    /// The pair-wide notes of a sync pass: flag changes the pass cannot see, deletions it cannot
    /// propagate.
    fn sync_warnings(&self, run: &mut PairRun, list: &ListResult) {
        let has = |caps: &[String], c: &str| caps.iter().any(|x| x.eq_ignore_ascii_case(c));
        if !self.opts.sync.full_flag_sync && !has(&list.source.capabilities, "CONDSTORE") {
            run.tally.note(Warning {
                code: WarningCode::FlagsNotSynced,
                folder: None,
                message: "the source server lacks CONDSTORE, so flag changes made on the source after a message was copied are not synced; run with --full-flag-sync to compare every message's flags".into(),
            });
        }
        if self.opts.sync.delete_propagation && !has(&list.target.capabilities, "UIDPLUS") {
            run.tally.note(Warning {
                code: WarningCode::DeletionsNotPropagated,
                folder: None,
                message: "deletions on the source are not propagated: the target server lacks UIDPLUS, and without it removing copies could also remove mail the user marked deleted there".into(),
            });
        }
    }

    /// The flag updates and expunges of one inventoried target folder, if any.
    async fn plan_update(&self, run: &PairRun, inv: &InventoryResult) -> Option<UpdateTargetTask> {
        if self.opts.dry_run {
            return None;
        }
        let target = inv.target_inventory.as_ref()?;
        let empty = HashMap::new();
        let flags = FlagScope {
            baseline: run.baselines.get(&inv.target_raw).unwrap_or(&empty),
            full: self.opts.sync.full_flag_sync,
        };
        let expunge = self.opts.sync.delete_propagation
            && run.listing.as_ref().is_some_and(|l| {
                l.target
                    .capabilities
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("UIDPLUS"))
            });
        if !expunge && !flags.any(inv) {
            return None;
        }
        let scope = EntryScope {
            pair: run.spec.pair_id.clone(),
            dst_folder: inv.target_raw.clone(),
            dst_uidvalidity: target.uidvalidity,
        };
        // Without the store's entries, flags still match by key and rank; expunges need them.
        let entries = self.store.done_entries(&scope, 0).await.unwrap_or_default();
        reconcile(inv, &entries, &flags, expunge, &self.opts.plan)
    }
}

/// Whether both sides of a planned folder still show exactly what its watermark recorded
/// (STATUS figures, and the source's HIGHESTMODSEQ where it has one).
fn unchanged(
    mark: &FolderWatermark,
    pf: &PlannedFolder,
    list: &ListResult,
    opts: &RunOptions,
) -> bool {
    let Some(raw) = pf.target_raw.as_ref() else {
        return false;
    };
    if !mark.complete || mark.options != opts.fingerprint() {
        return false;
    }
    let Some(dst) = list
        .target
        .folders
        .iter()
        .find(|f| &f.raw == raw)
        .and_then(|f| f.status)
    else {
        return false;
    };
    if (dst.uidvalidity, dst.uidnext, dst.messages) != mark.dst {
        return false;
    }
    let selectable: Vec<_> = pf.sources.iter().filter(|s| s.selectable).collect();
    if selectable.len() != mark.sources.len() {
        return false;
    }
    selectable.iter().all(|s| {
        let Some((_, recorded)) = mark.sources.iter().find(|(r, _)| *r == s.folder.raw) else {
            return false;
        };
        let Some(st) = list
            .source
            .folders
            .iter()
            .find(|f| f.raw == s.folder.raw)
            .and_then(|f| f.status)
        else {
            return false;
        };
        let modseq_same = match (
            st.highestmodseq,
            mark.modseqs.iter().find(|(r, _)| *r == s.folder.raw),
        ) {
            (Some(now), Some((_, then))) => now == *then,
            // No CONDSTORE, or no baseline yet: STATUS alone decides.
            _ => true,
        };
        (st.uidvalidity, st.uidnext, st.messages) == *recorded && modseq_same
    })
}

impl PairSpec {
    /// The embedded mode's stable pair id: FNV-1a (64 bit) of both accounts, so a rerun finds
    /// the state of the previous run. Never derived from secrets.
    pub fn embedded(source: String, target: String) -> PairSpec {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in source
            .bytes()
            .chain(std::iter::once(0))
            .chain(target.bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        PairSpec {
            pair_id: format!("{h:016x}"),
            source,
            target,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use mailferry_fleet::{InProcessQueue, SqliteStore};
    use mailferry_proto::report::PairStatus;
    use mailferry_proto::task::{
        AccountListing, CopiedMessage, CreateFoldersResult, FolderInventory, FolderListing,
        FolderStatus, InventoryMessage, InventoryResult,
    };
    use mailferry_proto::{FolderPath, MessageKey};

    use super::*;

    fn listing(folders: &[(&str, u32)], prefix: &str, delim: char) -> AccountListing {
        AccountListing {
            capabilities: vec!["UIDPLUS".into()],
            personal_prefix: prefix.into(),
            delimiter: Some(delim),
            folders: folders
                .iter()
                .map(|(name, n)| FolderListing {
                    raw: if *name == "INBOX" {
                        "INBOX".into()
                    } else {
                        format!("{prefix}{name}")
                    },
                    path: FolderPath::from_slash(name),
                    decode_error: None,
                    delimiter: Some(delim),
                    attributes: vec![],
                    role: None,
                    selectable: true,
                    subscribed: true,
                    status: Some(FolderStatus {
                        messages: *n,
                        uidnext: n + 1,
                        uidvalidity: 9,
                        highestmodseq: None,
                    }),
                    sizes: None,
                    unavailable: None,
                })
                .collect(),
            other_namespace_folders: vec![],
            quota: None,
            append_limit: None,
        }
    }

    fn msgs(n: u32) -> Vec<InventoryMessage> {
        (1..=n)
            .map(|u| InventoryMessage {
                uid: u,
                size: 100,
                key: MessageKey([u as u8; 16]),
                header_key: Some(MessageKey([u as u8; 16])),
                flags: vec![],
                internal_date: None,
                subject: String::new(),
                modseq: None,
            })
            .collect()
    }

    /// A scripted worker: a source with INBOX (5 messages) and `Work` (3), an empty target whose
    /// INBOX exists; the first attempt of every copy batch fails as transient.
    async fn scripted_worker(queue: Arc<InProcessQueue>, seen: Arc<Mutex<Vec<String>>>) {
        let mut target_folders = vec![("INBOX".to_string(), 0)];
        while let Some(t) = queue.next_task().await {
            let body = match &t.body {
                TaskBody::List(_) => {
                    let target: Vec<(&str, u32)> = target_folders
                        .iter()
                        .map(|(n, c)| (n.as_str(), *c))
                        .collect();
                    OutcomeBody::List(Box::new(ListResult {
                        source: listing(&[("INBOX", 5), ("Work", 3)], "INBOX.", '.'),
                        target: listing(&target, "", '/'),
                    }))
                }
                TaskBody::Inventory(i) => {
                    let sources = i
                        .sources
                        .iter()
                        .map(|s| {
                            let n = if s.raw == "INBOX" { 5 } else { 3 };
                            FolderInventory {
                                raw: s.raw.clone(),
                                uidvalidity: 9,
                                uidnext: n + 1,
                                permanent_flags: vec![],
                                messages: msgs(n),
                            }
                        })
                        .collect();
                    let target_inventory = i.target_raw.as_ref().map(|raw| FolderInventory {
                        raw: raw.clone(),
                        uidvalidity: 9,
                        uidnext: 1,
                        permanent_flags: vec![],
                        messages: vec![],
                    });
                    let target_raw = i
                        .target_raw
                        .clone()
                        .unwrap_or_else(|| i.target.display_slash());
                    OutcomeBody::Inventory(Box::new(InventoryResult {
                        target: i.target.clone(),
                        target_raw,
                        target_inventory,
                        sources,
                        warnings: vec![],
                    }))
                }
                TaskBody::CreateFolders(c) => {
                    let created: Vec<String> = c
                        .folders
                        .iter()
                        .filter(|f| f.create)
                        .map(|f| f.raw.clone())
                        .collect();
                    target_folders.extend(created.iter().map(|r| (r.clone(), 0)));
                    OutcomeBody::Folders(CreateFoldersResult {
                        created,
                        failed: vec![],
                        subscribed: vec![],
                    })
                }
                TaskBody::CopyBatch(b) if t.attempt == 0 => {
                    seen.lock().unwrap().push(format!("fail {}", b.target_raw));
                    OutcomeBody::Failed(TaskFailure {
                        kind: ErrorKind::Transient,
                        side: None,
                        message: "dropped".into(),
                        retry_after_ms: None,
                        login: false,
                        waiting: None,
                    })
                }
                TaskBody::CopyBatch(b) => {
                    seen.lock()
                        .unwrap()
                        .push(format!("copy {} {}", b.target_raw, b.items.len()));
                    OutcomeBody::Copy(Box::new(CopyResult {
                        target: b.target.clone(),
                        dst_uidvalidity: Some(9),
                        copied: b
                            .items
                            .iter()
                            .map(|i| CopiedMessage {
                                src_uid: i.uid,
                                dst_uid: Some(i.uid),
                                bytes: i.size,
                            })
                            .collect(),
                        failed: vec![],
                        warnings: vec![],
                        deferred: vec![],
                        folder_refused: None,
                    }))
                }
                TaskBody::UpdateTarget(_) => OutcomeBody::Updated(Default::default()),
            };
            let o = OutcomeEnvelope {
                task_id: t.task_id.clone(),
                migration_id: t.migration_id.clone(),
                pair_id: t.pair_id.clone(),
                attempt: t.attempt,
                finished_at: chrono::Utc::now(),
                body,
            };
            queue.publish_outcome(o).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_the_summary_counts_the_last_attempt() {
        let queue = Arc::new(InProcessQueue::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(scripted_worker(queue.clone(), seen.clone()));
        let store = SqliteStore::in_memory().unwrap();
        let pair = PairSpec::embedded("a@src:143".into(), "a@dst:143".into());
        let mut opts = RunOptions::default();
        opts.plan.batch_messages = 2;
        let out = run(
            queue.clone(),
            &store,
            "m",
            vec![pair.clone()],
            &opts,
            &NoProgress,
            std::future::pending(),
        )
        .await;
        let s = &out[0];
        assert_eq!(s.status, PairStatus::Completed, "{s:?}");
        assert_eq!(
            (
                s.messages_copied,
                s.bytes_copied,
                s.failed,
                s.folders_created
            ),
            (8, 800, 0, 1)
        );
        let log = seen.lock().unwrap().clone();
        assert_eq!(
            log.iter().filter(|l| l.starts_with("fail")).count(),
            5,
            "every batch failed once: {log:?}"
        );
        // Batches of one chain run one after another, in order.
        let inbox: Vec<&String> = log.iter().filter(|l| l.starts_with("copy INBOX")).collect();
        assert_eq!(inbox, vec!["copy INBOX 2", "copy INBOX 2", "copy INBOX 1"]);

        // The closing listing recorded watermarks; an identical listing now skips inventory and
        // copying, and counts what the watermark says is present.
        let before = seen.lock().unwrap().len();
        let again = run(
            queue,
            &store,
            "m2",
            vec![pair],
            &opts,
            &NoProgress,
            std::future::pending(),
        )
        .await;
        assert_eq!(
            (
                again[0].already_present,
                again[0].messages_copied,
                again[0].status
            ),
            (8, 0, PairStatus::Completed)
        );
        assert_eq!(seen.lock().unwrap().len(), before, "no batch ran");
    }

    #[test]
    fn embedded_pair_ids_are_stable_and_distinct() {
        let a = PairSpec::embedded("u@h:1".into(), "v@h:2".into());
        assert_eq!(
            a.pair_id,
            PairSpec::embedded("u@h:1".into(), "v@h:2".into()).pair_id
        );
        assert_ne!(
            a.pair_id,
            PairSpec::embedded("u@h:1".into(), "v@h:3".into()).pair_id
        );
    }
}
