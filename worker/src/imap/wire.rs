//! IMAP wire syntax: one server response framed (literals included) and tokenised into a small
//! value tree, and command arguments quoted.
//!
//! The parser is deliberately tolerant: any line it cannot make sense of becomes
//! [`Response::Untagged`] with whatever tokens it could read, instead of killing the session
//! (strict parsers lose the connection over a double space in CAPABILITY). It never panics on
//! server input.

use std::fmt;

use bytes::Bytes;

/// One token of a server response.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom or number, e.g. `FETCH`, `\Seen`, `12`, `BODY[HEADER.FIELDS (DATE)]`.
    Atom(String),
    /// A quoted string or a literal, as bytes (a literal shares the response's buffer: a
    /// message body is never copied after it was read).
    Str(Bytes),
    /// `NIL`.
    Nil,
    /// A parenthesised list.
    List(Vec<Value>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Atom(a) => write!(f, "{a}"),
            Value::Str(s) if s.len() > 80 => write!(f, "<{} bytes>", s.len()),
            Value::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Value::Nil => f.write_str("NIL"),
            Value::List(l) => f.debug_list().entries(l).finish(),
        }
    }
}

impl Value {
    /// The atom text, if an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// Text of an atom or string (lossy for non-UTF-8 strings); `None` for NIL and lists.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.clone()),
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    /// A number, if the token is one.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_atom()?.parse().ok()
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Takes the bytes of a string or literal out of the value.
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Value::Str(s) => Some(s),
            Value::Atom(a) => Some(Bytes::from(a.into_bytes())),
            _ => None,
        }
    }
}

/// Status of a tagged or untagged status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// OK.
    Ok,
    /// NO.
    No,
    /// BAD.
    Bad,
    /// BYE (untagged only).
    Bye,
    /// PREAUTH (greeting only).
    Preauth,
}

/// A response code: `[NAME args...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Upper-cased name, e.g. `APPENDUID`, `OVERQUOTA`.
    pub name: String,
    /// Arguments after the name.
    pub args: Vec<Value>,
}

/// A server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Completion of a command.
    Tagged {
        /// The command's tag.
        tag: String,
        /// OK, NO or BAD.
        status: Status,
        /// Response code, if any.
        code: Option<Code>,
        /// Human-readable text.
        text: String,
    },
    /// `* OK|NO|BAD|BYE|PREAUTH [code] text`.
    UntaggedStatus {
        /// Status.
        status: Status,
        /// Response code, if any.
        code: Option<Code>,
        /// Text.
        text: String,
    },
    /// Any other untagged response, as tokens after `*`.
    Untagged(Vec<Value>),
    /// `+ text`: the server waits for a literal or a SASL response.
    Continue(String),
}

impl Response {
    /// For `* n KEYWORD ...` responses: (n, KEYWORD upper-cased, rest).
    pub fn numbered(&self) -> Option<(u32, String, &[Value])> {
        let Response::Untagged(v) = self else {
            return None;
        };
        let n = v.first()?.as_atom()?.parse().ok()?;
        let kw = v.get(1)?.as_atom()?.to_ascii_uppercase();
        Some((n, kw, v.get(2..).unwrap_or(&[])))
    }

    /// For `* KEYWORD ...` responses: (KEYWORD upper-cased, rest).
    pub fn keyword(&self) -> Option<(String, &[Value])> {
        let Response::Untagged(v) = self else {
            return None;
        };
        let kw = v.first()?.as_atom()?.to_ascii_uppercase();
        Some((kw, v.get(1..).unwrap_or(&[])))
    }
}

/// Framing failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A literal larger than we accept.
    #[error("server announced a {0}-byte literal, larger than the {1}-byte limit")]
    LiteralTooLarge(u64, u64),
    /// A line longer than we accept.
    #[error("server sent a line longer than {0} bytes")]
    LineTooLong(usize),
}

/// Result of looking for one complete response in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A response ends at this offset (exclusive).
    Complete(usize),
    /// More bytes are needed; `scan` is where to resume looking for CRLF, `need` the total length
    /// known to be required so far.
    Incomplete {
        /// Offset to resume scanning from.
        scan: usize,
        /// Minimum total buffer length needed.
        need: usize,
    },
}

