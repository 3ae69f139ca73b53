//! Outcomes → the summary of a pair: folders, messages copied, bytes, already present, excluded,
//! failed (each with reason and advice), warnings, times. One outcome per task counts (the
//! driver only hands over the last attempt's), so the summary equals what is on the target.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use mailferry_fleet::FolderWatermark;
use mailferry_proto::report::{FolderFailure, FolderSummary, PairStatus, PairSummary, Warning};
use mailferry_proto::task::{
    CopyBatchTask, CopyResult, CreateFoldersResult, InventoryResult, InventoryTask, MessageFailure,
    TaskFailure, UpdateResult, UpdateTargetTask,
};
use mailferry_proto::{ErrorKind, FailureKind};

use crate::folders::{FolderPlan, PlannedFolder};
use crate::migration::PairSpec;
use crate::plan::ChainPlan;

/// A pair's running totals.
#[derive(Clone)]
pub struct PairTally {
    summary: PairSummary,
    started: Instant,
    /// Per target folder raw name (or decoded path before the raw name is known).
    folders: BTreeMap<String, FolderSummary>,
    reported: HashSet<(String, u32)>,
    failed_folders: HashSet<String>,
    planned_bytes: u64,
    throttles: u32,
    /// Some source folder was refused by the server (see `FolderPlan::refused`).
    refused_folders: bool,
    /// Target folders that failed as a whole, by raw name: one entry each, however many of
    /// their messages it cost.
    folder_failures: BTreeMap<String, FolderFailure>,
}

/// What to do about a target folder that refuses every message sent into it.
const APPEND_REFUSED_ADVICE: &str = "the target takes no mail into this folder and its answer says why (rights on the folder, a read-only or special folder): fix that on the target, or send the folder elsewhere with --map 'SOURCE=TARGET' or leave it out with --exclude, then run again";

impl PairTally {
    /// An empty tally.
    pub fn new(spec: &PairSpec, dry_run: bool) -> PairTally {
        let now = Utc::now();
        PairTally {
            summary: PairSummary {
                source: spec.source.clone(),
                target: spec.target.clone(),
                status: PairStatus::Completed,
                dry_run,
                folders: 0,
                folders_created: 0,
                planned: 0,
                messages_copied: 0,
                bytes_copied: 0,
                already_present: 0,
                excluded: 0,
                failed: 0,
                flags_updated: 0,
                expunged: 0,
                deferred: 0,
                throttled_secs: 0.0,
                failures: Vec::new(),
                warnings: Vec::new(),
                error: None,
                folder_details: Vec::new(),
                folder_failures: Vec::new(),
                skipped_folders: Vec::new(),
                started_at: now,
                finished_at: now,
                duration_secs: 0.0,
            },
            started: Instant::now(),
            folders: BTreeMap::new(),
            reported: HashSet::new(),
            failed_folders: HashSet::new(),
            planned_bytes: 0,
            throttles: 0,
            refused_folders: false,
            folder_failures: BTreeMap::new(),
        }
    }

    /// The folder plan is known.
    pub fn set_folders(&mut self, plan: &FolderPlan) {
        self.summary.folders = plan.folders.len() as u64;
        self.summary.skipped_folders = plan.skipped.clone();
        for w in &plan.warnings {
            self.warn(w.clone());
        }
        for r in &plan.refused {
            let msg = format!(
                "folder {:?} was not migrated: {}; check the account's rights on it, then run again",
                r.name, r.reason
            );
            self.summary.error = Some(match self.summary.error.take() {
                Some(e) if !e.contains(&msg) => format!("{e}; {msg}"),
                Some(e) => e,
                None => msg,
            });
            self.refused_folders = true;
        }
    }

    fn warn(&mut self, w: Warning) {
        if !self.summary.warnings.contains(&w) {
            self.summary.warnings.push(w);
        }
    }

    fn folder(&mut self, raw: &str) -> &mut FolderSummary {
        self.folders.entry(raw.to_owned()).or_default()
    }

