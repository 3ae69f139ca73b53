//! IMAP errors, each with the kind that decides what happens next and a sentence for people.

use mailferry_proto::ErrorKind;
use mailferry_proto::task::Side;

/// A failure talking to one account.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ImapError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Which side.
    pub side: Side,
    /// One plain sentence naming the account and what to do. Never contains a secret.
    pub message: String,
}

impl ImapError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, side: Side, message: impl Into<String>) -> ImapError {
        ImapError {
            kind,
            side,
            message: message.into(),
        }
    }

    /// Whether retrying (after a reconnect) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient | ErrorKind::Throttled)
    }
}

/// Result alias.
pub type ImapResult<T> = Result<T, ImapError>;
