//! Task and outcome envelopes: what the coordinator asks a worker to do, and what comes back.
//!
//! Envelopes are versioned ([`ENVELOPE_VERSION`]) and never carry credentials: a worker loads a
//! pair's endpoints and secrets from its credential source by `pair_id`.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, FailureKind};
use crate::folder::{FolderPath, FolderRole};
use crate::key::MessageKey;
use crate::report::Warning;

/// Version of the envelope format; a worker refuses envelopes of a version it does not know.
pub const ENVELOPE_VERSION: u32 = 1;

/// TLS mode of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// TLS from the first byte (imaps, port 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required (imap, port 143).
    Starttls,
    /// No TLS at all (only loopback, or with an explicit override).
    None,
}

/// How a side logs in. Without one (`None` on [`Endpoint::auth_mechanism`]) a password logs in
/// with AUTHENTICATE PLAIN where the server offers it, else LOGIN, and an OAuth 2.0 token with
/// OAUTHBEARER where offered, else XOAUTH2. A mechanism named here is used whatever the server
/// advertises: it is the way round a server whose SASL is broken or whose capabilities lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMechanism {
    /// The LOGIN command (RFC 3501 §6.2.3): user name and password as strings.
    Login,
    /// AUTHENTICATE PLAIN (RFC 4616); the only one that carries an administrator's login
    /// for another user (an authorization identity).
    Plain,
    /// AUTHENTICATE XOAUTH2 with an OAuth 2.0 access token (Google's and Microsoft's).
    Xoauth2,
    /// AUTHENTICATE OAUTHBEARER with an OAuth 2.0 access token (RFC 7628).
    Oauthbearer,
}

impl AuthMechanism {
    /// Every mechanism, in the order help texts list them.
    pub const ALL: [AuthMechanism; 4] = [
        AuthMechanism::Login,
        AuthMechanism::Plain,
        AuthMechanism::Xoauth2,
        AuthMechanism::Oauthbearer,
    ];

    /// The name users write (`login`, `plain`, `xoauth2`, `oauthbearer`).
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Login => "login",
            AuthMechanism::Plain => "plain",
            AuthMechanism::Xoauth2 => "xoauth2",
            AuthMechanism::Oauthbearer => "oauthbearer",
        }
    }

    /// The mechanism of a name, without regard to case.
    pub fn from_name(name: &str) -> Option<AuthMechanism> {
        AuthMechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether it logs in with an OAuth 2.0 access token (else with a password).
    pub fn takes_token(self) -> bool {
        matches!(self, AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer)
    }
}

impl std::fmt::Display for AuthMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One side of a mailbox pair, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub user: String,
    /// How TLS is used.
    pub tls: TlsMode,
    /// An extra trusted CA bundle: a file the local user named, or PEM text (what the API's
    /// edge reads from its CA directory or takes inline; the fleet stores nothing else).
    pub ca_file: Option<CaFile>,
    /// Skip certificate verification (never the default).
    pub insecure_skip_verify: bool,
    /// The login mechanism to use; `None`: chosen from the server's capabilities (stored
    /// endpoints without the field read as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mechanism: Option<AuthMechanism>,
}

impl Endpoint {
    /// `user@host:port`, for messages to people. Never contains a secret.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Where an endpoint's extra trusted CA bundle comes from.
///
/// A [`CaFile::Path`] is read by whoever connects, so only the local command line may make one
/// (its user owns the machine); an API client's choice of file is resolved at the API's edge,
/// inside the CA directory its operator configured, into [`CaFile::Pem`].
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaFile {
    /// A PEM file on this machine.
    Path(String),
    /// PEM text: one or more `CERTIFICATE` blocks.
    Pem(String),
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaFile::Path(p) => f.debug_tuple("Path").field(p).finish(),
            // A CA bundle is public, but kilobytes of base64 make every log line unreadable.
            CaFile::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
        }
    }
}