    /// A target folder's chain was planned.
    pub fn add_plan(&mut self, inv: &InventoryResult, plan: &ChainPlan) {
        let target = inv.target.display_slash();
        let sources: Vec<String> = plan
            .figures
            .iter()
            .map(|(s, _)| s.path.display_slash())
            .collect();
        let mut planned_bytes = 0;
        let f = self.folder(&inv.target_raw);
        f.target = target;
        f.source = sources.join(", ");
        for (_, fig) in &plan.figures {
            f.already_present += fig.already_present;
            f.excluded += fig.excluded;
            planned_bytes = u64::saturating_add(planned_bytes, fig.planned_bytes);
        }
        let (present, excluded): (u64, u64) = plan.figures.iter().fold((0, 0), |a, (_, x)| {
            (a.0 + x.already_present, a.1 + x.excluded)
        });
        let planned: u64 = plan.figures.iter().map(|(_, x)| x.planned).sum();
        self.summary.already_present += present;
        self.summary.excluded += excluded;
        self.summary.planned += planned;
        self.planned_bytes = self.planned_bytes.saturating_add(planned_bytes);
    }

    /// A folder the watermark shows unchanged since a complete pass.
    pub fn add_unchanged(&mut self, pf: &PlannedFolder, mark: &FolderWatermark) {
        let raw = pf
            .target_raw
            .clone()
            .unwrap_or_else(|| pf.target.display_slash());
        let sources: Vec<String> = pf
            .sources
            .iter()
            .map(|s| s.folder.path.display_slash())
            .collect();
        let f = self.folder(&raw);
        f.target = pf.target.display_slash();
        f.source = sources.join(", ");
        f.already_present += mark.present;
        f.excluded += mark.excluded;
        self.summary.already_present += mark.present;
        self.summary.excluded += mark.excluded;
    }

    /// Target folders were prepared. A folder the target refused to create is a failure of its
    /// own, empty or not (issue 15), with the server's words.
    pub fn add_folders(&mut self, res: &CreateFoldersResult) {
        self.summary.folders_created += res.created.len() as u64;
        for raw in &res.created {
            self.folder(raw).created = true;
        }
        for (raw, words) in &res.failed {
            self.fail_folder(raw, |folder| {
                (
                    format!("the target refused to create folder {folder:?}: {words}"),
                    FailureKind::FolderRefused.advice().to_owned(),
                )
            });
        }
    }

    /// Records the failure of a whole target folder, made by `describe(decoded name)` (reason,
    /// advice) the first time. Its line in the folder details carries the reason too.
    fn fail_folder(&mut self, raw: &str, describe: impl FnOnce(&str) -> (String, String)) {
        self.failed_folders.insert(raw.to_owned());
        if self.folder_failures.contains_key(raw) {
            return;
        }
        let (target, source) = match self.folders.get(raw) {
            Some(f) if !f.target.is_empty() => (f.target.clone(), f.source.clone()),
            _ => (raw.to_owned(), String::new()),
        };
        let (reason, advice) = describe(&target);
        let f = self.folder(raw);
        f.target.clone_from(&target);
        f.error = Some(reason.clone());
        self.folder_failures.insert(
            raw.to_owned(),
            FolderFailure {
                folder: target,
                source,
                kind: FailureKind::FolderRefused,
                messages: 0,
                reason,
                advice,
            },
        );
    }

    /// Counts `uids` of `batch` (those not reported yet) as failed through the failure of their
    /// whole target folder, without an entry each.
    fn count_in_folder_failure(&mut self, batch: &CopyBatchTask, uids: impl Iterator<Item = u32>) {
        let mut n = 0;
        for uid in uids {
            if self.reported.insert((batch.source.raw.clone(), uid)) {
                n += 1;
            }
        }
        self.summary.failed += n;
        self.folder(&batch.target_raw).failed += n;
        if let Some(f) = self.folder_failures.get_mut(&batch.target_raw) {
            f.messages += n;
        }
    }

