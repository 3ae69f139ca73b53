//! Inventory task: for one target folder and the source folders mapped to it, every message's UID,
//! size, flags, INTERNALDATE and message key, on both sides.
//!
//! Keys come from the identifying headers alone, except where a header key occurs more than once
//! on either side: those messages (on both sides) are refined by a digest of their body, fetched
//! only for them, so two different messages sharing headers are never confused (DESIGN.md,
//! "Message key"). Messages with none of the identifying headers are keyed by their whole content.

use std::collections::{HashMap, HashSet};

use mailferry_fleet::{CredentialSource, Store};
use mailferry_proto::MessageKey;
use mailferry_proto::task::{
    FolderInventory, InventoryMessage, InventoryResult, InventoryTask, Side,
};

use super::Engine;
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
    let (src, dst) = tokio::join!(
        async {
            let mut conn = engine.open(pair, Side::Source).await?;
            let mut folders = Vec::new();
            for s in &task.sources {
                folders.push(inventory_folder(&mut conn, &s.raw, true).await?);
            }
            Ok::<_, crate::imap::ImapError>((conn, folders))
        },
        async {
            let mut conn = engine.open(pair, Side::Target).await?;
            let inv = match &task.target_raw {
                Some(raw) => Some(inventory_folder(&mut conn, raw, false).await?),
                None => None,
            };
            Ok::<_, crate::imap::ImapError>((conn, inv))
        }
    );
    let (mut src_conn, mut sources) = src?;
    let (mut dst_conn, mut target) = dst?;

    let ambiguous = ambiguous_keys(&sources, target.as_ref());
    let (r1, r2) = tokio::join!(
        async {
            for f in sources.iter_mut() {
                refine_folder(engine, &mut src_conn, f, &ambiguous).await?;
            }
            Ok::<_, crate::imap::ImapError>(())
        },
        async {
            if let Some(t) = target.as_mut() {
                refine_folder(engine, &mut dst_conn, t, &ambiguous).await?;
            }
            Ok::<_, crate::imap::ImapError>(())
        }
    );
    r1?;
    r2?;
    engine.release(pair, src_conn);
    engine.release(pair, dst_conn);
    Ok(InventoryResult {
        target: task.target.clone(),
        target_raw,
        target_inventory: target,
        sources,
    })
}

/// Header keys that occur more than once on either side.
fn ambiguous_keys(
    sources: &[FolderInventory],
    target: Option<&FolderInventory>,
) -> HashSet<MessageKey> {
    let mut out = HashSet::new();
    let mut count = |msgs: &mut dyn Iterator<Item = &InventoryMessage>| {
        let mut seen: HashMap<MessageKey, u32> = HashMap::new();
        for m in msgs {
            if let Some(h) = m.header_key {
                let c = seen.entry(h).or_default();
                *c += 1;
                if *c > 1 {
                    out.insert(h);
                }
            }
        }
    };
    count(&mut sources.iter().flat_map(|f| f.messages.iter()));
    if let Some(t) = target {
        count(&mut t.messages.iter());
    }
    out
}

/// Fetches the full content of messages whose key needs it (no identifying headers, or an
/// ambiguous header key) and sets their key. One message per command, under the byte budget.
async fn refine_folder<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    conn: &mut Connection,
    folder: &mut FolderInventory,
    ambiguous: &HashSet<MessageKey>,
) -> ImapResult<()> {
    let needs: Vec<usize> = folder
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.header_key.is_none_or(|h| ambiguous.contains(&h)))
        .map(|(i, _)| i)
        .collect();
    if needs.is_empty() {
        return Ok(());
    }
    conn.examine(&folder.raw).await?;
    for i in needs {
        let Some(m) = folder.messages.get_mut(i) else {
            continue;
        };
        let _permit = engine.budget.acquire(m.size).await;
        conn.expect_message(m.size);
        let items = conn
            .uid_fetch_all(&m.uid.to_string(), "UID BODY.PEEK[]")
            .await?;
        let Some(body) = items
            .into_iter()
            .find(|f| f.uid == m.uid)
            .and_then(|f| f.body)
        else {
            // Expunged meanwhile: keep the header key; the copy will report it if it is gone.
            continue;
        };
        m.key = match m.header_key {
            Some(h) => key::refine(h, key::body_digest(&body)),
            None => key::fallback_key(&body),
        };
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(uid: u32, k: u8) -> InventoryMessage {
        InventoryMessage {
            uid,
            size: 1,
            key: MessageKey([k; 16]),
            header_key: Some(MessageKey([k; 16])),
            flags: vec![],
            internal_date: None,
            subject: String::new(),
            modseq: None,
        }
    }

    fn folder(msgs: Vec<InventoryMessage>) -> FolderInventory {
        FolderInventory {
            raw: "x".into(),
            uidvalidity: 1,
            uidnext: 1,
            permanent_flags: vec![],
            messages: msgs,
        }
    }

    #[test]
    fn keys_repeated_on_either_side_are_ambiguous() {
        let src = vec![
            folder(vec![msg(1, 1), msg(2, 2)]),
            folder(vec![msg(1, 2), msg(2, 3)]),
        ];
        let dst = folder(vec![msg(1, 3), msg(2, 3), msg(3, 1)]);
        let amb = ambiguous_keys(&src, Some(&dst));
        assert!(
            amb.contains(&MessageKey([2; 16])),
            "twice across two source folders of one target"
        );
        assert!(amb.contains(&MessageKey([3; 16])), "twice on the target");
        assert!(
            !amb.contains(&MessageKey([1; 16])),
            "once per side is not ambiguous"
        );
    }
}
