//! Report messages: what `check` and `migrate` print, as text or as one JSON document.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::folder::FolderRole;
use crate::task::{MessageFailure, Quota};

/// Something the user should know that did not stop the migration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Warning {
    /// A stable machine-readable code, e.g. `flag_not_kept`.
    pub code: WarningCode,
    /// The folder concerned (decoded, `/`-separated), if any.
    pub folder: Option<String>,
    /// One plain sentence.
    pub message: String,
}

/// Warning codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    /// A flag or keyword the target folder does not keep.
    FlagNotKept,
    /// A source folder name contained the target's delimiter; it was replaced.
    DelimiterReplaced,
    /// A source folder name was not valid modified UTF-7; it was migrated under an escaped name.
    UndecodableName,
    /// A virtual folder (`\All`, `\Flagged`) was skipped.
    VirtualFolderSkipped,
    /// Folders of another namespace (shared, other users) were left out.
    OtherNamespaceSkipped,
    /// Two source folders map to one target folder.
    FoldersMerged,
    /// The target rewrote a message on APPEND (keys differ), idempotency rests on the state.
    KeyUnstable,
    /// A server asked to slow down; the run paused.
    Throttled,
    /// Certificate verification was switched off.
    InsecureTls,
    /// A password was given in the URL.
    PasswordInUrl,
    /// The target already held mail in a folder.
    TargetNotEmpty,
    /// Flag changes on the source were not looked for: it lacks CONDSTORE and
    /// `--full-flag-sync` was not asked.
    FlagsNotSynced,
    /// Deletions on the source were not propagated: the target lacks UIDPLUS.
    DeletionsNotPropagated,
    /// The target account's daily upload budget was reached; the rest waits for the next day.
    DailyBudgetReached,
    /// A server answered outside the protocol in a way mailferry could work around (e.g. an
    /// APPENDUID naming more UIDs than messages appended); what it said was not used.
    ProtocolError,
    /// A message's body was not the size the source announced (RFC822.SIZE), even when
    /// fetched again; it was copied as served. Some servers (Exchange) announce approximate
    /// sizes.
    SizeMismatch,
    /// Messages already on the target were recognised by their content: the two servers
    /// render their identifying header fields differently, so their keys did not match.
    HeadersRenderedDifferently,
    /// A source folder was deleted while the run went on (listed, then `[NONEXISTENT]`); it
    /// was skipped.
    FolderVanished,
    /// Anything else.
    Other,
}

/// One planned folder mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderMapping {
    /// Source folder, decoded, `/`-separated.
    pub source: String,
    /// Target folder, decoded, `/`-separated.
    pub target: String,
    /// Source special-use role.
    pub role: Option<FolderRole>,
    /// Why the target name differs from the source name, if it does.
    pub reason: MappingReason,
    /// Whether the target folder exists already.
    pub target_exists: bool,
}

/// Why a folder lands where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingReason {
    /// Same name.
    Same,
    /// Special-use role matched on the target.
    SpecialUse,
    /// An explicit `--map`.
    Explicit,
    /// A target delimiter inside a name component was replaced.
    DelimiterReplaced,
    /// The name was undecodable and migrated escaped.
    Escaped,
    /// A `--regex-rename` rule changed the name.
    Renamed,
}

/// One folder's figures in a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderFigures {
    /// Decoded name, `/`-separated.
    pub name: String,
    /// Special-use role.
    pub role: Option<FolderRole>,
    /// Selectable.
    pub selectable: bool,
    /// Subscribed.
    pub subscribed: bool,
    /// Message count.
    pub messages: u32,
    /// Sum of sizes.
    pub bytes: u64,
    /// Largest message.
    pub largest: u64,
}

