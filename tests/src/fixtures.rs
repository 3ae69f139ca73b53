//! Deterministic test messages: ordinary mail and the awkward cases a migration must survive.
//!
//! This module owns generating message bytes, flags and INTERNALDATEs from a seed, with a tiny
//! PRNG of its own, so a failing test reproduces exactly. Every message uses CRLF line endings,
//! which is what Dovecot hands back on FETCH, so the SHA-256 of [`Fixture::raw`] equals the
//! SHA-256 of the fetched `BODY[]`. It must not talk to a server.

use chrono::{DateTime, FixedOffset, TimeZone};
use sha2::{Digest, Sha256};

/// One message to append: its bytes, flags and INTERNALDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// The RFC 5322 message, CRLF line endings.
    pub raw: Vec<u8>,
    /// Flags and keywords as IMAP atoms (`\Seen`, `$Label1`), in no particular order.
    pub flags: Vec<String>,
    /// The INTERNALDATE to append with, in its own time zone.
    pub internal_date: DateTime<FixedOffset>,
}

impl Fixture {
    /// The flag list for APPEND, e.g. `(\Seen $Label1)`, or `None` when there are no flags.
    pub fn imap_flags(&self) -> Option<String> {
        (!self.flags.is_empty()).then(|| format!("({})", self.flags.join(" ")))
    }

    /// The INTERNALDATE for APPEND, quotes included.
    // RFC 3501 §6.3.11 / §9: date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
    // SP time SP zone DQUOTE.
    pub fn imap_internal_date(&self) -> String {
        format!("\"{}\"", self.internal_date.format("%d-%b-%Y %H:%M:%S %z"))
    }

    /// Lowercase hex SHA-256 of [`Fixture::raw`].
    pub fn sha256(&self) -> String {
        sha256_hex(&self.raw)
    }

    /// The same message with other flags.
    pub fn with_flags(mut self, flags: &[&str]) -> Self {
        self.flags = flags.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// The same message with another INTERNALDATE.
    pub fn with_internal_date(mut self, date: DateTime<FixedOffset>) -> Self {
        self.internal_date = date;
        self
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// SplitMix64: small, fast and good enough to vary test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; slight modulo bias is fine here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Time zones INTERNALDATEs are spread over, in seconds east of UTC (half and quarter hours
/// included, which catch code that keeps only whole hours).
pub const ZONES: &[i32] = &[0, 7200, -18000, 19800, 45900, -34200, 3600, -25200];

/// The system flags a client may set (`\Recent` is server-managed).
pub const SYSTEM_FLAGS: &[&str] = &["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"];

/// Keywords used by the fixtures.
pub const KEYWORDS: &[&str] = &["$Label1", "Work", "$Forwarded", "$MDNSent"];

const WORDS: &[&str] = &[
    "migration",
    "mailbox",
    "quarterly",
    "report",
    "budget",
    "meeting",
    "invoice",
    "draft",
    "schedule",
    "project",
    "review",
    "update",
    "server",
    "folder",
    "archive",
    "holiday",
    "coffee",
    "deadline",
    "customer",
    "release",
    "notes",
    "agenda",
    "travel",
    "contract",
    "summary",
];
const NAMES: &[&str] = &[
    "Alice Example",
    "Bob Builder",
    "Carol Jones",
    "Dave O'Neil",
    "Eve",
];

/// A seeded generator of fixtures. The same seed gives the same messages, flags and dates.
#[derive(Debug, Clone)]
pub struct Fixtures {
    rng: SplitMix64,
    serial: u64,
    seed: u64,
}

impl Fixtures {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            serial: 0,
            seed,
        }
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// A date between 2005 and 2024 in one of [`ZONES`].
    pub fn date(&mut self) -> DateTime<FixedOffset> {
        let zone = *self.rng.pick(ZONES);
        let tz = FixedOffset::east_opt(zone).unwrap_or_else(utc);
        // 2005-01-01 .. 2024-12-31, whole seconds.
        let secs = self.rng.range(1_104_537_600, 1_735_603_200) as i64;
        tz.timestamp_opt(secs, 0)
            .single()
            .unwrap_or_else(|| epoch(tz))
    }

    /// A random set of system flags and keywords (possibly empty).
    pub fn flags(&mut self) -> Vec<String> {
        let mut flags = Vec::new();
        for f in SYSTEM_FLAGS.iter().chain(KEYWORDS) {
            // \Seen is common, the rest rarer.
            let odds = if *f == "\\Seen" { 2 } else { 5 };
            if self.rng.below(odds) == 0 {
                flags.push((*f).to_owned());
            }
        }
        flags
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.rng.below(WORDS.len() as u64) as usize]
    }

    fn words(&mut self, n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            let word = self.word();
            s.push_str(word);
        }
        s
    }

