//! `imap::wire::quote`: quoting a command argument. Checks the round trip: whatever `quote`
//! produces tokenizes back to exactly the original string, and it refuses (asks for a literal)
//! exactly when the string holds CR, LF, NUL or 8-bit characters.

use bytes::Bytes;
use mailferry_worker::imap::wire::{Value, quote, tokenize};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "wire_quote",
    about: "imap::wire::quote: quote then tokenize gives the string back",
    run,
    dictionaries: &[dict::IMAP, dict::MUTF7],
    generate: None,
    max_len: 16 * 1024,
    hidden: false,
};

fn run(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let needs_literal = s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0) || b >= 0x80);
    match quote(&s) {
        Some(q) => {
            assert!(!needs_literal, "quoted {s:?}, which needs a literal");
            let (values, consumed) = tokenize(q.as_bytes()).expect("a quoted string nests no list");
            assert_eq!(consumed, q.len());
            assert_eq!(
                values,
                vec![Value::Str(Bytes::copy_from_slice(s.as_bytes()))],
                "quoted form {q:?}"
            );
        }
        None => assert!(needs_literal, "refused to quote {s:?}"),
    }
}