/// One account's side of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReport {
    /// `user@host:port`.
    pub account: String,
    /// CAPABILITY.
    pub capabilities: Vec<String>,
    /// Personal namespace prefix.
    pub personal_prefix: String,
    /// Hierarchy delimiter.
    pub delimiter: Option<String>,
    /// Per folder.
    pub folders: Vec<FolderFigures>,
    /// Totals.
    pub messages: u64,
    /// Total bytes.
    pub bytes: u64,
    /// Quota.
    pub quota: Option<Quota>,
    /// APPENDLIMIT.
    pub append_limit: Option<u64>,
}

/// A problem a health check found, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Whether `migrate` would fail because of it (exit code 3 for `check`).
    pub blocking: bool,
    /// The sentence.
    pub message: String,
}

/// What `mailferry check` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Source account.
    pub source: AccountReport,
    /// Target account.
    pub target: AccountReport,
    /// Planned folder mapping.
    pub mapping: Vec<FolderMapping>,
    /// Source folders left out, with the reason.
    pub skipped_folders: Vec<SkippedFolder>,
    /// Bytes the migration would add to the target (upper bound: every included source message).
    pub bytes_needed: u64,
    /// Target quota headroom, bytes, if the target has a storage quota.
    pub quota_free: Option<u64>,
    /// Source messages larger than the target accepts.
    pub oversized_messages: u64,
    /// Target folders that already hold mail.
    pub target_folders_with_mail: Vec<String>,
    /// Problems in plain words.
    pub problems: Vec<Problem>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// What the check could not know, each a sentence saying why and what it means (a target
    /// that advertises no APPENDLIMIT has a size limit nobody can read): "no problems" is only
    /// as good as what was checked.
    #[serde(default)]
    pub unknown: Vec<String>,
    /// When the check finished.
    pub finished_at: DateTime<Utc>,
}

/// A source folder the plan leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFolder {
    /// Decoded name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// Final state of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    /// Everything copied or already present.
    Completed,
    /// Finished, some messages failed.
    CompletedWithFailures,
    /// Could not run: login refused.
    AuthFailed,
    /// Could not run: server unreachable or TLS failure.
    ConnectFailed,
    /// Stopped by another fatal error.
    Failed,
    /// Interrupted by the user.
    Interrupted,
    /// Some mail waits for the target account's daily upload budget; the next sync after
    /// 00:00 UTC continues.
    Deferred,
}

/// Per-folder figures of a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSummary {
    /// Source folder(s), decoded.
    pub source: String,
    /// Target folder, decoded.
    pub target: String,
    /// Whether the folder was created on the target by this run.
    pub created: bool,
    /// Messages copied.
    pub copied: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Messages found already on the target.
    pub already_present: u64,
    /// Messages left out by options.
    pub excluded: u64,
    /// Messages that failed.
    pub failed: u64,
    /// Why the folder failed as a whole (its creation refused, or every message sent into it
    /// refused), with the server's own words; the same text as its [`FolderFailure`].
    #[serde(default)]
    pub error: Option<String>,
}

/// A target folder that failed as a whole: the target refused to create it, or refused every
/// message sent into it with the same answer. One entry for the folder, not one per message;
/// its messages are counted in [`PairSummary::failed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderFailure {
    /// Target folder, decoded, `/`-separated.
    pub folder: String,
    /// Source folder(s), decoded.
    pub source: String,
    /// [`FailureKind::FolderRefused`](crate::FailureKind::FolderRefused).
    pub kind: crate::FailureKind,
    /// Messages not copied because of it (0 for an empty folder).
    pub messages: u64,
    /// What happened, with the server's own words.
    pub reason: String,
    /// What to do.
    pub advice: String,
}

