//! Reading one client command off the socket (its line, and the literals within it) and
//! splitting it into tag, verb and arguments.
//!
//! Reads are bounded (line length, literal size, literals per command), so a confused client
//! ends its connection rather than the test's memory. Synchronising literals get their `+`
//! continuation here; non-synchronising ones (`{n+}`, RFC 7888) are read straight away.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest command line (without its literals).
const MAX_LINE: u64 = 256 * 1024;
/// Largest literal a client may send.
const MAX_LITERAL: usize = 64 << 20;
/// Literals in one command.
const MAX_LITERALS: usize = 64;

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom (brackets included: `BODY.PEEK[HEADER.FIELDS (FROM)]` is one atom).
    Atom(String),
    /// A quoted string or a literal, as bytes.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Token>),
}

impl Token {
    /// The bytes of an atom or a string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Token::Atom(a) => Some(a.as_bytes()),
            Token::Str(s) => Some(s),
            Token::List(_) => None,
        }
    }

    /// An atom or a string as text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// One command as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The tag.
    pub tag: String,
    /// The command name in upper case; `UID FETCH`, `UID STORE`… for UID commands.
    pub verb: String,
    /// The arguments after the verb.
    pub args: Vec<Token>,
    /// The command after the tag, literals inlined (lossy), for matching and logs.
    pub text: String,
}

impl Request {
    /// The argument at `i` as bytes (a mailbox name, a string).
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        self.args.get(i).and_then(Token::bytes)
    }

    /// The mailbox a command names (its first argument), for SELECT, EXAMINE, STATUS, APPEND…
    pub fn mailbox(&self) -> Option<&[u8]> {
        self.arg(0)
    }
}

enum Flat {
    Open,
    Close,
    Tok(Token),
}

/// Reads the next command; `None` at end of stream or on a command past the bounds.
pub async fn read<R, W>(reader: &mut R, writer: &mut W) -> std::io::Result<Option<Request>>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut flat = Vec::new();
    let mut text = String::new();
    for _ in 0..=MAX_LITERALS {
        let mut line = Vec::new();
        let n = (&mut *reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 || !line.ends_with(b"\n") {
            return Ok(None);
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        let literal = literal_announced(&line);
        let body = match literal {
            Some((_, _, start)) => &line[..start],
            None => &line[..],
        };
        text.push_str(&String::from_utf8_lossy(body));
        tokenize(body, &mut flat);
        let Some((len, sync, _)) = literal else {
            return Ok(nest(flat, text));
        };
        if len > MAX_LITERAL {
            return Ok(None);
        }
        if sync {
            writer.write_all(b"+ go ahead\r\n").await?;
            writer.flush().await?;
        }
        let mut bytes = vec![0; len];
        reader.read_exact(&mut bytes).await?;
        text.push_str(&String::from_utf8_lossy(&bytes));
        flat.push(Flat::Tok(Token::Str(bytes)));
    }
    Ok(None)
}

/// Sends an empty SASL challenge (`+ `, RFC 3501 §6.2.2) and reads the client's response line,
/// without its line end; `None` at end of stream or past the line bound.
pub async fn sasl_response<R, W>(reader: &mut R, writer: &mut W) -> std::io::Result<Option<Vec<u8>>>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_all(b"+ \r\n").await?;
    writer.flush().await?;
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 || !line.ends_with(b"\n") {
        return Ok(None);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

/// `{n}` or `{n+}` at the end of a line: (n, synchronising, where the brace starts).
fn literal_announced(line: &[u8]) -> Option<(usize, bool, usize)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (spec, true),
    };
    let len = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((len, sync, open))
}

fn tokenize(line: &[u8], out: &mut Vec<Flat>) {
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => i += 1,
            b'(' => {
                out.push(Flat::Open);
                i += 1;
            }
            b')' => {
                out.push(Flat::Close);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while i < line.len() && line[i] != b'"' {
                    if line[i] == b'\\' && i + 1 < line.len() {
                        i += 1;
                    }
                    s.push(line[i]);
                    i += 1;
                }
                i += 1;
                out.push(Flat::Tok(Token::Str(s)));
            }
            _ => {
                let start = i;
                let mut depth = 0usize;
                while i < line.len() {
                    match line[i] {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                let atom = String::from_utf8_lossy(&line[start..i]).into_owned();
                out.push(Flat::Tok(Token::Atom(atom)));
            }
        }
    }
}

/// Builds the request from flat tokens: tag, verb (two words for UID commands), nested lists.
fn nest(flat: Vec<Flat>, text: String) -> Option<Request> {
    let mut stack: Vec<Vec<Token>> = vec![Vec::new()];
    for f in flat {
        match f {
            Flat::Open => stack.push(Vec::new()),
            Flat::Close => {
                let list = stack.pop()?;
                stack.last_mut()?.push(Token::List(list));
            }
            Flat::Tok(t) => stack.last_mut()?.push(t),
        }
    }
    // Unbalanced parentheses: close what is open, as a lenient server would.
    while stack.len() > 1 {
        let list = stack.pop()?;
        stack.last_mut()?.push(Token::List(list));
    }
    let mut tokens = stack.pop()?.into_iter();
    let tag = tokens.next()?.text()?;
    let mut verb = tokens.next()?.text()?.to_ascii_uppercase();
    let mut args: Vec<Token> = tokens.collect();
    if verb == "UID" && !args.is_empty() {
        let sub = args
            .remove(0)
            .text()
            .unwrap_or_default()
            .to_ascii_uppercase();
        verb = format!("UID {sub}");
    }
    let text = text
        .split_once(' ')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    Some(Request {
        tag,
        verb,
        args,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_split_with_literals_and_lists() {
        let input = b"a1 STATUS {3+}\r\n\xffab (MESSAGES UIDNEXT)\r\na2 UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (FROM TO)])\r\n";
        let mut reader = tokio::io::BufReader::new(&input[..]);
        let mut sink = Vec::new();
        let r = read(&mut reader, &mut sink).await.unwrap().unwrap();
        assert_eq!((r.tag.as_str(), r.verb.as_str()), ("a1", "STATUS"));
        assert_eq!(r.mailbox(), Some(&b"\xffab"[..]));
        assert!(matches!(&r.args[1], Token::List(l) if l.len() == 2));
        let r = read(&mut reader, &mut sink).await.unwrap().unwrap();
        assert_eq!(r.verb, "UID FETCH");
        assert_eq!(r.arg(0), Some(&b"1:*"[..]));
        let Token::List(items) = &r.args[1] else {
            panic!("{r:?}")
        };
        assert_eq!(
            items[1],
            Token::Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]".into())
        );
        assert!(sink.is_empty(), "no continuation for a LITERAL+ literal");
    }
}
