//! `imap::error::throttle_hint`: provider backoff hints in response text (Microsoft's
//! "Suggested Backoff Time: N milliseconds"). Checks that a hint is only found where the phrase
//! is, and that the phrase appended to any text is read back with its number and unit.

use std::time::Duration;

use mailferry_worker::imap::error::throttle_hint;

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "throttle_hint",
    about: "imap::error::throttle_hint: backoff hints in server text",
    run,
    dictionaries: &[dict::THROTTLE, dict::NUMBERS],
    generate: None,
    max_len: 16 * 1024,
    hidden: false,
};

const PHRASE: &str = "suggested backoff time:";

fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let has_phrase = text.to_ascii_lowercase().contains(PHRASE);
    if let Some(Some(_)) = throttle_hint(&text) {
        assert!(has_phrase, "a backoff time without the phrase");
    }
    if has_phrase {
        return;
    }
    let n = data.iter().fold(0u64, |n, &b| n.wrapping_mul(31).wrapping_add(u64::from(b)));
    let ms = format!("{text} Suggested Backoff Time: {n} milliseconds");
    assert_eq!(throttle_hint(&ms), Some(Some(Duration::from_millis(n))), "{ms:?}");
    let secs = format!("{text} Suggested Backoff Time: {n} seconds");
    assert_eq!(throttle_hint(&secs), Some(Some(Duration::from_secs(n))), "{secs:?}");
}
