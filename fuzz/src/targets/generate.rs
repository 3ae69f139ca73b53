//! Structured generators: whole server responses and header blocks built from their grammar,
//! so the fuzzer reaches syntax that random mutation rarely spells right (a literal whose
//! announced length matches its data, a response code inside brackets, folded header lines).
//! Their output is then mutated like any corpus entry.

use crate::rng::Rng;

const TAGS: &[&[u8]] = &[b"A001", b"a1", b"*", b"+", b"x", b"1", b""];
const STATUS: &[&[u8]] = &[b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH", b"ok", b"Ok"];
const CODES: &[&[u8]] = &[
    b"APPENDUID",
    b"COPYUID",
    b"UIDVALIDITY",
    b"UIDNEXT",
    b"PERMANENTFLAGS",
    b"OVERQUOTA",
    b"THROTTLED",
    b"UNAVAILABLE",
    b"ALERT",
    b"CAPABILITY",
    b"HIGHESTMODSEQ",
    b"READ-ONLY",
];
const KEYWORDS: &[&[u8]] = &[
    b"FETCH",
    b"LIST",
    b"STATUS",
    b"EXISTS",
    b"SEARCH",
    b"ESEARCH",
    b"CAPABILITY",
    b"NAMESPACE",
    b"FLAGS",
    b"VANISHED",
    b"ENABLED",
    b"EXPUNGE",
];
const ATOMS: &[&[u8]] = &[
    b"UID",
    b"FLAGS",
    b"\\Seen",
    b"$Label1",
    b"BODY[]",
    b"BODY[HEADER.FIELDS (DATE FROM)]",
    b"RFC822.SIZE",
    b"MODSEQ",
    b"INTERNALDATE",
    b"1:*",
    b"3955:3957",
    b"MESSAGES",
    b"IMAP4rev1",
];

fn push_number(rng: &mut Rng, out: &mut Vec<u8>) {
    let n = match rng.below(4) {
        0 => rng.next_u64(),
        1 => u64::from(u32::MAX) + rng.below(3) as u64 - 1,
        _ => rng.below(100_000) as u64,
    };
    out.extend_from_slice(n.to_string().as_bytes());
}

fn push_value(rng: &mut Rng, out: &mut Vec<u8>, depth: usize) {
    match rng.below(8) {
        0 | 1 => out.extend_from_slice(rng.pick(ATOMS).copied().unwrap_or(b"X")),
        2 => push_number(rng, out),
        3 => {
            out.push(b'"');
            for _ in 0..rng.below(12) {
                match rng.below(6) {
                    0 => out.extend_from_slice(b"\\\""),
                    1 => out.extend_from_slice(b"\\\\"),
                    _ => out.push(b'a' + rng.below(26) as u8),
                }
            }
            out.push(b'"');
        }
        4 => {
            // A literal, mostly with the right length (RFC 3501 §4.3), sometimes off by one.
            let len = rng.below(40);
            let announced = match rng.below(8) {
                0 => len + 1,
                1 => len.saturating_sub(1),
                _ => len,
            };
            let plus = if rng.one_in(4) { "+" } else { "" };
            out.extend_from_slice(format!("{{{announced}{plus}}}\r\n").as_bytes());
            for _ in 0..len {
                out.push(rng.pick(b"ab\r\n()\"{} ").copied().unwrap_or(b'a'));
            }
        }
        5 => out.extend_from_slice(b"NIL"),
        _ if depth < 6 => {
            out.push(b'(');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(b' ');
                }
                push_value(rng, out, depth + 1);
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"()"),
    }
}

fn push_code(rng: &mut Rng, out: &mut Vec<u8>) {
    out.push(b'[');
    out.extend_from_slice(rng.pick(CODES).copied().unwrap_or(b"ALERT"));
    for _ in 0..rng.below(3) {
        out.push(b' ');
        push_value(rng, out, 3);
    }
    out.extend_from_slice(b"] ");
}

/// One IMAP server response (RFC 3501 §7): tagged or untagged status with an optional response
/// code, untagged data with nested lists, quoted strings and literals, or a continuation.
pub fn response(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(4) {
        0 | 1 => {
            out.extend_from_slice(if rng.one_in(2) {
                b"*"
            } else {
                rng.pick(TAGS).copied().unwrap_or(b"A1")
            });
            out.push(b' ');
            out.extend_from_slice(rng.pick(STATUS).copied().unwrap_or(b"OK"));
            out.push(b' ');
            if rng.one_in(2) {
                push_code(rng, out);
            }
            out.extend_from_slice(b"some text");
        }
        2 => {
            out.extend_from_slice(b"* ");
            if rng.one_in(2) {
                push_number(rng, out);
                out.push(b' ');
            }
            out.extend_from_slice(rng.pick(KEYWORDS).copied().unwrap_or(b"FETCH"));
            for _ in 0..rng.below(4) {
                out.push(b' ');
                push_value(rng, out, 0);
            }
        }
        _ => out.extend_from_slice(b"+ Ready for literal data"),
    }
    out.extend_from_slice(b"\r\n");
}

const FIELDS: &[&[u8]] = &[
    b"Message-ID",
    b"Date",
    b"From",
    b"To",
    b"Subject",
    b"Received",
    b"X-Mailer",
    b"message-id",
];
const PIECES: &[&[u8]] = &[
    b"<abc.123@example.com>",
    b"Tue, 1 Jul 2003 10:52:37 +0200",
    b"1 Jan 1970 00:00:00 Z",
    b"Alice <alice@example.com>",
    b"\"Doe, J.\" <j@d.example>",
    b"group: a@b, c@d;",
    b"bob@",
    b"=?UTF-8?B?R3LDvMOfZQ==?=",
    b"=?ISO-8859-1?Q?K=F6ln?=",
    b"=?utf-8?q?a_b?=",
    b"=?x?B?!!?=",
    b"(comment (nested))",
    b"from mx.example.com by mail.example.org; Tue, 1 Jul 2003",
    b"Gr\xc3\xbc\xc3\x9fe",
    b"\xff\xfe",
    b" ",
    b"\t",
    b",",
    b"<",
    b">",
    b"\"",
];

/// An internet message header block (RFC 5322 §2.2): identifying fields in any order and case,
/// values from plausible pieces, folded lines, mixed line endings, sometimes a body.
pub fn header_block(rng: &mut Rng, out: &mut Vec<u8>) {
    let eol: &[u8] = rng
        .pick(&[&b"\r\n"[..], b"\n", b"\r"])
        .copied()
        .unwrap_or(b"\r\n");
    for _ in 0..1 + rng.below(8) {
        out.extend_from_slice(rng.pick(FIELDS).copied().unwrap_or(b"Subject"));
        out.extend_from_slice(b": ");
        for _ in 0..rng.below(5) {
            out.extend_from_slice(rng.pick(PIECES).copied().unwrap_or(b"x"));
            if rng.one_in(4) {
                out.extend_from_slice(eol);
                out.push(b' ');
            } else {
                out.push(b' ');
            }
        }
        out.extend_from_slice(eol);
    }
    if rng.one_in(2) {
        out.extend_from_slice(eol);
        out.extend_from_slice(b"body line");
        out.extend_from_slice(eol);
    }
}
