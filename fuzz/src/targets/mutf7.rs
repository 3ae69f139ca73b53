//! `mailbox::mutf7`: the modified UTF-7 codec of folder names. Checks both round trips the
//! module promises: every string encodes to printable ASCII that decodes back to it, and every
//! raw name that decodes re-encodes to exactly the same bytes (only canonical spellings decode).

use mailferry_worker::mailbox::mutf7::{decode, encode};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "mutf7",
    about: "mailbox::mutf7: encode∘decode and decode∘encode round trips",
    run,
    dictionaries: &[dict::MUTF7],
    generate: None,
    max_len: 16 * 1024,
    hidden: false,
};

fn run(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(decoded) = decode(&s) {
        assert_eq!(encode(&decoded), s, "decoded to {decoded:?}");
    }
    let raw = encode(&s);
    assert!(raw.bytes().all(|b| (0x20..0x7f).contains(&b)), "encoded to {raw:?}");
    assert_eq!(decode(&raw).as_deref(), Ok(&*s), "encoded to {raw:?}");
}
