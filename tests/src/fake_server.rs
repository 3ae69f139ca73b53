//! A small scripted fake IMAP server, for the misbehaving-server cases real Dovecot cannot
//! play: silence, a non-IMAP banner, a BYE greeting, a refused login, odd but legal spacing.
//!
//! It listens on `127.0.0.1:0` in plain TCP and speaks IMAP text over the socket, just enough
//! for `mailferry check` to list an empty INBOX ([`Script::OddCapability`]). Every loop is
//! bounded (commands per connection, line length, connection lifetime) and everything stops
//! when the [`FakeServer`] is dropped. It must not grow into an IMAP implementation: anything
//! beyond what `check` asks is answered `BAD`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long one connection may live; a silent server holds the client this long at most.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Commands answered per connection before the server hangs up.
const MAX_COMMANDS: usize = 200;
/// Longest command line read; longer lines end the connection.
const MAX_LINE: u64 = 64 * 1024;

/// What the fake server does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Accepts and never sends a byte.
    Silent,
    /// Answers like an HTTP server: `HTTP/1.1 400 Bad Request`.
    Http,
    /// Sends an SSH banner, as an SSH server on the wrong port would.
    Ssh,
    /// Greets properly, then never answers a command.
    GreetThenSilent,
    /// Greets with `* BYE`, then closes.
    Bye,
    /// Greets and answers CAPABILITY, then refuses every login with `[AUTHENTICATIONFAILED]`.
    RejectLogin,
    /// Double and trailing spaces in CAPABILITY (a quirk strict parsers die on); otherwise
    /// enough of a server for `check` to list one empty INBOX.
    OddCapability,
    /// Offers only `AUTH=XOAUTH2` (no password logins) and accepts access tokens that start
    /// with `good-`; a refused token gets the JSON error challenge Gmail sends, then `NO`.
    /// Otherwise like [`Script::OddCapability`]. Tokens seen are logged as `TOKEN MECH token`.
    XOAuth2,
    /// Like [`Script::XOAuth2`] with `AUTH=OAUTHBEARER` (RFC 7628).
    OAuthBearer,
    /// Like [`Script::OddCapability`], but the first login of the server's life is refused
    /// the way Microsoft 365 throttles: `NO [UNAVAILABLE] ... is throttled. Suggested Backoff
    /// Time: 1500 milliseconds`.
    ThrottleOnce,
    /// Greets with a CAPABILITY code nested 10,000 lists deep (a stack overflow before login,
    /// before STARTTLS), then hangs up.
    DeepGreeting,
    /// Sends its greeting one byte every half second, never finishing the line.
    Trickle,
}

