//! Inventory task: for one target folder and the source folders mapped to it, every message's UID,
//! size, flags, INTERNALDATE and message key, on both sides.
//!
//! Keys come from the identifying headers alone, except where a header key occurs more than once
//! on either side: those messages (on both sides) are refined by a digest of their body, fetched
//! only for them, so two different messages sharing headers are never confused (DESIGN.md,
//! "Message key"). Messages rendered with none of the identifying headers are keyed from their
//! whole content, and messages left unmatched are compared by content (`keys`).

use mailferry_fleet::{CredentialSource, Store};
use mailferry_proto::MessageKey;
use mailferry_proto::task::{FolderInventory, InventoryMessage, InventoryResult, InventoryTask};

use super::Engine;
use super::keys::{self, Fetched};
use crate::imap::{Connection, ImapResult};
use crate::mailbox::key::{self, KEY_HEADER_FIELDS};
use crate::mailbox::name::encode_path;

/// Runs an Inventory task.
pub async fn run<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &InventoryTask,
) -> ImapResult<InventoryResult> {
    let target_raw = task
        .target_raw
        .clone()
        .unwrap_or_else(|| encode_path(&task.target, task.dst_delimiter, &task.dst_prefix));
    // Both sessions at once: their slots are taken together (open.rs).
    let (mut src_conn, mut dst_conn) = engine.open_both(pair).await?;
    let (src, dst) = tokio::join!(
        async {
            let conn = &mut src_conn;
            let mut folders = Vec::new();
            for s in &task.sources {
                folders.push(inventory_folder(conn, &s.raw, true).await?);
            }
            Ok::<_, crate::imap::ImapError>(folders)
        },
        async {
            let conn = &mut dst_conn;
            let inv = match &task.target_raw {
                Some(raw) => Some(inventory_folder(conn, raw, false).await?),
                None => None,
            };
            Ok::<_, crate::imap::ImapError>(inv)
        }
    );
    let mut sources = src?;
    let mut target = dst?;

    // Keys the identifying header fields do not settle (keys.rs): first messages rendered
    // without them, then ambiguous keys, then the content check of what is left unmatched.
    let mut src_fetched: Vec<Fetched> = sources.iter().map(|_| Fetched::default()).collect();
    let mut dst_fetched = Fetched::default();
    let (r1, r2) = tokio::join!(
        async {
            for (f, seen) in sources.iter_mut().zip(src_fetched.iter_mut()) {
                keys::key_from_content(engine, &mut src_conn, f, seen).await?;
            }
            Ok::<_, crate::imap::ImapError>(())
        },
        async {
            if let Some(t) = target.as_mut() {
                keys::key_from_content(engine, &mut dst_conn, t, &mut dst_fetched).await?;
            }
            Ok::<_, crate::imap::ImapError>(())
        }
    );
    r1?;
    r2?;
    let ambiguous = keys::ambiguous_keys(&sources, target.as_ref());
    let (r1, r2) = tokio::join!(
        async {
            for (f, seen) in sources.iter_mut().zip(src_fetched.iter_mut()) {
                keys::refine_ambiguous(engine, &mut src_conn, f, &ambiguous, seen).await?;
            }
            Ok::<_, crate::imap::ImapError>(())
        },
        async {
            if let Some(t) = target.as_mut() {
                keys::refine_ambiguous(engine, &mut dst_conn, t, &ambiguous, &mut dst_fetched)
                    .await?;
            }
            Ok::<_, crate::imap::ImapError>(())
        }
    );
    r1?;
    r2?;
    let mut warnings = Vec::new();
    if let Some(t) = target.as_mut() {
        let source = keys::Side {
            conn: &mut src_conn,
            folders: sources.iter_mut().collect(),
            fetched: src_fetched.iter_mut().collect(),
        };
        let dest = keys::Side {
            conn: &mut dst_conn,
            folders: vec![t],
            fetched: vec![&mut dst_fetched],
        };
        warnings
            .extend(keys::match_by_content(engine, source, dest, &task.target.to_string()).await?);
    }
    engine.release(pair, src_conn);
    engine.release(pair, dst_conn);
    Ok(InventoryResult {
        target: task.target.clone(),
        target_raw,
        target_inventory: target,
        sources,
        warnings,
    })
}

/// Inventories one folder: EXAMINE, then one streamed UID FETCH of sizes, flags, dates and the
/// identifying headers.
pub async fn inventory_folder(
    conn: &mut Connection,
    raw: &str,
    with_subject: bool,
) -> ImapResult<FolderInventory> {
    let sel = conn.examine(raw).await?;
    let mut inv = FolderInventory {
        raw: raw.to_owned(),
        uidvalidity: sel.uidvalidity,
        uidnext: sel.uidnext,
        permanent_flags: sel.permanent_flags,
        // EXISTS comes from the server: a hint, never an allocation size to trust.
        messages: Vec::with_capacity((sel.exists as usize).min(65_536)),
    };
    if sel.exists == 0 {
        return Ok(inv);
    }
    // MODSEQ (RFC 7162) lets a sync pass tell which source messages changed their flags.
    let modseq = if with_subject && conn.has_capability("CONDSTORE") {
        " MODSEQ"
    } else {
        ""
    };
    let items = format!(
        "UID RFC822.SIZE FLAGS INTERNALDATE{modseq} BODY.PEEK[HEADER.FIELDS ({KEY_HEADER_FIELDS})]"
    );
    let tag = conn.start_uid_fetch("1:*", &items).await?;
    while let Some(item) = conn.next_fetch(&tag).await? {
        let header = item.header.unwrap_or_default();
        let header_key = key::header_key(&header);
        inv.messages.push(InventoryMessage {
            uid: item.uid,
            size: item.size.unwrap_or(0),
            // Without identifying headers the key is set from the whole message by refinement.
            key: header_key.unwrap_or(MessageKey([0; 16])),
            header_key,
            flags: item.flags,
            internal_date: item.internal_date,
            subject: if with_subject {
                key::subject(&header)
            } else {
                String::new()
            },
            modseq: item.modseq,
        });
    }
    inv.messages.sort_by_key(|m| m.uid);
    if let Some(last) = inv.messages.last()
        && inv.uidnext <= last.uid
    {
        // A UID of 4294967295 leaves no next UID: UIDNEXT stays at the maximum.
        inv.uidnext = last.uid.saturating_add(1);
    }
    Ok(inv)
}