impl<'de> Deserialize<'de> for CaFile {
    /// Accepts the tagged form, and the bare path string endpoints were stored with before the
    /// PEM form existed (sealed pairs of a running migration keep working after an upgrade).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tagged {
            Path(String),
            Pem(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Legacy(String),
            Tagged(Tagged),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Legacy(p) | Stored::Tagged(Tagged::Path(p)) => CaFile::Path(p),
            Stored::Tagged(Tagged::Pem(pem)) => CaFile::Pem(pem),
        })
    }
}

/// Which side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The mailbox mail is copied from.
    Source,
    /// The mailbox mail is copied to.
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A unit of work on the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEnvelope {
    /// Envelope format version.
    pub version: u32,
    /// Unique id; outcomes refer to it, a later attempt replaces an earlier outcome.
    pub task_id: String,
    /// The migration this task belongs to.
    pub migration_id: String,
    /// The mailbox pair this task works on.
    pub pair_id: String,
    /// Retry count of this task (0 for the first publish).
    pub attempt: u32,
    /// What to do.
    pub body: TaskBody,
}

/// The kinds of task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskBody {
    /// Log into both sides and list folders, capabilities, quota.
    List(ListTask),
    /// Inventory one target folder and the source folders mapped to it.
    Inventory(InventoryTask),
    /// Create and subscribe target folders, parents first.
    CreateFolders(CreateFoldersTask),
    /// Copy one batch of messages of a chain.
    CopyBatch(CopyBatchTask),
    /// Bring copies already on the target in line with their source (sync passes): set flags,
    /// expunge copies whose source message is gone. Ends its folder's chain.
    UpdateTarget(UpdateTargetTask),
}

/// One folder to create or subscribe on the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderToPrepare {
    /// Decoded path.
    pub path: FolderPath,
    /// Raw target name.
    pub raw: String,
    /// Create it (it does not exist yet).
    pub create: bool,
    /// Subscribe it.
    pub subscribe: bool,
}

/// Create target folders (in the given order: parents first) and subscribe them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateFoldersTask {
    /// The folders.
    pub folders: Vec<FolderToPrepare>,
}

/// Result of a CreateFolders task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateFoldersResult {
    /// Raw names created.
    pub created: Vec<String>,
    /// Raw names that could not be created, with the server's reason.
    pub failed: Vec<(String, String)>,
    /// Raw names subscribed.
    pub subscribed: Vec<String>,
}

/// List both accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListTask {
    /// Also fetch every message's size per folder (for `check`: bytes and largest message).
    pub with_sizes: bool,
    /// Messages above this size are reported (the target's APPENDLIMIT or `--max-size`).
    pub report_larger_than: Option<u64>,
    /// Close both sessions afterwards instead of keeping them idle for the pair's next task: the
    /// login probe at create and the health check, after which no task of the pair may follow
    /// for a while (providers count idle sessions, and so do the fleet's connection slots).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_sessions: bool,
}

/// A source folder as the planner refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceFolderRef {
    /// The server's own name, byte for byte (never re-encoded).
    pub raw: String,
    /// The decoded path, for people and for reports.
    pub path: FolderPath,
}

/// Inventory of one target folder and its sources.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryTask {
    /// The decoded target path (the worker encodes it for the target).
    pub target: FolderPath,
    /// The target's raw name if the folder already exists there.
    pub target_raw: Option<String>,
    /// The target's personal namespace prefix (to encode a new folder's name).
    pub dst_prefix: String,
    /// The target's hierarchy delimiter.
    pub dst_delimiter: Option<char>,
    /// The source folders whose mail lands in `target`, in chain order.
    pub sources: Vec<SourceFolderRef>,
}

/// One message of a copy batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItem {
    /// Source UID.
    pub uid: u32,
    /// RFC822.SIZE at inventory time.
    pub size: u64,
    /// The message key (refined by the body digest when the header key alone was ambiguous).
    pub key: MessageKey,
    /// The key of the identifying headers alone; `None` when the message has none of them and
    /// `key` is the digest of the whole message. Differs from `key` when `key` is refined.
    pub header_key: Option<MessageKey>,
    /// This message's rank among the copies of `key` the plan owes (1, 2, ...).
    pub rank: u32,
    /// Subject, for failure reports.
    pub subject: String,
}

