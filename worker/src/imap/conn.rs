//! One IMAP connection: TCP, TLS (implicit or STARTTLS), the greeting, login, and running
//! commands with an inactivity timeout on every wait.
//!
//! The timeout bounds each read and each 64 KiB write, not whole commands, so a slow 50 MB APPEND
//! is not killed while a silent server is noticed (DESIGN.md, "Bounded"). A server that is never
//! silent but never done (a byte every few seconds, or small responses for ever) meets the
//! progress floor: what a command's answers deliver must keep up with `min_rate` once the
//! timeout's grace is spent. Whatever a server sends is bounded where it is read: line length,
//! nesting, literal bytes per response and per command (what was asked for, not what the server
//! decides), untagged data collected per command, completions kept aside.

use std::time::Duration;

use bytes::BytesMut;
use mailferry_proto::ErrorKind;
use mailferry_proto::task::{Endpoint, Side, TlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

mod login;

use super::error::{ImapError, ImapResult};
use super::tls;
use super::trace::Sent;
use super::wire::{self, Code, Framed, Response, Status, Value};

/// Size of the write buffer that gathers small pieces of pipelined commands.
const WBUF: usize = 64 * 1024;

/// Literal bytes one response may carry when the command did not say what it expects: header
/// blocks, folder names, a flag list. Message bodies are fetched under an allowance of their
/// announced size ([`Connection::expect_literals`]).
pub const DEFAULT_RESPONSE_LITERALS: u64 = 4 << 20;

/// Untagged data one command may collect before its completion ([`Connection::finish`]); a LIST
/// of the largest folder limit mailferry accepts is a fraction of it.
pub const MAX_COLLECTED_BYTES: usize = 64 << 20;

/// Completions of pipelined commands kept aside while waiting for a continuation.
const MAX_STASHED: usize = 4096;

/// Extra literal bytes allowed over a message's announced RFC822.SIZE: some servers (Exchange
/// among them) announce approximate sizes. A quarter of the size, at least 256 KiB.
pub fn size_slack(size: u64) -> u64 {
    (size / 4).max(256 * 1024)
}

/// Connection settings shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Inactivity timeout for every wait.
    pub timeout: Duration,
    /// Largest literal accepted from the server.
    pub max_literal: u64,
    /// The progress floor, in bytes per second: once a command has waited longer than
    /// `timeout` in all, its answers must have delivered at least this rate over the wait.
    pub min_rate: u64,
    /// Where large message buffers come from (shared by all connections of a process).
    pub buffers: std::sync::Arc<super::buffers::BufferPool>,
    /// `--trace-imap`: the protocol trace every connection writes to, if any.
    pub trace: Option<std::sync::Arc<super::trace::TraceFile>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(120),
            max_literal: 1 << 31,
            min_rate: DEFAULT_MIN_RATE,
            buffers: std::sync::Arc::new(super::buffers::BufferPool::new(16 << 20)),
            trace: None,
        }
    }
}

/// Default progress floor: 4 KiB/s, far below any working link, far above a trickle.
pub const DEFAULT_MIN_RATE: u64 = 4096;

/// What the answers to the commands in flight have cost and delivered since the last completion.
#[derive(Debug, Default)]
struct Progress {
    /// Time spent waiting for the server (not time the caller spent elsewhere between reads).
    waited: Duration,
    /// Bytes received meanwhile.
    received: u64,
}

/// The literal bytes the server may send: per response, and for the command in flight.
#[derive(Debug, Clone, Copy)]
struct LiteralAllowance {
    per_response: u64,
    /// Left for the command in flight, when it said what it expects.
    command_left: Option<u64>,
}

impl Default for LiteralAllowance {
    fn default() -> Self {
        LiteralAllowance {
            per_response: DEFAULT_RESPONSE_LITERALS,
            command_left: None,
        }
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the stream.
    Closed,
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "connection closed")
}

