//! The fleet's metric names and the small helpers that record them, so that every name and
//! label lives in one place and dashboards do not break (STYLE.md, Hygiene). Recording goes
//! through the `metrics` facade: without an installed recorder (embedded mode, unit tests) every
//! call is a no-op; the coordinator and worker roles install a Prometheus recorder and render it
//! on their admin port's `/metrics`.
//!
//! Labels are low-cardinality by rule: a task type, an outcome, an [`ErrorKind`] or
//! [`FailureKind`] name, a side, a queue, a migration state. This module must never take a
//! mailbox address, a folder name, a migration or pair id as a label value (those belong on trace
//! spans, as ids).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `mailferry_messages_copied_total` | counter | | messages a worker copied (appended, or found appended by an earlier attempt) |
//! | `mailferry_bytes_copied_total` | counter | | message bytes of those |
//! | `mailferry_flags_updated_total` | counter | | copies whose flags a sync set to their source's |
//! | `mailferry_expunged_total` | counter | | copies a sync expunged because their source message was deleted |
//! | `mailferry_message_failures_total` | counter | `kind` | messages that could not be copied, by [`FailureKind`] |
//! | `mailferry_task_failures_total` | counter | `kind` | tasks that failed as a whole, by [`ErrorKind`] |
//! | `mailferry_tasks_total` | counter | `type`, `outcome` | tasks finished by a worker: `ok`, `partial` (some messages failed) or `failed` |
//! | `mailferry_task_duration_seconds` | histogram | `type` | how long a worker ran a task |
//! | `mailferry_imap_connections` | gauge | `side` | IMAP sessions open now (pooled idle ones included) |
//! | `mailferry_queue_depth` | gauge | `queue` | messages ready in a RabbitMQ queue (coordinator, sampled) |
//! | `mailferry_migrations` | gauge | `state` | migrations by state (coordinator, sampled) |
//! | `mailferry_sync_lag_seconds` | gauge | | seconds since the oldest due sync should have started (0: none overdue) |

use std::time::Duration;

use mailferry_proto::task::{OutcomeBody, OutcomeEnvelope, Side, TaskBody};
use mailferry_proto::{ErrorKind, FailureKind};

/// Messages copied (counter).
pub const MESSAGES_COPIED: &str = "mailferry_messages_copied_total";
/// Message bytes copied (counter).
pub const BYTES_COPIED: &str = "mailferry_bytes_copied_total";
/// Copies whose flags a sync set to the source's (counter).
pub const FLAGS_UPDATED: &str = "mailferry_flags_updated_total";
/// Copies a sync expunged (counter).
pub const EXPUNGED: &str = "mailferry_expunged_total";
/// Messages that could not be copied, label `kind` (counter).
pub const MESSAGE_FAILURES: &str = "mailferry_message_failures_total";
/// Tasks that failed as a whole, label `kind` (counter).
pub const TASK_FAILURES: &str = "mailferry_task_failures_total";
/// Tasks finished, labels `type` and `outcome` (counter).
pub const TASKS: &str = "mailferry_tasks_total";
/// Task run time in seconds, label `type` (histogram).
pub const TASK_DURATION: &str = "mailferry_task_duration_seconds";
/// Open IMAP sessions, label `side` (gauge).
pub const IMAP_CONNECTIONS: &str = "mailferry_imap_connections";
/// Messages ready in a queue, label `queue` (gauge).
pub const QUEUE_DEPTH: &str = "mailferry_queue_depth";
/// Migrations by state, label `state` (gauge).
pub const MIGRATIONS: &str = "mailferry_migrations";
/// Seconds since the oldest due sync should have started (gauge).
pub const SYNC_LAG: &str = "mailferry_sync_lag_seconds";

/// Bucket bounds of [`TASK_DURATION`], seconds: a List takes about a second, a batch minutes.
pub const TASK_DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// The states [`set_migrations`] reports, so that a state with no migration shows 0 instead of
/// vanishing.
pub const MIGRATION_STATES: &[&str] = &[
    "running",
    "idle",
    "paused",
    "completing",
    "completed",
    "cancelled",
];

