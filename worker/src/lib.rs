//! Everything in mailferry that touches IMAP: the client ([`imap`]), IMAP facts as types
//! ([`mailbox`]), and the engine that runs one task into one outcome ([`engine`]).
#![warn(missing_docs)]

pub mod engine;
pub mod imap;
pub mod mailbox;
pub mod runner;
