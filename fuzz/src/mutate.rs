//! Byte-level mutations: the ways one input becomes the next. Each takes the random stream, the
//! buffer, the target's dictionaries and the corpus (for splicing), and keeps the buffer within
//! the target's maximum length.

use crate::rng::Rng;

/// Bytes that sit at syntax boundaries of the formats we parse.
const INTERESTING: &[u8] = b"\0\x7f\x80\xff\r\n \t\"{}()[]\\&-:;,<>@=?*+";

/// Numbers at integer edges, for replacing a run of digits.
const EDGE_NUMBERS: &[&[u8]] = &[
    b"0",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
];

/// How many times a repetition run repeats its token: short runs mostly, and now and then the
/// deep-nesting lengths that overflow recursive parsers.
const RUN_LENGTHS: &[usize] = &[2, 3, 8, 64, 300, 1_000, 10_000, 50_000];

/// What the mutator may draw from besides the buffer itself.
pub struct Sources<'a> {
    /// Token lists to insert.
    pub dictionaries: &'a [&'a [&'a [u8]]],
    /// Seed inputs to splice from.
    pub corpus: &'a [Vec<u8>],
    /// Longest buffer allowed.
    pub max_len: usize,
}

fn token<'a>(rng: &mut Rng, src: &Sources<'a>) -> &'a [u8] {
    let dict = rng.pick(src.dictionaries).copied().unwrap_or_default();
    rng.pick(dict).copied().unwrap_or(b"(")
}

fn insert(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(buf.len());
    buf.splice(at..at, bytes.iter().copied());
}

/// A random range `start..end` of `buf` (empty when `buf` is).
fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let start = rng.below(len + 1);
    let end = start + rng.small_len(len - start + 1) - 1;
    (start, end.min(len))
}

/// Applies one random mutation to `buf`.
pub fn once(rng: &mut Rng, buf: &mut Vec<u8>, src: &Sources<'_>) {
    let len = buf.len();
    match rng.below(14) {
        0 => {
            if let Some(b) = buf.get_mut(rng.below(len)) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => {
            let r = rng.byte();
            if let Some(b) = buf.get_mut(rng.below(len)) {
                *b = r;
            }
        }
        2 => {
            let r = rng.pick(INTERESTING).copied().unwrap_or(0);
            if let Some(b) = buf.get_mut(rng.below(len)) {
                *b = r;
            }
        }
        3 => {
            let bytes: Vec<u8> = (0..rng.small_len(8)).map(|_| rng.byte()).collect();
            insert(buf, rng.below(len + 1), &bytes);
        }
        4 => {
            let (start, end) = range(rng, len);
            buf.drain(start..end);
        }
        5 => {
            let (start, end) = range(rng, len);
            let copy = buf.get(start..end).unwrap_or_default().to_vec();
            insert(buf, rng.below(len + 1), &copy);
        }
        6 => {
            // Splice: a piece of another seed input, inserted or replacing the tail.
            let other = rng.pick(src.corpus).map(Vec::as_slice).unwrap_or_default();
            let (start, end) = range(rng, other.len());
            let piece = other.get(start..end).unwrap_or_default();
            let at = rng.below(len + 1);
            if rng.one_in(2) {
                buf.truncate(at);
            }
            insert(buf, at, piece);
        }
        7 | 8 => {
            let t = token(rng, src);
            insert(buf, rng.below(len + 1), t);
        }
        9 => {
            let t = token(rng, src);
            let at = rng.below(len + 1);
            let end = (at + t.len()).min(len);
            buf.splice(at..end, t.iter().copied());
        }
        10 => {
            let t = token(rng, src);
            let times = rng.pick(RUN_LENGTHS).copied().unwrap_or(2);
            let times = times.min(src.max_len.saturating_sub(len) / t.len().max(1));
            insert(buf, rng.below(len + 1), &t.repeat(times));
        }
        11 => {
            // Replace the run of digits around a random position with an edge number.
            let at = rng.below(len);
            let mut start = at;
            while start > 0 && buf.get(start - 1).is_some_and(u8::is_ascii_digit) {
                start -= 1;
            }
            let mut end = at;
            while buf.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            let n = rng.pick(EDGE_NUMBERS).copied().unwrap_or(b"0");
            if start <= end && end <= len {
                buf.splice(start..end, n.iter().copied());
            }
        }
        12 => buf.truncate(rng.below(len + 1)),
        _ => {
            let (start, end) = range(rng, len);
            for b in buf.get_mut(start..end).unwrap_or_default() {
                b.make_ascii_uppercase();
            }
        }
    }
    buf.truncate(src.max_len);
}
