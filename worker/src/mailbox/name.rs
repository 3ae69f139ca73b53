//! Mailbox names: the server's raw name, its hierarchy delimiter and the decoded [`FolderPath`]
//! planning works on, in both directions.
//!
//! The raw name is the only thing ever sent back to the server it came from; the decoded path is
//! what reports show and what the planner maps. [`decode_name`] turns a LISTed name into a path
//! (or, when the name is not valid modified UTF-7, into its literal text plus the reason);
//! [`encode_path`] spells a path for a server with a given delimiter and personal prefix.
//!
//! # The personal prefix and INBOX
//!
//! Servers such as Courier and some Dovecot setups put every personal folder under the
//! namespace prefix `INBOX.` (RFC 2342). The prefix is stripped on decoding and added on
//! encoding, so that `INBOX.Sent` on such a server and `Sent` on a server with an empty prefix
//! are the same path `["Sent"]`. `INBOX` itself is always the path `["INBOX"]` and the raw name
//! `INBOX`, with or without a prefix (RFC 3501 §5.1: it is case-insensitive).
//!
//! With prefix `INBOX.` a path whose first component is `INBOX`, such as `["INBOX", "x"]`
//! (a child of INBOX on a server without prefix), is encoded as `INBOX.INBOX.x`: prefix plus the
//! components. This keeps `decode_name(encode_path(p)) == p` for every path but `["INBOX"]`, at
//! the cost of one ambiguity: a folder literally named `INBOX.INBOX` decodes to `["INBOX"]` like
//! the INBOX. The planner treats two sources with one path as a collision and renames one.
//!
//! This module must not talk to a server or know about other namespaces beyond recognising the
//! personal prefix.

use mailferry_proto::FolderPath;

use super::mutf7;

/// A folder name as a server LISTed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxName {
    /// The server's own name, byte for byte; the only form ever sent back to that server.
    pub raw: String,
    /// The hierarchy delimiter the server reported for it (`None`: flat namespace).
    pub delimiter: Option<char>,
    /// The decoded path and how it was obtained.
    pub decoded: DecodedName,
}

impl MailboxName {
    /// Decodes `raw` as LISTed with `delimiter` on a server whose personal prefix is
    /// `personal_prefix` (see [`decode_name`]).
    pub fn new(raw: String, delimiter: Option<char>, personal_prefix: &str) -> MailboxName {
        let decoded = decode_name(&raw, delimiter, personal_prefix);
        MailboxName {
            raw,
            delimiter,
            decoded,
        }
    }
}

/// The first of the 256 code points that stand for single raw bytes in the text form of a
/// name (the last 256 of Supplementary Private Use Area-B, U+10FF00..=U+10FFFF).
const RAW_BYTE_BASE: u32 = 0x10_FF00;

fn raw_byte_char(b: u8) -> char {
    // Always a valid scalar value: U+10FF00..=U+10FFFF.
    char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The text form of a name's raw bytes as a server sent them, reversible by [`raw_name_bytes`].
///
/// Names are modified UTF-7 (RFC 3501 §5.1.3) or UTF-8 (RFC 9051), but a server may send any
/// byte. Valid UTF-8 stays as it is; every byte that is not part of valid UTF-8 becomes the
/// code point U+10FF00 + byte, and so does every byte of a character already in that range, so
/// that the form is one-to-one. The source folder is then opened under exactly the bytes the
/// server listed (issue 10: a lossy conversion opened another folder, or none).
pub fn raw_name_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if u32::from(c) >= RAW_BYTE_BASE {
                let mut buf = [0; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(raw_byte_char));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(raw_byte_char));
    }
    out
}

