//! `imap::wire::parse`: one framed response into a [`Response`]. Checks the shape of what comes
//! back (a tag holds no space, continuations come from `+` lines), that it is no bigger than the
//! input, and that the accessors the engine uses (`numbered`, `keyword`, `Debug` for logs) hold.

use bytes::Bytes;
use mailferry_worker::imap::wire::{Response, parse};

use super::wire_tokenize::content_size;
use super::{Target, dict, generate};

/// The target.
pub const TARGET: Target = Target {
    name: "wire_parse",
    about: "imap::wire::parse: tagged, untagged, codes, continuations",
    run,
    dictionaries: &[dict::IMAP, dict::NUMBERS],
    generate: Some(generate::response),
    max_len: 256 * 1024,
    hidden: false,
};

fn run(data: &[u8]) {
    // Lists nested deeper than the limit are refused (`TooDeep`), never a stack overflow.
    let Ok(response) = parse(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let limit = 3 * data.len() + 8;
    match &response {
        Response::Tagged { tag, code, text, .. } => {
            assert!(!tag.contains(' '), "tag {tag:?} holds a space");
            let code_size = code.as_ref().map_or(0, |c| c.name.len() + content_size(&c.args));
            assert!(code_size + text.len() <= limit, "response larger than its input");
        }
        Response::UntaggedStatus { code, text, .. } => {
            assert!(data.starts_with(b"* "), "untagged status from a line without '* '");
            let code_size = code.as_ref().map_or(0, |c| c.name.len() + content_size(&c.args));
            assert!(code_size + text.len() <= limit, "response larger than its input");
        }
        Response::Untagged(values) => {
            assert!(content_size(values) <= limit, "response larger than its input");
        }
        Response::Continue(text) => {
            assert!(data.starts_with(b"+"), "continuation from a line without '+'");
            assert!(text.len() <= limit, "response larger than its input");
        }
    }
    let _ = response.numbered();
    let _ = response.keyword();
    let _ = format!("{response:?}");
}
