//! `mailbox::name`: a LISTed raw name, its delimiter and the personal prefix into a folder path.
//! Checks that the decoded path is a fixed point: spelling it for the same server and decoding
//! that again gives the same path, without a decode error (for names in the personal namespace
//! whose delimiter stands for itself in modified UTF-7, as every real server's does).

use mailferry_worker::mailbox::name::{MailboxName, decode_name, encode_path};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "mailbox_name",
    about: "mailbox::name: decode_name and encode_path agree",
    run,
    dictionaries: &[dict::MUTF7],
    generate: None,
    max_len: 16 * 1024,
    hidden: false,
};

/// Delimiters the first input byte picks from; `ä` and `&` stand for servers that send nonsense.
const DELIMITERS: [Option<char>; 6] = [None, Some('/'), Some('.'), Some('\\'), Some('&'), Some('ä')];
/// Personal namespace prefixes the second input byte picks from.
const PREFIXES: [&str; 5] = ["", "INBOX.", "INBOX/", "Mail/", "inbox."];

fn run(data: &[u8]) {
    let [delimiter_sel, prefix_sel, rest @ ..] = data else {
        return;
    };
    let delimiter = DELIMITERS[usize::from(*delimiter_sel) % DELIMITERS.len()];
    let prefix = PREFIXES[usize::from(*prefix_sel) % PREFIXES.len()];
    let raw = String::from_utf8_lossy(rest).into_owned();
    let name = MailboxName::new(raw.clone(), delimiter, prefix);
    assert_eq!(name.raw, raw);
    let decoded = decode_name(&raw, delimiter, prefix);
    assert_eq!(decoded, name.decoded);
    let _ = decoded.path.display_slash();
    let faithful_delimiter = delimiter.is_none_or(|d| d.is_ascii_graphic() && d != '&');
    if !(decoded.in_personal_namespace && faithful_delimiter) {
        return;
    }
    let spelt = encode_path(&decoded.path, delimiter, prefix);
    let again = decode_name(&spelt, delimiter, prefix);
    assert_eq!(again.decode_error, None, "spelt {raw:?} as {spelt:?}");
    assert_eq!(again.path, decoded.path, "spelt {raw:?} as {spelt:?}");
}