    /// A batch's outcome.
    pub fn add_copy(&mut self, batch: &CopyBatchTask, res: &CopyResult) {
        let bytes = res
            .copied
            .iter()
            .fold(0u64, |a, c| a.saturating_add(c.bytes));
        let copied = res.copied.len() as u64;
        let failed = res.failed.len() as u64;
        for c in &res.copied {
            self.reported.insert((batch.source.raw.clone(), c.src_uid));
        }
        for m in &res.failed {
            self.reported.insert((batch.source.raw.clone(), m.uid));
        }
        let f = self.folder(&batch.target_raw);
        f.copied += copied;
        f.bytes = f.bytes.saturating_add(bytes);
        f.failed += failed;
        self.summary.messages_copied += copied;
        self.summary.bytes_copied = self.summary.bytes_copied.saturating_add(bytes);
        self.summary.failed += failed;
        self.summary.failures.extend(res.failed.iter().cloned());
        for w in &res.warnings {
            self.warn(w.clone());
        }
        self.summary.deferred += res.deferred.len() as u64;
        // A folder with mail left for later must be looked at again by the next pass.
        if failed > 0 || !res.deferred.is_empty() {
            self.failed_folders.insert(batch.target_raw.clone());
        }
        if let Some(r) = &res.folder_refused {
            self.fail_folder(&batch.target_raw, |folder| {
                (
                    format!(
                        "the target refused every message sent into folder {folder:?} with the same answer: {}",
                        r.answer
                    ),
                    APPEND_REFUSED_ADVICE.to_owned(),
                )
            });
            self.count_in_folder_failure(batch, r.uids.iter().copied());
        }
    }

    /// A batch not sent because its target folder refused every message of an earlier batch
    /// of its chain: counted in that folder's failure.
    pub fn refuse_batch(&mut self, batch: &CopyBatchTask) {
        self.count_in_folder_failure(batch, batch.items.iter().map(|i| i.uid));
    }

    /// A batch not sent because its chain waits for the next day's upload budget.
    pub fn defer_batch(&mut self, batch: &CopyBatchTask) {
        self.summary.deferred += batch.items.len() as u64;
        self.failed_folders.insert(batch.target_raw.clone());
    }

    /// Whether some mail waits for the next day's upload budget.
    pub fn has_deferred(&self) -> bool {
        self.summary.deferred > 0
    }

    fn fail_items(&mut self, batch: &CopyBatchTask, kind: FailureKind, reason: &str) {
        let mut n = 0;
        for item in &batch.items {
            if !self.reported.insert((batch.source.raw.clone(), item.uid)) {
                continue;
            }
            n += 1;
            self.summary.failures.push(MessageFailure {
                folder: batch.source.path.display_slash(),
                uid: item.uid,
                subject: item.subject.clone(),
                size: item.size,
                kind,
                reason: reason.to_owned(),
                advice: kind.advice().to_owned(),
            });
        }
        self.summary.failed += n;
        self.folder(&batch.target_raw).failed += n;
        self.failed_folders.insert(batch.target_raw.clone());
    }

    /// A batch failed as a whole (after its retries).
    pub fn fail_batch(&mut self, batch: &CopyBatchTask, f: &TaskFailure) {
        let kind = match f.kind {
            ErrorKind::Auth => FailureKind::Auth,
            ErrorKind::Connect => FailureKind::Connect,
            ErrorKind::Transient | ErrorKind::Throttled => FailureKind::Transient,
            _ => FailureKind::Other,
        };
        self.fail_items(batch, kind, &f.message);
        if matches!(f.kind, ErrorKind::Auth | ErrorKind::Connect) && self.summary.error.is_none() {
            self.summary.error = Some(f.message.clone());
        }
    }

    /// A batch whose target folder could not be created: counted in that folder's failure,
    /// which carries the server's words.
    pub fn fail_batch_folder(&mut self, batch: &CopyBatchTask) {
        let target = batch.target.display_slash();
        self.fail_folder(&batch.target_raw, |_| {
            (
                format!("the target folder {target:?} could not be created"),
                FailureKind::FolderRefused.advice().to_owned(),
            )
        });
        self.count_in_folder_failure(batch, batch.items.iter().map(|i| i.uid));
    }