/// Registers the help text of every metric (shown as `# HELP` by Prometheus). Call once after
/// installing a recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        MESSAGES_COPIED,
        Unit::Count,
        "Messages copied by this worker (appended, or found appended by an earlier attempt)"
    );
    describe_counter!(
        BYTES_COPIED,
        Unit::Bytes,
        "Message bytes copied by this worker"
    );
    describe_counter!(
        FLAGS_UPDATED,
        Unit::Count,
        "Copies whose flags a sync set to their source message's"
    );
    describe_counter!(
        EXPUNGED,
        Unit::Count,
        "Copies a sync expunged because their source message was deleted"
    );
    describe_counter!(
        MESSAGE_FAILURES,
        Unit::Count,
        "Messages that could not be copied, by failure kind"
    );
    describe_counter!(
        TASK_FAILURES,
        Unit::Count,
        "Tasks that failed as a whole, by error kind"
    );
    describe_counter!(TASKS, Unit::Count, "Tasks finished, by type and outcome");
    describe_histogram!(
        TASK_DURATION,
        Unit::Seconds,
        "How long a worker ran a task, by type"
    );
    describe_gauge!(
        IMAP_CONNECTIONS,
        Unit::Count,
        "IMAP sessions open now (idle pooled ones included), by side"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Messages ready in a RabbitMQ queue"
    );
    describe_gauge!(MIGRATIONS, Unit::Count, "Migrations by state");
    describe_gauge!(
        SYNC_LAG,
        Unit::Seconds,
        "Seconds since the oldest due incremental sync should have started (0 when none is overdue)"
    );
}

/// The `type` label of a task.
pub fn task_type(body: &TaskBody) -> &'static str {
    #[allow(unreachable_patterns)]
    match body {
        TaskBody::List(_) => "list",
        TaskBody::Inventory(_) => "inventory",
        TaskBody::CreateFolders(_) => "create_folders",
        TaskBody::CopyBatch(_) => "copy_batch",
        TaskBody::UpdateTarget(_) => "update_target",
        // A kind added to the envelope before it is named here still counts.
        _ => "other",
    }
}

/// The `outcome` label of a finished task: `ok`, `partial` (a copy where some messages failed)
/// or `failed` (the task as a whole).
pub fn outcome_label(body: &OutcomeBody) -> &'static str {
    match body {
        OutcomeBody::Failed(_) => "failed",
        OutcomeBody::Copy(c) if !c.failed.is_empty() => "partial",
        _ => "ok",
    }
}

/// An [`ErrorKind`]'s label value: its snake_case name, as serialised.
pub fn error_kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient => "transient",
        ErrorKind::Throttled => "throttled",
        ErrorKind::Auth => "auth",
        ErrorKind::Connect => "connect",
        ErrorKind::Permanent => "permanent",
        ErrorKind::Config => "config",
        ErrorKind::Protocol => "protocol",
        ErrorKind::StateLost => "state_lost",
    }
}

/// A [`FailureKind`]'s label value: its snake_case name, as serialised.
pub fn failure_kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::OverQuota => "over_quota",
        FailureKind::TooLarge => "too_large",
        FailureKind::Rejected => "rejected",
        FailureKind::FolderRefused => "folder_refused",
        FailureKind::VanishedFromSource => "vanished_from_source",
        FailureKind::WrongMessage => "wrong_message",
        FailureKind::Transient => "transient",
        FailureKind::Auth => "auth",
        FailureKind::Connect => "connect",
        FailureKind::Other => "other",
    }
}

