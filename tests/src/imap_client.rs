//! A small IMAP client for the harness, on async-imap directly.
//!
//! This module owns the harness's own IMAP access: seeding the source (create, subscribe,
//! append with flags and INTERNALDATE) and reading either side back for [`crate::verify`]. It is
//! deliberately independent of the code under test: it must never use the worker crate, and it
//! must not decode or encode folder names. Tests pass raw names exactly as the server shows them
//! (already modified UTF-7, e.g. `INBOX.&AOQ-rger` for "Ärger").
//!
//! It connects in plain text to 127.0.0.1; TLS is the code under test's business. Every call
//! has a timeout, because async-imap has none.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_imap::imap_proto::{self, NameAttribute, Response};
use async_imap::types::Flag;
use async_imap::{Client, Session};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::fixtures::Fixture;
use crate::servers::TestAccount;

/// Timeout for one ordinary command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Timeout for reading a whole folder back (it may hold a 21 MB message).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// A folder as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FolderInfo {
    /// The raw name (modified UTF-7, listescape escapes and all), as the server sent it.
    pub name: String,
    /// The hierarchy delimiter, `None` for a flat name.
    pub delimiter: Option<String>,
    /// Attributes as IMAP atoms (`\Noselect`, `\HasChildren`, `\Sent`), in server order.
    pub attributes: Vec<String>,
}

impl FolderInfo {
    /// Whether the folder can be SELECTed (no `\Noselect` or `\NonExistent`).
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }

    /// Whether the folder carries `attribute` (case-insensitive, e.g. `\Sent`).
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

/// What STATUS says about a folder: a write (APPEND, EXPUNGE) changes `uid_next` or
/// `messages`, so equal statuses before and after a run mean the run wrote nothing there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FolderStatus {
    /// MESSAGES.
    pub messages: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// UIDVALIDITY.
    pub uid_validity: u32,
}

/// The tagged result of a command: `OK`, `NO` or `BAD`, and the text after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedOutcome {
    /// `OK`, `NO`, `BAD` (or `PREAUTH`/`BYE`, which should not happen).
    pub status: String,
    /// The response text, response code included when async-imap does not know it (e.g.
    /// `[OVERQUOTA] Quota exceeded (mailbox for user is full)`); known codes are rendered in
    /// brackets in front, e.g. `[APPENDUID 1795639172 1] Append completed`.
    pub text: String,
}

impl TaggedOutcome {
    /// Whether the status is `OK`.
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }
}

impl std::fmt::Display for TaggedOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

/// A logged-in harness connection.
pub struct ImapClient {
    session: Session<TcpStream>,
    user: String,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

async fn timed<T, E>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.with_context(|| what.to_owned()),
        Err(_) => bail!("{what}: timed out after {limit:?}"),
    }
}

impl ImapClient {
    /// Connects in plain text to the account's IMAP port and logs in.
    pub async fn connect(account: &TestAccount) -> Result<Self> {
        let addr = (account.host.as_str(), account.imap_port);
        let stream = timed("connect", COMMAND_TIMEOUT, TcpStream::connect(addr)).await?;
        let mut client = Client::new(stream);
        // async-imap does not read the greeting itself.
        let greeting = timed("greeting", COMMAND_TIMEOUT, client.read_response()).await?;
        if greeting.is_none() {
            bail!("{}: connection closed before the greeting", account.user);
        }
        let login = client.login(&account.user, &account.password);
        let session = match tokio::time::timeout(COMMAND_TIMEOUT, login).await {
            Ok(Ok(session)) => session,
            Ok(Err((e, _))) => bail!(
                "login as {} on the {} server failed: {e}",
                account.user,
                account.side.name()
            ),
            Err(_) => bail!("login as {}: timed out", account.user),
        };
        Ok(Self {
            session,
            user: account.user.clone(),
        })
    }

    /// The underlying async-imap session, for checks this client does not offer.
    pub fn session_mut(&mut self) -> &mut Session<TcpStream> {
        &mut self.session
    }