/// Copy a batch of one source folder into one target folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyBatchTask {
    /// Plan generation; a batch of an older generation is superseded.
    pub generation: u64,
    /// Decoded target path.
    pub target: FolderPath,
    /// The target's raw name.
    pub target_raw: String,
    /// Target UIDVALIDITY at plan time (None for a folder the plan creates).
    pub dst_uidvalidity: Option<u32>,
    /// Target UIDNEXT at plan time (1 for a folder the plan creates).
    pub dst_uidnext_at_plan: u32,
    /// The source folder.
    pub source: SourceFolderRef,
    /// Source UIDVALIDITY at plan time.
    pub src_uidvalidity: u32,
    /// Messages to copy, in ascending source UID order.
    pub items: Vec<BatchItem>,
    /// Index of this batch in its chain.
    pub seq: u32,
    /// Bytes the target account may receive per UTC day, across the fleet (`None`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_upload_budget: Option<u64>,
}

/// What came back from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeEnvelope {
    /// The task this answers.
    pub task_id: String,
    /// Migration id.
    pub migration_id: String,
    /// Pair id.
    pub pair_id: String,
    /// Attempt of the task this answers.
    pub attempt: u32,
    /// When the worker finished.
    pub finished_at: DateTime<Utc>,
    /// The result.
    pub body: OutcomeBody,
}

/// Results by task kind, or a task-level failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutcomeBody {
    /// Both accounts listed.
    List(Box<ListResult>),
    /// One target folder inventoried.
    Inventory(Box<InventoryResult>),
    /// Target folders prepared.
    Folders(CreateFoldersResult),
    /// One batch copied (fully or partly).
    Copy(Box<CopyResult>),
    /// Copies on the target updated.
    Updated(UpdateResult),
    /// The task as a whole failed.
    Failed(TaskFailure),
}

/// A task that failed as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFailure {
    /// What kind of failure; decides retry.
    pub kind: ErrorKind,
    /// Which side failed, if one.
    pub side: Option<Side>,
    /// One plain sentence naming the account and what to do. Never contains a secret.
    pub message: String,
    /// How long the server asked us to wait before trying again, in milliseconds (e.g.
    /// Microsoft's "Suggested Backoff Time").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The task failed while connecting or logging in: a login that fails the same way again
    /// and again is given up after a few attempts, not retried like a dropped copy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub login: bool,
    /// Set when the task did not fail but waited for the fleet itself (not for a server):
    /// what it waits for decides what the coordinator tells the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// What a task handed back to be retried was waiting for in the fleet itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// Connection slots: the sessions an account or a server allows across the fleet were all
    /// in use for as long as a task waits in their queue.
    ConnectionSlots,
    /// A fresh or flushed fleet store grants no folder lease within one lease TTL of its epoch
    /// (DESIGN.md, "Idempotency"); `retry_after_ms` says how long is left.
    FreshStore,
}

/// Facts about one folder of one account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderListing {
    /// The server's name, byte for byte.
    pub raw: String,
    /// Decoded path (personal prefix stripped). For an undecodable name: its raw text, taken literally.
    pub path: FolderPath,
    /// Set when the raw name is not valid modified UTF-7; the path is then the raw text.
    pub decode_error: Option<String>,
    /// The hierarchy delimiter the server reported for it.
    pub delimiter: Option<char>,
    /// LIST attributes as the server sent them.
    pub attributes: Vec<String>,
    /// Special-use role from the attributes (RFC 6154).
    pub role: Option<FolderRole>,
    /// Whether the folder can be selected (no `\Noselect`/`\NonExistent`).
    pub selectable: bool,
    /// Whether LSUB lists it.
    pub subscribed: bool,
    /// STATUS of the folder when selectable.
    pub status: Option<FolderStatus>,
    /// Sizes, when the task asked for them.
    pub sizes: Option<FolderSizes>,
    /// Set when the server refused STATUS of this folder (deleted since LIST, or no right to
    /// read it): the folder is skipped with this reason, and the others go on.
    #[serde(default)]
    pub unavailable: Option<FolderUnavailable>,
}

