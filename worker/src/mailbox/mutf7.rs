//! The modified UTF-7 codec of IMAP mailbox names (RFC 3501 §5.1.3), strict in both directions.
//!
//! [`encode`] produces the one canonical spelling of a name; [`decode`] accepts only canonical
//! spellings, so `encode(decode(raw)?) == raw` for every name it accepts. That property is what
//! lets the worker treat a decoded path as a faithful stand-in for the server's bytes: a name
//! that decodes is never re-encoded differently, and a name that does not decode is carried as
//! its literal text with a [`Mutf7Error`] saying why (see `name.rs`).
//!
//! This module knows nothing of delimiters, namespaces or INBOX; it converts one string. It
//! never panics, whatever the input.

use std::fmt;

/// The modified BASE64 alphabet: RFC 2045 BASE64 with `,` in place of `/` (RFC 3501 §5.1.3).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a raw mailbox name is not canonical modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutf7Reason {
    /// A character outside printable US-ASCII (a control, DEL or any non-ASCII character) in the
    /// raw name; RFC 3501 §5.1.3 requires those to be BASE64-encoded.
    ForbiddenChar(char),
    /// A `&` opened a BASE64 run that no `-` closes.
    Unterminated,
    /// A character that is neither modified BASE64 nor the closing `-` inside a run.
    BadBase64(char),
    /// The run's length leaves a whole unused BASE64 character: no encoder writes that.
    TrailingBase64,
    /// The bits after the last UTF-16 unit are not zero.
    NonZeroPadding,
    /// The run decodes to an odd number of octets, which is not UTF-16.
    OddLength,
    /// A UTF-16 surrogate without its partner.
    LoneSurrogate(u16),
    /// A printable US-ASCII character (including `&`) encoded in BASE64; it must stand for itself.
    DirectCharEncoded(char),
    /// A run closed by `-` and immediately reopened by `&`: the two runs must be one.
    AdjacentRuns,
}

impl fmt::Display for Mutf7Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutf7Reason::ForbiddenChar(c) => {
                write!(
                    f,
                    "character {:?} (U+{:04X}) must be encoded",
                    c,
                    u32::from(*c)
                )
            }
            Mutf7Reason::Unterminated => f.write_str("'&' run is not closed by '-'"),
            Mutf7Reason::BadBase64(c) => write!(f, "{c:?} is not a modified BASE64 character"),
            Mutf7Reason::TrailingBase64 => f.write_str("BASE64 run has a superfluous character"),
            Mutf7Reason::NonZeroPadding => f.write_str("BASE64 run has non-zero padding bits"),
            Mutf7Reason::OddLength => f.write_str("BASE64 run is not whole UTF-16 units"),
            Mutf7Reason::LoneSurrogate(u) => write!(f, "lone UTF-16 surrogate 0x{u:04X}"),
            Mutf7Reason::DirectCharEncoded(c) => {
                write!(f, "printable {c:?} must not be BASE64-encoded")
            }
            Mutf7Reason::AdjacentRuns => {
                f.write_str("two adjacent BASE64 runs (\"-&\") must be one run")
            }
        }
    }
}

/// A raw name that is not canonical modified UTF-7: where, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("invalid modified UTF-7 at byte {position}: {reason}")]
pub struct Mutf7Error {
    /// Byte offset in the raw input where the problem starts (the `&` of a bad run, or the
    /// offending character).
    pub position: usize,
    /// What is wrong.
    pub reason: Mutf7Reason,
}

/// Whether `c` stands for itself in modified UTF-7: printable US-ASCII except `&`
/// (RFC 3501 §5.1.3: "octet values 0x20-0x25 and 0x27-0x7e").
fn is_direct(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}') && c != '&'
}

/// Encodes a name in canonical modified UTF-7 (RFC 3501 §5.1.3).
///
/// Printable US-ASCII except `&` is copied; `&` becomes `&-`; every maximal run of other
/// characters (controls, DEL, anything non-ASCII) becomes one `&…-` run of the run's UTF-16
/// (supplementary characters as surrogate pairs) in modified BASE64 without padding.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in s.chars() {
        if is_direct(c) || c == '&' {
            flush_run(&mut out, &mut run);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut out, &mut run);
    out
}

/// Writes a pending run of UTF-16 units as `&BASE64-` and empties it.
fn flush_run(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for unit in run.drain(..) {
        for byte in unit.to_be_bytes() {
            acc = (acc << 8) | u32::from(byte);
            bits += 8;
            while bits >= 6 {
                bits -= 6;
                push_b64(out, (acc >> bits) & 0x3f);
            }
        }
        // Keep only the bits not yet written, so `acc` never overflows.
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // Zero padding bits, as RFC 2045 BASE64 does (and as `decode` insists on).
        push_b64(out, (acc << (6 - bits)) & 0x3f);
    }
    out.push('-');
}

fn push_b64(out: &mut String, sextet: u32) {
    let c = usize::try_from(sextet)
        .ok()
        .and_then(|i| ALPHABET.get(i))
        .copied()
        .unwrap_or(b'A');
    out.push(char::from(c));
}

fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// The character starting at byte `pos` of `raw`, for error messages.
fn char_at(raw: &str, pos: usize) -> char {
    raw.get(pos..)
        .and_then(|s| s.chars().next())
        .unwrap_or('\u{fffd}')
}

/// Decodes a canonical modified UTF-7 name (RFC 3501 §5.1.3); anything an encoder following the
/// RFC would not have written is an error (see [`Mutf7Reason`]).
pub fn decode(raw: &str) -> Result<String, Mutf7Error> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut pos = 0;
    // Where the last BASE64 run ended (index just after its `-`), to refuse "-&" null shifts.
    let mut last_run_end: Option<usize> = None;
    while let Some(&b) = bytes.get(pos) {
        if b != b'&' {
            let c = char_at(raw, pos);
            if !is_direct(c) {
                return Err(Mutf7Error {
                    position: pos,
                    reason: Mutf7Reason::ForbiddenChar(c),
                });
            }
            out.push(c);
            pos += 1;
            continue;
        }
        // `&-` is the ampersand itself, not a run (RFC 3501 §5.1.3).
        if bytes.get(pos + 1) == Some(&b'-') {
            out.push('&');
            pos += 2;
            continue;
        }
        if last_run_end == Some(pos) {
            return Err(Mutf7Error {
                position: pos,
                reason: Mutf7Reason::AdjacentRuns,
            });
        }
        let start = pos;
        let end = decode_run(raw, start, &mut out)?;
        last_run_end = Some(end);
        pos = end;
    }
    Ok(out)
}

