//! Message keys: what makes two messages "the same" on both sides of a folder pair
//! (DESIGN.md, "Message key").
//!
//! A header key is a digest of a few identifying header fields, normalised so that a server
//! refolding a line, re-encoding a subject or storing a date in another zone does not change it.
//! Messages with none of those fields get a [`fallback_key`] over the whole message. Where a key
//! is ambiguous the planner asks for a [`body_digest`] and [`refine`]s the key with it.
//!
//! Every digest is SHA-256 truncated to 16 bytes, over a domain-separated, length-prefixed,
//! field-tagged canonical form, so that different kinds of input (or different combinations of
//! fields) cannot produce the same bytes to hash. Changing any normalisation here changes keys
//! and therefore what a rerun thinks is already copied: bump the domain strings if you must.
//!
//! Everything here is total: any bytes, including 8-bit and malformed input, give a result and
//! never a panic. This module does no I/O.

use mail_parser::{HeaderValue, MessageParser};
use mailferry_proto::MessageKey;
use sha2::{Digest, Sha256};

/// The header fields a key is made of, as the worker requests them:
/// `BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM TO SUBJECT RECEIVED)]` (RFC 3501 §6.4.5).
pub const KEY_HEADER_FIELDS: &str = "MESSAGE-ID DATE FROM TO SUBJECT RECEIVED";

/// Longest subject kept for reports, in characters.
const SUBJECT_MAX_CHARS: usize = 200;

/// Tags of the canonical form, one per field, in hashing order.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Tag {
    MessageId = 1,
    Date = 2,
    From = 3,
    To = 4,
    Subject = 5,
    Received = 6,
}

impl Tag {
    const ALL: [(Tag, &'static str); 6] = [
        (Tag::MessageId, "message-id"),
        (Tag::Date, "date"),
        (Tag::From, "from"),
        (Tag::To, "to"),
        (Tag::Subject, "subject"),
        (Tag::Received, "received"),
    ];
}

/// One header field: its name and its value unfolded (RFC 5322 §2.2.3: folding CRLFs removed,
/// the whitespace after them kept).
struct Field<'a> {
    name: &'a [u8],
    value: Vec<u8>,
}

/// Splits a header block into fields, stopping at the first empty line. Lines end in CRLF, LF
/// or (tolerated) bare CR. A line that is neither a field nor a continuation is ignored, along
/// with any continuation lines that follow it.
fn fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut in_garbage = false;
    for line in lines(block) {
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(f) = out.last_mut().filter(|_| !in_garbage) {
                f.value.extend_from_slice(line);
            }
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let name = line.get(..colon).map(trim_ascii).unwrap_or_default();
                let value = line.get(colon + 1..).unwrap_or_default().to_vec();
                out.push(Field { name, value });
                in_garbage = false;
            }
            None => in_garbage = true,
        }
    }
    out
}

/// The lines of `b` without their terminators (CRLF, LF or bare CR).
fn lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = b;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match rest.iter().position(|&c| c == b'\r' || c == b'\n') {
            Some(i) => {
                let len = terminator_len(rest, i);
                (rest.get(..i)?, rest.get(i + len..)?)
            }
            None => (rest, &[][..]),
        };
        rest = next;
        Some(line)
    })
}