/// A running fake server; stops (listener and every connection) when dropped.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    commands: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Starts a fake server playing `script` on `127.0.0.1`, on a free port.
    pub async fn start(script: Script) -> Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake IMAP server")?;
        let addr = listener.local_addr()?;
        let commands = Arc::new(Mutex::new(Vec::new()));
        let log = commands.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                conns.spawn(async move {
                    let serve = serve(stream, script, log);
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(FakeServer {
            addr,
            connections,
            commands,
            task,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Command lines received so far, tag stripped, AUTHENTICATE/LOGIN arguments masked.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Capabilities with double spaces between atoms and trailing spaces.
const ODD_CAPABILITIES: &str = "IMAP4rev1  SASL-IR   AUTH=PLAIN  LITERAL+ NAMESPACE  QUOTA  ";

async fn serve(
    stream: TcpStream,
    script: Script,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let greeting: &[u8] = match script {
        Script::Silent => {
            // Hold the socket open and say nothing until the client gives up.
            let mut sink = Vec::new();
            let mut reader = BufReader::new(read).take(MAX_LINE);
            let _ = reader.read_to_end(&mut sink).await;
            return Ok(());
        }
        Script::Trickle => {
            let deadline = tokio::time::Instant::now() + CONNECTION_LIFETIME;
            while tokio::time::Instant::now() < deadline {
                if write.write_all(b"*").await.is_err() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return Ok(());
        }
        Script::DeepGreeting => {
            let mut g = b"* OK [CAPABILITY IMAP4rev1 ".to_vec();
            g.extend(std::iter::repeat_n(b'(', 10_000));
            g.extend(std::iter::repeat_n(b')', 10_000));
            g.extend_from_slice(b"] ready\r\n");
            write.write_all(&g).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        Script::Http => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        Script::Ssh => b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        Script::Bye => b"* BYE [UNAVAILABLE] Server shutting down, try again later\r\n",
        Script::OddCapability | Script::ThrottleOnce => {
            b"* OK  [CAPABILITY IMAP4rev1  SASL-IR  AUTH=PLAIN  ]  Fake  ready  \r\n"
        }
        Script::GreetThenSilent | Script::RejectLogin => b"* OK Fake IMAP server ready\r\n",
        Script::XOAuth2 => {
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 LOGINDISABLED] ready\r\n"
        }
        Script::OAuthBearer => {
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER LOGINDISABLED] ready\r\n"
        }
    };
    write.write_all(greeting).await?;
    if matches!(script, Script::Http | Script::Ssh | Script::Bye) {
        // Give the client time to read before the close, as a real server would.
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    let mut reader = BufReader::new(read);
    for _ in 0..MAX_COMMANDS {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_LINE).read_line(&mut line).await?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (cmd, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let cmd = cmd.to_ascii_uppercase();
        let shown = match cmd.as_str() {
            "LOGIN" | "AUTHENTICATE" => format!("{cmd} ***"),
            _ => rest.to_owned(),
        };
        if let Ok(mut l) = log.lock() {
            l.push(shown);
        }
        if script == Script::GreetThenSilent {
            continue;
        }
        if matches!(script, Script::XOAuth2 | Script::OAuthBearer) && cmd == "AUTHENTICATE" {
            let (mech, initial) = args.split_once(' ').unwrap_or((args, ""));
            let mut response = initial.to_owned();
            if response.is_empty() {
                write.write_all(b"+ \r\n").await?;
                (&mut reader)
                    .take(MAX_LINE)
                    .read_line(&mut response)
                    .await?;
            }
            let token = bearer_token(response.trim()).unwrap_or_default();
            if let Ok(mut l) = log.lock() {
                l.push(format!("TOKEN {} {token}", mech.to_ascii_uppercase()));
            }
            let wanted = if script == Script::XOAuth2 {
                "XOAUTH2"
            } else {
                "OAUTHBEARER"
            };
            if mech.eq_ignore_ascii_case(wanted) && token.starts_with("good-") {
                write
                    .write_all(format!("{tag} OK Logged in\r\n").as_bytes())
                    .await?;
            } else {
                // {"status":"401","schemes":"bearer"}: the client must answer before the NO.
                write
                    .write_all(b"+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n")
                    .await?;
                let mut ack = String::new();
                (&mut reader).take(MAX_LINE).read_line(&mut ack).await?;
                write
                    .write_all(
                        format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
                            .as_bytes(),
                    )
                    .await?;
            }
            continue;
        }
        if cmd == "AUTHENTICATE" && !args.contains(' ') {
            // No SASL initial response: ask for it and read (and ignore) it.
            write.write_all(b"+ \r\n").await?;
            let mut response = String::new();
            (&mut reader)
                .take(MAX_LINE)
                .read_line(&mut response)
                .await?;
        }
        let first_login = script == Script::ThrottleOnce
            && matches!(cmd.as_str(), "LOGIN" | "AUTHENTICATE")
            && log
                .lock()
                .map(|l| {
                    l.iter()
                        .filter(|c| c.starts_with("LOGIN") || c.starts_with("AUTHENTICATE"))
                        .count()
                        == 1
                })
                .unwrap_or(false);
        let reply = if first_login {
            format!(
                "{tag} NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n"
            )
        } else {
            answer(script, tag, &cmd, args)
        };
        write.write_all(reply.as_bytes()).await?;
        if cmd == "LOGOUT" {
            return Ok(());
        }
    }
    Ok(())
}

/// The bearer token in a base64 XOAUTH2 or OAUTHBEARER initial response.
fn bearer_token(b64: &str) -> Option<String> {
    let bytes = base64_decode(b64)?;
    let text = String::from_utf8_lossy(&bytes);
    let start = text.find("auth=Bearer ")? + "auth=Bearer ".len();
    let rest = &text[start..];
    Some(rest.split('\x01').next().unwrap_or_default().to_owned())
}

/// Standard base64 decoding (RFC 4648 §4), padding optional; `None` on any other byte.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The reply to one command; the tagged completion included.
fn answer(script: Script, tag: &str, cmd: &str, args: &str) -> String {
    let login_ok = format!("{tag} OK  Logged in  \r\n");
    let login_no = format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
    let untagged = match (cmd, script) {
        ("CAPABILITY", _) => format!("* CAPABILITY {ODD_CAPABILITIES}\r\n"),
        ("LOGIN" | "AUTHENTICATE", Script::RejectLogin) => return login_no,
        ("LOGIN" | "AUTHENTICATE", _) => return login_ok,
        ("NOOP" | "ID" | "ENABLE" | "CHECK" | "CLOSE" | "UNSELECT", _) => String::new(),
        ("NAMESPACE", _) => "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n".into(),
        ("LIST", _) => "* LIST (\\HasNoChildren) \"/\" INBOX\r\n".into(),
        ("LSUB", _) => "* LSUB () \"/\" INBOX\r\n".into(),
        ("STATUS", _) => "* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 1700000000)\r\n".into(),
        ("EXAMINE" | "SELECT", _) => concat!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n",
            "* 0 EXISTS\r\n",
            "* 0 RECENT\r\n",
            "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
            "* OK [UIDNEXT 1] Predicted next UID\r\n",
        )
        .into(),
        ("UID", _) if args.to_ascii_uppercase().starts_with("FETCH") => String::new(),
        ("GETQUOTAROOT", _) => {
            "* QUOTAROOT INBOX \"User quota\"\r\n* QUOTA \"User quota\" (STORAGE 0 1048576)\r\n"
                .into()
        }
        ("LOGOUT", _) => "* BYE Logging out\r\n".into(),
        _ => return format!("{tag} BAD Unknown command\r\n"),
    };
    format!("{untagged}{tag} OK {cmd} completed  \r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_end_with_the_tagged_completion() {
        let a = answer(Script::OddCapability, "a1", "CAPABILITY", "");
        assert!(a.starts_with("* CAPABILITY IMAP4rev1  SASL-IR"));
        assert!(a.ends_with("a1 OK CAPABILITY completed  \r\n"));
        let a = answer(Script::RejectLogin, "a2", "AUTHENTICATE", "PLAIN AGZvbw==");
        assert!(a.starts_with("a2 NO [AUTHENTICATIONFAILED]"));
        assert!(answer(Script::OddCapability, "a3", "APPEND", "x").contains("a3 BAD"));
    }
}