/// What `mailferry migrate` prints for one mailbox pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSummary {
    /// Source `user@host:port`.
    pub source: String,
    /// Target `user@host:port`.
    pub target: String,
    /// Final state.
    pub status: PairStatus,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Folders in the plan.
    pub folders: u64,
    /// Folders created on the target.
    pub folders_created: u64,
    /// Messages the plan had to copy (with `--dry-run`: would copy).
    pub planned: u64,
    /// Messages copied.
    pub messages_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Messages already on the target.
    pub already_present: u64,
    /// Messages left out by options (`--max-size`, `--skip-deleted`).
    pub excluded: u64,
    /// Messages that failed.
    pub failed: u64,
    /// Copies whose flags were set to their source message's (sync passes).
    #[serde(default)]
    pub flags_updated: u64,
    /// Copies expunged because their source message was deleted (`delete_propagation`).
    #[serde(default)]
    pub expunged: u64,
    /// Messages left for the next day: the target account's daily upload budget was reached.
    #[serde(default)]
    pub deferred: u64,
    /// Seconds spent waiting because a server asked to slow down (throttling, back-off hints).
    pub throttled_secs: f64,
    /// Each failure of a message.
    pub failures: Vec<MessageFailure>,
    /// Each folder that failed as a whole (its messages are counted in `failed` but have no
    /// entry in `failures`).
    #[serde(default)]
    pub folder_failures: Vec<FolderFailure>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// A fatal error that stopped the pair, if any.
    pub error: Option<String>,
    /// Per folder.
    pub folder_details: Vec<FolderSummary>,
    /// Source folders left out, with the reason.
    pub skipped_folders: Vec<SkippedFolder>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Finish.
    pub finished_at: DateTime<Utc>,
    /// Seconds.
    pub duration_secs: f64,
}

/// A record of a `--batch` CSV file that could not be used; the other records still run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The record's number (1 = the first record after the header).
    pub record: u64,
    /// What is wrong with it, in plain words.
    pub error: String,
}

/// What `mailferry migrate --batch` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// One summary per usable record, in file order.
    pub pairs: Vec<BatchPair>,
    /// Records that could not be used.
    pub bad_records: Vec<BadRecord>,
    /// When the last pair finished.
    pub finished_at: DateTime<Utc>,
}

/// One pair of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPair {
    /// The record's number in the CSV file.
    pub record: u64,
    /// The pair's summary.
    pub summary: PairSummary,
}

/// One pair of `mailferry check --batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCheckPair {
    /// The record's number in the CSV file.
    pub record: u64,
    /// Source `user@host:port`.
    pub source: String,
    /// Target `user@host:port`.
    pub target: String,
    /// The report, when both sides could be listed.
    pub report: Option<CheckReport>,
    /// Why there is no report.
    pub error: Option<String>,
}

/// What `mailferry check --batch` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCheck {
    /// One entry per usable record, in file order.
    pub pairs: Vec<BatchCheckPair>,
    /// Records that could not be used.
    pub bad_records: Vec<BadRecord>,
    /// When the last check finished.
    pub finished_at: DateTime<Utc>,
}

/// A size for people that never rounds two different sizes into the same figure: exact bytes
/// with thousands separators below 10 MB (`128,107 bytes`, so a message and the limit it
/// exceeds cannot both read "0.1 MB"), megabytes with one decimal and the exact count above.
pub fn bytes_text(bytes: u64) -> String {
    let digits = bytes.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if bytes < 10_000_000 {
        format!("{grouped} bytes")
    } else {
        format!("{:.1} MB ({grouped} bytes)", bytes as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod bytes_text_tests {
    use super::bytes_text;

    #[test]
    fn sizes_never_round_into_a_contradiction() {
        assert_eq!(bytes_text(0), "0 bytes");
        assert_eq!(bytes_text(999), "999 bytes");
        assert_eq!(bytes_text(128_107), "128,107 bytes");
        assert_eq!(bytes_text(102_400), "102,400 bytes");
        assert_eq!(bytes_text(9_999_999), "9,999,999 bytes");
        assert_eq!(bytes_text(14_200_000), "14.2 MB (14,200,000 bytes)");
        assert_eq!(
            bytes_text(u64::MAX),
            "18446744073709.6 MB (18,446,744,073,709,551,615 bytes)"
        );
    }
}
