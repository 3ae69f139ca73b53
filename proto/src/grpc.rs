//! The gRPC API, generated from `proto/mailferry/v1/migration.proto` (feature `grpc`).
//!
//! Only generated code and the descriptor set live here; validation of requests into domain
//! types happens at the edge, in the coordinator's `api` module.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `mailferry.v1`: messages, the `MigrationService` client and server.
pub mod v1 {
    tonic::include_proto!("mailferry.v1");
}

/// The encoded file descriptor set of the API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mailferry_descriptor.bin"));
