//! The in-memory account a [`super::ScriptedServer`] serves: folders (raw name bytes, LIST
//! attributes, UIDVALIDITY, UIDNEXT, subscription) holding messages (UID, flags, INTERNALDATE,
//! raw bytes).
//!
//! It is plain data: tests build it before the server starts and read it afterwards (what a
//! target-side server received by APPEND). It knows nothing of the protocol.

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its UID in its folder.
    pub uid: u32,
    /// Flags as sent in FETCH (`\Seen`, keywords).
    pub flags: Vec<String>,
    /// INTERNALDATE in RFC 3501 §9 form, `"01-Jan-2020 10:11:12 +0000"` without the quotes.
    pub internal_date: String,
    /// The message's bytes, served as `BODY[]`.
    pub body: Vec<u8>,
    /// The RFC822.SIZE announced when it is not the body's length (a server reporting
    /// approximate sizes, or lying): `None` announces the true size.
    pub announced_size: Option<u64>,
}

impl Message {
    /// A message with no flags, a fixed date and the true size.
    pub fn new(uid: u32, body: impl Into<Vec<u8>>) -> Message {
        Message {
            uid,
            flags: Vec::new(),
            internal_date: "01-Jan-2024 10:00:00 +0000".into(),
            body: body.into(),
            announced_size: None,
        }
    }

    /// The RFC822.SIZE the server announces.
    pub fn size(&self) -> u64 {
        self.announced_size.unwrap_or(self.body.len() as u64)
    }
}

/// One folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// The name's bytes exactly as the server sends them (modified UTF-7, or anything).
    pub name: Vec<u8>,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT; kept above every message's UID.
    pub uidnext: u32,
    /// Whether LSUB lists it.
    pub subscribed: bool,
    /// LIST attributes beyond the child ones the server works out (`\Noselect`, special-use
    /// `\Sent`, `\All`…). A `\Noselect` folder cannot be selected, examined or asked STATUS.
    pub attributes: Vec<String>,
    /// Whether the server has fixed this folder's UIDVALIDITY: a folder holding messages always
    /// has; an empty one gets it from its first SELECT or APPEND. Only
    /// [`super::Quirks::lazy_uidvalidity`] asks.
    pub uid_state: bool,
    /// Messages in ascending UID order.
    pub messages: Vec<Message>,
}

impl Folder {
    /// An empty subscribed folder with UIDVALIDITY 1700000000.
    pub fn new(name: impl Into<Vec<u8>>) -> Folder {
        Folder {
            name: name.into(),
            uidvalidity: 1_700_000_000,
            uidnext: 1,
            subscribed: true,
            attributes: Vec::new(),
            uid_state: false,
            messages: Vec::new(),
        }
    }

    /// Adds a LIST attribute (builder style): `"\\Noselect"`, `"\\Sent"`…
    pub fn attribute(mut self, attribute: &str) -> Folder {
        self.attributes.push(attribute.to_owned());
        self
    }

    /// Sets whether LSUB lists it (builder style).
    pub fn subscribed(mut self, subscribed: bool) -> Folder {
        self.subscribed = subscribed;
        self
    }

    /// Whether LIST marks it `\Noselect`.
    pub fn is_noselect(&self) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
    }

    /// Whether the server holds a fixed UIDVALIDITY for it (see [`Folder::uid_state`]).
    pub fn has_uid_state(&self) -> bool {
        self.uid_state || !self.messages.is_empty()
    }

    /// Adds a message with the next UID; returns the folder (builder style).
    pub fn with(mut self, body: impl Into<Vec<u8>>) -> Folder {
        self.push(body.into());
        self
    }

    /// Adds a message with the next UID and returns that UID.
    pub fn push(&mut self, body: Vec<u8>) -> u32 {
        let uid = self.uidnext;
        self.messages.push(Message::new(uid, body));
        self.uidnext = self.uidnext.saturating_add(1);
        uid
    }

    /// Adds `message` as it is (its UID chosen by the test), keeping UID order and UIDNEXT.
    pub fn insert(&mut self, message: Message) {
        self.uidnext = self.uidnext.max(message.uid.saturating_add(1));
        let at = self.messages.partition_point(|m| m.uid < message.uid);
        self.messages.insert(at, message);
    }

    /// The highest UID, 0 when empty.
    pub fn max_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid)
    }

    /// Whether `name` (as a client sent it) names this folder: INBOX case-insensitively
    /// (RFC 3501 §5.1), every other name byte for byte.
    pub fn is_named(&self, name: &[u8]) -> bool {
        if self.name.eq_ignore_ascii_case(b"INBOX") {
            name.eq_ignore_ascii_case(b"INBOX")
        } else {
            self.name == name
        }
    }
}

/// A whole account: credentials, hierarchy delimiter and folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Hierarchy delimiter.
    pub delimiter: char,
    /// Folders in LIST order.
    pub folders: Vec<Folder>,
}

impl Account {
    /// An account `alice` / `secret` with delimiter `/` and an empty INBOX.
    pub fn new() -> Account {
        Account {
            user: "alice".into(),
            password: "secret".into(),
            delimiter: '/',
            folders: vec![Folder::new("INBOX")],
        }
    }

    /// Adds a folder (builder style).
    pub fn with(mut self, folder: Folder) -> Account {
        self.folders.push(folder);
        self
    }

    /// The folder named `name` as a client sent it.
    pub fn folder(&self, name: &[u8]) -> Option<&Folder> {
        self.folders.iter().find(|f| f.is_named(name))
    }

    /// The folder named `name`, mutable.
    pub fn folder_mut(&mut self, name: &[u8]) -> Option<&mut Folder> {
        self.folders.iter_mut().find(|f| f.is_named(name))
    }

    /// The INBOX, created if a test removed it.
    pub fn inbox(&mut self) -> &mut Folder {
        if self.folder(b"INBOX").is_none() {
            self.folders.insert(0, Folder::new("INBOX"));
        }
        let at = self
            .folders
            .iter()
            .position(|f| f.is_named(b"INBOX"))
            .unwrap_or(0);
        &mut self.folders[at]
    }
}

impl Default for Account {
    fn default() -> Self {
        Account::new()
    }
}
