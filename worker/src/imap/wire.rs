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
    /// The literals of one response add up to more than we accept.
    #[error("server sent more than {0} bytes of literals in one response, more than was asked for")]
    LiteralsTooLarge(u64),
    /// A line longer than we accept.
    #[error("server sent a line longer than {0} bytes")]
    LineTooLong(usize),
}

/// Result of looking for one complete response in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A response ends at `end` (exclusive) and carries `literals` bytes of literals.
    Complete {
        /// Offset just past the response's line end.
        end: usize,
        /// Bytes of literals in it.
        literals: u64,
    },
    /// More bytes are needed.
    Incomplete {
        /// The total buffer length a literal announced so far needs, when the response waits
        /// for a literal's bytes; `None` while it waits for the end of a line (whose length is
        /// not known in advance).
        need: Option<usize>,
    },
}

/// Longest text of one response outside its literals. No response mailferry asks for comes
/// near it (a LIST line, a FETCH of flags and headers as literals), and a longer one is a
/// server that never ends its line.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// How deep lists may nest in a response. IMAP's own syntax needs a handful of levels (a
/// BODYSTRUCTURE of a deeply nested MIME message a few dozen); deeper is a hostile server, and
/// a limit keeps parsing, formatting and dropping a value within a small stack.
pub const MAX_DEPTH: usize = 64;

/// What one response may hold; each limit is checked as the bytes arrive, before they are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Text outside literals, in bytes ([`MAX_LINE`] by default).
    pub max_line: usize,
    /// One literal, in bytes.
    pub max_literal: u64,
    /// All literals of the response together, in bytes: what the command asked for (one
    /// message body, or a few header blocks), not what the server decides to send.
    pub max_literals: u64,
}

/// Where framing of the response at the start of the buffer stands between reads, so each read
/// scans only the bytes that arrived since the last one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameState {
    /// Offset to resume looking for a line end from.
    scan: usize,
    /// Bytes of literals before `scan`.
    literals: u64,
}

