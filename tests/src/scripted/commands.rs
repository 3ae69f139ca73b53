//! The honest answers of a minimal IMAP4rev1 server (RFC 3501) over an [`Account`]: one function
//! per command family, each returning the complete reply (untagged lines and the tagged
//! completion) as bytes. Overrides and quirks are applied by the caller, not here.

use super::Quirks;
use super::account::{Account, Folder};
use super::fetch;
use super::request::{Request, Token};

/// What a connection knows between commands.
#[derive(Debug, Default)]
pub struct Session {
    /// Logged in.
    pub authenticated: bool,
    /// The name of the selected folder (as the client sent it).
    pub selected: Option<Vec<u8>>,
    /// The selected folder was opened read-only (EXAMINE).
    pub read_only: bool,
}

/// The capabilities a server with `quirks` offers.
pub fn capabilities(quirks: &Quirks) -> String {
    let mut caps = vec![
        "IMAP4rev1",
        "AUTH=PLAIN",
        "NAMESPACE",
        "UNSELECT",
        "ID",
        "ENABLE",
    ];
    if quirks.literal_plus {
        caps.push("LITERAL+");
    }
    if quirks.uidplus {
        caps.push("UIDPLUS");
    }
    if quirks.sasl_ir {
        caps.push("SASL-IR");
    }
    caps.join(" ")
}

/// A name as an IMAP astring: quoted when it can be, a literal otherwise (8-bit, CR, LF, `"`…).
pub fn astring(name: &[u8]) -> Vec<u8> {
    let quotable = name
        .iter()
        .all(|b| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\');
    if quotable {
        let mut out = Vec::with_capacity(name.len() + 2);
        out.push(b'"');
        out.extend_from_slice(name);
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}}}\r\n", name.len()).into_bytes();
        out.extend_from_slice(name);
        out
    }
}

fn tagged(tag: &str, status: &str, text: &str) -> Vec<u8> {
    format!("{tag} {status} {text}\r\n").into_bytes()
}

/// The honest reply to `req`.
pub fn answer(
    req: &Request,
    session: &mut Session,
    account: &mut Account,
    quirks: &Quirks,
) -> Vec<u8> {
    let tag = req.tag.as_str();
    match req.verb.as_str() {
        "CAPABILITY" => {
            let mut out = format!("* CAPABILITY {}\r\n", capabilities(quirks)).into_bytes();
            out.extend(tagged(tag, "OK", "CAPABILITY completed"));
            out
        }
        "NOOP" | "CHECK" => tagged(tag, "OK", "NOOP completed"),
        "ID" => {
            let mut out = b"* ID (\"name\" \"scripted\")\r\n".to_vec();
            out.extend(tagged(tag, "OK", "ID completed"));
            out
        }
        "ENABLE" => {
            let mut out = b"* ENABLED\r\n".to_vec();
            out.extend(tagged(tag, "OK", "ENABLE completed"));
            out
        }
        "LOGOUT" => {
            let mut out = b"* BYE logging out\r\n".to_vec();
            out.extend(tagged(tag, "OK", "LOGOUT completed"));
            out
        }
        "LOGIN" => login(tag, req.arg(0), req.arg(1), session, account),
        "AUTHENTICATE" => authenticate(req, session, account),
        _ if !session.authenticated => tagged(tag, "BAD", "log in first"),
        "NAMESPACE" => {
            let d = account.delimiter;
            let mut out = format!("* NAMESPACE ((\"\" \"{d}\")) NIL NIL\r\n").into_bytes();
            out.extend(tagged(tag, "OK", "NAMESPACE completed"));
            out
        }
        "LIST" | "LSUB" => list(req, account),
        "STATUS" => status(req, account, quirks),
        "SELECT" | "EXAMINE" => select(req, session, account, quirks),
        "UNSELECT" | "CLOSE" => {
            session.selected = None;
            session.read_only = false;
            tagged(tag, "OK", "UNSELECT completed")
        }
        "UID FETCH" => match session.selected.as_deref().and_then(|n| account.folder(n)) {
            Some(folder) => fetch::uid_fetch(req, folder, quirks.header_fields),
            None => tagged(tag, "BAD", "no folder selected"),
        },
        "CREATE" => create(req, account),
        "SUBSCRIBE" => match req.mailbox().and_then(|n| account.folder_mut(n)) {
            Some(f) => {
                f.subscribed = true;
                tagged(tag, "OK", "SUBSCRIBE completed")
            }
            None => tagged(tag, "NO", "[NONEXISTENT] no such folder"),
        },
        "APPEND" => append(req, session, account, quirks),
        _ => tagged(tag, "BAD", "command not supported by the scripted server"),
    }
}