/// Decodes the run opened by the `&` at `start`, appending its characters to `out`; returns the
/// index just after the closing `-`.
fn decode_run(raw: &str, start: usize, out: &mut String) -> Result<usize, Mutf7Error> {
    let bytes = raw.as_bytes();
    let err = |position, reason| Mutf7Error { position, reason };
    let mut pos = start + 1;
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut units: Vec<u16> = Vec::new();
    loop {
        let Some(&b) = bytes.get(pos) else {
            return Err(err(start, Mutf7Reason::Unterminated));
        };
        if b == b'-' {
            break;
        }
        let Some(v) = b64_value(b) else {
            return Err(err(pos, Mutf7Reason::BadBase64(char_at(raw, pos))));
        };
        acc = ((acc << 6) | v) & 0x00ff_ffff;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            let unit = (acc >> bits) & 0xffff;
            units.push(u16::try_from(unit).unwrap_or(0));
        }
        pos += 1;
    }
    let close = pos;
    // A canonical run is exactly ceil(16n / 6) characters for n UTF-16 units: it holds an even,
    // non-zero number of whole octets, and what is left over is fewer than 6 bits, all zero.
    let chars = close - start - 1;
    let octets = chars * 6 / 8;
    let leftover = chars * 6 % 8;
    if leftover >= 6 {
        return Err(err(start, Mutf7Reason::TrailingBase64));
    }
    if !octets.is_multiple_of(2) || octets == 0 {
        return Err(err(start, Mutf7Reason::OddLength));
    }
    // `bits` equals `leftover` here: the octets formed whole units.
    if acc & ((1 << bits) - 1) != 0 {
        return Err(err(start, Mutf7Reason::NonZeroPadding));
    }
    let decoded_from = out.len();
    for r in char::decode_utf16(units.iter().copied()) {
        match r {
            Ok(c) => {
                if is_direct(c) || c == '&' {
                    return Err(err(start, Mutf7Reason::DirectCharEncoded(c)));
                }
                out.push(c);
            }
            Err(e) => {
                out.truncate(decoded_from);
                return Err(err(
                    start,
                    Mutf7Reason::LoneSurrogate(e.unpaired_surrogate()),
                ));
            }
        }
    }
    Ok(close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (decoded, canonical raw) pairs from RFC 3501 §5.1.3 and common servers.
    const TABLE: &[(&str, &str)] = &[
        ("", ""),
        ("INBOX", "INBOX"),
        ("Sent Items", "Sent Items"),
        ("&", "&-"),
        ("a&b", "a&-b"),
        ("&&", "&-&-"),
        ("-", "-"),
        ("&-", "&--"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
        ("äöü", "&AOQA9gD8-"),
        ("ä&ö", "&AOQ-&-&APY-"),
        ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("日本語", "&ZeVnLIqe-"),
        ("😀", "&2D3eAA-"),
        ("a😀b", "a&2D3eAA-b"),
        ("\u{7f}", "&AH8-"),
        ("\t", "&AAk-"),
        ("\0", "&AAA-"),
        ("\u{ffff}", "&,,8-"),
        ("\u{10ffff}", "&2,,f,w-"),
        ("\u{80}", "&AIA-"),
        ("quote\"back\\slash", "quote\"back\\slash"),
    ];

    #[test]
    fn table_encodes_and_decodes() {
        for (decoded, raw) in TABLE {
            assert_eq!(encode(decoded), *raw, "encode {decoded:?}");
            assert_eq!(decode(raw).as_deref(), Ok(*decoded), "decode {raw:?}");
        }
    }

    /// Raw inputs every strict decoder must refuse, with where and why.
    const REJECT: &[(&str, usize, Mutf7Reason)] = &[
        // 'a' (0x61) is printable: it must stand for itself.
        ("&AGE-", 0, Mutf7Reason::DirectCharEncoded('a')),
        // '&' must be written "&-", never encoded.
        ("&ACY-", 0, Mutf7Reason::DirectCharEncoded('&')),
        ("x&AOQAYQ-", 1, Mutf7Reason::DirectCharEncoded('a')),
        ("abc&AOQ", 3, Mutf7Reason::Unterminated),
        ("&", 0, Mutf7Reason::Unterminated),
        ("&AOQ-&", 5, Mutf7Reason::AdjacentRuns),
        ("&AOQ-&APY-", 5, Mutf7Reason::AdjacentRuns),
        ("&AO.-", 3, Mutf7Reason::BadBase64('.')),
        ("&AO/-", 3, Mutf7Reason::BadBase64('/')),
        ("&AO=-", 3, Mutf7Reason::BadBase64('=')),
        ("&AOä-", 3, Mutf7Reason::BadBase64('ä')),
        // "AOR" leaves padding bits 01.
        ("&AOR-", 0, Mutf7Reason::NonZeroPadding),
        // Four characters: 24 bits, three octets.
        ("&AOQA-", 0, Mutf7Reason::OddLength),
        ("&AA-", 0, Mutf7Reason::OddLength),
        // Five characters: a whole superfluous sextet.
        ("&AOQAA-", 0, Mutf7Reason::TrailingBase64),
        ("&A-", 0, Mutf7Reason::TrailingBase64),
        ("&2D0-", 0, Mutf7Reason::LoneSurrogate(0xd83d)),
        ("&3gA-", 0, Mutf7Reason::LoneSurrogate(0xde00)),
        ("&2D3YPQ-", 0, Mutf7Reason::LoneSurrogate(0xd83d)),
        ("ä", 0, Mutf7Reason::ForbiddenChar('ä')),
        ("ab\u{7f}", 2, Mutf7Reason::ForbiddenChar('\u{7f}')),
        ("a\tb", 1, Mutf7Reason::ForbiddenChar('\t')),
        ("\0", 0, Mutf7Reason::ForbiddenChar('\0')),
        ("a\r\n", 1, Mutf7Reason::ForbiddenChar('\r')),
        ("x😀", 1, Mutf7Reason::ForbiddenChar('😀')),
    ];

    #[test]
    fn rejects_non_canonical_input() {
        for (raw, position, reason) in REJECT {
            let got = decode(raw);
            assert_eq!(
                got,
                Err(Mutf7Error {
                    position: *position,
                    reason: *reason
                }),
                "{raw:?}"
            );
            // The message names the position, for people reading a warning.
            if let Err(e) = got {
                assert!(e.to_string().contains(&format!("byte {position}")), "{e}");
            }
        }
    }

    /// A tiny deterministic PRNG (SplitMix64), so the corpus is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn char(&mut self) -> char {
            let pick = match self.below(8) {
                0 => u32::from(b'&'),
                1 | 2 => 0x20 + self.below(0x5f) as u32,
                3 => self.below(0x20) as u32,
                4 => 0x7f + self.below(0x81) as u32,
                5 => self.below(0xd800) as u32,
                6 => 0xe000 + self.below(0x2000) as u32,
                _ => 0x10000 + self.below(0x100000) as u32,
            };
            char::from_u32(pick).unwrap_or('?')
        }
    }

    #[test]
    fn round_trips_a_pseudo_random_corpus() {
        let mut rng = Rng(0x6d61_696c_6665_7272);
        for _ in 0..5000 {
            let len = rng.below(12);
            let s: String = (0..len).map(|_| rng.char()).collect();
            let raw = encode(&s);
            assert!(raw.bytes().all(|b| (0x20..0x7f).contains(&b)), "{raw:?}");
            assert_eq!(decode(&raw).as_deref(), Ok(s.as_str()), "raw {raw:?}");
        }
    }

    #[test]
    fn accepted_input_is_canonical_and_nothing_panics() {
        // Random strings over the characters that matter to the decoder: whatever it accepts
        // must re-encode to exactly the same bytes.
        let alphabet: Vec<char> = "&-AaBOQDdg2,+/=x. äé\u{7f}\t".chars().collect();
        let mut rng = Rng(7);
        let mut accepted = 0;
        for _ in 0..20000 {
            let len = rng.below(10);
            let raw: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            if let Ok(decoded) = decode(&raw) {
                accepted += 1;
                assert_eq!(encode(&decoded), raw, "decoded {decoded:?}");
            }
        }
        assert!(accepted > 100, "corpus too easy to reject: {accepted}");
    }
}
