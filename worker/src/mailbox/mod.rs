//! IMAP mailbox facts as types: the modified UTF-7 codec of folder names ([`mutf7`]), a server's
//! raw folder name with its delimiter and decoded path ([`name`]), and the message keys that say
//! whether two messages are the same ([`key`]).
//!
//! Everything here is pure: no sockets, no async, no state. The IMAP layer feeds it bytes the
//! server sent and uses what comes back to talk to the other server.

pub mod key;
pub mod mutf7;
pub mod name;
pub mod uid_set;