    fn headers(&mut self, subject: &str, date: &DateTime<FixedOffset>) -> Vec<String> {
        let serial = self.next_serial();
        let from = *self.rng.pick(NAMES);
        vec![
            format!("From: {from} <{}@example.test>", mailbox_of(from)),
            "To: Test User <user@example.test>".to_owned(),
            format!("Subject: {subject}"),
            format!("Date: {}", date.to_rfc2822()),
            format!(
                "Message-ID: <{}.{serial}@fixtures.mailferry.test>",
                self.seed
            ),
            "MIME-Version: 1.0".to_owned(),
        ]
    }

    fn finish(&mut self, raw: Vec<u8>, date: DateTime<FixedOffset>) -> Fixture {
        Fixture {
            raw,
            flags: self.flags(),
            internal_date: date,
        }
    }

    /// An ordinary text message of realistic size (about 1 to 40 KB).
    pub fn ordinary(&mut self) -> Fixture {
        let date = self.date();
        let subject = format!("Re: {}", self.words(4));
        let mut lines = self.headers(&subject, &date);
        lines.push("Content-Type: text/plain; charset=utf-8".to_owned());
        lines.push("Content-Transfer-Encoding: 7bit".to_owned());
        lines.push(String::new());
        let paragraphs = self.rng.range(2, 60);
        for _ in 0..paragraphs {
            for _ in 0..self.rng.range(1, 8) {
                let n = self.rng.range(6, 12) as usize;
                lines.push(self.words(n));
            }
            lines.push(String::new());
        }
        self.finish(crlf(&lines), date)
    }

