//! Harness for mailferry's scenario tests against real servers.
//!
//! The harness checks a migration's result independently of the code under test: it talks to
//! the two Dovecot servers started by `scripts/test-servers` with its own small async-imap
//! client, and never uses the worker crate.
//!
//! * [`servers`]: find or start the source and target servers, create a unique user per test.
//! * [`imap_client`]: seed and read accounts (create, subscribe, append, list) by raw name.
//! * [`fixtures`]: deterministic messages, ordinary and awkward.
//! * [`cli`]: find (or build) the `mailferry` binary and run it with a timeout.
//! * [`run`]: run it between two ends (scripted or real) and read its JSON summary.
//! * [`verify`]: snapshot an account and compare source with target through a folder mapping.
//! * [`fake_server`]: a scripted fake IMAP server for misbehaving-server cases.
//! * [`scripted`]: an honest minimal IMAP server over an in-memory account, with quirks and
//!   per-command overrides, for behaviours Dovecot cannot play.
//! * [`cyrus`]: the private Cyrus IMAP server and its test users.
//! * [`pymap`]: the private pymap server (a Python IMAP server) and its test users.
//! * [`proxy`]: a TCP proxy in front of a real server that can cut one connection mid-stream.
//! * [`otlp`]: an in-process OTLP trace receiver that keeps the spans fleet processes export.
//! * [`oauth2`]: OAuth 2.0 access tokens (JWTs) the test servers accept, current or expired.
//! * [`tls`]: a private CA and a certificate for a coordinator serving gRPC over TLS.
//!
//! A typical scenario:
//!
//! ```no_run
//! # async fn scenario() -> anyhow::Result<()> {
//! use mailferry_tests::{Fixtures, ImapClient, Side, TestServers, compare, snapshot};
//! let servers = TestServers::get();
//! let src = servers.new_user(Side::Source, "basic")?;
//! let dst = servers.new_user(Side::Target, "basic")?;
//! let mut fixtures = Fixtures::new(42);
//! let mut client = ImapClient::connect(&src).await?;
//! client.append("INBOX", &fixtures.ordinary()).await?;
//! // ... run the `mailferry` binary from src to dst ...
//! let (before, after) = (snapshot(&src).await?, snapshot(&dst).await?);
//! compare(&before, &after, &[("INBOX", "INBOX")])?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod cli;
pub mod cyrus;
pub mod fake_server;
pub mod fixtures;
pub mod fleet;
pub mod imap_client;
pub mod oauth2;
pub mod otlp;
pub mod proxy;
pub mod pymap;
pub mod run;
pub mod scripted;
pub mod servers;
pub mod tls;
pub mod verify;

pub use fixtures::{Fixture, Fixtures, SplitMix64, sha256_hex};
pub use imap_client::{FolderInfo, FolderStatus, ImapClient, TaggedOutcome};
pub use servers::{ServerPorts, Side, TestAccount, TestServers};
pub use verify::{
    Diff, FolderDiff, FolderSnapshot, MailboxSnapshot, MessageKey, compare, personal_only,
    snapshot, snapshot_with, statuses, unchanged,
};
