//! Error kinds: the one field that decides what happens after a failure.

use serde::{Deserialize, Serialize};

/// What a failed operation means for the next step. The kind alone decides: retry, back off,
/// stop the mailbox, or record the failure against one message and go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Network trouble, BYE, timeouts: retry with backoff.
    Transient,
    /// The server asked us to slow down: back off longer, use fewer connections.
    Throttled,
    /// Credentials refused: stop this mailbox and tell the user; never retry in a loop.
    Auth,
    /// Could not reach the server or establish TLS.
    Connect,
    /// A message or folder the server refuses for good: recorded, the rest goes on.
    Permanent,
    /// The configuration or the request is wrong; nothing ran.
    Config,
    /// The server broke the protocol in a way we cannot work around.
    Protocol,
    /// The fleet's store no longer knows the task's migration or pair (Redis was flushed or the
    /// migration deleted): the task is dead-lettered, never run.
    StateLost,
}

/// Why one message (or folder) could not be migrated. Each kind has a fixed piece of advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The target mailbox is over quota (`[OVERQUOTA]`).
    OverQuota,
    /// The message is larger than the target accepts (`[TOOBIG]`, `[LIMIT]`, APPENDLIMIT).
    TooLarge,
    /// The target refused the message's content.
    Rejected,
    /// The target refused to create the folder.
    FolderRefused,
    /// The message vanished from the source before it could be fetched.
    VanishedFromSource,
    /// Asked for one message, the source answered with another (another UID): a protocol
    /// failure of the source server for that message, not a deletion.
    WrongMessage,
    /// The copy could not be completed after retries (network, server errors).
    Transient,
    /// The mailbox could not be logged into.
    Auth,
    /// The source or target could not be reached.
    Connect,
    /// Anything else the server said no to.
    Other,
}

impl FailureKind {
    /// The documented code of this kind, as in the JSON summary (`too_large`, `over_quota`…):
    /// the one name `migrate --json`, `ctl failures` and `--report-dir` all use.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::OverQuota => "over_quota",
            FailureKind::TooLarge => "too_large",
            FailureKind::Rejected => "rejected",
            FailureKind::FolderRefused => "folder_refused",
            FailureKind::VanishedFromSource => "vanished_from_source",
            FailureKind::WrongMessage => "wrong_message",
            FailureKind::Transient => "transient",
            FailureKind::Auth => "auth",
            FailureKind::Connect => "connect",
            FailureKind::Other => "other",
        }
    }

    /// What the user should do about a failure of this kind.
    pub fn advice(self) -> &'static str {
        match self {
            FailureKind::OverQuota => {
                "free space in the target mailbox or raise its quota, then run again"
            }
            FailureKind::TooLarge => {
                "raise the target's message size limit, or leave such messages out with --max-size, then run again"
            }
            FailureKind::Rejected => {
                "the target refused this message's content; check the target server's log, or copy it by hand"
            }
            FailureKind::FolderRefused => {
                "rename the folder with --map 'SOURCE=TARGET' or leave it out with --exclude, then run again"
            }
            FailureKind::VanishedFromSource => {
                "the message was deleted on the source during the run; nothing to do"
            }
            FailureKind::WrongMessage => {
                "the source server answered with another message than the one asked (a server fault); report it to the source's administrator, then run again"
            }
            FailureKind::Transient => "run again; already copied messages are not copied twice",
            FailureKind::Auth => "check the user name and password (or token), then run again",
            FailureKind::Connect => {
                "check the host name, port and TLS settings, and that the server is reachable"
            }
            FailureKind::Other => "check the target server's log, then run again",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            FailureKind::OverQuota => "target over quota",
            FailureKind::TooLarge => "message larger than the target allows",
            FailureKind::Rejected => "target rejected the message",
            FailureKind::FolderRefused => "target refused the folder",
            FailureKind::VanishedFromSource => "message vanished from the source",
            FailureKind::WrongMessage => "source answered with another message",
            FailureKind::Transient => "copy did not complete",
            FailureKind::Auth => "login failed",
            FailureKind::Connect => "server unreachable",
            FailureKind::Other => "target said no",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_are_the_json_names() {
        use FailureKind::*;
        for kind in [
            OverQuota,
            TooLarge,
            Rejected,
            FolderRefused,
            VanishedFromSource,
            WrongMessage,
            Transient,
            Auth,
            Connect,
            Other,
        ] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::from(kind.code()))
            );
        }
    }
}