/// Finds the end of the first complete response in `buf`, resuming from `state` (a fresh
/// [`FrameState`] for a new response; it is reset when a response is complete).
///
/// A line ends with CRLF, or with a bare LF: some servers end lines so (RFC 3501 §2.2 asks for
/// CRLF, but imaplib and imapsync accept LF, and a client that waits for a CR that never comes
/// hangs). A literal's bytes are never searched for line ends.
pub fn frame(
    buf: &[u8],
    state: &mut FrameState,
    limits: &FrameLimits,
) -> Result<Framed, FrameError> {
    loop {
        let text = buf.len() as u64 - state.literals.min(buf.len() as u64);
        let Some(rel) = buf
            .get(state.scan..)
            .and_then(|rest| memchr::memchr(b'\n', rest))
        else {
            if text > limits.max_line as u64 {
                return Err(FrameError::LineTooLong(limits.max_line));
            }
            state.scan = buf.len();
            return Ok(Framed::Incomplete { need: None });
        };
        let lf = state.scan + rel;
        let line = buf.get(..lf).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if (lf as u64).saturating_sub(state.literals) > limits.max_line as u64 {
            return Err(FrameError::LineTooLong(limits.max_line));
        }
        match literal_at_end(line) {
            Some(n) => {
                if n > limits.max_literal {
                    return Err(FrameError::LiteralTooLarge(n, limits.max_literal));
                }
                let literals = state.literals.saturating_add(n);
                if literals > limits.max_literals {
                    return Err(FrameError::LiteralsTooLarge(limits.max_literals));
                }
                let after = usize::try_from(n)
                    .ok()
                    .and_then(|n| (lf + 1).checked_add(n))
                    .ok_or(FrameError::LiteralTooLarge(n, limits.max_literal))?;
                if buf.len() < after {
                    // Resume at the line end: the literal is counted once it is all here.
                    state.scan = lf;
                    return Ok(Framed::Incomplete { need: Some(after) });
                }
                state.scan = after;
                state.literals = literals;
            }
            None => {
                let literals = state.literals;
                *state = FrameState::default();
                return Ok(Framed::Complete {
                    end: lf + 1,
                    literals,
                });
            }
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

/// A response the parser refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Lists nested deeper than [`MAX_DEPTH`].
    #[error("server sent lists nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// Parses one framed response (as found by [`frame`], its line end included).
pub fn parse(framed: &Bytes) -> Result<Response, ParseError> {
    let resp: &[u8] = framed;
    let line = resp.strip_suffix(b"\n").unwrap_or(resp);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"+") {
        return Ok(Response::Continue(text_of(
            rest.strip_prefix(b" ").unwrap_or(rest),
        )));
    }
    if let Some(rest) = line.strip_prefix(b"* ") {
        if let Some((status, after)) = status_word(rest) {
            let (code, text) = code_and_text(after)?;
            return Ok(Response::UntaggedStatus { status, code, text });
        }
        let offset = rest.as_ptr() as usize - resp.as_ptr() as usize;
        let mut p = Parser {
            s: rest,
            i: 0,
            src: Some((framed, offset)),
        };
        return Ok(Response::Untagged(p.items(0)?));
    }
    let sp = memchr::memchr(b' ', line).unwrap_or(line.len());
    let tag = String::from_utf8_lossy(line.get(..sp).unwrap_or_default()).into_owned();
    let rest = line.get(sp + 1..).unwrap_or_default();
    match status_word(rest) {
        Some((status, after)) => {
            let (code, text) = code_and_text(after)?;
            Ok(Response::Tagged {
                tag,
                status,
                code,
                text,
            })
        }
        None => {
            let mut p = Parser {
                s: line,
                i: 0,
                src: Some((framed, 0)),
            };
            Ok(Response::Untagged(p.items(0)?))
        }
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

fn code_and_text(after: &[u8]) -> Result<(Option<Code>, String), ParseError> {
    let Some(inner) = after.strip_prefix(b"[") else {
        return Ok((None, text_of(after)));
    };
    let Some(close) = matching_bracket(inner) else {
        return Ok((None, text_of(after)));
    };
    let code_bytes = inner.get(..close).unwrap_or_default();
    let text = inner.get(close + 1..).unwrap_or_default();
    let text = text.strip_prefix(b" ").unwrap_or(text);
    let mut tokens = tokenize(code_bytes)?.0.into_iter();
    let code = tokens.next().and_then(|v| v.as_text()).map(|name| Code {
        name: name.to_ascii_uppercase(),
        args: tokens.collect(),
    });
    Ok((code, text_of(text)))
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
pub fn tokenize(s: &[u8]) -> Result<(Vec<Value>, usize), ParseError> {
    let mut p = Parser { s, i: 0, src: None };
    let v = p.items(0)?;
    Ok((v, p.i))
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

    /// The values up to the end, or (at `depth` > 0, inside a list) up to the closing `)`.
    fn items(&mut self, depth: usize) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        loop {
            while matches!(self.peek(), Some(b' ' | b'\r' | b'\n')) {
                self.i += 1;
            }
            match self.peek() {
                None => return Ok(out),
                Some(b')') => {
                    self.i += 1;
                    if depth > 0 {
                        return Ok(out);
                    }
                }
                Some(b'(') => {
                    if depth >= MAX_DEPTH {
                        return Err(ParseError::TooDeep);
                    }
                    self.i += 1;
                    out.push(Value::List(self.items(depth + 1)?));
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
        // `{` + at most 19 digits + `+` + `}`: look no further, so a line of many `{` costs
        // linear time, not quadratic.
        let head = rest.get(..rest.len().min(23))?;
        let close = memchr::memchr(b'}', head)?;
        let n = literal_at_end(rest.get(..=close)?)?;
        let start = self.i + close + 1;
        let begin = match self.s.get(start..) {
            Some([b'\r', b'\n', ..]) => start + 2,
            Some([b'\n', ..]) => start + 1,
            _ => return None,
        };
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

    fn limits(max_literal: u64) -> FrameLimits {
        FrameLimits {
            max_line: MAX_LINE,
            max_literal,
            max_literals: max_literal,
        }
    }

    fn complete(end: usize, literals: u64) -> Framed {
        Framed::Complete { end, literals }
    }

    fn frame_new(buf: &[u8], max_literal: u64) -> Result<Framed, FrameError> {
        frame(buf, &mut FrameState::default(), &limits(max_literal))
    }

    #[test]
    fn frames_lines_and_literals() {
        assert_eq!(frame_new(b"* OK hi\r\n* 1", 100), Ok(complete(9, 0)));
        let lit = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc UID 3)\r\nrest";
        assert_eq!(frame_new(lit, 100), Ok(complete(lit.len() - 4, 5)));
        let partial = b"* 1 FETCH (BODY[] {5}\r\nab";
        assert_eq!(
            frame_new(partial, 100),
            Ok(Framed::Incomplete { need: Some(28) })
        );
        assert_eq!(
            frame_new(b"* 1 FETCH (BODY[] {500}\r\n", 100),
            Err(FrameError::LiteralTooLarge(500, 100))
        );
        assert_eq!(
            frame_new(b"* OK no end", 100),
            Ok(Framed::Incomplete { need: None })
        );
    }

    #[test]
    fn a_bare_lf_ends_a_line_but_not_inside_a_literal() {
        // The tagged answer of a server that ends lines with LF alone.
        let b = b"m2 OK AUTHENTICATE PLAIN authentication successful\n";
        assert_eq!(frame_new(b, 100), Ok(complete(b.len(), 0)));
        let Ok(Response::Tagged {
            tag, status, text, ..
        }) = parse(&Bytes::from_static(b))
        else {
            panic!()
        };
        assert_eq!((tag.as_str(), status), ("m2", Status::Ok));
        assert_eq!(text, "AUTHENTICATE PLAIN authentication successful");
        // An LF inside a literal is data; the literal header itself may end with LF alone.
        let lit = b"* 1 FETCH (BODY[] {4}\na\nb\n)\n";
        assert_eq!(frame_new(lit, 100), Ok(complete(lit.len(), 4)));
        let r = parse(&Bytes::from_static(lit)).unwrap();
        let (_, _, rest) = r.numbered().unwrap();
        assert_eq!(
            rest[0].as_list().unwrap()[1],
            Value::Str(Bytes::from_static(b"a\nb\n"))
        );
    }

    #[test]
    fn framing_resumes_where_it_stopped() {
        // A response arriving a byte at a time is framed with one scan of each byte.
        let full = b"* 1 FETCH (BODY[] {3}\r\nabc FLAGS ())\r\n";
        let mut state = FrameState::default();
        for n in 1..full.len() {
            let r = frame(&full[..n], &mut state, &limits(100)).unwrap();
            assert!(matches!(r, Framed::Incomplete { .. }), "at {n}: {r:?}");
        }
        assert_eq!(
            frame(full, &mut state, &limits(100)),
            Ok(complete(full.len(), 3))
        );
        assert_eq!(state, FrameState::default());
    }

    #[test]
    fn a_line_without_end_is_refused_past_the_limit_literals_not_counted() {
        let small = FrameLimits {
            max_line: 1000,
            max_literal: 10_000,
            max_literals: 10_000,
        };
        let long = vec![b'a'; 1001];
        assert_eq!(
            frame(&long, &mut FrameState::default(), &small),
            Err(FrameError::LineTooLong(1000))
        );
        // A 5,000-byte literal inside a short line is not line text.
        let mut resp = b"* 1 FETCH (BODY[] {5000}\r\n".to_vec();
        resp.extend(std::iter::repeat_n(b'x', 5000));
        resp.extend_from_slice(b")\r\n");
        assert_eq!(
            frame(&resp, &mut FrameState::default(), &small),
            Ok(complete(resp.len(), 5000))
        );
    }

    #[test]
    fn literals_of_one_response_count_against_its_allowance() {
        // Twenty literals of 50 bytes where 100 were allowed: refused at the third header,
        // before its bytes are read.
        let limits = FrameLimits {
            max_line: MAX_LINE,
            max_literal: 50,
            max_literals: 100,
        };
        let mut resp = b"* 1 FETCH (".to_vec();
        for _ in 0..20 {
            resp.extend_from_slice(b"BODY[] {50}\r\n");
            resp.extend(std::iter::repeat_n(b'x', 50));
            resp.push(b' ');
        }
        resp.extend_from_slice(b")\r\n");
        assert_eq!(
            frame(&resp, &mut FrameState::default(), &limits),
            Err(FrameError::LiteralsTooLarge(100))
        );
        // The largest size the syntax takes, against the default 2 GiB literal limit.
        assert_eq!(
            frame_new(b"* 1 FETCH (BODY[] {9999999999999999999}\r\n", 1 << 31),
            Err(FrameError::LiteralTooLarge(
                9_999_999_999_999_999_999,
                1 << 31
            ))
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // 10,000 levels aborted the process (SIGABRT) before the limit; the greeting and
        // response codes go through the same tokenizer.
        let deep = |(prefix, suffix): (&[u8], &[u8]), n: usize| {
            let mut v = prefix.to_vec();
            v.extend(std::iter::repeat_n(b'(', n));
            v.extend(std::iter::repeat_n(b')', n));
            v.extend_from_slice(suffix);
            v.extend_from_slice(b"\r\n");
            Bytes::from(v)
        };
        let places: [(&[u8], &[u8]); 4] = [
            (b"* 1 FETCH ", b""),
            (b"* OK [CAPABILITY ", b"] hi"),
            (b"m1 OK [X ", b"] done"),
            (b"garbage ", b""),
        ];
        for place in places {
            assert_eq!(parse(&deep(place, 10_000)), Err(ParseError::TooDeep));
            assert_eq!(parse(&deep(place, MAX_DEPTH + 1)), Err(ParseError::TooDeep));
            assert!(parse(&deep(place, MAX_DEPTH)).is_ok());
        }
        assert_eq!(
            tokenize(&[b'('; 100_000]).map(|_| ()),
            Err(ParseError::TooDeep)
        );
    }

    #[test]
    fn many_braces_cost_linear_time() {
        let mut line = b"* 1 FETCH (".to_vec();
        for _ in 0..200_000 {
            line.extend_from_slice(b"{ ");
        }
        line.extend_from_slice(b")\r\n");
        let started = std::time::Instant::now();
        let r = parse(&Bytes::from(line)).unwrap();
        assert!(r.numbered().is_some());
        // Quadratic scanning took minutes here; linear takes milliseconds even unoptimised.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn parses_fetch_with_sections_and_literals() {
        let r = parse(&Bytes::from_static(b"* 12 FETCH (UID 7 FLAGS (\\Seen $Label1) INTERNALDATE \"01-Jan-2020 10:00:00 +0200\" BODY[HEADER.FIELDS (DATE FROM)] {4}\r\nab\r\n RFC822.SIZE 99)\r\n")).unwrap();
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
        ))
        .unwrap();
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
        ))
        .unwrap();
        let Response::UntaggedStatus {
            code: Some(code), ..
        } = r
        else {
            panic!()
        };
        assert_eq!(code.args[0].as_list().unwrap().len(), 2);
        let r = parse(&Bytes::from_static(
            b"a2 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
        ))
        .unwrap();
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
            Ok(Response::Continue("go ahead".into()))
        );
    }

    #[test]
    fn parses_list_and_namespace() {
        let r = parse(&Bytes::from_static(
            b"* LIST (\\HasNoChildren \\Sent) \".\" \"INBOX.Sent Items\"\r\n",
        ))
        .unwrap();
        let (kw, rest) = r.keyword().unwrap();
        assert_eq!(kw, "LIST");
        assert_eq!(rest[1], Value::Str(Bytes::from_static(b".")));
        assert_eq!(rest[2], Value::Str(Bytes::from_static(b"INBOX.Sent Items")));
        let r = parse(&Bytes::from_static(
            b"* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"shared.\" \".\"))\r\n",
        ))
        .unwrap();
        let (kw, rest) = r.keyword().unwrap();
        assert_eq!(kw, "NAMESPACE");
        assert_eq!(rest[1], Value::Nil);
        let r = parse(&Bytes::from_static(b"* LIST () NIL {3}\r\na\"b\r\n")).unwrap();
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
            let _ = frame_new(s, 10);
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
            let _ = frame_new(&v, 10);
        }
    }

    #[test]
    fn quotes_or_demands_a_literal() {
        assert_eq!(quote("a \"b\\").as_deref(), Some("\"a \\\"b\\\\\""));
        assert_eq!(quote("Grüße"), None);
        assert_eq!(quote("a\r\nb"), None);
    }
}