    /// A multipart/alternative message with a base64 attachment (about 10 to 200 KB).
    pub fn multipart(&mut self) -> Fixture {
        let date = self.date();
        let subject = format!("Attached: {}", self.words(3));
        let boundary = format!("=_mf_{:016x}", self.rng.next_u64());
        let mut lines = self.headers(&subject, &date);
        lines.push(format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\""
        ));
        lines.push(String::new());
        lines.push("This is a multi-part message in MIME format.".to_owned());
        lines.push(format!("--{boundary}"));
        lines.push("Content-Type: text/plain; charset=us-ascii".to_owned());
        lines.push(String::new());
        let n = self.rng.range(20, 40) as usize;
        lines.push(self.words(n));
        lines.push(format!("--{boundary}"));
        lines.push("Content-Type: application/octet-stream; name=\"data.bin\"".to_owned());
        lines.push("Content-Transfer-Encoding: base64".to_owned());
        lines.push("Content-Disposition: attachment; filename=\"data.bin\"".to_owned());
        lines.push(String::new());
        let size = self.rng.range(8_000, 200_000) as usize;
        lines.extend(self.base64_lines(size));
        lines.push(format!("--{boundary}--"));
        lines.push(String::new());
        self.finish(crlf(&lines), date)
    }

    /// Raw 8-bit headers: UTF-8 in Subject, Latin-1 bytes in the From display name, and an
    /// 8-bit body without any Content-Transfer-Encoding.
    pub fn eight_bit_headers(&mut self) -> Fixture {
        let date = self.date();
        let serial = self.next_serial();
        let mut raw = Vec::new();
        raw.extend_from_slice(b"From: J\xf6rg M\xfcller <joerg@example.test>\r\n");
        raw.extend_from_slice(b"To: user@example.test\r\n");
        raw.extend_from_slice("Subject: Ärger über Grüße – 日本語 ✓\r\n".as_bytes());
        raw.extend_from_slice(format!("Date: {}\r\n", date.to_rfc2822()).as_bytes());
        raw.extend_from_slice(
            format!(
                "Message-ID: <{}.{serial}.8bit@fixtures.mailferry.test>\r\n",
                self.seed
            )
            .as_bytes(),
        );
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice("Grüße aus Köln, naïve café, ½ € \r\n".as_bytes());
        raw.extend_from_slice(b"Latin-1 line: caf\xe9 \xe0 la cr\xe8me\r\n");
        self.finish(raw, date)
    }

    /// A message whose body is one line of `len` bytes (e.g. 100 KB), far past RFC 5322's 998.
    pub fn long_line(&mut self, len: usize) -> Fixture {
        let date = self.date();
        let mut lines = self.headers("One very long line", &date);
        lines.push("Content-Type: text/plain".to_owned());
        lines.push(String::new());
        let mut line = String::with_capacity(len);
        while line.len() < len {
            let word = self.word();
            line.push_str(word);
            line.push(' ');
        }
        line.truncate(len);
        lines.push(line);
        self.finish(crlf(&lines), date)
    }

    /// A multipart message whose declared boundary never appears, and whose last part is not
    /// closed.
    pub fn malformed_mime(&mut self) -> Fixture {
        let date = self.date();
        let mut lines = self.headers("Broken MIME structure", &date);
        lines.push("Content-Type: multipart/mixed; boundary=\"declared-boundary\"".to_owned());
        lines.push(String::new());
        lines.push("--other-boundary".to_owned());
        lines.push("Content-Type: text/plain".to_owned());
        lines.push(String::new());
        lines.push("This part uses a boundary the header never declared.".to_owned());
        lines.push("--declared-boundary".to_owned());
        lines.push("Content-Type: text/html; charset=\"unterminated".to_owned());
        lines.push("Content-Transfer-Encoding: base64".to_owned());
        lines.push(String::new());
        lines.push("This is not base64 at all!!!".to_owned());
        self.finish(crlf(&lines), date)
    }

    /// Headers, the blank line, and nothing after it.
    pub fn empty_body(&mut self) -> Fixture {
        let date = self.date();
        let mut lines = self.headers("Empty body", &date);
        lines.push(String::new());
        self.finish(crlf(&lines), date)
    }

    /// Header lines only: no blank line and no body.
    pub fn header_only(&mut self) -> Fixture {
        let date = self.date();
        let lines = self.headers("Headers and nothing else", &date);
        self.finish(crlf(&lines), date)
    }

    /// An ordinary message without a Message-ID header.
    pub fn no_message_id(&mut self) -> Fixture {
        let mut f = self.ordinary();
        f.raw = remove_header(&f.raw, b"Message-ID:");
        f
    }

    /// Two *different* messages sharing Message-ID, Date, From and Subject; only their bodies
    /// differ. A migration keyed on those headers alone would lose one.
    pub fn same_ids_pair(&mut self) -> (Fixture, Fixture) {
        let date = self.date();
        let headers = self.headers("Same headers, different bodies", &date);
        let mut a = headers.clone();
        a.push(String::new());
        a.push("First body.".to_owned());
        let mut b = headers;
        b.push(String::new());
        b.push("Second body, not the same as the first.".to_owned());
        let fa = self.finish(crlf(&a), date);
        let fb = self.finish(crlf(&b), date);
        (fa, fb)
    }

    /// A message meant to be appended several times (same bytes, flags and date): a genuine
    /// duplicate that a migration must copy as many times as the source holds it.
    pub fn duplicate(&mut self) -> Fixture {
        let date = self.date();
        let mut lines = self.headers("Genuine duplicate", &date);
        lines.push(String::new());
        lines.push("The same bytes, stored more than once in the same folder.".to_owned());
        self.finish(crlf(&lines), date)
    }

    /// A message of about `size` bytes (e.g. 21 MB) with a base64-like body of 76-column lines.
    pub fn big(&mut self, size: usize) -> Fixture {
        let date = self.date();
        let subject = format!("Big message ({size} bytes)");
        let mut raw = crlf(&self.headers(&subject, &date));
        raw.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
        raw.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        raw.reserve(size.saturating_sub(raw.len()) + 80);
        while raw.len() < size {
            self.push_base64_line(&mut raw);
        }
        self.finish(raw, date)
    }

    /// An ordinary message with every system flag a client may set and the keywords `$Label1`
    /// and `Work`.
    pub fn all_flags(&mut self) -> Fixture {
        let mut flags: Vec<&str> = SYSTEM_FLAGS.to_vec();
        flags.extend(["$Label1", "Work"]);
        self.ordinary().with_flags(&flags)
    }

    /// The same message with INTERNALDATEs in each of [`ZONES`] (one fixture per zone).
    pub fn across_zones(&mut self) -> Vec<Fixture> {
        ZONES
            .iter()
            .map(|zone| {
                let mut f = self.ordinary();
                let tz = FixedOffset::east_opt(*zone).unwrap_or_else(utc);
                f.internal_date = f.internal_date.with_timezone(&tz);
                f
            })
            .collect()
    }

    fn push_base64_line(&mut self, out: &mut Vec<u8>) {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut word = 0u64;
        for i in 0..76 {
            if i % 10 == 0 {
                word = self.rng.next_u64();
            }
            out.push(ALPHABET[(word & 63) as usize]);
            word >>= 6;
        }
        out.extend_from_slice(b"\r\n");
    }

    fn base64_lines(&mut self, size: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(size / 78 + 1);
        let mut buf = Vec::with_capacity(78);
        for _ in 0..size / 78 + 1 {
            buf.clear();
            self.push_base64_line(&mut buf);
            buf.truncate(76);
            out.push(String::from_utf8_lossy(&buf).into_owned());
        }
        out
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("UTC is a valid offset"))
}

