//! Contracts shared by every mailferry role: the task and outcome envelopes that travel on the
//! queue, the report messages that `check`, `migrate` and (later) the gRPC API print, and the
//! error kinds that decide what happens after a failure.
//!
//! This crate does no I/O and holds no logic beyond validation and (de)serialisation. JSON field
//! names are snake_case, enums are strings, times are RFC 3339: the `--json` output of the CLI is
//! exactly these types serialised.
#![warn(missing_docs)]

pub mod error;
pub mod folder;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod key;
pub mod keys;
pub mod queues;
pub mod report;
pub mod task;

pub use error::{ErrorKind, FailureKind};
pub use folder::{FolderPath, FolderRole};
pub use key::MessageKey;

/// Formats a time as RFC 3339 (UTC, seconds), the one time format of every report.
pub fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