/// Records a task a worker finished: its type, outcome and run time, the messages and bytes it
/// copied and what failed. Called once per outcome, where the worker publishes it.
pub fn record_outcome(task_type: &'static str, outcome: &OutcomeEnvelope, took: Duration) {
    let outcome_label = outcome_label(&outcome.body);
    metrics::counter!(TASKS, "type" => task_type, "outcome" => outcome_label).increment(1);
    metrics::histogram!(TASK_DURATION, "type" => task_type).record(took.as_secs_f64());
    match &outcome.body {
        OutcomeBody::Copy(c) => {
            let bytes: u64 = c.copied.iter().map(|m| m.bytes).sum();
            metrics::counter!(MESSAGES_COPIED).increment(c.copied.len() as u64);
            metrics::counter!(BYTES_COPIED).increment(bytes);
            for f in &c.failed {
                metrics::counter!(MESSAGE_FAILURES, "kind" => failure_kind_name(f.kind))
                    .increment(1);
            }
            if let Some(r) = &c.folder_refused {
                // Counted like the messages they are, without a failure entry each.
                metrics::counter!(
                    MESSAGE_FAILURES,
                    "kind" => failure_kind_name(FailureKind::FolderRefused)
                )
                .increment(r.uids.len() as u64);
            }
        }
        OutcomeBody::Updated(u) => {
            metrics::counter!(FLAGS_UPDATED).increment(u.flags_set);
            metrics::counter!(EXPUNGED).increment(u.expunged);
        }
        OutcomeBody::Failed(f) => {
            metrics::counter!(TASK_FAILURES, "kind" => error_kind_name(f.kind)).increment(1);
        }
        _ => {}
    }
}

/// The `side` label of a connection.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Target => "target",
    }
}

/// Counts one open IMAP session in [`IMAP_CONNECTIONS`] for as long as it lives: held by the
/// session itself, so the gauge stays exact however the session ends (closed, pooled, evicted,
/// or dropped on an error).
#[derive(Debug)]
pub struct OpenConnection {
    side: &'static str,
}

impl OpenConnection {
    /// Counts a session of `side` as open.
    pub fn new(side: Side) -> OpenConnection {
        let side = side_name(side);
        metrics::gauge!(IMAP_CONNECTIONS, "side" => side).increment(1.0);
        OpenConnection { side }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(IMAP_CONNECTIONS, "side" => self.side).decrement(1.0);
    }
}

/// Sets the depth of one queue (`tasks`, ...).
pub fn set_queue_depth(queue: &'static str, ready: u32) {
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue).set(f64::from(ready));
}

/// Sets the number of migrations in each state; states not in `counts` are set to 0.
pub fn set_migrations<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) {
    let counts: Vec<(&str, u64)> = counts.into_iter().collect();
    for state in MIGRATION_STATES {
        let n: u64 = counts
            .iter()
            .filter(|(s, _)| s == state)
            .map(|(_, n)| *n)
            .sum();
        metrics::gauge!(MIGRATIONS, "state" => *state).set(n as f64);
    }
}

/// Sets `mailferry_sync_lag_seconds`: how many seconds ago the oldest sync that is due now should
/// have started, or 0 when no sync is overdue. The coordinator's sync scheduler calls it each time
/// it looks for due syncs (negative or NaN values are taken as 0).
pub fn set_sync_lag(secs: f64) {
    let secs = if secs.is_finite() && secs > 0.0 {
        secs
    } else {
        0.0
    };
    metrics::gauge!(SYNC_LAG).set(secs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_labels_are_the_serialised_names() {
        for kind in [
            ErrorKind::Transient,
            ErrorKind::Throttled,
            ErrorKind::Auth,
            ErrorKind::Connect,
            ErrorKind::Permanent,
            ErrorKind::Config,
            ErrorKind::Protocol,
            ErrorKind::StateLost,
        ] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::String(error_kind_name(kind).into()))
            );
        }
        for kind in [
            FailureKind::OverQuota,
            FailureKind::TooLarge,
            FailureKind::Rejected,
            FailureKind::FolderRefused,
            FailureKind::VanishedFromSource,
            FailureKind::WrongMessage,
            FailureKind::Transient,
            FailureKind::Auth,
            FailureKind::Connect,
            FailureKind::Other,
        ] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::String(failure_kind_name(kind).into()))
            );
        }
    }

    #[test]
    fn metric_names_are_prefixed_and_valid() {
        for name in [
            MESSAGES_COPIED,
            BYTES_COPIED,
            FLAGS_UPDATED,
            EXPUNGED,
            MESSAGE_FAILURES,
            TASK_FAILURES,
            TASKS,
            TASK_DURATION,
            IMAP_CONNECTIONS,
            QUEUE_DEPTH,
            MIGRATIONS,
            SYNC_LAG,
        ] {
            assert!(name.starts_with("mailferry_"), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }
}