/// Longest non-literal text of a response we accept.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// Finds the end of the first complete response in `buf`, starting the CRLF search at `scan`
/// (a previous [`Framed::Incomplete::scan`], or 0).
pub fn frame(buf: &[u8], mut scan: usize, max_literal: u64) -> Result<Framed, FrameError> {
    loop {
        let Some(rel) = buf
            .get(scan..)
            .and_then(|rest| memchr::memmem::find(rest, b"\r\n"))
        else {
            if buf.len() > MAX_LINE {
                return Err(FrameError::LineTooLong(MAX_LINE));
            }
            // Resume one byte early: the CR may already be here without its LF.
            return Ok(Framed::Incomplete {
                scan: buf.len().saturating_sub(1).max(scan),
                need: buf.len() + 1,
            });
        };
        let cr = scan + rel;
        let line = buf.get(..cr).unwrap_or_default();
        match literal_at_end(line) {
            Some(n) => {
                if n > max_literal {
                    return Err(FrameError::LiteralTooLarge(n, max_literal));
                }
                let after = cr
                    + 2
                    + usize::try_from(n)
                        .map_err(|_| FrameError::LiteralTooLarge(n, max_literal))?;
                if buf.len() < after {
                    return Ok(Framed::Incomplete {
                        scan: cr,
                        need: after,
                    });
                }
                scan = after;
            }
            None => return Ok(Framed::Complete(cr + 2)),
        }
    }
}

