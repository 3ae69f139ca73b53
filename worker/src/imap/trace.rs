//! `--trace-imap FILE`: a protocol trace for support engineers, every command and response of
//! every connection, one line each, with what must not leave the machine taken out.
//!
//! Redacted, always: the arguments of LOGIN and AUTHENTICATE and every SASL response (the
//! connection marks its login as secret, [`Tracer::secret`]), and every literal in either
//! direction (message bodies and headers), shown as `{N bytes}`. What stays: tags, commands,
//! folder names, flags, UIDs, sizes, dates and the servers' answers, which is what a
//! misbehaving server is diagnosed from. This module writes; it never decides what to send.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mailferry_proto::task::Side;

/// Longest line written, in characters; the rest is counted, not shown.
const MAX_SHOWN: usize = 2_000;

/// The trace file shared by every connection of a process.
#[derive(Debug)]
pub struct TraceFile {
    out: Mutex<std::io::LineWriter<std::fs::File>>,
    next_connection: AtomicU64,
}

impl TraceFile {
    /// Creates (or truncates) `path`, readable by its owner only: it names accounts, folders
    /// and the servers' words.
    pub fn create(path: &Path) -> std::io::Result<TraceFile> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        Ok(TraceFile {
            out: Mutex::new(std::io::LineWriter::new(file)),
            next_connection: AtomicU64::new(1),
        })
    }

    /// The tracer of a new connection to `account` on `side`.
    pub fn connection(self: &std::sync::Arc<Self>, side: Side, account: &str) -> Tracer {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let t = Tracer {
            file: self.clone(),
            prefix: format!("#{id} {side}"),
            secret: false,
        };
        t.line("*", &format!("connecting to {account}"));
        t
    }

    fn write(&self, line: &str) {
        if let Ok(mut out) = self.out.lock() {
            // A trace that cannot be written (disk full) must not stop the migration.
            let _ = out.write_all(line.as_bytes());
        }
    }
}

/// One connection's view of the trace.
#[derive(Debug)]
pub struct Tracer {
    file: std::sync::Arc<TraceFile>,
    prefix: String,
    /// While set (a login in progress), what the client sends is not shown.
    pub secret: bool,
}