/// Length of the line terminator starting at `i` (which holds CR or LF): 2 for CRLF, else 1.
fn terminator_len(b: &[u8], i: usize) -> usize {
    if b.get(i) == Some(&b'\r') && b.get(i + 1) == Some(&b'\n') {
        2
    } else {
        1
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Replaces every run of ASCII whitespace with one space and trims both ends.
fn collapse(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for word in b.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    out
}

fn collapse_str(s: &str) -> String {
    s.split(|c: char| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses one field on its own with mail-parser, which decodes RFC 2047 encoded words, dates and
/// address lists leniently and never panics.
fn parse_one<T>(
    name: &str,
    value: &[u8],
    read: impl FnOnce(&HeaderValue<'_>) -> Option<T>,
) -> Option<T> {
    let mut block = Vec::with_capacity(name.len() + value.len() + 6);
    block.extend_from_slice(name.as_bytes());
    block.extend_from_slice(b": ");
    block.extend_from_slice(value);
    block.extend_from_slice(b"\r\n\r\n");
    let message = MessageParser::new().parse_headers(&block)?;
    let header = message.headers().first()?;
    read(&header.value)
}

/// Message-ID: all whitespace removed (folding may split it), angle brackets and case kept as
/// given. The local part's case is significant (RFC 5322 §3.6.4 compares ids as a whole), and a
/// server stores the id byte for byte, so preserving case costs nothing.
fn norm_message_id(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect()
}

/// Date: the UTC instant in seconds, so `+0200` and `Z` spellings of one moment agree; a date
/// that does not parse is its whitespace-collapsed raw text, marked so it cannot equal a number.
fn norm_date(value: &[u8]) -> Vec<u8> {
    let instant = parse_one("Date", value, |v| match v {
        HeaderValue::DateTime(d) if d.is_valid() => Some(d.to_timestamp()),
        _ => None,
    });
    match instant {
        Some(t) => format!("utc:{t}").into_bytes(),
        None => [b"raw:".as_slice(), &collapse(value)].concat(),
    }
}

/// From/To: the addresses, lowercased, in the order given (order is part of what the sender
/// wrote, and both servers store the same bytes), display names and group names dropped. A
/// value with no parseable address is its lowercased, collapsed raw text, marked as such.
fn norm_addresses(name: &str, value: &[u8]) -> Vec<u8> {
    let addresses = parse_one(name, value, |v| match v {
        HeaderValue::Address(a) => {
            let list: Vec<String> = a
                .iter()
                .filter_map(|addr| addr.address())
                .map(|s| s.trim().to_lowercase())
                .collect();
            (!list.is_empty()).then_some(list)
        }
        _ => None,
    });
    match addresses {
        Some(list) => [b"addr:".as_slice(), list.join("\n").as_bytes()].concat(),
        None => [b"raw:".as_slice(), &collapse(value).to_ascii_lowercase()].concat(),
    }
}

/// Subject: RFC 2047-decoded (RFC 2047 §6.2: whitespace between adjacent encoded words is
/// dropped), with whitespace runs collapsed to one space, so refolding does not matter.
fn decoded_subject(value: &[u8]) -> String {
    let decoded = parse_one("Subject", value, |v| match v {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(list) => Some(list.join(" ")),
        _ => None,
    });
    collapse_str(&decoded.unwrap_or_else(|| String::from_utf8_lossy(value).into_owned()))
}

/// The first of each identifying field, normalised, in tag order.
fn canonical_fields(header_fields: &[u8]) -> Vec<(Tag, Vec<u8>)> {
    let all = fields(header_fields);
    let mut out = Vec::new();
    for (tag, name) in Tag::ALL {
        // Only the first occurrence counts: for Received that is the newest hop (RFC 5321
        // §4.4 prepends), which the target stores unchanged.
        let Some(field) = all
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        else {
            continue;
        };
        let v = &field.value;
        let norm = match tag {
            Tag::MessageId => norm_message_id(v),
            Tag::Date => norm_date(v),
            Tag::From => norm_addresses("From", v),
            Tag::To => norm_addresses("To", v),
            Tag::Subject => decoded_subject(v).into_bytes(),
            Tag::Received => collapse(v),
        };
        out.push((tag, norm));
    }
    out
}

fn truncate(digest: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = *d;
    }
    out
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The key of a message from its identifying header fields: the bytes a server returns for
/// `BODY.PEEK[HEADER.FIELDS (`[`KEY_HEADER_FIELDS`]`)]` (field lines, possibly folded, ending in
/// a blank line). A whole header block, or a whole message, gives the same key, since only these
/// fields are read and reading stops at the first blank line.
///
/// Normalisation: Message-ID without whitespace; Date as a UTC instant (unparseable: collapsed
/// raw text); From and To as lowercased addresses in their given order; Subject RFC 2047-decoded
/// with whitespace collapsed; only the first Received, whitespace collapsed. Of each field only
/// the first occurrence counts. `None` when none of the fields is present: use [`fallback_key`].
pub fn header_key(header_fields: &[u8]) -> Option<MessageKey> {
    let canonical = canonical_fields(header_fields);
    if canonical.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    h.update(b"mailferry/header-key/v1\0");
    for (tag, value) in &canonical {
        h.update([*tag as u8]);
        put(&mut h, value);
    }
    Some(MessageKey(truncate(&h.finalize())))
}

/// Splits a message at its first empty line into header block (with the last field's line
/// terminator) and body. A message without an empty line is all header, with an empty body.
fn split_message(msg: &[u8]) -> (&[u8], &[u8]) {
    let mut line_start = 0;
    while line_start < msg.len() {
        let Some(rel) = msg
            .get(line_start..)
            .and_then(|r| r.iter().position(|&c| c == b'\r' || c == b'\n'))
        else {
            break;
        };
        let i = line_start + rel;
        if i == line_start {
            let len = terminator_len(msg, i);
            return (
                msg.get(..i).unwrap_or_default(),
                msg.get(i + len..).unwrap_or_default(),
            );
        }
        line_start = i + terminator_len(msg, i);
    }
    (msg, &[])
}

/// Calls `sink` with the pieces of `b` with every bare CR and bare LF turned into CRLF
/// (RFC 5322 §2.3: lines end in CRLF; servers differ in what they do with the others).
fn crlf_normalised(b: &[u8], mut sink: impl FnMut(&[u8])) {
    let mut start = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\r' if b.get(i + 1) == Some(&b'\n') => i += 2,
            b'\r' => {
                sink(b.get(start..=i).unwrap_or_default());
                sink(b"\n");
                i += 1;
                start = i;
            }
            b'\n' => {
                sink(b.get(start..i).unwrap_or_default());
                sink(b"\r\n");
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    sink(b.get(start..).unwrap_or_default());
}

fn crlf_normalised_len(b: &[u8]) -> u64 {
    let mut n = 0u64;
    crlf_normalised(b, |piece| n += piece.len() as u64);
    n
}

fn put_normalised(h: &mut Sha256, b: &[u8]) {
    h.update(crlf_normalised_len(b).to_be_bytes());
    crlf_normalised(b, |piece| h.update(piece));
}

/// The key of a message that has none of the identifying fields: a digest of its CRLF-normalised
/// header block and its CRLF-normalised body.
pub fn fallback_key(full_message: &[u8]) -> MessageKey {
    let (header, body) = split_message(full_message);
    let mut h = Sha256::new();
    h.update(b"mailferry/fallback-key/v1\0");
    put_normalised(&mut h, header);
    put_normalised(&mut h, body);
    MessageKey(truncate(&h.finalize()))
}

/// A digest of a message's body (everything after the first empty line; a header-only message
/// has an empty body), with line endings normalised to CRLF so a server converting LF to CRLF
/// on APPEND does not change it.
pub fn body_digest(full_message: &[u8]) -> [u8; 16] {
    let (_, body) = split_message(full_message);
    let mut h = Sha256::new();
    h.update(b"mailferry/body/v1\0");
    put_normalised(&mut h, body);
    truncate(&h.finalize())
}

/// A header key refined by a body digest, for keys that occur more than once in a folder pair.
pub fn refine(key: MessageKey, body: [u8; 16]) -> MessageKey {
    let mut h = Sha256::new();
    h.update(b"mailferry/refine/v1\0");
    h.update(key.0);
    h.update(body);
    MessageKey(truncate(&h.finalize()))
}

/// The decoded, unfolded subject for reports (whitespace collapsed, at most 200 characters,
/// cut on a character boundary); empty when there is none.
pub fn subject(header_fields: &[u8]) -> String {
    let all = fields(header_fields);
    let Some(field) = all.iter().find(|f| f.name.eq_ignore_ascii_case(b"subject")) else {
        return String::new();
    };
    let s = decoded_subject(&field.value);
    match s.char_indices().nth(SUBJECT_MAX_CHARS) {
        Some((cut, _)) => s.get(..cut).unwrap_or_default().to_owned(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &[u8] = b"Message-ID: <abc.123@example.com>\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
From: Alice Example <Alice@Example.COM>\r\n\
To: bob@example.org, \"Carol\" <carol@example.net>\r\n\
Subject: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n\
Received: from mx.example.com (mx.example.com [192.0.2.1])\r\n\tby mail.example.org; Tue, 1 Jul 2003 10:52:40 +0200\r\n\
Received: from older.example.com by mx.example.com\r\n\
\r\n";

    fn key(b: &[u8]) -> MessageKey {
        header_key(b).expect("a header key")
    }

    #[test]
    fn equivalent_headers_give_the_same_key() {
        let base = key(BASE);
        let variants: &[&[u8]] = &[
            // LF line endings and different field order.
            b"Subject: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\n\
Message-ID: <abc.123@example.com>\n\
From: Alice Example <Alice@Example.COM>\n\
To: bob@example.org, \"Carol\" <carol@example.net>\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\n\
Received: from mx.example.com (mx.example.com [192.0.2.1]) by mail.example.org; Tue, 1 Jul 2003 10:52:40 +0200\n\
Received: from a different hop\n\n",
            // Folding, extra whitespace, encoded words (B and Q), another zone for the same
            // instant, different display names and address case.
            b"Message-ID:\r\n <abc.123@example.com> \r\n\
Date: Tue, 01 Jul 2003 08:52:37 +0000\r\n\
From: \"A. E.\" <alice@example.com>\r\n\
To: BOB@example.org,\r\n  Carol <Carol@Example.net>\r\n\
Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n =?ISO-8859-1?Q?_aus_K=F6ln?=\r\n\
Received:  from mx.example.com\r\n (mx.example.com [192.0.2.1])  by mail.example.org;\r\n Tue, 1 Jul 2003 10:52:40 +0200\r\n\
\r\n",
            // Date in GMT spelled with a name, and US zone.
            b"Message-ID: <abc.123@example.com>\r\n\
Date: Tue, 1 Jul 2003 03:52:37 -0500\r\n\
From: alice@example.com\r\n\
To: bob@example.org, carol@example.net\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus   K\xc3\xb6ln\r\n\
Received: from mx.example.com (mx.example.com [192.0.2.1]) by mail.example.org; Tue, 1 Jul 2003 10:52:40 +0200\r\n\
\r\n",
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_eq!(key(v), base, "variant {i}");
        }
    }

    #[test]
    fn a_whole_message_gives_the_header_key() {
        let mut msg = b"X-Other: 1\r\n".to_vec();
        msg.extend_from_slice(BASE);
        msg.extend_from_slice(b"Subject: in the body, not a header\r\n");
        assert_eq!(key(&msg), key(BASE));
    }

    #[test]
    fn differing_fields_give_different_keys() {
        let base = key(BASE);
        let changed: &[(&[u8], &[u8])] = &[
            (b"<abc.123@example.com>", b"<abc.124@example.com>"),
            (b"<abc.123@example.com>", b"<ABC.123@example.com>"),
            (b"10:52:37 +0200", b"10:52:38 +0200"),
            (b"10:52:37 +0200", b"10:52:37 +0100"),
            (b"Alice@Example.COM", b"alice@example.co"),
            (
                b"bob@example.org, \"Carol\" <carol@example.net>",
                b"\"Carol\" <carol@example.net>, bob@example.org",
            ),
            (b"aus K", b"aus  Kx"),
            (b"by mail.example.org", b"by mail2.example.org"),
        ];
        for (from, to) in changed {
            let text = BASE.to_vec();
            let pos = text
                .windows(from.len())
                .position(|w| w == *from)
                .expect("in BASE");
            let mut v = text[..pos].to_vec();
            v.extend_from_slice(to);
            v.extend_from_slice(&text[pos + from.len()..]);
            assert_ne!(key(&v), base, "{}", String::from_utf8_lossy(to));
        }
    }

    #[test]
    fn field_combinations_do_not_collide() {
        // The same text under different fields, or spread differently, hashes differently.
        let inputs: &[&[u8]] = &[
            b"Subject: x\r\n\r\n",
            b"Message-ID: x\r\n\r\n",
            b"Received: x\r\n\r\n",
            b"To: x\r\n\r\n",
            b"From: x\r\n\r\n",
            b"Subject: \r\n\r\n",
            b"Subject: x\r\nReceived: y\r\n\r\n",
            b"Subject: xy\r\n\r\n",
            b"Subject: x\r\nTo: y\r\n\r\n",
            b"From: y\r\nSubject: x\r\n\r\n",
            b"Date: garbage\r\n\r\n",
            b"Date: Thu, 1 Jan 1970 00:00:00 +0000\r\n\r\n",
        ];
        let keys: Vec<MessageKey> = inputs.iter().map(|i| key(i)).collect();
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{i} vs {j}");
            }
        }
    }

    #[test]
    fn unparseable_dates_are_compared_as_text() {
        let a = key(b"Date: sometime  last\r\n tuesday\r\n\r\n");
        let b = key(b"Date: sometime last tuesday\r\n\r\n");
        let c = key(b"Date: sometime next tuesday\r\n\r\n");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn no_identifying_field_means_no_header_key() {
        let none: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"X-Mailer: foo\r\nContent-Type: text/plain\r\n\r\n",
            b"\r\nMessage-ID: <in-the-body@x>\r\n",
            b"garbage without colon\r\n continued\r\n\r\n",
            b"Subjectx: no\r\n\r\n",
        ];
        for n in none {
            assert_eq!(header_key(n), None, "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn only_the_first_of_each_field_counts() {
        let a = key(b"Subject: one\r\nSubject: two\r\n\r\n");
        let b = key(b"Subject: one\r\nSubject: three\r\n\r\n");
        let c = key(b"Subject: two\r\nSubject: one\r\n\r\n");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: &[&[u8]] = &[
            b"Subject:",
            b"From:",
            b"To:",
            b"Date:",
            b"Received:",
            b"Message-ID:",
            b"=?",
            b"?=",
            b"=?UTF-8?B?",
            b"=?x?Q?=FF",
            b"<",
            b">",
            b"@",
            b",",
            b"\"",
            b"(",
            b")",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\t",
            b"\xff\xfe",
            b"\xc3",
            b"\x00",
            b"Mon, 32 Foo 99999 25:61:61 +9999",
            b"a",
            b":",
            b";",
            b"\\",
        ];
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 40) {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let _ = header_key(&input);
            let _ = subject(&input);
            let _ = fallback_key(&input);
            let _ = body_digest(&input);
        }
    }

    #[test]
    fn eight_bit_and_malformed_headers_still_key() {
        let a = header_key(b"Subject: \xff\xfe latin1 \xe9t\xe9\r\nFrom: <broken@\r\n\r\n");
        let b = header_key(b"Subject: \xff\xfe latin1 \xe9t\xe9\r\nFrom: <broken@\r\n\r\n");
        assert!(a.is_some());
        assert_eq!(a, b);
        let c = header_key(b"Subject: =?UTF-8?B?!!!?=\r\nDate: 99 Foo 2003\r\n\r\n");
        assert!(c.is_some());
    }

    #[test]
    fn bodies_normalise_line_endings() {
        let crlf = b"Subject: x\r\n\r\nline 1\r\nline 2\r\n";
        let lf = b"Subject: x\n\nline 1\nline 2\n";
        let cr = b"Subject: x\r\rline 1\rline 2\r";
        assert_eq!(body_digest(crlf), body_digest(lf));
        assert_eq!(body_digest(crlf), body_digest(cr));
        assert_ne!(
            body_digest(crlf),
            body_digest(b"Subject: x\r\n\r\nline 1\r\nline 3\r\n")
        );
        // A header-only message has an empty body, whatever its header.
        assert_eq!(body_digest(b"Subject: x\r\n"), body_digest(b"Subject: y"));
        assert_eq!(
            body_digest(b"Subject: x\r\n"),
            body_digest(b"Subject: x\r\n\r\n")
        );
        // The first empty line ends the header; later ones belong to the body.
        assert_ne!(
            body_digest(b"A: 1\r\n\r\n\r\nx"),
            body_digest(b"A: 1\r\n\r\nx")
        );
    }

    #[test]
    fn fallback_key_covers_header_and_body() {
        let crlf = b"X-A: 1\r\n\r\nbody\r\n";
        let lf = b"X-A: 1\n\nbody\n";
        assert_eq!(fallback_key(crlf), fallback_key(lf));
        assert_ne!(fallback_key(crlf), fallback_key(b"X-A: 2\r\n\r\nbody\r\n"));
        assert_ne!(fallback_key(crlf), fallback_key(b"X-A: 1\r\n\r\nbody2\r\n"));
        // Moving bytes between header and body changes the key.
        assert_ne!(
            fallback_key(b"X-A: 1\r\nX-B: 2\r\n\r\n"),
            fallback_key(b"X-A: 1\r\n\r\nX-B: 2\r\n")
        );
    }

    #[test]
    fn refine_separates_different_bodies() {
        let k = key(BASE);
        let a = refine(k, body_digest(b"S: 1\r\n\r\nhello\r\n"));
        let b = refine(k, body_digest(b"S: 1\r\n\r\nhello!\r\n"));
        let c = refine(k, body_digest(b"S: 1\n\nhello\n"));
        assert_ne!(a, b);
        assert_eq!(a, c);
        assert_ne!(a, k);
        assert_ne!(
            refine(MessageKey([1; 16]), [0; 16]),
            refine(MessageKey([2; 16]), [0; 16])
        );
    }

    #[test]
    fn subjects_for_reports() {
        assert_eq!(subject(BASE), "Grüße aus Köln");
        assert_eq!(
            subject(b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\n\tlatte\r\n\r\n"),
            "café latte"
        );
        assert_eq!(subject(b"From: a@b\r\n\r\n"), "");
        assert_eq!(subject(b""), "");
        let long = format!("Subject: {}\r\n\r\n", "ä".repeat(300));
        let s = subject(long.as_bytes());
        assert_eq!(s.chars().count(), 200);
        assert!(s.chars().all(|c| c == 'ä'));
    }
}