/// Why a listed folder cannot be migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderUnavailable {
    /// It no longer exists (`[NONEXISTENT]`): a warning. Otherwise the server refused it
    /// (`[NOPERM]`, …): a failure naming the folder.
    pub vanished: bool,
    /// What the server said.
    pub reason: String,
}

/// STATUS figures (RFC 3501 §6.3.10, RFC 7162 HIGHESTMODSEQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderStatus {
    /// MESSAGES.
    pub messages: u32,
    /// UIDNEXT.
    pub uidnext: u32,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// HIGHESTMODSEQ where CONDSTORE is offered.
    pub highestmodseq: Option<u64>,
}

/// Per-folder size figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSizes {
    /// Sum of RFC822.SIZE.
    pub bytes: u64,
    /// Largest RFC822.SIZE.
    pub largest: u64,
    /// UIDs and sizes of messages above the task's `report_larger_than`.
    pub oversized: Vec<(u32, u64)>,
}

/// One account, listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountListing {
    /// CAPABILITY after login.
    pub capabilities: Vec<String>,
    /// Personal namespace prefix (RFC 2342), e.g. `INBOX.`, or empty.
    pub personal_prefix: String,
    /// Hierarchy delimiter of the personal namespace.
    pub delimiter: Option<char>,
    /// Folders of the personal namespace, shared and other users' left out.
    pub folders: Vec<FolderListing>,
    /// Folders left out because they belong to another namespace: decoded, `/`-separated, for
    /// people (never sent back to the server).
    pub other_namespace_folders: Vec<String>,
    /// Quota of the INBOX's quota root (RFC 9208).
    pub quota: Option<Quota>,
    /// APPENDLIMIT (RFC 7889), if advertised server-wide.
    pub append_limit: Option<u64>,
}

impl AccountListing {
    /// Whether the server advertises a capability (case-insensitive).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }
}

/// A quota root's STORAGE (KiB) and MESSAGE resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// STORAGE used, bytes.
    pub storage_used: Option<u64>,
    /// STORAGE limit, bytes.
    pub storage_limit: Option<u64>,
    /// MESSAGE count used.
    pub messages_used: Option<u64>,
    /// MESSAGE count limit.
    pub messages_limit: Option<u64>,
}

/// Result of a List task: both accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResult {
    /// The source account.
    pub source: AccountListing,
    /// The target account.
    pub target: AccountListing,
}

/// One message as inventoried.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryMessage {
    /// UID in its folder.
    pub uid: u32,
    /// RFC822.SIZE.
    pub size: u64,
    /// Message key (refined by the body digest when the header key alone was ambiguous).
    pub key: MessageKey,
    /// Key of the identifying headers alone (`None`: none present, `key` digests the whole message).
    pub header_key: Option<MessageKey>,
    /// Flags and keywords.
    pub flags: Vec<String>,
    /// INTERNALDATE as the server reported it.
    pub internal_date: Option<DateTime<FixedOffset>>,
    /// Subject (decoded, truncated) for reports; empty on the target side.
    pub subject: String,
    /// MODSEQ (RFC 7162), where the server offers CONDSTORE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modseq: Option<u64>,
}

/// One folder's inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderInventory {
    /// The folder's raw name.
    pub raw: String,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT at inventory time.
    pub uidnext: u32,
    /// Flags the folder keeps permanently (PERMANENTFLAGS); `\*` means new keywords allowed.
    pub permanent_flags: Vec<String>,
    /// Messages in ascending UID order.
    pub messages: Vec<InventoryMessage>,
}

/// Result of an Inventory task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryResult {
    /// The target folder path.
    pub target: FolderPath,
    /// The target folder's raw name (existing, or encoded for creation).
    pub target_raw: String,
    /// The target folder, if it exists.
    pub target_inventory: Option<FolderInventory>,
    /// Each source folder, in the task's order.
    pub sources: Vec<FolderInventory>,
    /// What the inventory noticed that the pair's summary should say (messages recognised by
    /// content, for instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::report::Warning>,
}

