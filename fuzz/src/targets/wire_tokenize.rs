//! `imap::wire::tokenize`: the value tokenizer used for response codes and untagged data.
//! Checks that it consumes no more than it was given and that what it returns is no bigger than
//! its input (a parser that amplifies input can be made to exhaust memory).

use mailferry_worker::imap::wire::{Value, tokenize};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "wire_tokenize",
    about: "imap::wire::tokenize: atoms, strings, literals, nested lists",
    run,
    dictionaries: &[dict::IMAP, dict::NUMBERS],
    generate: None,
    max_len: 256 * 1024,
    hidden: false,
};

/// Bytes of content in `values` (atoms, strings, one per NIL and list), exercising every
/// accessor the engine calls on values.
pub fn content_size(values: &[Value]) -> usize {
    values
        .iter()
        .map(|v| {
            let _ = v.as_u64();
            match v {
                Value::Atom(a) => a.len(),
                Value::Str(s) => {
                    let _ = v.as_text();
                    s.len()
                }
                Value::Nil => 1,
                Value::List(l) => 1 + content_size(l),
            }
        })
        .sum()
}

fn run(data: &[u8]) {
    // Lists nested deeper than the limit are refused (`TooDeep`), never a stack overflow.
    let Ok((values, consumed)) = tokenize(data) else {
        return;
    };
    assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
    // Lossy UTF-8 may turn one stray byte into the three of U+FFFD.
    let size = content_size(&values);
    assert!(size <= 3 * data.len() + 1, "{size} bytes of values from {} bytes", data.len());
    let _ = format!("{values:?}");
}
