//! A scripted IMAP server for scenario tests: an honest, minimal IMAP4rev1 server (RFC 3501)
//! over an in-memory [`Account`], with switchable [`Quirks`] and per-test [`Override`]s that
//! replace or alter the answer to a chosen command, byte for byte.
//!
//! It serves what mailferry asks of a source (CAPABILITY, LOGIN, AUTHENTICATE PLAIN, NAMESPACE,
//! LIST/LSUB, STATUS, SELECT/EXAMINE, UNSELECT, UID FETCH with the items mailferry asks, NOOP,
//! ENABLE, ID, LOGOUT) and, for tests that need it, of a target (CREATE, SUBSCRIBE, APPEND one
//! message per command). It listens on `127.0.0.1:0` in plain TCP. Every loop is bounded
//! (commands per connection, line and literal sizes, connection lifetime) and everything stops
//! when the [`ScriptedServer`] is dropped.
//!
//! Files hold one job each: [`account`] the data, [`request`] reading commands, [`commands`] the
//! honest answers, [`fetch`] UID FETCH. This file runs connections and applies overrides.

pub mod account;
pub mod commands;
pub mod fetch;
pub mod request;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use account::{Account, Folder, Message};
pub use request::{Request, Token};

/// How long one connection may live.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Commands answered per connection before the server hangs up (a 100,000-folder account
/// costs a STATUS each).
const MAX_COMMANDS: usize = 1_000_000;
/// Command lines kept for [`ScriptedServer::commands`].
const MAX_LOGGED: usize = 200_000;

/// Behaviours of servers other than Dovecot, switched on per test. The default is a plain
/// IMAP4rev1 server with LITERAL+, UIDPLUS and SASL-IR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirks {
    /// Offers UIDPLUS (RFC 4315) and answers APPEND with APPENDUID.
    pub uidplus: bool,
    /// Offers LITERAL+ (RFC 7888).
    pub literal_plus: bool,
    /// How `BODY[HEADER.FIELDS (...)]` renders a message (servers differ on odd ones).
    pub header_fields: HeaderFields,
    /// Refuses APPEND into the folder this session has selected read-only (EXAMINE) with
    /// `NO Current box is selected READ-ONLY.`, as some servers do (issue 15). RFC 3501 does
    /// not ask for the refusal, nor forbid it.
    pub refuse_append_to_examined: bool,
    /// Keeps no UID state for an empty folder until it is first opened read-write or receives
    /// a message: until then every STATUS and EXAMINE of it answers a new UIDVALIDITY, and the
    /// first SELECT or APPEND fixes one (issue 15: a target INBOX never opened).
    pub lazy_uidvalidity: bool,
    /// Offers SASL-IR (RFC 4959). Without it, `AUTHENTICATE PLAIN` gets an empty challenge
    /// (`+ `) and the client's response on a line of its own (RFC 3501 §6.2.2).
    pub sasl_ir: bool,
    /// Ends the tagged answer to LOGIN and AUTHENTICATE with a bare LF instead of CRLF, as a
    /// server seen in issue 15 does (`m2 OK AUTHENTICATE PLAIN authentication successful\n`).
    pub bare_lf_login: bool,
}

/// Ways servers render `BODY[HEADER.FIELDS (...)]` (RFC 3501 §6.4.5), where they differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeaderFields {
    /// The header section ends at the first blank line; a message without one is all header.
    #[default]
    WholeMessageWithoutBlankLine,
    /// A message without a blank line has no header section: its rendering is empty.
    EmptyWithoutBlankLine,
    /// `Received` fields are never rendered (the server treats trace fields apart).
    WithoutReceived,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            uidplus: true,
            literal_plus: true,
            header_fields: HeaderFields::default(),
            refuse_append_to_examined: false,
            lazy_uidvalidity: false,
            sasl_ir: true,
            bare_lf_login: false,
        }
    }
}