fn login(
    tag: &str,
    user: Option<&[u8]>,
    pass: Option<&[u8]>,
    session: &mut Session,
    account: &Account,
) -> Vec<u8> {
    if user == Some(account.user.as_bytes()) && pass == Some(account.password.as_bytes()) {
        session.authenticated = true;
        tagged(tag, "OK", "Logged in")
    } else {
        tagged(tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed.")
    }
}

/// AUTHENTICATE PLAIN (RFC 4616 message), its response inline (SASL-IR, RFC 4959) or sent after
/// the empty challenge (the connection adds it as the second argument). `*` cancels.
fn authenticate(req: &Request, session: &mut Session, account: &Account) -> Vec<u8> {
    let mech = req.args.first().and_then(Token::text).unwrap_or_default();
    let decoded = req.arg(1).and_then(base64_decode).unwrap_or_default();
    if !mech.eq_ignore_ascii_case("PLAIN") {
        return tagged(&req.tag, "NO", "only PLAIN is offered");
    }
    if req.arg(1) == Some(b"*") {
        return tagged(&req.tag, "BAD", "AUTHENTICATE cancelled");
    }
    // authzid NUL authcid NUL passwd
    let mut parts = decoded.split(|b| *b == 0);
    let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
    login(&req.tag, user, pass, session, account)
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s.iter().filter(|c| **c != b'=') {
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

/// `LIST "" pattern` / `LSUB "" pattern`: `*` lists every folder; another pattern lists the
/// folder of that exact name (mailferry asks nothing else).
fn list(req: &Request, account: &Account) -> Vec<u8> {
    let lsub = req.verb == "LSUB";
    let pattern = req.arg(1).unwrap_or(b"*");
    let mut out = Vec::new();
    let parents = parents(account);
    for f in &account.folders {
        if lsub && !f.subscribed {
            continue;
        }
        if pattern != b"*" && !f.is_named(pattern) {
            continue;
        }
        let attrs = if lsub {
            String::new()
        } else {
            list_attributes(f, &parents)
        };
        out.extend(format!("* {} ({attrs}) \"{}\" ", req.verb, account.delimiter).into_bytes());
        out.extend(astring(&f.name));
        out.extend(b"\r\n");
    }
    out.extend(tagged(&req.tag, "OK", &format!("{} completed", req.verb)));
    out
}

/// Every name that has a folder below it (one pass: an account may hold 100,000 folders).
fn parents(account: &Account) -> std::collections::HashSet<&[u8]> {
    let mut delimiter = [0u8; 4];
    let delimiter = account.delimiter.encode_utf8(&mut delimiter).as_bytes();
    let mut out = std::collections::HashSet::new();
    for f in &account.folders {
        for (i, w) in f.name.windows(delimiter.len()).enumerate() {
            if w == delimiter {
                out.insert(&f.name[..i]);
            }
        }
    }
    out
}

/// `\HasChildren` or `\HasNoChildren` (RFC 3348), then the folder's own attributes.
fn list_attributes(f: &Folder, parents: &std::collections::HashSet<&[u8]>) -> String {
    let children = parents.contains(&f.name[..]);
    let mut attrs = vec![if children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    }];
    attrs.extend(f.attributes.iter().map(String::as_str));
    attrs.join(" ")
}

/// A new UIDVALIDITY each call: what a server keeping no UID state for a folder answers
/// ([`Quirks::lazy_uidvalidity`]).
fn made_up_uidvalidity() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    2_000_000_000u32.saturating_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The UIDVALIDITY STATUS and EXAMINE report for `f`.
fn uidvalidity_of(f: &Folder, quirks: &Quirks) -> u32 {
    if quirks.lazy_uidvalidity && !f.has_uid_state() {
        made_up_uidvalidity()
    } else {
        f.uidvalidity
    }
}

/// Fixes the UIDVALIDITY of a folder without UID state (a SELECT or an APPEND).
fn fix_uid_state(f: &mut Folder, quirks: &Quirks) {
    if quirks.lazy_uidvalidity && !f.has_uid_state() {
        f.uidvalidity = made_up_uidvalidity();
    }
    f.uid_state = true;
}

fn cannot_select(tag: &str) -> Vec<u8> {
    tagged(tag, "NO", "[CANNOT] Mailbox is not selectable")
}

fn no_such(tag: &str) -> Vec<u8> {
    tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist")
}

fn status(req: &Request, account: &Account, quirks: &Quirks) -> Vec<u8> {
    let Some(name) = req.mailbox() else {
        return tagged(&req.tag, "BAD", "STATUS needs a mailbox");
    };
    let Some(f) = account.folder(name) else {
        return no_such(&req.tag);
    };
    if f.is_noselect() {
        return cannot_select(&req.tag);
    }
    let asked: Vec<String> = match req.args.get(1) {
        Some(Token::List(items)) => items
            .iter()
            .filter_map(Token::text)
            .map(|t| t.to_ascii_uppercase())
            .collect(),
        _ => Vec::new(),
    };
    let figures: Vec<String> = asked
        .iter()
        .filter_map(|item| {
            let v = match item.as_str() {
                "MESSAGES" => u64::try_from(f.messages.len()).unwrap_or(u64::MAX),
                "UIDNEXT" => u64::from(f.uidnext),
                "UIDVALIDITY" => u64::from(uidvalidity_of(f, quirks)),
                "UNSEEN" => 0,
                _ => return None,
            };
            Some(format!("{item} {v}"))
        })
        .collect();
    let mut out = b"* STATUS ".to_vec();
    out.extend(astring(&f.name));
    out.extend(format!(" ({})\r\n", figures.join(" ")).into_bytes());
    out.extend(tagged(&req.tag, "OK", "STATUS completed"));
    out
}

fn select(req: &Request, session: &mut Session, account: &mut Account, quirks: &Quirks) -> Vec<u8> {
    // RFC 3501 §6.3.1: a failed SELECT leaves no folder selected.
    session.selected = None;
    session.read_only = false;
    let Some(name) = req.mailbox() else {
        return tagged(&req.tag, "BAD", "SELECT needs a mailbox");
    };
    let Some(f) = account.folder_mut(name) else {
        return no_such(&req.tag);
    };
    if f.is_noselect() {
        return cannot_select(&req.tag);
    }
    let examine = req.verb == "EXAMINE";
    session.selected = Some(name.to_vec());
    session.read_only = examine;
    let uidvalidity = if examine {
        uidvalidity_of(f, quirks)
    } else {
        fix_uid_state(f, quirks);
        f.uidvalidity
    };
    let permanent = if examine {
        ""
    } else {
        "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*"
    };
    let out = format!(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
         * OK [PERMANENTFLAGS ({permanent})] flags\r\n\
         * {} EXISTS\r\n* 0 RECENT\r\n\
         * OK [UIDVALIDITY {}] UIDs valid\r\n\
         * OK [UIDNEXT {}] Predicted next UID\r\n\
         {} OK [{}] {} completed\r\n",
        f.messages.len(),
        uidvalidity,
        f.uidnext,
        req.tag,
        if examine { "READ-ONLY" } else { "READ-WRITE" },
        req.verb,
    );
    out.into_bytes()
}

fn create(req: &Request, account: &mut Account) -> Vec<u8> {
    let Some(name) = req.mailbox() else {
        return tagged(&req.tag, "BAD", "CREATE needs a mailbox");
    };
    if account.folder(name).is_some() {
        return tagged(&req.tag, "NO", "[ALREADYEXISTS] Mailbox already exists");
    }
    let mut folder = Folder::new(name.to_vec());
    folder.subscribed = false;
    folder.uidvalidity = 1_800_000_000u32.saturating_add(account.folders.len() as u32);
    account.folders.push(folder);
    tagged(&req.tag, "OK", "CREATE completed")
}

/// `APPEND mailbox [(flags)] ["date"] literal` (RFC 3501 §6.3.11), one message per command.
fn append(req: &Request, session: &Session, account: &mut Account, quirks: &Quirks) -> Vec<u8> {
    let Some(name) = req.mailbox() else {
        return tagged(&req.tag, "BAD", "APPEND needs a mailbox");
    };
    let into_examined = session.read_only
        && session
            .selected
            .as_deref()
            .and_then(|s| account.folder(s))
            .is_some_and(|f| f.is_named(name));
    if quirks.refuse_append_to_examined && into_examined {
        return tagged(&req.tag, "NO", "Current box is selected READ-ONLY.");
    }
    let mut flags = Vec::new();
    let mut strings = Vec::new();
    for t in &req.args[1..] {
        match t {
            Token::List(l) => flags = l.iter().filter_map(Token::text).collect(),
            Token::Str(s) => strings.push(s),
            Token::Atom(_) => {}
        }
    }
    // The message is the last string (the literal); a string before it is the date.
    let body = strings.pop().cloned();
    let date = strings
        .pop()
        .map(|d| String::from_utf8_lossy(d).into_owned());
    let Some(body) = body else {
        return tagged(&req.tag, "BAD", "APPEND needs a message");
    };
    let Some(folder) = account.folder_mut(name) else {
        return tagged(&req.tag, "NO", "[TRYCREATE] Mailbox doesn't exist");
    };
    fix_uid_state(folder, quirks);
    let uid = folder.push(body);
    if let Some(m) = folder.messages.last_mut() {
        m.flags = flags;
        if let Some(d) = date {
            m.internal_date = d;
        }
    }
    match quirks.uidplus {
        true => tagged(
            &req.tag,
            "OK",
            &format!("[APPENDUID {} {uid}] APPEND completed", folder.uidvalidity),
        ),
        false => tagged(&req.tag, "OK", "APPEND completed"),
    }
}