/// `{123}` or `{123+}` at the end of a line: the length of the literal that follows.
fn literal_at_end(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let digits = body.get(open + 1..)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses one framed response (as found by [`frame`], CRLF included).
pub fn parse(framed: &Bytes) -> Response {
    let resp: &[u8] = framed;
    let line = resp.strip_suffix(b"\r\n").unwrap_or(resp);
    if let Some(rest) = line.strip_prefix(b"+") {
        return Response::Continue(text_of(rest.strip_prefix(b" ").unwrap_or(rest)));
    }
    if let Some(rest) = line.strip_prefix(b"* ") {
        if let Some((status, after)) = status_word(rest) {
            let (code, text) = code_and_text(after);
            return Response::UntaggedStatus { status, code, text };
        }
        let offset = rest.as_ptr() as usize - resp.as_ptr() as usize;
        return Response::Untagged(
            Parser {
                s: rest,
                i: 0,
                src: Some((framed, offset)),
            }
            .items(false),
        );
    }
    let sp = memchr::memchr(b' ', line).unwrap_or(line.len());
    let tag = String::from_utf8_lossy(line.get(..sp).unwrap_or_default()).into_owned();
    let rest = line.get(sp + 1..).unwrap_or_default();
    match status_word(rest) {
        Some((status, after)) => {
            let (code, text) = code_and_text(after);
            Response::Tagged {
                tag,
                status,
                code,
                text,
            }
        }
        None => Response::Untagged(
            Parser {
                s: line,
                i: 0,
                src: Some((framed, 0)),
            }
            .items(false),
        ),
    }
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn status_word(rest: &[u8]) -> Option<(Status, &[u8])> {
    let sp = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let word = rest.get(..sp)?;
    let status = match word.to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        b"BYE" => Status::Bye,
        b"PREAUTH" => Status::Preauth,
        _ => return None,
    };
    Some((status, rest.get(sp + 1..).unwrap_or_default()))
}

fn code_and_text(after: &[u8]) -> (Option<Code>, String) {
    let Some(inner) = after.strip_prefix(b"[") else {
        return (None, text_of(after));
    };
    let Some(close) = matching_bracket(inner) else {
        return (None, text_of(after));
    };
    let code_bytes = inner.get(..close).unwrap_or_default();
    let text = inner.get(close + 1..).unwrap_or_default();
    let text = text.strip_prefix(b" ").unwrap_or(text);
    let mut tokens = tokenize(code_bytes).0.into_iter();
    let code = tokens.next().and_then(|v| v.as_text()).map(|name| Code {
        name: name.to_ascii_uppercase(),
        args: tokens.collect(),
    });
    (code, text_of(text))
}

/// Index of the `]` closing a `[` already consumed, respecting nesting and quoted strings.
fn matching_bracket(s: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut escape = false;
    for (i, &c) in s.iter().enumerate() {
        if in_quote {
            match (escape, c) {
                (true, _) => escape = false,
                (false, b'\\') => escape = true,
                (false, b'"') => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_quote = true,
            b'[' => depth += 1,
            b']' if depth == 0 => return Some(i),
            b']' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Tokenises `s` into values; returns them and the number of bytes consumed.
pub fn tokenize(s: &[u8]) -> (Vec<Value>, usize) {
    let mut p = Parser { s, i: 0, src: None };
    let v = p.items(false);
    (v, p.i)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// The buffer `s` lies in and its offset there, so literals can share it instead of copying.
    src: Option<(&'a Bytes, usize)>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn items(&mut self, in_list: bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            while matches!(self.peek(), Some(b' ' | b'\r' | b'\n')) {
                self.i += 1;
            }
            match self.peek() {
                None => return out,
                Some(b')') => {
                    self.i += 1;
                    if in_list {
                        return out;
                    }
                }
                Some(b'(') => {
                    self.i += 1;
                    out.push(Value::List(self.items(true)));
                }
                Some(b'"') => out.push(self.quoted()),
                Some(b'{') => match self.literal() {
                    Some(v) => out.push(v),
                    None => out.push(self.atom()),
                },
                Some(_) => out.push(self.atom()),
            }
        }
    }

    fn quoted(&mut self) -> Value {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        Value::Str(Bytes::from(out))
    }

    fn literal(&mut self) -> Option<Value> {
        let rest = self.s.get(self.i..)?;
        let close = memchr::memchr(b'}', rest)?;
        let n = literal_at_end(rest.get(..=close)?)?;
        let start = self.i + close + 1;
        if self.s.get(start..start + 2) != Some(b"\r\n") {
            return None;
        }
        let begin = start + 2;
        let end = begin.checked_add(usize::try_from(n).ok()?)?;
        self.s.get(begin..end)?;
        let data = match self.src {
            Some((buf, offset)) if offset + end <= buf.len() => {
                buf.slice(offset + begin..offset + end)
            }
            _ => Bytes::copy_from_slice(self.s.get(begin..end)?),
        };
        self.i = end;
        Some(Value::Str(data))
    }

    fn atom(&mut self) -> Value {
        let start = self.i;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'[' => depth += 1,
                b']' if depth > 0 => depth -= 1,
                b' ' | b'(' | b')' | b'\r' | b'\n' if depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        if self.i == start {
            // A stray byte we cannot place: consume it so the loop always advances.
            self.i += 1;
        }
        let text =
            String::from_utf8_lossy(self.s.get(start..self.i).unwrap_or_default()).into_owned();
        if text.eq_ignore_ascii_case("NIL") {
            Value::Nil
        } else {
            Value::Atom(text)
        }
    }
}

/// Quotes a string argument for a command: an atom-safe quoted string, or `None` when it must be
/// sent as a literal (CR, LF, NUL or 8-bit bytes).
pub fn quote(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lines_and_literals() {
        assert_eq!(frame(b"* OK hi\r\n* 1", 0, 100), Ok(Framed::Complete(9)));
        let lit = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc UID 3)\r\nrest";
        assert_eq!(frame(lit, 0, 100), Ok(Framed::Complete(lit.len() - 4)));
        let partial = b"* 1 FETCH (BODY[] {5}\r\nab";
        assert!(matches!(
            frame(partial, 0, 100),
            Ok(Framed::Incomplete { need: 28, .. })
        ));
        assert_eq!(
            frame(b"* 1 FETCH (BODY[] {500}\r\n", 0, 100),
            Err(FrameError::LiteralTooLarge(500, 100))
        );
        assert!(matches!(
            frame(b"* OK no end", 0, 100),
            Ok(Framed::Incomplete { .. })
        ));
    }

    #[test]
    fn parses_fetch_with_sections_and_literals() {
        let r = parse(&Bytes::from_static(b"* 12 FETCH (UID 7 FLAGS (\\Seen $Label1) INTERNALDATE \"01-Jan-2020 10:00:00 +0200\" BODY[HEADER.FIELDS (DATE FROM)] {4}\r\nab\r\n RFC822.SIZE 99)\r\n"));
        let (n, kw, rest) = r.numbered().unwrap();
        assert_eq!((n, kw.as_str()), (12, "FETCH"));
        let items = rest[0].as_list().unwrap();
        assert_eq!(items[0], Value::Atom("UID".into()));
        assert_eq!(
            items[3].as_list().unwrap()[1],
            Value::Atom("$Label1".into())
        );
        assert_eq!(
            items[6],
            Value::Atom("BODY[HEADER.FIELDS (DATE FROM)]".into())
        );
        assert_eq!(items[7], Value::Str(Bytes::from_static(b"ab\r\n")));
        assert_eq!(items[9].as_u64(), Some(99));
    }

    #[test]
    fn parses_status_responses_with_codes() {
        let r = parse(&Bytes::from_static(
            b"a1 OK [APPENDUID 38505 3955:3957] done\r\n",
        ));
        let Response::Tagged {
            tag,
            status,
            code,
            text,
        } = r
        else {
            panic!()
        };
        assert_eq!(
            (tag.as_str(), status, text.as_str()),
            ("a1", Status::Ok, "done")
        );
        let code = code.unwrap();
        assert_eq!(code.name, "APPENDUID");
        assert_eq!(
            code.args,
            vec![Value::Atom("38505".into()), Value::Atom("3955:3957".into())]
        );
        let r = parse(&Bytes::from_static(
            b"* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n",
        ));
        let Response::UntaggedStatus {
            code: Some(code), ..
        } = r
        else {
            panic!()
        };
        assert_eq!(code.args[0].as_list().unwrap().len(), 2);
        let r = parse(&Bytes::from_static(
            b"a2 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
        ));
        let Response::Tagged {
            status: Status::No,
            code: Some(c),
            ..
        } = r
        else {
            panic!()
        };
        assert_eq!(c.name, "OVERQUOTA");
        assert_eq!(
            parse(&Bytes::from_static(b"+ go ahead\r\n")),
            Response::Continue("go ahead".into())
        );
    }

    #[test]
    fn parses_list_and_namespace() {
        let r = parse(&Bytes::from_static(
            b"* LIST (\\HasNoChildren \\Sent) \".\" \"INBOX.Sent Items\"\r\n",
        ));
        let (kw, rest) = r.keyword().unwrap();
        assert_eq!(kw, "LIST");
        assert_eq!(rest[1], Value::Str(Bytes::from_static(b".")));
        assert_eq!(rest[2], Value::Str(Bytes::from_static(b"INBOX.Sent Items")));
        let r = parse(&Bytes::from_static(
            b"* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"shared.\" \".\"))\r\n",
        ));
        let (kw, rest) = r.keyword().unwrap();
        assert_eq!(kw, "NAMESPACE");
        assert_eq!(rest[1], Value::Nil);
        let r = parse(&Bytes::from_static(b"* LIST () NIL {3}\r\na\"b\r\n"));
        assert_eq!(
            r.keyword().unwrap().1[2],
            Value::Str(Bytes::from_static(b"a\"b"))
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        let samples: [&[u8]; 9] = [
            b"",
            b"*",
            b"* ",
            b"a1",
            b"* 1 FETCH (((",
            b"* OK [",
            b"+",
            b"* 1 FETCH {99999}\r\nab",
            b"\xff\xfe[]])) {",
        ];
        for s in samples {
            let _ = parse(&Bytes::copy_from_slice(s));
            let _ = frame(s, 0, 10);
        }
        let table = b"*( )\"{}[]\\\r\n1aNIL+";
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let len = (x % 40) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(table[x as usize % table.len()]);
            }
            let _ = parse(&Bytes::from(v.clone()));
            let _ = frame(&v, 0, 10);
        }
    }

    #[test]
    fn quotes_or_demands_a_literal() {
        assert_eq!(quote("a \"b\\").as_deref(), Some("\"a \\\"b\\\\\""));
        assert_eq!(quote("Grüße"), None);
        assert_eq!(quote("a\r\nb"), None);
    }
}