fn epoch(tz: FixedOffset) -> DateTime<FixedOffset> {
    DateTime::UNIX_EPOCH.with_timezone(&tz)
}

fn mailbox_of(name: &str) -> String {
    name.split(' ')
        .next()
        .unwrap_or("user")
        .to_ascii_lowercase()
        .replace('\'', "")
}

/// Joins lines with CRLF, each line terminated.
fn crlf(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn remove_header(raw: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_headers = true;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if in_headers && (line == b"\r\n") {
            in_headers = false;
        }
        if in_headers && line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_crlf(raw: &[u8]) -> bool {
        raw.ends_with(b"\r\n")
            && raw
                .iter()
                .enumerate()
                .all(|(i, b)| *b != b'\n' || (i > 0 && raw[i - 1] == b'\r'))
    }

    #[test]
    fn same_seed_same_messages() {
        let a: Vec<_> = (0..5).map(|_| Fixtures::new(7).ordinary()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut g = Fixtures::new(7);
        assert_ne!(g.ordinary(), g.ordinary());
    }

    #[test]
    fn every_fixture_uses_crlf() {
        let mut g = Fixtures::new(1);
        let (p1, p2) = g.same_ids_pair();
        let all = [
            g.ordinary(),
            g.multipart(),
            g.eight_bit_headers(),
            g.long_line(100_000),
            g.malformed_mime(),
            g.empty_body(),
            g.header_only(),
            g.no_message_id(),
            p1,
            p2,
            g.duplicate(),
            g.big(300_000),
        ];
        for f in &all {
            assert!(
                all_crlf(&f.raw),
                "{}",
                String::from_utf8_lossy(&f.raw[..200])
            );
        }
    }

    #[test]
    fn special_shapes() {
        let mut g = Fixtures::new(2);
        assert!(!g.header_only().raw.windows(4).any(|w| w == b"\r\n\r\n"));
        assert!(g.empty_body().raw.ends_with(b"\r\n\r\n"));
        let no_id = g.no_message_id();
        assert!(!String::from_utf8_lossy(&no_id.raw).contains("Message-ID"));
        let (a, b) = g.same_ids_pair();
        assert_ne!(a.raw, b.raw);
        let header = |f: &Fixture| {
            let s = String::from_utf8_lossy(&f.raw).into_owned();
            s.split("\r\n\r\n").next().unwrap_or_default().to_owned()
        };
        assert_eq!(header(&a), header(&b));
        let big = g.big(21 * 1024 * 1024);
        assert!((21 * 1024 * 1024..21 * 1024 * 1024 + 80).contains(&big.raw.len()));
        let long = g.long_line(100_000);
        assert!(long.raw.split(|b| *b == b'\n').any(|l| l.len() == 100_001));
    }

    #[test]
    fn imap_arguments() {
        let date = FixedOffset::east_opt(19800)
            .unwrap()
            .with_ymd_and_hms(2020, 1, 2, 3, 4, 5)
            .unwrap();
        let f = Fixtures::new(3)
            .ordinary()
            .with_flags(&["\\Seen", "$Label1"])
            .with_internal_date(date);
        assert_eq!(f.imap_flags().as_deref(), Some("(\\Seen $Label1)"));
        assert_eq!(f.imap_internal_date(), "\"02-Jan-2020 03:04:05 +0530\"");
        assert_eq!(f.clone().with_flags(&[]).imap_flags(), None);
    }
}