    /// CAPABILITY after login, as strings (e.g. `QUOTA`, `APPENDLIMIT=102400`).
    pub async fn capabilities(&mut self) -> Result<Vec<String>> {
        let caps = timed("CAPABILITY", COMMAND_TIMEOUT, self.session.capabilities()).await?;
        let mut out: Vec<String> = caps
            .iter()
            .map(|c| match c {
                async_imap::types::Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
                async_imap::types::Capability::Auth(m) => format!("AUTH={m}"),
                async_imap::types::Capability::Atom(a) => a.clone(),
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// CREATE with a raw name.
    pub async fn create(&mut self, raw_name: &str) -> Result<()> {
        timed(
            &format!("CREATE {raw_name:?}"),
            COMMAND_TIMEOUT,
            self.session.create(raw_name),
        )
        .await
    }

    /// SUBSCRIBE with a raw name.
    pub async fn subscribe(&mut self, raw_name: &str) -> Result<()> {
        timed(
            &format!("SUBSCRIBE {raw_name:?}"),
            COMMAND_TIMEOUT,
            self.session.subscribe(raw_name),
        )
        .await
    }

    /// CREATE then SUBSCRIBE.
    pub async fn create_subscribed(&mut self, raw_name: &str) -> Result<()> {
        self.create(raw_name).await?;
        self.subscribe(raw_name).await
    }

    /// APPENDs a fixture with its flags and INTERNALDATE; fails on anything but `OK`.
    pub async fn append(&mut self, raw_folder: &str, fixture: &Fixture) -> Result<()> {
        let outcome = self.try_append(raw_folder, fixture).await?;
        if !outcome.is_ok() {
            bail!(
                "APPEND of {} bytes to {raw_folder:?} as {}: {outcome}",
                fixture.raw.len(),
                self.user
            );
        }
        Ok(())
    }

    /// APPENDs every fixture, in order.
    pub async fn append_all<'a>(
        &mut self,
        raw_folder: &str,
        fixtures: impl IntoIterator<Item = &'a Fixture>,
    ) -> Result<()> {
        for f in fixtures {
            self.append(raw_folder, f).await?;
        }
        Ok(())
    }

    /// APPENDs a fixture and returns the server's tagged answer, `NO` included, so tests can
    /// check refusals (`[OVERQUOTA]`, `[LIMIT]`). Handles a server that refuses before sending
    /// the continuation request (the literal is then not sent).
    pub async fn try_append(
        &mut self,
        raw_folder: &str,
        fixture: &Fixture,
    ) -> Result<TaggedOutcome> {
        let mut command = format!("APPEND {}", quote(raw_folder));
        if let Some(flags) = fixture.imap_flags() {
            command.push(' ');
            command.push_str(&flags);
        }
        command.push(' ');
        command.push_str(&fixture.imap_internal_date());
        // RFC 3501 §4.3: a synchronising literal; wait for "+" before sending the bytes.
        command.push_str(&format!(" {{{}}}", fixture.raw.len()));
        let what = format!("APPEND to {raw_folder:?}");
        tokio::time::timeout(FETCH_TIMEOUT, self.raw_append(&command, &fixture.raw))
            .await
            .map_err(|_| anyhow!("{what}: timed out"))?
            .with_context(|| what.clone())
    }

    async fn raw_append(&mut self, command: &str, literal: &[u8]) -> Result<TaggedOutcome> {
        let tag = self.session.run_command(command).await?;
        loop {
            let response = self
                .session
                .read_response()
                .await?
                .ok_or_else(|| anyhow!("connection closed"))?;
            match response.parsed() {
                Response::Continue { .. } => {
                    let stream = self.session.get_mut();
                    stream.write_all(literal).await?;
                    stream.write_all(b"\r\n").await?;
                    stream.flush().await?;
                }
                Response::Done {
                    tag: done,
                    status,
                    outcome: o,
                } if *done == tag => {
                    return Ok(outcome(status, o.code.as_ref(), o.information.as_deref()));
                }
                _ => {} // untagged EXISTS and the like
            }
        }
    }

    /// LIST "" "*": every folder with its raw name, delimiter and attributes, sorted by name.
    pub async fn list(&mut self) -> Result<Vec<FolderInfo>> {
        let names = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let stream = self.session.list(Some(""), Some("*")).await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await
        .map_err(|_| anyhow!("LIST: timed out"))?
        .context("LIST")?;
        let mut out: Vec<FolderInfo> = names
            .iter()
            .map(|n| FolderInfo {
                name: unescape_quoted(n.name()),
                delimiter: n.delimiter().map(str::to_owned),
                attributes: n.attributes().iter().map(attribute_atom).collect(),
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// LSUB "" "*": the raw names of subscribed folders, sorted.
    pub async fn subscriptions(&mut self) -> Result<Vec<String>> {
        let names = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let stream = self.session.lsub(Some(""), Some("*")).await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await
        .map_err(|_| anyhow!("LSUB: timed out"))?
        .context("LSUB")?;
        let mut out: Vec<String> = names.iter().map(|n| unescape_quoted(n.name())).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// STATUS (MESSAGES UIDNEXT UIDVALIDITY) of a folder by raw name.
    pub async fn status(&mut self, raw_name: &str) -> Result<FolderStatus> {
        let mailbox = timed(
            &format!("STATUS {raw_name:?}"),
            COMMAND_TIMEOUT,
            self.session
                .status(raw_name, "(MESSAGES UIDNEXT UIDVALIDITY)"),
        )
        .await?;
        Ok(FolderStatus {
            messages: mailbox.exists,
            uid_next: mailbox.uid_next.unwrap_or_default(),
            uid_validity: mailbox.uid_validity.unwrap_or_default(),
        })
    }

    /// A raw command that must answer `OK` (e.g. `UID STORE 3 +FLAGS (\\Flagged)` after
    /// [`ImapClient::select`]); untagged responses are skipped.
    pub async fn command(&mut self, command: &str) -> Result<()> {
        let what = command.to_owned();
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            let tag = self.session.run_command(command).await?;
            loop {
                let response = self
                    .session
                    .read_response()
                    .await?
                    .ok_or_else(|| anyhow!("connection closed"))?;
                if let Response::Done {
                    tag: done,
                    status,
                    outcome: o,
                } = response.parsed()
                    && *done == tag
                {
                    let out = outcome(status, o.code.as_ref(), o.information.as_deref());
                    if !out.is_ok() {
                        bail!("{out}");
                    }
                    return Ok(());
                }
            }
        })
        .await
        .map_err(|_| anyhow!("{what}: timed out"))?
        .with_context(|| what.clone())
    }

    /// SELECT a folder read-write.
    pub async fn select(&mut self, raw_name: &str) -> Result<()> {
        self.command(&format!("SELECT {}", quote(raw_name))).await
    }

    /// UIDs of a folder's messages, ascending.
    pub async fn uids(&mut self, raw_name: &str) -> Result<Vec<u32>> {
        self.select(raw_name).await?;
        let found = timed(
            "UID SEARCH ALL",
            COMMAND_TIMEOUT,
            self.session.uid_search("ALL"),
        )
        .await?;
        let mut out: Vec<u32> = found.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Removes one message by UID (UID STORE \Deleted, UID EXPUNGE).
    pub async fn expunge_uid(&mut self, raw_name: &str, uid: u32) -> Result<()> {
        self.select(raw_name).await?;
        self.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        self.command(&format!("UID EXPUNGE {uid}")).await
    }

    /// DELETE a folder by raw name.
    pub async fn delete(&mut self, raw_name: &str) -> Result<()> {
        timed(
            &format!("DELETE {raw_name:?}"),
            COMMAND_TIMEOUT,
            self.session.delete(raw_name),
        )
        .await
    }

    /// LOGOUT; errors are ignored (the test is over either way).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.session.logout()).await;
    }
}

/// An IMAP quoted string (RFC 3501 §4.3), escaping `\` and `"`.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Undoes RFC 3501 §4.3 quoting (`\\` → `\`, `\"` → `"`) of a name from LIST or LSUB:
/// imap-proto hands out a quoted string's content still escaped, so `INBOX.Say "hi"` would
/// otherwise come back as `INBOX.Say \"hi\"` and fail a later EXAMINE. Dovecot sends such
/// names quoted; it uses literals only for 8-bit names, which modified UTF-7 names never are.
pub fn unescape_quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) => out.push(next),
                None => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A flag as its IMAP atom (`\Seen`, `$Label1`); `None` for `\Recent`, which is session state.
pub fn flag_atom(flag: &Flag<'_>) -> Option<String> {
    Some(match flag {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent => return None,
        Flag::MayCreate => "\\*".to_owned(),
        Flag::Custom(s) => s.to_string(),
    })
}

fn attribute_atom(attribute: &NameAttribute<'_>) -> String {
    match attribute {
        NameAttribute::NoInferiors => "\\Noinferiors".to_owned(),
        NameAttribute::NoSelect => "\\Noselect".to_owned(),
        NameAttribute::Marked => "\\Marked".to_owned(),
        NameAttribute::Unmarked => "\\Unmarked".to_owned(),
        NameAttribute::All => "\\All".to_owned(),
        NameAttribute::Archive => "\\Archive".to_owned(),
        NameAttribute::Drafts => "\\Drafts".to_owned(),
        NameAttribute::Flagged => "\\Flagged".to_owned(),
        NameAttribute::Junk => "\\Junk".to_owned(),
        NameAttribute::Sent => "\\Sent".to_owned(),
        NameAttribute::Trash => "\\Trash".to_owned(),
        NameAttribute::Extension(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

fn outcome(
    status: &imap_proto::Status,
    code: Option<&imap_proto::ResponseCode<'_>>,
    information: Option<&str>,
) -> TaggedOutcome {
    let status = match status {
        imap_proto::Status::Ok => "OK",
        imap_proto::Status::No => "NO",
        imap_proto::Status::Bad => "BAD",
        imap_proto::Status::PreAuth => "PREAUTH",
        imap_proto::Status::Bye => "BYE",
    };
    let mut text = String::new();
    if let Some(code) = code {
        text.push_str(&render_code(code));
        text.push(' ');
    }
    text.push_str(information.unwrap_or_default());
    TaggedOutcome {
        status: status.to_owned(),
        text,
    }
}

fn render_code(code: &imap_proto::ResponseCode<'_>) -> String {
    use imap_proto::ResponseCode as C;
    use imap_proto::rfc4315::UidSetMember;
    let uids = |set: &[UidSetMember]| {
        set.iter()
            .map(|m| match m {
                UidSetMember::Uid(u) => u.to_string(),
                UidSetMember::UidRange(r) => format!("{}:{}", r.start(), r.end()),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    match code {
        C::AppendUid(validity, set) => format!("[APPENDUID {validity} {}]", uids(set)),
        C::Alert => "[ALERT]".to_owned(),
        C::Parse => "[PARSE]".to_owned(),
        C::TryCreate => "[TRYCREATE]".to_owned(),
        C::ReadOnly => "[READ-ONLY]".to_owned(),
        C::ReadWrite => "[READ-WRITE]".to_owned(),
        other => format!("[{other:?}]"),
    }
}
