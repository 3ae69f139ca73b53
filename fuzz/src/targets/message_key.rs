//! `mailbox::key`: message keys and the header parsing behind them (field splitting, unfolding,
//! mail-parser for dates, addresses and encoded words). Checks that keys are deterministic, that
//! subjects stay within their length, and that converting CRLF line ends to LF (as some servers
//! do on APPEND) changes no key, digest or subject.

use mailferry_worker::mailbox::key::{body_digest, fallback_key, header_key, refine, subject};

use super::{Target, dict, generate};

/// The target.
pub const TARGET: Target = Target {
    name: "message_key",
    about: "mailbox::key: header keys, fallback keys, body digests, subjects",
    run,
    dictionaries: &[dict::HEADERS, dict::NUMBERS],
    generate: Some(generate::header_block),
    max_len: 64 * 1024,
    hidden: false,
};

/// `data` with every CRLF turned into LF, or `None` when it holds a bare CR (then the two
/// spellings are not the same message).
fn crlf_to_lf(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b == b'\r' {
            if data.get(i + 1) != Some(&b'\n') {
                return None;
            }
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

fn run(data: &[u8]) {
    let key = header_key(data);
    assert_eq!(key, header_key(data), "header key not deterministic");
    let subj = subject(data);
    assert!(subj.chars().count() <= 200, "subject of {} characters", subj.chars().count());
    let fallback = fallback_key(data);
    let body = body_digest(data);
    if let Some(k) = key {
        let _ = refine(k, body);
    }
    if let Some(lf) = crlf_to_lf(data) {
        assert_eq!(header_key(&lf), key, "LF line ends changed the header key");
        assert_eq!(fallback_key(&lf), fallback, "LF line ends changed the fallback key");
        assert_eq!(body_digest(&lf), body, "LF line ends changed the body digest");
        assert_eq!(subject(&lf), subj, "LF line ends changed the subject");
    }
}