type Matcher = Box<dyn Fn(&Request) -> bool + Send + Sync>;
type Rewriter = Box<dyn Fn(&Request, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// A per-test change to the server's answer to the commands it matches.
pub struct Override {
    matches: Matcher,
    rewrite: Rewriter,
    remaining: Option<usize>,
    /// Whether the server still carries the command out (an altered answer) or answers
    /// instead of carrying it out (a replaced one: a refusal stores nothing).
    carry_out: bool,
    /// After this answer the connection falls silent: it reads and sends nothing more.
    silence: bool,
}

impl std::fmt::Debug for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Override")
            .field("remaining", &self.remaining)
            .field("silence", &self.silence)
            .finish_non_exhaustive()
    }
}

impl Override {
    /// Answers matching commands with `raw` instead, `{tag}` replaced by the command's tag. The
    /// command is not carried out: a replaced APPEND or CREATE changes nothing.
    pub fn replace(
        matches: impl Fn(&Request) -> bool + Send + Sync + 'static,
        raw: impl Into<Vec<u8>>,
    ) -> Override {
        let raw = raw.into();
        Override {
            matches: Box::new(matches),
            rewrite: Box::new(move |req, _| replace_bytes(&raw, b"{tag}", req.tag.as_bytes())),
            remaining: None,
            carry_out: false,
            silence: false,
        }
    }

    /// Rewrites the honest answer of matching commands with `f` (the command is carried out).
    pub fn alter(
        matches: impl Fn(&Request) -> bool + Send + Sync + 'static,
        f: impl Fn(&Request, Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
    ) -> Override {
        Override {
            matches: Box::new(matches),
            rewrite: Box::new(f),
            remaining: None,
            carry_out: true,
            silence: false,
        }
    }

    /// Answers matching commands with nothing at all: the connection stays open and silent (a
    /// server that hangs on a command).
    pub fn hang(matches: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Override {
        Override::replace(matches, "").then_silence()
    }

    /// After sending its answer (whole or cut short by the rewrite), the connection falls
    /// silent for good: a server that stalls mid-response.
    pub fn then_silence(mut self) -> Override {
        self.silence = true;
        self
    }

    /// Applies only to the first `n` matching commands.
    pub fn times(mut self, n: usize) -> Override {
        self.remaining = Some(n);
        self
    }
}

/// A matcher for commands with this verb (`"STATUS"`, `"UID FETCH"`…).
pub fn verb(v: &'static str) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    move |r| r.verb == v
}

/// A matcher for commands with this verb naming this folder (raw bytes).
pub fn verb_on(
    v: &'static str,
    folder: impl Into<Vec<u8>>,
) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let folder = folder.into();
    move |r| r.verb == v && r.mailbox() == Some(&folder[..])
}

/// A matcher for commands whose text (after the tag) contains `needle`.
pub fn text_contains(needle: &'static str) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    move |r| r.text.contains(needle)
}

/// `haystack` with every `from` replaced by `to`.
pub fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

struct State {
    account: Mutex<Account>,
    quirks: Quirks,
    overrides: Mutex<Vec<Override>>,
    log: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test thread that panicked while holding the lock leaves usable data behind.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running scripted server; stops (listener and every connection) when dropped.
pub struct ScriptedServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ScriptedServer {
    /// Starts a server for `account` with the default quirks.
    pub async fn start(account: Account) -> Result<ScriptedServer> {
        ScriptedServer::start_with(account, Quirks::default(), Vec::new()).await
    }