/// The bytes a name's text form (see [`raw_name_text`]) stands for: what is sent back to the
/// server that listed it. Borrowed when the name had no raw bytes to restore.
pub fn raw_name_bytes(text: &str) -> std::borrow::Cow<'_, [u8]> {
    if !text.chars().any(|c| u32::from(c) >= RAW_BYTE_BASE) {
        return std::borrow::Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c).checked_sub(RAW_BYTE_BASE) {
            Some(b) => out.push(u8::try_from(b).unwrap_or(b'?')),
            None => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A name's text form for people and for deriving the target's name: raw bytes that are not
/// UTF-8 become U+FFFD (the replacement character), as a lossy decoding would.
pub fn lossy_name(text: &str) -> std::borrow::Cow<'_, str> {
    match raw_name_bytes(text) {
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
        std::borrow::Cow::Owned(bytes) => {
            std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// The decoded form of a raw mailbox name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecodedName {
    /// The decoded path, personal prefix stripped, INBOX normalised. When the name is not valid
    /// modified UTF-7, the raw text taken literally (split on the delimiter, prefix stripped).
    pub path: FolderPath,
    /// Why the name could not be decoded, if it could not.
    pub decode_error: Option<String>,
    /// Whether the name is the INBOX or lies under the personal prefix (always true for an
    /// empty prefix).
    pub in_personal_namespace: bool,
}

/// Whether `raw` is INBOX (RFC 3501 §5.1: "INBOX" is case-insensitive).
fn is_inbox(raw: &str) -> bool {
    raw.eq_ignore_ascii_case("INBOX")
}

/// `raw` with `prefix` removed, if it starts with it. A leading `INBOX` in the prefix matches
/// case-insensitively, as INBOX does; the rest must match exactly. An empty remainder is not a
/// folder under the prefix (it is the namespace's own root), so it does not count.
fn strip_personal_prefix<'a>(raw: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(raw);
    }
    let head = "INBOX".len();
    let matches = match (prefix.get(..head), raw.get(..head)) {
        (Some(p), Some(r)) if is_inbox(p) => {
            is_inbox(r)
                && prefix
                    .get(head..)
                    .zip(raw.get(head..))
                    .is_some_and(|(p, r)| r.starts_with(p))
        }
        _ => raw.starts_with(prefix),
    };
    let rest = raw.get(prefix.len()..).filter(|_| matches)?;
    (!rest.is_empty()).then_some(rest)
}

fn split(s: &str, delimiter: Option<char>) -> Vec<String> {
    match delimiter {
        Some(d) => s.split(d).map(str::to_owned).collect(),
        None => vec![s.to_owned()],
    }
}

/// Decodes a raw name LISTed by a server with the given delimiter and personal prefix.
///
/// The prefix is stripped (when present), then the remainder is decoded as modified UTF-7 and
/// split on the delimiter. Decoding the whole remainder before splitting is safe because a
/// canonical encoding never hides a printable ASCII character (such as a delimiter) in BASE64.
///
/// When the remainder is not valid modified UTF-7, the path is its raw text taken literally and
/// `decode_error` says why. That is lossless: [`encode_path`] of the literal path gives a
/// different, valid name whose decoded form shows the original raw characters, e.g. the raw
/// `Foo&bar` becomes the path `["Foo&bar"]` and, on the target, the raw `Foo&-bar`.
pub fn decode_name(raw: &str, delimiter: Option<char>, personal_prefix: &str) -> DecodedName {
    if is_inbox(raw) {
        return DecodedName {
            path: FolderPath::inbox(),
            decode_error: None,
            in_personal_namespace: true,
        };
    }
    let stripped = strip_personal_prefix(raw, personal_prefix);
    let in_personal_namespace = stripped.is_some();
    let rest = stripped.unwrap_or(raw);
    let offset = raw.len() - rest.len();
    let (components, decode_error) = match mutf7::decode(rest) {
        Ok(decoded) => (split(&decoded, delimiter), None),
        Err(e) => {
            let at = e.position + offset;
            let why = format!(
                "not valid modified UTF-7 at byte {at} of {raw:?}: {}",
                e.reason
            );
            (split(rest, delimiter), Some(why))
        }
    };
    DecodedName {
        path: FolderPath(components).normalise_inbox(),
        decode_error,
        in_personal_namespace,
    }
}