/// A message that could not be copied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageFailure {
    /// Source folder (decoded, `/`-separated).
    pub folder: String,
    /// Source UID.
    pub uid: u32,
    /// Subject.
    pub subject: String,
    /// Size in bytes.
    pub size: u64,
    /// What went wrong.
    pub kind: FailureKind,
    /// Plain-language reason, with the server's words where useful.
    pub reason: String,
    /// What to do.
    pub advice: String,
}

/// A copied message and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedMessage {
    /// Source UID.
    pub src_uid: u32,
    /// Target UID from APPENDUID, when the target reports it.
    pub dst_uid: Option<u32>,
    /// Bytes appended.
    pub bytes: u64,
}

/// Result of a CopyBatch task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyResult {
    /// Target folder path.
    pub target: FolderPath,
    /// The target folder's UIDVALIDITY as seen by the worker.
    pub dst_uidvalidity: Option<u32>,
    /// Messages appended now, or found already appended by an earlier attempt.
    pub copied: Vec<CopiedMessage>,
    /// Messages that failed for good.
    pub failed: Vec<MessageFailure>,
    /// Things the user should know.
    pub warnings: Vec<Warning>,
    /// Source UIDs not sent because the target account's daily upload budget is spent; the
    /// rest of the chain waits for the next day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<u32>,
    /// The target folder takes no mail: the first messages sent into it were all refused with
    /// the same answer, so the batch stopped sending (issue 15). Its messages are counted here,
    /// not one failure each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_refused: Option<FolderRefusal>,
}

/// A target folder that refused every message a batch sent into it, with the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRefusal {
    /// The target's answer in its own words (`[CODE] text`).
    pub answer: String,
    /// Source UIDs of the batch not copied because of it: those refused and those not sent.
    pub uids: Vec<u32>,
}

/// Whether two flag lists name the same flags: IMAP flags are case-insensitive, and `\Recent`
/// is the server's, never copied.
pub fn same_flags(a: &[String], b: &[String]) -> bool {
    let norm = |l: &[String]| {
        let mut v: Vec<String> = l
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(|f| f.to_ascii_lowercase())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

/// A copy whose flags must follow its source message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagUpdate {
    /// The copy's UID on the target.
    pub dst_uid: u32,
    /// The copy's flags as inventoried.
    pub current: Vec<String>,
    /// The source message's flags.
    pub wanted: Vec<String>,
}

/// Update copies in one target folder (DESIGN.md, "Incremental sync").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateTargetTask {
    /// Decoded target path.
    pub target: FolderPath,
    /// The target's raw name.
    pub target_raw: String,
    /// Target UIDVALIDITY at plan time: the task changes nothing if it differs.
    pub dst_uidvalidity: u32,
    /// Copies whose flags differ from their source message's.
    pub flags: Vec<FlagUpdate>,
    /// Copies (recorded from APPENDUID) whose source message is gone, to expunge by UID.
    pub expunge: Vec<u32>,
}

/// Result of an UpdateTarget task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateResult {
    /// Copies whose flags were set.
    pub flags_set: u64,
    /// Copies expunged.
    pub expunged: u64,
    /// Things the user should know (flags the folder does not keep, no UIDPLUS).
    pub warnings: Vec<Warning>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_round_trip_and_legacy_paths_still_read() {
        for ca in [
            CaFile::Path("/etc/ca.pem".into()),
            CaFile::Pem("-----BEGIN".into()),
        ] {
            let json = serde_json::to_string(&ca).expect("serialize");
            assert_eq!(serde_json::from_str::<CaFile>(&json).expect(&json), ca);
        }
        assert_eq!(
            serde_json::from_str::<CaFile>(r#""/old/ca.pem""#).expect("legacy"),
            CaFile::Path("/old/ca.pem".into())
        );
        assert_eq!(
            format!("{:?}", CaFile::Pem("x".repeat(5000))),
            "Pem(5000 bytes)"
        );
    }
}
