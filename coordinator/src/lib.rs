//! mailferry's control plane: folder mapping, planning, and driving a migration from tasks and
//! outcomes to a summary. It never opens IMAP itself: every server contact is a task a worker runs.
#![warn(missing_docs)]

pub mod aggregate;
pub mod api;
pub mod check;
pub mod control;
pub mod dispatch;
pub mod folders;
pub mod migration;
pub mod options;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod schedule;
