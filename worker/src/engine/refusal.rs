//! What an APPEND refusal means: a reason of the message's own (quota, size, content), a
//! reason to come back later, or a target folder that takes no mail at all.
//!
//! The last needs more than one answer to tell. A batch therefore starts by sending its
//! messages one at a time and holding their refusals back ([`FolderProbe`]): the first
//! acceptance, or a refusal with other words, shows the folder takes mail, and the held
//! refusals are reported one by one as before. [`FOLD_AFTER`] refusals in a row with the same
//! words and nothing accepted show a folder that takes none (a server refusing APPEND into the
//! folder the session has open read-only, a folder without the right to insert): the batch
//! stops sending and reports one failure for the folder (issue 15), not one per message.
//! This module only decides; `pipeline.rs` sends and records.

use mailferry_proto::FailureKind;

use crate::imap::conn::Completion;

/// Refusals in a row with the same words, and nothing accepted, that show a folder takes no
/// mail. More than one, so one odd message cannot stop a folder; few, so a folder that takes
/// nothing costs a few APPENDs, not one per message.
pub(super) const FOLD_AFTER: usize = 3;

/// What an APPEND refusal means for its message (RFC 5530 codes; RFC 7889 `[TOOBIG]`).
/// `limit` is the target's APPENDLIMIT when it advertises one: a size refusal then states both
/// numbers, exact, so they can never read alike.
pub(super) fn classify(done: &Completion, size: u64, limit: Option<u64>) -> (FailureKind, String) {
    let code = done.code.as_ref().map(|c| c.name.as_str()).unwrap_or("");
    let text = done.text.trim();
    let size_text = match limit {
        Some(l) => format!(
            "{}; the target's limit is {}",
            mailferry_proto::report::bytes_text(size),
            mailferry_proto::report::bytes_text(l)
        ),
        None => mailferry_proto::report::bytes_text(size),
    };
    match code {
        "OVERQUOTA" => (
            FailureKind::OverQuota,
            format!("target over quota ({text})"),
        ),
        "TOOBIG" | "LIMIT" => (
            FailureKind::TooLarge,
            format!("the message ({size_text}) is larger than the target allows ({text})"),
        ),
        "UNAVAILABLE" | "SERVERBUG" | "INUSE" => {
            (FailureKind::Transient, format!("[{code}] {text}"))
        }
        _ if crate::imap::error::throttle_hint(text).is_some() => {
            (FailureKind::Transient, format!("{code} {text}"))
        }
        _ if text.to_ascii_lowercase().contains("quota") => (
            FailureKind::OverQuota,
            format!("target over quota ({text})"),
        ),
        _ if text.to_ascii_lowercase().contains("too large")
            || text.to_ascii_lowercase().contains("too big") =>
        {
            (
                FailureKind::TooLarge,
                format!("the message ({size_text}) is larger than the target allows ({text})"),
            )
        }
        _ => (
            FailureKind::Rejected,
            format!("the target refused the message: {}", answer(done)),
        ),
    }
}

/// The server's own words: `[CODE] text`, or the text alone.
pub(super) fn answer(done: &Completion) -> String {
    let text = done.text.trim();
    match &done.code {
        Some(c) => format!("[{}] {text}", c.name),
        None => text.to_owned(),
    }
}

/// Whether a refusal could be the folder's rather than the message's. `[PARSE]` (RFC 5530
/// §3) says the message itself could not be parsed.
fn may_be_the_folders(kind: FailureKind, done: &Completion) -> bool {
    kind == FailureKind::Rejected && done.code.as_ref().is_none_or(|c| c.name != "PARSE")
}

/// A message's failure: the item, its kind and the reason.
pub(super) type Failed<T> = (T, FailureKind, String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing accepted yet; refusals with the same words are held back.
    Probing,
    /// The folder took a message, or refused one for a reason of the message's own.
    TakesMail,
    /// The folder takes no mail: [`FOLD_AFTER`] refusals with these words.
    Refuses(String),
}

/// The first APPEND answers of a batch (see the module documentation).
#[derive(Debug)]
pub(super) struct FolderProbe<T> {
    state: State,
    /// The words of the held refusals.
    words: Option<String>,
    /// Refusals held back while probing.
    held: Vec<Failed<T>>,
    /// Messages not sent while probing because an earlier copy of the same message is held
    /// (DESIGN.md "Order"), with the reason to report if the folder takes mail after all.
    unsent: Vec<Failed<T>>,
}

