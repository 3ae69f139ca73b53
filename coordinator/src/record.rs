//! What the fleet coordinator keeps about a migration in the store, as JSON: the record (state,
//! options, pairs without secrets, passes) and each pair's last summary. Secrets are never part
//! of a record: they are sealed separately per pair and side.

use chrono::{DateTime, Utc};
use mailferry_proto::report::PairSummary;
use mailferry_proto::task::Endpoint;
use serde::{Deserialize, Serialize};

use crate::options::OptionsSpec;

/// Where a migration is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// A pass is running.
    Running,
    /// Between passes.
    Idle,
    /// Paused by the user: no pass runs until resumed.
    Paused,
    /// The final pass is running.
    Completing,
    /// Done for good; credentials dropped.
    Completed,
    /// Stopped for good; credentials dropped.
    Cancelled,
}

impl MigrationState {
    /// Whether a pass may be running in this state.
    pub fn is_active(self) -> bool {
        matches!(self, MigrationState::Running | MigrationState::Completing)
    }

    /// Whether the migration can never run again.
    pub fn is_final(self) -> bool {
        matches!(self, MigrationState::Completed | MigrationState::Cancelled)
    }
}

/// One mailbox pair of a migration (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    /// Pair id (keys its sealed credentials, cache entries and watermarks).
    pub id: String,
    /// Source endpoint.
    pub source: Endpoint,
    /// Target endpoint.
    pub target: Endpoint,
}

/// A migration as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// Migration id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The client's request id that created it.
    pub request_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Where it is in its life.
    pub state: MigrationState,
    /// Its options (validated when it was created).
    pub options: OptionsSpec,
    /// Its pairs.
    pub pairs: Vec<PairRecord>,
    /// Passes started so far.
    pub passes: u32,
    /// The pairs of the current (or last) pass.
    pub pass_pairs: Vec<String>,
    /// When the current (or last) pass started.
    pub pass_started_at: Option<DateTime<Utc>>,
    /// When the last pass finished (`None` while one runs).
    pub pass_finished_at: Option<DateTime<Utc>>,
    /// The state to take when the running pass has stopped (pause, cancel), if asked.
    pub after_pass: Option<MigrationState>,
    /// When the next automatic sync is due (`None`: a pass runs, syncing is off, paused or done).
    #[serde(default)]
    pub next_sync_at: Option<DateTime<Utc>>,
}

impl MigrationRecord {
    /// A pair by id.
    pub fn pair(&self, id: &str) -> Option<&PairRecord> {
        self.pairs.iter().find(|p| p.id == id)
    }
}

/// A pair's summary, tagged with the pass that produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSummary {
    /// The pass number.
    pub pass: u32,
    /// The summary.
    pub summary: PairSummary,
}