impl Transport {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read_buf(buf).await,
            Transport::Tls(s) => s.read_buf(buf).await,
            Transport::Closed => Err(closed()),
        }
    }

    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(b).await,
            Transport::Tls(s) => s.write_all(b).await,
            Transport::Closed => Err(closed()),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush().await,
            Transport::Tls(s) => s.flush().await,
            Transport::Closed => Err(closed()),
        }
    }
}

/// A command argument: text as is, or bytes sent as a literal.
#[derive(Debug)]
pub enum Arg<'a> {
    /// Sent verbatim.
    Text(std::borrow::Cow<'a, str>),
    /// Sent as a literal (`{n}` or `{n+}`).
    Literal(&'a [u8]),
}

/// A finished command.
#[derive(Debug)]
pub struct Completion {
    /// OK, NO or BAD.
    pub status: Status,
    /// Response code.
    pub code: Option<Code>,
    /// Text.
    pub text: String,
    /// Untagged responses received while the command ran.
    pub untagged: Vec<Response>,
}

impl Completion {
    /// The arguments of every untagged `* KEYWORD ...` response of this command.
    pub fn data<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a [Value]> + 'a {
        self.untagged.iter().filter_map(move |r| {
            let (kw, rest) = r.keyword()?;
            (kw == keyword).then_some(rest)
        })
    }
}

/// An authenticated (or not yet) IMAP connection.
pub struct Connection {
    transport: Transport,
    rbuf: BytesMut,
    /// Framing of the response at the start of `rbuf`.
    framing: wire::FrameState,
    allowance: LiteralAllowance,
    progress: Progress,
    next_tag: u64,
    opts: ConnectOptions,
    /// Side, for error messages.
    pub side: Side,
    /// `user@host:port`, for error messages.
    pub account: String,
    capabilities: Vec<String>,
    /// Completions of other pipelined commands that arrived while waiting for a continuation.
    stash: Vec<Response>,
    /// Small writes gathered into one system call (pipelined commands of small messages).
    wbuf: Vec<u8>,
    /// A folder is selected (or examined): set by SELECT and EXAMINE, cleared by
    /// [`Connection::deselect`].
    pub(crate) selected: bool,
    /// The selection is read-only (EXAMINE, or a SELECT answered `[READ-ONLY]`).
    pub(crate) read_only: bool,
    /// `--trace-imap`: this connection's lines of the protocol trace.
    pub(crate) tracer: Option<super::trace::Tracer>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({} {})", self.side, self.account)
    }
}