impl<T> Default for FolderProbe<T> {
    fn default() -> Self {
        FolderProbe {
            state: State::Probing,
            words: None,
            held: Vec::new(),
            unsent: Vec::new(),
        }
    }
}

impl<T> FolderProbe<T> {
    /// Whether messages must still be sent one at a time, each answer awaited.
    pub(super) fn probing(&self) -> bool {
        self.state == State::Probing
    }

    /// The words of the refusals that showed the folder takes no mail.
    pub(super) fn folder_refused(&self) -> Option<&str> {
        match &self.state {
            State::Refuses(words) => Some(words),
            _ => None,
        }
    }

    /// An APPEND was accepted: the folder takes mail. Returns the held failures, to report.
    pub(super) fn accepted(&mut self) -> Vec<Failed<T>> {
        self.settle()
    }

    /// The APPEND of one message was refused: `kind` and `reason` as [`classify`] says, `done`
    /// the answer. Returns the failures to report now (none while they are held).
    pub(super) fn refused(
        &mut self,
        item: T,
        kind: FailureKind,
        reason: String,
        done: &Completion,
    ) -> Vec<Failed<T>> {
        let words = answer(done);
        let same = self.words.as_ref().is_none_or(|w| *w == words);
        if self.state != State::Probing || !may_be_the_folders(kind, done) || !same {
            let mut out = self.settle();
            out.push((item, kind, reason));
            return out;
        }
        self.held.push((item, kind, reason));
        if self.held.len() >= FOLD_AFTER {
            self.state = State::Refuses(words);
            self.held.clear();
            self.unsent.clear();
        } else {
            self.words = Some(words);
        }
        Vec::new()
    }

    /// A message is not sent because an earlier copy of it failed. Returns it to report now,
    /// or `None` while that failure is held (then it is reported with it, or counted in the
    /// folder's failure).
    pub(super) fn not_sent(
        &mut self,
        item: T,
        kind: FailureKind,
        reason: String,
    ) -> Option<Failed<T>> {
        match self.state {
            State::Probing if !self.held.is_empty() => {
                self.unsent.push((item, kind, reason));
                None
            }
            _ => Some((item, kind, reason)),
        }
    }

    /// The batch sent everything. Two or more refusals with the same words and nothing
    /// accepted is a folder that takes no mail (every message of the batch was tried); one
    /// refusal is its message's. Returns the failures to report.
    pub(super) fn finish(&mut self) -> Vec<Failed<T>> {
        if self.state == State::Probing && self.held.len() >= 2 {
            self.state = State::Refuses(self.words.take().unwrap_or_default());
            self.held.clear();
            self.unsent.clear();
            return Vec::new();
        }
        self.settle()
    }