    /// A folder could not be inventoried.
    pub fn fail_inventory(&mut self, t: &InventoryTask, f: &TaskFailure) {
        let folder = t.target.display_slash();
        self.failed_folders
            .insert(t.target_raw.clone().unwrap_or_else(|| folder.clone()));
        self.folder(&t.target_raw.clone().unwrap_or_else(|| folder.clone()))
            .target = folder.clone();
        let msg = format!("folder {folder:?} was not migrated: {}", f.message);
        self.summary.error = Some(match self.summary.error.take() {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
        if self.summary.status == PairStatus::Completed {
            self.summary.status = PairStatus::Failed;
        }
    }

    /// The pair stopped.
    pub fn fatal(&mut self, f: &TaskFailure) {
        self.summary.status = match f.kind {
            ErrorKind::Auth => PairStatus::AuthFailed,
            // A server that stops answering, even after the retries, is a connection failure.
            ErrorKind::Connect
            | ErrorKind::Protocol
            | ErrorKind::Transient
            | ErrorKind::Throttled => PairStatus::ConnectFailed,
            _ => PairStatus::Failed,
        };
        self.summary.error = Some(f.message.clone());
    }

    /// Copies on the target were updated (flags, expunges).
    pub fn add_update(&mut self, res: &UpdateResult) {
        self.summary.flags_updated += res.flags_set;
        self.summary.expunged += res.expunged;
        for w in &res.warnings {
            self.warn(w.clone());
        }
    }

    /// Updating copies in a target folder failed (after its retries); the next pass tries again.
    pub fn fail_update(&mut self, t: &UpdateTargetTask, f: &TaskFailure) {
        let folder = t.target.display_slash();
        self.failed_folders.insert(t.target_raw.clone());
        let msg = format!(
            "flags or deletions in folder {folder:?} were not synced: {}; the next sync tries again",
            f.message
        );
        self.summary.error = Some(match self.summary.error.take() {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
        if self.summary.status == PairStatus::Completed {
            self.summary.status = PairStatus::Failed;
        }
    }

    /// Something the user should know about the whole pair.
    pub fn note(&mut self, w: Warning) {
        self.warn(w);
    }

    /// A server asked to slow down; the pair waits `delay`.
    pub fn throttled(&mut self, delay: std::time::Duration) {
        self.throttles += 1;
        self.summary.throttled_secs += delay.as_secs_f64();
    }

    /// The user interrupted the run.
    pub fn interrupted(&mut self) {
        self.summary.status = PairStatus::Interrupted;
    }

    /// Messages the plan copies.
    pub fn planned_messages(&self) -> u64 {
        self.summary.planned
    }

    /// Bytes the plan copies.
    pub fn planned_bytes(&self) -> u64 {
        self.planned_bytes
    }

    /// Whether anything in a target folder failed.
    pub fn folder_failed(&self, raw: &str) -> bool {
        self.failed_folders.contains(raw)
    }

    /// (copied + already present, excluded) of a target folder, for its watermark.
    pub fn folder_present_excluded(&self, raw: &str) -> (u64, u64) {
        self.folders
            .get(raw)
            .map(|f| (f.copied + f.already_present, f.excluded))
            .unwrap_or((0, 0))
    }

    /// The final summary.
    pub fn finish(mut self) -> PairSummary {
        if self.throttles > 0 {
            self.warn(Warning {
                code: mailferry_proto::report::WarningCode::Throttled,
                folder: None,
                message: format!(
                    "a server asked to slow down {} time(s); the migration paused {:.0} s in all",
                    self.throttles, self.summary.throttled_secs
                ),
            });
        }
        if self.summary.status == PairStatus::Completed
            && (self.summary.failed > 0 || self.refused_folders || !self.folder_failures.is_empty())
        {
            self.summary.status = PairStatus::CompletedWithFailures;
        }
        if self.summary.deferred > 0
            && matches!(
                self.summary.status,
                PairStatus::Completed | PairStatus::CompletedWithFailures
            )
        {
            self.summary.status = PairStatus::Deferred;
        }
        self.summary.finished_at = Utc::now();
        self.summary.duration_secs = self.started.elapsed().as_secs_f64();
        self.summary.folder_details = self.folders.into_values().collect();
        self.summary.folder_failures = self.folder_failures.into_values().collect();
        self.summary
            .failures
            .sort_by(|a, b| (a.folder.as_str(), a.uid).cmp(&(b.folder.as_str(), b.uid)));
        self.summary
    }
}
