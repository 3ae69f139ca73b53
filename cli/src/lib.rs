//! The parsers of what users hand the `mailferry` binary, kept apart from the binary so the
//! fuzzer (`fuzz/`) can feed them: batch CSV files ([`batch`]), endpoint URLs ([`endpoint`]) and
//! the bounded reading and quoting of user-given text ([`input`]).

pub mod batch;
pub mod endpoint;
pub mod input;
