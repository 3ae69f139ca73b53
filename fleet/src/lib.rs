//! What connects mailferry's coordinator and workers, and nothing IMAP: the task queue, the
//! store (idempotency cache, folder watermarks, leases) and where credentials come from.
//!
//! Each piece is a trait with an in-process or embedded implementation here; the fleet's
//! RabbitMQ and Redis implementations sit behind the same traits.
#![warn(missing_docs)]

pub mod credentials;
pub mod queue;
pub mod store;

pub use credentials::{CredentialSource, Credentials, MemoryCredentials, Secret};
pub use queue::{InProcessQueue, TaskQueue};
pub use store::{
    CopyEntry, EntryScope, FolderWatermark, SqliteStore, Store, StoreError, embedded_holder,
};