/// The raw name of `path` on a server with the given delimiter and personal prefix.
///
/// The INBOX is always `INBOX`. Any other path is the prefix followed by its components, each
/// encoded in modified UTF-7, joined by the delimiter. With no delimiter (a flat namespace) a
/// path should have one component; should it have more, they are joined with `/`, an ordinary
/// character there. A component containing the delimiter cannot be spelt faithfully; the planner
/// replaces such delimiters before a path reaches this function.
pub fn encode_path(path: &FolderPath, delimiter: Option<char>, personal_prefix: &str) -> String {
    if path.is_inbox() {
        return "INBOX".to_owned();
    }
    let joint = delimiter.unwrap_or('/');
    let mut out = String::from(personal_prefix);
    for (i, component) in path.0.iter().enumerate() {
        if i > 0 {
            out.push(joint);
        }
        out.push_str(&mutf7::encode(component));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> FolderPath {
        FolderPath(parts.iter().map(|s| (*s).to_owned()).collect())
    }

    /// (raw, delimiter, prefix, decoded path, in personal namespace): names that decode and
    /// re-encode to the same raw name.
    #[allow(clippy::type_complexity)]
    const ROUND_TRIP: &[(&str, Option<char>, &str, &[&str], bool)] = &[
        ("INBOX", Some('/'), "", &["INBOX"], true),
        ("INBOX", Some('.'), "INBOX.", &["INBOX"], true),
        ("INBOX.Sent", Some('.'), "INBOX.", &["Sent"], true),
        (
            "INBOX.Archive.2019",
            Some('.'),
            "INBOX.",
            &["Archive", "2019"],
            true,
        ),
        ("INBOX.INBOX.x", Some('.'), "INBOX.", &["INBOX", "x"], true),
        ("INBOX/x", Some('/'), "", &["INBOX", "x"], true),
        ("Archive/2019", Some('/'), "", &["Archive", "2019"], true),
        ("Archive.2019", Some('.'), "", &["Archive", "2019"], true),
        // A dot is an ordinary character under a `/` delimiter, and vice versa.
        ("v1.2/notes", Some('/'), "", &["v1.2", "notes"], true),
        ("a/b.c", Some('.'), "", &["a/b", "c"], true),
        ("Entw&APw-rfe", Some('/'), "", &["Entwürfe"], true),
        (
            "INBOX.Gel&APY-schte Elemente",
            Some('.'),
            "INBOX.",
            &["Gelöschte Elemente"],
            true,
        ),
        (
            "&ZeVnLIqe-/&U,BTFw-",
            Some('/'),
            "",
            &["日本語", "台北"],
            true,
        ),
        ("Fun &2D3eAA-", Some('/'), "", &["Fun 😀"], true),
        ("Tom &- Jerry", Some('/'), "", &["Tom & Jerry"], true),
        (
            "with space/and \"quotes\"",
            Some('/'),
            "",
            &["with space", "and \"quotes\""],
            true,
        ),
        ("back\\slash", Some('/'), "", &["back\\slash"], true),
        ("flat/name", None, "", &["flat/name"], true),
        ("Work", Some('/'), "", &["Work"], true),
        ("work", Some('/'), "", &["work"], true),
    ];

    #[test]
    fn names_decode_and_re_encode() {
        for (raw, delim, prefix, path, personal) in ROUND_TRIP {
            let d = decode_name(raw, *delim, prefix);
            assert_eq!(d.path, p(path), "decode {raw:?}");
            assert_eq!(d.decode_error, None, "{raw:?}");
            assert_eq!(d.in_personal_namespace, *personal, "{raw:?}");
            assert_eq!(
                encode_path(&d.path, *delim, prefix),
                *raw,
                "encode {path:?}"
            );
        }
    }

    #[test]
    fn inbox_is_case_insensitive() {
        for raw in ["inbox", "Inbox", "iNbOx"] {
            let d = decode_name(raw, Some('.'), "INBOX.");
            assert_eq!(d.path, FolderPath::inbox());
            assert!(d.in_personal_namespace);
        }
        // Children keep their own case; only the top-level INBOX is normalised.
        assert_eq!(
            decode_name("inbox/Inbox", Some('/'), "").path,
            p(&["INBOX", "Inbox"])
        );
        // The INBOX part of an `INBOX.` prefix matches in any case.
        assert_eq!(
            decode_name("Inbox.Sent", Some('.'), "INBOX.").path,
            p(&["Sent"])
        );
        assert_eq!(encode_path(&p(&["inbox"]), Some('.'), "INBOX."), "INBOX");
    }

    #[test]
    fn names_differing_in_case_stay_distinct() {
        let a = decode_name("Work", Some('/'), "");
        let b = decode_name("WORK", Some('/'), "");
        assert_ne!(a.path, b.path);
    }

    #[test]
    fn names_outside_the_prefix_are_not_personal() {
        let d = decode_name("#shared.team", Some('.'), "INBOX.");
        assert!(!d.in_personal_namespace);
        assert_eq!(d.path, p(&["#shared", "team"]));
        // The prefix's own root is not a folder under it.
        assert!(!decode_name("INBOX.", Some('.'), "INBOX.").in_personal_namespace);
        // Only the INBOX part of the prefix is case-insensitive.
        assert!(!decode_name("Mail/x", Some('/'), "mail/").in_personal_namespace);
        assert!(decode_name("mail/x", Some('/'), "mail/").in_personal_namespace);
    }

    #[test]
    fn undecodable_names_are_kept_literally() {
        // (raw, delimiter, prefix, literal path, re-encoded raw)
        type Case = (
            &'static str,
            Option<char>,
            &'static str,
            &'static [&'static str],
            &'static str,
        );
        let cases: &[Case] = &[
            ("Foo&bar", Some('/'), "", &["Foo&bar"], "Foo&-bar"),
            (
                "INBOX.a&AGE-.b",
                Some('.'),
                "INBOX.",
                &["a&AGE-", "b"],
                "INBOX.a&-AGE-.b",
            ),
            (
                "Latin1 Gr\u{fc}\u{df}e",
                Some('/'),
                "",
                &["Latin1 Grüße"],
                "Latin1 Gr&APwA3w-e",
            ),
            (
                "x/&AOQ-&APY-",
                Some('/'),
                "",
                &["x", "&AOQ-&APY-"],
                "x/&-AOQ-&-APY-",
            ),
        ];
        for (raw, delim, prefix, path, re_encoded) in cases {
            let d = decode_name(raw, *delim, prefix);
            assert_eq!(d.path, p(path), "{raw:?}");
            let why = d.decode_error.unwrap_or_default();
            assert!(why.contains("modified UTF-7"), "{why}");
            let again = encode_path(&d.path, *delim, prefix);
            assert_eq!(again, *re_encoded);
            // The re-encoded name is valid and shows the original characters.
            let back = decode_name(&again, *delim, prefix);
            assert_eq!(back.decode_error, None);
            assert_eq!(back.path, d.path);
        }
    }

    #[test]
    fn error_position_counts_from_the_raw_name() {
        let d = decode_name("INBOX.ok.b&d", Some('.'), "INBOX.");
        let why = d.decode_error.unwrap_or_default();
        assert!(why.contains("byte 10"), "{why}");
    }

    #[test]
    fn flat_namespace_joins_extra_components() {
        assert_eq!(encode_path(&p(&["a", "b"]), None, ""), "a/b");
        assert_eq!(encode_path(&p(&["Sent"]), None, "INBOX."), "INBOX.Sent");
    }

    #[test]
    fn mailbox_name_keeps_the_raw_bytes() {
        let m = MailboxName::new("INBOX.Entw&APw-rfe".to_owned(), Some('.'), "INBOX.");
        assert_eq!(m.raw, "INBOX.Entw&APw-rfe");
        assert_eq!(m.decoded.path, p(&["Entwürfe"]));
    }

    #[test]
    fn raw_bytes_survive_the_text_form() {
        let cases: &[&[u8]] = &[
            b"Work",
            b"Caf\xff",
            b"\xff\xfe\x80",
            "Caf\u{e9}".as_bytes(),
            // A character already in the escape range is escaped too, so the form stays
            // one-to-one.
            "x\u{10ff41}".as_bytes(),
            b"\xf4\x8f\xbd",
        ];
        for raw in cases {
            let text = raw_name_text(raw);
            assert_eq!(&raw_name_bytes(&text)[..], *raw, "{text:?}");
        }
        assert_eq!(raw_name_text(b"Work"), "Work");
        assert!(matches!(
            raw_name_bytes("Work"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_ne!(
            raw_name_text(b"Caf\xff"),
            raw_name_text("Caf\u{fffd}".as_bytes())
        );
        assert_eq!(lossy_name(&raw_name_text(b"Caf\xff")), "Caf\u{fffd}");
    }
}