impl Connection {
    /// Connects, sets up TLS as the endpoint asks, and reads the greeting.
    pub async fn connect(
        ep: &Endpoint,
        side: Side,
        opts: &ConnectOptions,
    ) -> ImapResult<Connection> {
        let account = ep.display();
        let err = |kind, msg: String| ImapError::new(kind, side, msg);
        let tcp = tokio::time::timeout(opts.timeout, TcpStream::connect((ep.host.as_str(), ep.port)))
            .await
            .map_err(|_| {
                err(ErrorKind::Connect, format!(
                    "{side} {account}: no answer from {}:{} within {}s; check the host name, port and firewall",
                    ep.host, ep.port, opts.timeout.as_secs()
                ))
            })?
            .map_err(|e| {
                err(ErrorKind::Connect, format!(
                    "{side} {account}: cannot connect to {}:{} ({}); check the host name and port",
                    ep.host, ep.port, io_reason(&e)
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let transport = match ep.tls {
            TlsMode::Implicit => {
                Transport::Tls(Box::new(tls::handshake(tcp, ep, side, opts.timeout).await?))
            }
            TlsMode::Starttls | TlsMode::None => Transport::Plain(tcp),
        };
        let mut conn = Connection {
            transport,
            rbuf: BytesMut::with_capacity(64 * 1024),
            framing: wire::FrameState::default(),
            allowance: LiteralAllowance::default(),
            progress: Progress::default(),
            next_tag: 1,
            opts: opts.clone(),
            side,
            account,
            capabilities: Vec::new(),
            stash: Vec::new(),
            wbuf: Vec::with_capacity(WBUF),
            selected: false,
            read_only: false,
            tracer: opts
                .trace
                .as_ref()
                .map(|t| t.connection(side, &ep.display())),
        };
        conn.greeting().await?;
        if ep.tls == TlsMode::Starttls {
            conn.starttls(ep).await?;
        }
        Ok(conn)
    }

    async fn greeting(&mut self) -> ImapResult<()> {
        let first = match self.read_response().await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::Transient => {
                let what = if e.message.contains("too slowly") {
                    format!(
                        "accepted the connection but sends its greeting too slowly ({} bytes in {}s)",
                        self.progress.received,
                        self.progress.waited.as_secs()
                    )
                } else if e.message.contains("stopped responding") {
                    format!(
                        "accepted the connection but sent no IMAP greeting within {}s",
                        self.opts.timeout.as_secs()
                    )
                } else {
                    "closed the connection without an IMAP greeting".to_owned()
                };
                return Err(self.err(
                    ErrorKind::Connect,
                    format!("the server {what}; check that the port is an IMAP port and the TLS mode (imaps:// or imap://) matches it"),
                ));
            }
            Err(e) => return Err(e),
        };
        match first {
            Response::UntaggedStatus {
                status: Status::Ok | Status::Preauth,
                code,
                ..
            } => {
                if let Some(c) = code.filter(|c| c.name == "CAPABILITY") {
                    self.capabilities = c.args.iter().filter_map(Value::as_text).collect();
                }
                Ok(())
            }
            Response::UntaggedStatus {
                status: Status::Bye,
                text,
                ..
            } => Err(self.err(
                ErrorKind::Transient,
                format!("the server refused the connection: {text}"),
            )),
            _ => Err(self.err(
                ErrorKind::Protocol,
                "this is not an IMAP server (unexpected greeting); check the port".into(),
            )),
        }
    }

    async fn starttls(&mut self, ep: &Endpoint) -> ImapResult<()> {
        if !self.capabilities.is_empty() && !self.has_capability("STARTTLS") {
            self.refresh_capabilities().await?;
        }
        if !self.has_capability("STARTTLS") {
            return Err(self.err(
                ErrorKind::Connect,
                "the server does not offer STARTTLS; use imaps:// (port 993) or --tls none on a trusted network".into(),
            ));
        }
        let done = self.run("STARTTLS").await?;
        if done.status != Status::Ok {
            return Err(self.err(
                ErrorKind::Connect,
                format!("STARTTLS refused: {}", done.text),
            ));
        }
        if !self.rbuf.is_empty() {
            // RFC 3501 §6.2.1: nothing may follow the OK before the handshake (a STARTTLS injection).
            return Err(self.err(
                ErrorKind::Connect,
                "the server sent data after STARTTLS before TLS began".into(),
            ));
        }
        let plain = std::mem::replace(&mut self.transport, Transport::Closed);
        let Transport::Plain(tcp) = plain else {
            return Err(self.err(
                ErrorKind::Protocol,
                "STARTTLS on a connection already under TLS".into(),
            ));
        };
        self.transport = Transport::Tls(Box::new(
            tls::handshake(tcp, ep, self.side, self.opts.timeout).await?,
        ));
        // RFC 3501 §6.2.1: capabilities must be asked again after STARTTLS.
        self.capabilities.clear();
        Ok(())
    }

    /// The error for an untagged BYE: the server is closing the connection.
    pub fn bye_error(&self, code: Option<&Code>, text: &str) -> ImapError {
        let kind = match code.map(|c| c.name.as_str()) {
            Some("UNAVAILABLE" | "THROTTLED" | "LIMIT") => ErrorKind::Throttled,
            _ => ErrorKind::Transient,
        };
        let mut e = self.err(kind, format!("the server closed the connection: {text}"));
        if code.is_some_and(|c| c.name.eq_ignore_ascii_case("SERVERBUG")) {
            e.server_bug = Some(format!("[SERVERBUG] {}", text.trim()));
        }
        match super::error::throttle_hint(text) {
            Some(hint) => e.throttled(hint),
            None if kind == ErrorKind::Throttled => e.throttled(None),
            None => e,
        }
    }

    /// Builds an error about this account.
    pub fn err(&self, kind: ErrorKind, msg: String) -> ImapError {
        ImapError::new(
            kind,
            self.side,
            format!("{} {}: {msg}", self.side, self.account),
        )
    }

    /// Capabilities as last reported.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether a capability is offered (case-insensitive).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// The value of a `NAME=value` capability, e.g. `APPENDLIMIT=1000`.
    pub fn capability_value(&self, name: &str) -> Option<String> {
        self.capabilities.iter().find_map(|c| {
            let (n, v) = c.split_once('=')?;
            n.eq_ignore_ascii_case(name).then(|| v.to_owned())
        })
    }

    /// Asks CAPABILITY again.
    pub async fn refresh_capabilities(&mut self) -> ImapResult<()> {
        let done = self.run("CAPABILITY").await?;
        let mut caps: Vec<String> = done
            .data("CAPABILITY")
            .flat_map(|rest| rest.iter().filter_map(Value::as_text))
            .collect();
        if let Some(c) = done.code.filter(|c| c.name == "CAPABILITY") {
            caps = c.args.iter().filter_map(Value::as_text).collect();
        }
        self.capabilities = caps;
        Ok(())
    }

    /// Leaves the selected folder, if any, without expunging anything: UNSELECT (RFC 3691);
    /// where the server lacks it, CLOSE for a read-only selection (RFC 3501 §6.4.2: it removes
    /// nothing then), and for a read-write one an EXAMINE of a name no server holds, whose
    /// refusal leaves no folder selected (RFC 3501 §6.3.1) without the expunge CLOSE would do.
    /// A pooled session still holding a folder may otherwise get that folder's STATUS as the
    /// session last saw it (Dovecot does), and some servers refuse an APPEND into the folder the
    /// session has open read-only ("Current box is selected READ-ONLY").
    pub async fn deselect(&mut self) -> ImapResult<()> {
        if !self.selected {
            return Ok(());
        }
        let cmd = if self.has_capability("UNSELECT") {
            "UNSELECT"
        } else if self.read_only {
            "CLOSE"
        } else {
            "EXAMINE \"mailferry-no-such-folder-5e1f07c2\""
        };
        // A NO or BAD changes nothing that matters here: afterwards no folder is selected.
        self.run(cmd).await?;
        self.selected = false;
        self.read_only = false;
        Ok(())
    }

    /// Whether a folder is selected (or examined).
    pub fn is_selected(&self) -> bool {
        self.selected
    }

    /// Makes the session fit for APPEND: leaves a read-only selection, into which some servers
    /// refuse to append. A read-write selection stays (appending to it is what RFC 3501 expects).
    pub async fn ready_to_append(&mut self) -> ImapResult<()> {
        if self.selected && self.read_only {
            self.deselect().await?;
        }
        Ok(())
    }

    /// Runs a simple command and waits for its completion.
    pub async fn run(&mut self, cmd: &str) -> ImapResult<Completion> {
        tracing::trace!(side = %self.side, cmd, "imap command");
        let tag = self.send_line(cmd).await?;
        self.finish(&tag).await
    }

    /// Runs a command built of text and literals.
    pub async fn run_args(&mut self, args: &[Arg<'_>]) -> ImapResult<Completion> {
        match self.send_args(args, usize::MAX).await? {
            Ok(tag) => self.finish(&tag).await,
            Err(refused) => Ok(refused),
        }
    }

    /// Sends a command line and returns its tag, without waiting.
    pub async fn send_line(&mut self, cmd: &str) -> ImapResult<String> {
        let tag = self.new_tag();
        let mut line = Vec::with_capacity(tag.len() + cmd.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(cmd.as_bytes());
        line.extend_from_slice(b"\r\n");
        if let Some(t) = &self.tracer {
            t.client(&[Sent::Text(&tag), Sent::Text(" "), Sent::Text(cmd)]);
        }
        self.write(&line).await?;
        self.flush().await?;
        Ok(tag)
    }

    /// Sends a command with literals and returns its tag without waiting for completion, or the
    /// completion when the server refused the command before taking a literal.
    ///
    /// Literals up to `sync_above` bytes are non-synchronising where LITERAL+ is offered (RFC
    /// 7888), so commands pipeline; larger ones wait for the server's `+`, so a server can refuse
    /// a large message (`[TOOBIG]`, `[OVERQUOTA]`) before it is sent. Under LITERAL- only
    /// literals up to 4,096 bytes may be non-synchronising.
    pub async fn send_args(
        &mut self,
        args: &[Arg<'_>],
        sync_above: usize,
    ) -> ImapResult<Result<String, Completion>> {
        let tag = self.new_tag();
        let nonsync_limit = if self.has_capability("LITERAL+") {
            sync_above
        } else if self.has_capability("LITERAL-") {
            sync_above.min(4096)
        } else {
            0
        };
        if let Some(t) = &self.tracer {
            let mut shown = vec![Sent::Text(&tag), Sent::Text(" ")];
            for a in args {
                shown.push(match a {
                    Arg::Text(text) => Sent::Text(text.as_ref()),
                    Arg::Literal(bytes) => Sent::Literal(bytes.len()),
                });
            }
            t.client(&shown);
        }
        let mut pending: Vec<u8> = Vec::with_capacity(256);
        pending.extend_from_slice(tag.as_bytes());
        pending.push(b' ');
        for a in args {
            match a {
                Arg::Text(t) => pending.extend_from_slice(t.as_bytes()),
                Arg::Literal(bytes) => {
                    if bytes.len() <= nonsync_limit {
                        pending.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                        self.write(&pending).await?;
                        pending.clear();
                        self.write(bytes).await?;
                    } else {
                        pending.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                        self.write(&pending).await?;
                        self.flush().await?;
                        pending.clear();
                        if let Some(refused) = self.await_continuation(&tag).await? {
                            return Ok(Err(refused));
                        }
                        self.write(bytes).await?;
                    }
                }
            }
        }
        pending.extend_from_slice(b"\r\n");
        self.write(&pending).await?;
        self.flush().await?;
        Ok(Ok(tag))
    }

    /// Waits for `+` before a synchronising literal. Returns the completion instead when the
    /// server refused the command before reading the literal (e.g. a message too large).
    /// Completions of other pipelined commands are kept for [`Connection::finish`].
    async fn await_continuation(&mut self, tag: &str) -> ImapResult<Option<Completion>> {
        loop {
            match self.read_response().await? {
                Response::Continue(_) => return Ok(None),
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } if t == tag => {
                    return Ok(Some(Completion {
                        status,
                        code,
                        text,
                        untagged: Vec::new(),
                    }));
                }
                r @ Response::Tagged { .. } => self.keep_aside(r)?,
                Response::UntaggedStatus {
                    status: Status::Bye,
                    code,
                    text,
                } => {
                    return Err(self.bye_error(code.as_ref(), &text));
                }
                _ => {}
            }
        }
    }

    /// Reads responses until the completion of `tag`, collecting untagged ones.
    pub async fn finish(&mut self, tag: &str) -> ImapResult<Completion> {
        if let Some(i) = self
            .stash
            .iter()
            .position(|r| matches!(r, Response::Tagged { tag: t, .. } if t == tag))
        {
            let r = self.stash.swap_remove(i);
            if let Some(done) = self.completion_for(tag, r, &mut Vec::new()) {
                return Ok(done);
            }
        }
        let mut untagged = Vec::new();
        let mut collected = 0usize;
        loop {
            let (r, len) = self.read_framed().await?;
            if let Response::UntaggedStatus {
                status: Status::Bye,
                code,
                text,
            } = &r
            {
                return Err(self.bye_error(code.as_ref(), text));
            }
            if !matches!(r, Response::Tagged { .. } | Response::Continue(_)) {
                collected = collected.saturating_add(len);
                if collected > MAX_COLLECTED_BYTES {
                    return Err(self.err(
                        ErrorKind::Protocol,
                        format!(
                            "the server sent more than {} MiB of untagged responses to one command; it is not answering what was asked",
                            MAX_COLLECTED_BYTES >> 20
                        ),
                    ));
                }
            }
            if let Some(done) = self.completion_for(tag, r, &mut untagged) {
                return Ok(done);
            }
        }
    }

    /// Keeps the completion of another pipelined command for [`Connection::finish`]. Only tags
    /// this connection sent and has not yet seen completed are kept, and only so many.
    fn keep_aside(&mut self, r: Response) -> ImapResult<()> {
        let Response::Tagged { tag, .. } = &r else {
            return Ok(());
        };
        let ours = tag
            .strip_prefix('m')
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0 && n < self.next_tag);
        let known = self
            .stash
            .iter()
            .any(|s| matches!(s, Response::Tagged { tag: t, .. } if t == tag));
        if !ours || known {
            tracing::debug!(side = %self.side, tag, "completion of a command never sent, ignored");
            return Ok(());
        }
        if self.stash.len() >= MAX_STASHED {
            return Err(self.err(
                ErrorKind::Protocol,
                format!("the server completed more than {MAX_STASHED} commands out of order"),
            ));
        }
        self.stash.push(r);
        Ok(())
    }

    /// The next command fetches one message body announced as `size` bytes (RFC822.SIZE):
    /// its answer may carry that plus [`size_slack`].
    pub fn expect_message(&mut self, size: u64) {
        let allowed = size.saturating_add(size_slack(size));
        self.expect_literals(allowed, allowed);
    }

    /// The next command fetches message bodies announced as `sizes`: each answer may carry the
    /// largest plus its slack, all of them together their sum plus its slack.
    pub fn expect_messages(&mut self, sizes: impl Iterator<Item = u64> + Clone) {
        let largest = sizes.clone().max().unwrap_or(0);
        let total = sizes.fold(0u64, u64::saturating_add);
        self.expect_literals(
            largest.saturating_add(size_slack(largest)),
            total.saturating_add(size_slack(total)),
        );
    }

    /// Says what the next command's answers carry in literals: at most `per_response` bytes in
    /// any one response and `for_command` in all (a message body's announced size plus
    /// [`size_slack`]), until a command completes. Anything more is refused as it is announced,
    /// before it is read.
    pub fn expect_literals(&mut self, per_response: u64, for_command: u64) {
        self.allowance = LiteralAllowance {
            per_response,
            command_left: Some(for_command),
        };
    }

    fn completion_for(
        &self,
        tag: &str,
        r: Response,
        untagged: &mut Vec<Response>,
    ) -> Option<Completion> {
        match r {
            Response::Tagged {
                tag: t,
                status,
                code,
                text,
            } if t == tag => Some(Completion {
                status,
                code,
                text,
                untagged: std::mem::take(untagged),
            }),
            Response::Tagged { .. } | Response::Continue(_) => None,
            other => {
                untagged.push(other);
                None
            }
        }
    }

    fn new_tag(&mut self) -> String {
        let t = format!("m{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Queues bytes for the server: small pieces are gathered, large ones sent at once in
    /// chunks, each under the inactivity timeout. Nothing is sent for sure before
    /// [`Connection::flush`].
    pub async fn write(&mut self, bytes: &[u8]) -> ImapResult<()> {
        if self.wbuf.len() + bytes.len() <= WBUF {
            self.wbuf.extend_from_slice(bytes);
            return Ok(());
        }
        self.send_wbuf().await?;
        if bytes.len() < WBUF / 4 {
            self.wbuf.extend_from_slice(bytes);
            return Ok(());
        }
        self.send_raw(bytes).await
    }

    async fn send_wbuf(&mut self) -> ImapResult<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let r = self.send_raw(&buf).await;
        self.wbuf = buf;
        self.wbuf.clear();
        r
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> ImapResult<()> {
        for chunk in bytes.chunks(WBUF) {
            match tokio::time::timeout(self.opts.timeout, self.transport.write_all(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(self.err(
                        ErrorKind::Transient,
                        format!("connection lost while sending ({})", io_reason(&e)),
                    ));
                }
                Err(_) => return Err(self.timeout_error("sending")),
            }
        }
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> ImapResult<()> {
        self.send_wbuf().await?;
        match tokio::time::timeout(self.opts.timeout, self.transport.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err(
                ErrorKind::Transient,
                format!("connection lost while sending ({})", io_reason(&e)),
            )),
            Err(_) => Err(self.timeout_error("sending")),
        }
    }

    fn timeout_error(&self, what: &str) -> ImapError {
        self.err(
            ErrorKind::Transient,
            format!(
                "the server stopped responding while {what} (nothing for {}s)",
                self.opts.timeout.as_secs()
            ),
        )
    }

    /// Reads one complete response. A BYE is returned like any other response; end of stream
    /// and timeouts are errors.
    pub async fn read_response(&mut self) -> ImapResult<Response> {
        Ok(self.read_framed().await?.0)
    }

    /// Reads one complete response and the number of bytes it took on the wire.
    async fn read_framed(&mut self) -> ImapResult<(Response, usize)> {
        loop {
            let limits = wire::FrameLimits {
                max_line: wire::MAX_LINE,
                max_literal: self.opts.max_literal.min(self.allowance.per_response),
                max_literals: self
                    .allowance
                    .command_left
                    .map_or(self.allowance.per_response, |left| {
                        left.min(self.allowance.per_response)
                    }),
            };
            match wire::frame(&self.rbuf, &mut self.framing, &limits) {
                Ok(Framed::Complete { end, literals }) => {
                    // The response takes its bytes out of the read buffer without a copy, and
                    // literals in it (message bodies) share them.
                    let framed = self.rbuf.split_to(end.min(self.rbuf.len())).freeze();
                    if let Some(t) = &self.tracer {
                        t.server(&framed);
                    }
                    if let Some(left) = &mut self.allowance.command_left {
                        *left = left.saturating_sub(literals);
                    }
                    let response = wire::parse(&framed).map_err(|e| {
                        self.err(
                            ErrorKind::Protocol,
                            format!("unusable response from the server: {e}"),
                        )
                    })?;
                    if matches!(response, Response::Tagged { .. } | Response::Continue(_)) {
                        // A command completed (or the server is ready for a literal): progress.
                        self.progress = Progress::default();
                    }
                    if matches!(response, Response::Tagged { .. }) {
                        self.allowance = LiteralAllowance::default();
                    }
                    return Ok((response, framed.len()));
                }
                Ok(Framed::Incomplete { need }) => self.make_room(need),
                Err(e) => {
                    return Err(self.err(
                        ErrorKind::Protocol,
                        format!("unusable response from the server: {e}"),
                    ));
                }
            }
            self.read_more().await?;
        }
    }

    /// Grows the read buffer for what the response still needs: an announced literal's exact
    /// size (pooled for large bodies), otherwise geometrically, so a long line costs linear time.
    fn make_room(&mut self, need: Option<usize>) {
        let len = self.rbuf.len();
        match need {
            // The announced size is the server's word, but it is within the literal allowance:
            // one buffer of its size (reused from the pool when one fits), instead of growing by
            // doubling, which could keep twice the message in memory while the body is held.
            Some(need)
                if need > self.rbuf.capacity()
                    && need > super::buffers::POOLED_MIN
                    && need <= 64 << 20 =>
            {
                let mut exact = self.opts.buffers.take(need);
                exact.extend_from_slice(&self.rbuf);
                self.rbuf = exact;
            }
            // Larger literals grow with the bytes that actually arrive.
            Some(need) => self
                .rbuf
                .reserve(need.saturating_sub(len).min(len.max(16 * 1024))),
            None => self.rbuf.reserve(len.max(16 * 1024)),
        }
    }

    /// Reads what the server sent next, within the inactivity timeout and the progress floor.
    async fn read_more(&mut self) -> ImapResult<()> {
        let floor_left = self.floor_left();
        let Some(wait) = floor_left.map(|f| f.min(self.opts.timeout)) else {
            return Err(self.too_slow_error());
        };
        let started = tokio::time::Instant::now();
        let read = tokio::time::timeout(wait, self.transport.read_buf(&mut self.rbuf)).await;
        self.progress.waited += started.elapsed();
        match read {
            Ok(Ok(0)) => Err(self.err(
                ErrorKind::Transient,
                "the server closed the connection".into(),
            )),
            Ok(Ok(n)) => {
                self.progress.received = self.progress.received.saturating_add(n as u64);
                Ok(())
            }
            Ok(Err(e)) => Err(self.err(
                ErrorKind::Transient,
                format!("connection lost ({})", io_reason(&e)),
            )),
            Err(_) if wait < self.opts.timeout => Err(self.too_slow_error()),
            Err(_) => Err(self.timeout_error("waiting for an answer")),
        }
    }

    /// How much longer the answers in flight may take under the progress floor: the timeout's
    /// grace plus what the bytes received so far pay for at `min_rate`. `None` once spent.
    fn floor_left(&self) -> Option<Duration> {
        let paid = Duration::from_secs_f64(
            self.progress.received as f64 / self.opts.min_rate.max(1) as f64,
        );
        let allowed = self.opts.timeout.saturating_add(paid);
        allowed
            .checked_sub(self.progress.waited)
            .filter(|left| !left.is_zero())
    }

    fn too_slow_error(&self) -> ImapError {
        self.err(
            ErrorKind::Transient,
            format!(
                "the server is answering too slowly: {} bytes in {}s of waiting, below the floor of {} bytes/s after {}s of grace (--min-rate, --timeout); check the network or the server's load",
                self.progress.received,
                self.progress.waited.as_secs(),
                self.opts.min_rate,
                self.opts.timeout.as_secs(),
            ),
        )
    }

    /// Logs out politely, ignoring failures.
    pub async fn logout(mut self) {
        let t = self.opts.timeout;
        self.opts.timeout = Duration::from_secs(5).min(t);
        let _ = self.run("LOGOUT").await;
    }
}

/// Error kind of a NO/BAD response code (RFC 5530) outside APPEND.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "UNAVAILABLE" | "INUSE" | "THROTTLED" | "LIMIT" => ErrorKind::Throttled,
        "AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED" | "PRIVACYREQUIRED" => {
            ErrorKind::Auth
        }
        "SERVERBUG" => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// A string argument: quoted when it can be, a literal otherwise (8-bit, CR, LF).
pub fn astring(s: &str) -> Arg<'_> {
    match wire::quote(s) {
        Some(q) => Arg::Text(q.into()),
        None => Arg::Literal(s.as_bytes()),
    }
}

impl<'a> Arg<'a> {
    /// Verbatim command text.
    pub fn text(s: &'a str) -> Arg<'a> {
        Arg::Text(std::borrow::Cow::Borrowed(s))
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}