impl Tracer {
    /// What the client sent: `parts` are text (shown) and literals (counted).
    pub fn client(&self, parts: &[Sent<'_>]) {
        let mut text = String::new();
        for p in parts {
            match p {
                Sent::Text(t) => text.push_str(t),
                Sent::Literal(n) => {
                    let _ = write!(text, "{{{n} bytes}}");
                }
            }
        }
        if self.secret {
            text = secret_shown(&text);
        }
        self.line("C:", text.trim_end_matches(['\r', '\n']));
    }

    /// What the server sent: one complete response, literals counted, not shown.
    pub fn server(&self, response: &[u8]) {
        let shown = without_literals(response);
        self.line("S:", shown.trim_end_matches(['\r', '\n']));
    }

    fn line(&self, dir: &str, text: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        // Line ends inside a command or response (before and after a literal) become spaces.
        let text = text.replace("\r\n", " ");
        let count = text.chars().count();
        let mut shown: String = text
            .chars()
            .take(MAX_SHOWN)
            .map(|c| if c.is_control() { '·' } else { c })
            .collect();
        if count > MAX_SHOWN {
            let _ = write!(shown, " … ({} more characters)", count - MAX_SHOWN);
        }
        self.file
            .write(&format!("{now} {} {dir} {shown}\n", self.prefix));
    }
}

/// A piece of what the client sent.
#[derive(Debug, Clone, Copy)]
pub enum Sent<'a> {
    /// Command text.
    Text(&'a str),
    /// A literal of this many bytes.
    Literal(usize),
}

/// A line sent during a login: its tag and command (`a2 AUTHENTICATE PLAIN`, `a3 LOGIN`) when it
/// starts with them, the rest replaced; a bare SASL response, replaced whole.
fn secret_shown(text: &str) -> String {
    let mut words = text.split(' ');
    let (Some(tag), Some(verb)) = (words.next(), words.next()) else {
        return "<login data not shown>".into();
    };
    match verb.to_ascii_uppercase().as_str() {
        "LOGIN" => format!("{tag} {verb} <login data not shown>"),
        "AUTHENTICATE" => match words.next() {
            Some(mechanism) => format!("{tag} {verb} {mechanism} <login data not shown>"),
            None => format!("{tag} {verb}"),
        },
        _ => "<login data not shown>".into(),
    }
}

/// A response with each literal's bytes replaced by `{N bytes}` (RFC 3501 §4.3: a line ending in
/// `{N}` is followed by N bytes), as text.
fn without_literals(response: &[u8]) -> String {
    let mut out = Vec::with_capacity(response.len().min(4096));
    let mut rest = response;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(end);
        out.extend_from_slice(line);
        rest = after;
        if let Some(n) = announced_literal(line) {
            let n = n.min(rest.len());
            out.extend_from_slice(format!("<{n} bytes> ").as_bytes());
            rest = &rest[n..];
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The size a line announces with a trailing `{N}` or `{N+}` before its line end.
fn announced_literal(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = line[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&line[open + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_counted_not_shown() {
        let r = b"* 1 FETCH (UID 7 BODY[] {11}\r\nHello world)\r\n";
        assert_eq!(
            without_literals(r),
            "* 1 FETCH (UID 7 BODY[] {11}\r\n<11 bytes> )\r\n"
        );
        let two =
            b"* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {9}\r\nSubject:x BODY[] {3+}\r\nabc)\r\n";
        let shown = without_literals(two);
        assert!(
            !shown.contains("Subject:x") && !shown.contains("abc"),
            "{shown}"
        );
        // A literal announced larger than what came is cut at what came.
        assert_eq!(
            without_literals(b"* X {99}\r\nab"),
            "* X {99}\r\n<2 bytes> "
        );
        assert_eq!(announced_literal(b"a {x}\r\n"), None);
        assert_eq!(announced_literal(b"a {}\r\n"), None);
    }

    #[test]
    fn logins_show_their_command_only() {
        assert_eq!(
            secret_shown("a2 LOGIN alice \"hunter2\"\r\n"),
            "a2 LOGIN <login data not shown>"
        );
        assert_eq!(
            secret_shown("a3 AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjI="),
            "a3 AUTHENTICATE PLAIN <login data not shown>"
        );
        assert_eq!(
            secret_shown("AGFsaWNlAGh1bnRlcjI="),
            "<login data not shown>"
        );
        assert_eq!(secret_shown("a4 AUTHENTICATE"), "a4 AUTHENTICATE");
    }

    #[test]
    fn a_trace_file_holds_redacted_lines() {
        let dir = std::env::temp_dir().join(format!("mf-trace-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("trace");
        let file = std::sync::Arc::new(TraceFile::create(&path).expect("trace file"));
        let mut t = file.connection(Side::Source, "alice@h:993");
        t.secret = true;
        t.client(&[Sent::Text("a1 LOGIN alice secret\r\n")]);
        t.secret = false;
        t.client(&[
            Sent::Text("a2 APPEND INBOX {5}\r\n"),
            Sent::Literal(5),
            Sent::Text("\r\n"),
        ]);
        t.server(b"a2 OK [APPENDUID 1 9] done\r\n");
        let text = std::fs::read_to_string(&path).expect("reading the trace");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.contains("#1 source C: a1 LOGIN <login data not shown>"),
            "{text}"
        );
        assert!(text.contains("C: a2 APPEND INBOX {5} {5 bytes}"), "{text}");
        assert!(text.contains("S: a2 OK [APPENDUID 1 9] done\n"), "{text}");
    }
}