    fn settle(&mut self) -> Vec<Failed<T>> {
        if self.state == State::Probing {
            self.state = State::TakesMail;
        }
        let mut out = std::mem::take(&mut self.held);
        out.append(&mut self.unsent);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::wire::{Code, Status};

    fn no(code: &str, text: &str) -> Completion {
        Completion {
            status: Status::No,
            code: (!code.is_empty()).then(|| Code {
                name: code.into(),
                args: vec![],
            }),
            text: text.into(),
            untagged: vec![],
        }
    }

    fn refuse(p: &mut FolderProbe<u32>, uid: u32, done: &Completion) -> Vec<u32> {
        let (kind, reason) = classify(done, 10, None);
        p.refused(uid, kind, reason, done)
            .into_iter()
            .map(|(u, _, _)| u)
            .collect()
    }

    #[test]
    fn append_refusals_are_classified() {
        assert_eq!(
            classify(&no("OVERQUOTA", "Quota exceeded"), 10, None).0,
            FailureKind::OverQuota
        );
        assert_eq!(
            classify(&no("TOOBIG", "too big"), 10, None).0,
            FailureKind::TooLarge
        );
        assert_eq!(
            classify(&no("LIMIT", "limit"), 10, None).0,
            FailureKind::TooLarge
        );
        assert_eq!(
            classify(
                &no("", "Quota exceeded (mailbox for user is full)"),
                10,
                None
            )
            .0,
            FailureKind::OverQuota
        );
        let (kind, reason) = classify(&no("", "Invalid message"), 10, None);
        assert_eq!(kind, FailureKind::Rejected);
        assert!(reason.ends_with(": Invalid message"), "{reason}");
        assert_eq!(
            classify(&no("UNAVAILABLE", "later"), 10, None).0,
            FailureKind::Transient
        );
        assert_eq!(
            answer(&no("NOPERM", "Permission denied")),
            "[NOPERM] Permission denied"
        );
    }

    #[test]
    fn the_same_refusal_three_times_with_nothing_accepted_is_the_folders() {
        let read_only = no("", "Current box is selected READ-ONLY.");
        let mut p = FolderProbe::default();
        assert!(refuse(&mut p, 1, &read_only).is_empty(), "held");
        assert!(
            p.not_sent(7, FailureKind::Transient, "dup".into())
                .is_none()
        );
        assert!(refuse(&mut p, 2, &read_only).is_empty(), "held");
        assert!(refuse(&mut p, 3, &read_only).is_empty(), "held");
        assert_eq!(
            p.folder_refused(),
            Some("Current box is selected READ-ONLY.")
        );
        assert!(!p.probing());
        assert!(p.finish().is_empty(), "counted in the folder's failure");
    }

    #[test]
    fn an_acceptance_or_other_words_release_the_held_refusals() {
        let bad = no("", "Invalid message");
        let mut p = FolderProbe::default();
        assert!(refuse(&mut p, 1, &bad).is_empty());
        assert!(
            p.not_sent(7, FailureKind::Transient, "dup".into())
                .is_none()
        );
        let released: Vec<u32> = p.accepted().into_iter().map(|(u, _, _)| u).collect();
        assert_eq!(released, [1, 7]);
        assert!(!p.probing() && p.folder_refused().is_none());
        // Once the folder took mail, refusals are reported at once, whatever their words.
        assert_eq!(refuse(&mut p, 2, &bad), [2]);
        assert_eq!(refuse(&mut p, 3, &bad), [3]);
        assert_eq!(refuse(&mut p, 4, &bad), [4]);
        assert!(p.folder_refused().is_none());

        let mut p = FolderProbe::default();
        assert!(refuse(&mut p, 1, &bad).is_empty());
        assert_eq!(refuse(&mut p, 2, &no("", "Another reason")), [1, 2]);
        assert!(!p.probing());
    }

    #[test]
    fn reasons_of_the_message_never_make_a_folder_refusal() {
        for done in [no("OVERQUOTA", "full"), no("PARSE", "bad header")] {
            let mut p = FolderProbe::default();
            assert_eq!(refuse(&mut p, 1, &done), [1]);
            assert_eq!(refuse(&mut p, 2, &done), [2]);
            assert_eq!(refuse(&mut p, 3, &done), [3]);
            assert!(p.folder_refused().is_none());
        }
    }

    #[test]
    fn a_short_batch_is_the_folders_when_all_of_it_was_refused_alike() {
        let denied = no("NOPERM", "Permission denied");
        let mut p = FolderProbe::default();
        refuse(&mut p, 1, &denied);
        refuse(&mut p, 2, &denied);
        assert!(p.finish().is_empty());
        assert_eq!(p.folder_refused(), Some("[NOPERM] Permission denied"));

        let mut p = FolderProbe::default();
        refuse(&mut p, 1, &denied);
        let one: Vec<u32> = p.finish().into_iter().map(|(u, _, _)| u).collect();
        assert_eq!(one, [1], "one refusal is its message's");
        assert!(p.folder_refused().is_none());
    }

    #[test]
    fn a_size_refusal_states_both_numbers_exactly() {
        let no = |code: &str, text: &str| {
            let line = format!("a1 NO [{code}] {text}\r\n");
            match crate::imap::wire::parse(&bytes::Bytes::from(line)) {
                Ok(crate::imap::wire::Response::Tagged {
                    status, code, text, ..
                }) => Completion {
                    status,
                    code,
                    text,
                    untagged: vec![],
                },
                other => panic!("{other:?}"),
            }
        };
        let (kind, reason) = classify(&no("TOOBIG", "Mail too large"), 128_107, Some(102_400));
        assert_eq!(kind, FailureKind::TooLarge);
        assert!(
            reason.contains("128,107 bytes; the target's limit is 102,400 bytes"),
            "{reason}"
        );
    }
}
