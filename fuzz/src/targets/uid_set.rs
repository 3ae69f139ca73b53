//! `mailbox::uid_set`: the UID sets of APPENDUID and COPYUID response codes. Checks that the
//! count is taken without expanding, that a set is expanded only within the limit asked for,
//! and that what comes back is exactly what was counted, each UID a valid one.

use mailferry_worker::mailbox::uid_set::{UidSetError, count, parse};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "uid_set",
    about: "mailbox::uid_set: APPENDUID/COPYUID sets counted before they are expanded",
    run,
    dictionaries: &[dict::NUMBERS, UID_SET],
    generate: None,
    max_len: 64 * 1024,
    hidden: false,
};

/// Tokens of the `uid-set` syntax.
const UID_SET: &[&[u8]] = &[b":", b",", b"1:4294967295", b"4294967295", b"0", b"1:1000001,"];

fn run(data: &[u8]) {
    let [max_sel, text @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // The limit an APPEND group gives: its message count, small.
    let max = usize::from(*max_sel);
    let counted = count(text);
    match parse(text, max) {
        Ok(uids) => {
            assert_eq!(counted, Ok(uids.len() as u64), "{text:?}");
            assert!(uids.len() <= max, "{} UIDs past the limit {max}", uids.len());
            assert!(!uids.contains(&0), "UID 0 from {text:?}");
        }
        Err(UidSetError::TooMany { count: n, max: m }) => {
            assert_eq!(counted, Ok(n));
            assert!(n > m as u64);
        }
        Err(UidSetError::Syntax(_)) => assert!(counted.is_err(), "{text:?}"),
    }
}
