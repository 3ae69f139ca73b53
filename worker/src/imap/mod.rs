//! The only code that speaks IMAP: connections, TLS, login, the wire syntax, and the commands the
//! engine needs (LIST, STATUS, EXAMINE, UID FETCH, pipelined APPEND and MULTIAPPEND, ...).
//!
//! mailferry has its own small client rather than a general IMAP library: the engine needs true
//! pipelining with LITERAL+, APPENDUID from every APPEND, an inactivity timeout on every wait, and
//! a parser that survives servers' quirks instead of closing the session over them.

pub mod buffers;
pub mod conn;
pub mod error;
pub mod ops;
pub mod tls;
pub mod trace;
pub mod wire;

pub use conn::{ConnectOptions, Connection};
pub use error::{ImapError, ImapResult};
