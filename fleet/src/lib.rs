//! What connects mailferry's coordinator and workers, and nothing IMAP: the task queue, the
//! store (idempotency cache, folder watermarks, leases, connection slots) and where credentials come from.
//!
//! Each piece is a trait with an in-process or embedded implementation here; the fleet's
//! RabbitMQ and Redis implementations sit behind the same traits.
#![warn(missing_docs)]

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod credentials;
pub mod failpoint;
pub mod metrics;
pub mod poison;
pub mod queue;
#[cfg(feature = "redis")]
mod redis_slots;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod seal;
pub mod slots;
mod sqlite_slots;
pub mod store;
pub mod telemetry;
#[cfg(all(feature = "amqp", feature = "redis"))]
pub mod worker_queue;

pub use credentials::{CredentialSource, Credentials, MemoryCredentials, Secret};
pub use queue::{InProcessQueue, TaskQueue};
pub use slots::{Queued, SlotSets, SlotTry, SlotWaiter};
pub use store::{
    CopyEntry, EntryScope, FolderWatermark, SqliteStore, Store, StoreError, embedded_holder,
};