    /// Starts a server for `account` with `quirks` and `overrides` (tried in order; the first
    /// that matches a command rewrites its answer).
    pub async fn start_with(
        account: Account,
        quirks: Quirks,
        overrides: Vec<Override>,
    ) -> Result<ScriptedServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the scripted IMAP server")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            account: Mutex::new(account),
            quirks,
            overrides: Mutex::new(overrides),
            log: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                conns.spawn(async move {
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve(stream, state)).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(ScriptedServer { addr, state, task })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `imap://USER@127.0.0.1:PORT` for the account served.
    pub fn url(&self) -> String {
        let user = lock(&self.state.account).user.clone();
        format!("imap://{user}@127.0.0.1:{}", self.port())
    }

    /// The flags that name this server as one side of a run: `--FLAG URL --FLAG-tls none`
    /// (`flag` is `src` or `dst`; the password goes in `MAILFERRY_SRC_PASSWORD` / `…_DST_…`).
    pub fn args(&self, flag: &str) -> Vec<String> {
        vec![
            format!("--{flag}"),
            self.url(),
            format!("--{flag}-tls"),
            "none".into(),
        ]
    }

    /// How many commands of this verb the server received (`"AUTHENTICATE"`, `"LOGIN"`…): for
    /// logins, how many times a client tried.
    pub fn count(&self, verb: &str) -> usize {
        lock(&self.state.log)
            .iter()
            .filter(|c| c.split(' ').next() == Some(verb))
            .count()
    }

    /// The account's password.
    pub fn password(&self) -> String {
        lock(&self.state.account).password.clone()
    }

    /// The account as it is now (with what clients appended or created).
    pub fn account(&self) -> Account {
        lock(&self.state.account).clone()
    }

    /// Command lines received so far (tag stripped, LOGIN/AUTHENTICATE arguments masked), the
    /// first [`MAX_LOGGED`] of them.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.state.log).clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let greeting = format!(
        "* OK [CAPABILITY {}] scripted server ready\r\n",
        commands::capabilities(&state.quirks)
    );
    writer.write_all(greeting.as_bytes()).await?;
    writer.flush().await?;
    let mut session = commands::Session::default();
    for _ in 0..MAX_COMMANDS {
        let Some(mut req) = request::read(&mut reader, &mut writer).await? else {
            return Ok(());
        };
        if req.verb == "AUTHENTICATE" && req.args.len() == 1 {
            // RFC 3501 §6.2.2: no initial response, so an empty challenge asks for it.
            match request::sasl_response(&mut reader, &mut writer).await? {
                Some(line) => req.args.push(Token::Str(line)),
                None => return Ok(()),
            }
        }
        {
            let mut log = lock(&state.log);
            if log.len() < MAX_LOGGED {
                log.push(match req.verb.as_str() {
                    "LOGIN" | "AUTHENTICATE" => format!("{} ***", req.verb),
                    _ => req.text.clone(),
                });
            }
        }
        let (mut reply, silence) = reply(&state, &req, &mut session);
        if state.quirks.bare_lf_login && matches!(req.verb.as_str(), "LOGIN" | "AUTHENTICATE") {
            reply = bare_lf_tagged(&reply, &req.tag);
        }
        writer.write_all(&reply).await?;
        if silence {
            writer.flush().await?;
            // Held open, reading nothing, until the lifetime ends or the server is dropped.
            std::future::pending::<()>().await;
        }
        // Answers to pipelined commands may go out together; the last one must not wait.
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
        if req.verb == "LOGOUT" {
            writer.flush().await?;
            return Ok(());
        }
    }
    Ok(())
}

/// The answer to `req`: the honest one, or the first matching override's (which is used up
/// when it was limited), and whether the connection falls silent after it.
fn reply(state: &State, req: &Request, session: &mut commands::Session) -> (Vec<u8>, bool) {
    let honest = |session: &mut commands::Session| {
        let mut account = lock(&state.account);
        commands::answer(req, session, &mut account, &state.quirks)
    };
    // Locks are taken overrides first, then the account; nothing takes them the other way.
    let mut overrides = lock(&state.overrides);
    let Some(o) = overrides
        .iter_mut()
        .find(|o| o.remaining != Some(0) && (o.matches)(req))
    else {
        drop(overrides);
        return (honest(session), false);
    };
    if let Some(n) = o.remaining.as_mut() {
        *n -= 1;
    }
    let (carry_out, silence) = (o.carry_out, o.silence);
    let answer = if carry_out {
        honest(session)
    } else {
        Vec::new()
    };
    ((o.rewrite)(req, answer), silence)
}

/// `reply` with the CRLF ending its tagged line (`TAG ...`) replaced by LF alone.
fn bare_lf_tagged(reply: &[u8], tag: &str) -> Vec<u8> {
    let mut start = 0;
    while start < reply.len() {
        let end = reply[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(reply.len(), |i| start + i + 1);
        let line = &reply[start..end];
        if line.starts_with(format!("{tag} ").as_bytes()) && line.ends_with(b"\r\n") {
            let mut out = reply[..end - 2].to_vec();
            out.push(b'\n');
            out.extend_from_slice(&reply[end..]);
            return out;
        }
        start = end;
    }
    reply.to_vec()
}
