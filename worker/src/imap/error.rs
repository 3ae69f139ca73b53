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
    /// How long the server asked us to wait before trying again.
    pub retry_after: Option<std::time::Duration>,
    /// It happened while connecting or logging in (see [`ImapError::at_login`]).
    pub login: bool,
    /// Set when the task waited for the fleet itself (connection slots, a young store), not for
    /// the server.
    pub waiting: Option<mailferry_proto::task::Waiting>,
    /// The server hung up with `BYE [SERVERBUG] words` (RFC 5530 §3: a bug of its own): the
    /// server's words, code included. Asking the same again meets the same bug, so a caller
    /// that knows which command it was (a CREATE) may fail just that one and go on.
    pub server_bug: Option<String>,
}

impl ImapError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, side: Side, message: impl Into<String>) -> ImapError {
        ImapError {
            kind,
            side,
            message: message.into(),
            retry_after: None,
            login: false,
            waiting: None,
            server_bug: None,
        }
    }

    /// The same error, marked as one of opening a session (connect, TLS, greeting, login): the
    /// coordinator gives up a login that fails the same way a few times in a row.
    pub fn at_login(mut self) -> ImapError {
        self.login = true;
        self
    }

    /// The same error, saying the task waited for the fleet (`waiting`) and when to come back.
    pub fn waiting(
        mut self,
        waiting: mailferry_proto::task::Waiting,
        retry_after: std::time::Duration,
    ) -> ImapError {
        self.waiting = Some(waiting);
        self.retry_after = Some(retry_after);
        self
    }

    /// The same error, saying the server asked to slow down (and for how long, when it said).
    pub fn throttled(mut self, retry_after: Option<std::time::Duration>) -> ImapError {
        self.kind = ErrorKind::Throttled;
        self.retry_after = retry_after;
        self
    }

    /// Whether retrying (after a reconnect) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient | ErrorKind::Throttled)
    }
}

/// Whether a server's words ask to slow down, and for how long when they say: `[THROTTLED]`,
/// `[UNAVAILABLE]` codes are handled where codes are; this reads the text, e.g. Microsoft's
/// "... is throttled. Suggested Backoff Time: 201317 milliseconds".
pub fn throttle_hint(text: &str) -> Option<Option<std::time::Duration>> {
    let lower = text.to_ascii_lowercase();
    let hint = lower.find("suggested backoff time:").and_then(|i| {
        let rest = lower
            .get(i + "suggested backoff time:".len()..)?
            .trim_start();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().ok()?;
        let unit = rest.get(digits.len()..)?.trim_start();
        Some(if unit.starts_with("ms") || unit.starts_with("milli") {
            std::time::Duration::from_millis(n)
        } else {
            std::time::Duration::from_secs(n)
        })
    });
    (hint.is_some() || lower.contains("throttled") || lower.contains("too many simultaneous"))
        .then_some(hint)
}

/// Result alias.
pub type ImapResult<T> = Result<T, ImapError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttling_words_and_backoff_hints() {
        assert_eq!(
            throttle_hint(
                "AV3 BADRequest is throttled. Suggested Backoff Time: 201317 milliseconds"
            ),
            Some(Some(Duration::from_millis(201_317)))
        );
        assert_eq!(throttle_hint("Request is throttled."), Some(None));
        assert_eq!(
            throttle_hint("Too many simultaneous connections. (Failure)"),
            Some(None)
        );
        assert_eq!(throttle_hint("Authentication failed."), None);
    }
}
