//! The message keys of an inventory, where the identifying header fields alone do not settle
//! them: messages whose fields the server rendered with none of them, keys that occur more than
//! once, and messages the two servers render differently although they store the same bytes.
//!
//! Servers do not agree on how `BODY.PEEK[HEADER.FIELDS (...)]` renders an odd message: a
//! message of one header line and no blank line is, for one server, a header holding that
//! field and, for another, a message with no header at all. A key must not depend on that, or a
//! rerun without the state directory copies such a message again. So a message whose rendering
//! names no identifying field is keyed from its whole content by the same rules (the fields of
//! its own header section when it has any, else a digest of all of it), and, as a last check,
//! messages left unmatched on both sides with equal sizes are compared by content.
//!
//! Every body is fetched one message per command under the process's byte budget; how many a
//! folder pair may fetch for the content check is bounded by [`MAX_CONTENT_CANDIDATES`]. This
//! module fetches and keys; it never decides what to copy.

use std::collections::{HashMap, HashSet};

use mailferry_fleet::{CredentialSource, Store};
use mailferry_proto::MessageKey;
use mailferry_proto::report::{Warning, WarningCode};
use mailferry_proto::task::{FolderInventory, InventoryMessage};

use super::Engine;
use crate::imap::{Connection, ImapResult};
use crate::mailbox::key;

/// The most unmatched messages per side that the content check of one target folder fetches:
/// enough for any rendering difference a server has, few enough that a folder whose two sides
/// really differ (new mail on both) costs little.
pub const MAX_CONTENT_CANDIDATES: usize = 256;

/// What was learnt from the bodies fetched for one folder, by UID, so no body is fetched twice.
#[derive(Debug, Default)]
pub struct Fetched {
    /// [`key::body_digest`] of each message fetched.
    body: HashMap<u32, [u8; 16]>,
    /// [`key::fallback_key`] (all of the message's content) of each message fetched.
    whole: HashMap<u32, MessageKey>,
}

impl Fetched {
    fn record(&mut self, uid: u32, full: &[u8]) {
        self.body.insert(uid, key::body_digest(full));
        self.whole.insert(uid, key::fallback_key(full));
    }
}

/// Fetches the whole of one message of the folder `conn` has selected; `None` when it was
/// expunged meanwhile.
async fn fetch_whole<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    conn: &mut Connection,
    m: &InventoryMessage,
) -> ImapResult<Option<bytes::Bytes>> {
    let _permit = engine.budget.acquire(m.size).await;
    conn.expect_message(m.size);
    let items = conn
        .uid_fetch_all(&m.uid.to_string(), "UID BODY.PEEK[]")
        .await?;
    Ok(items
        .into_iter()
        .find(|f| f.uid == m.uid)
        .and_then(|f| f.body))
}

/// Keys the messages whose header-fields rendering named no identifying field from their whole
/// content: the header key of their own header section when it has identifying fields (what a
/// server rendering them would have given), else [`key::fallback_key`]. Their subject for
/// reports is taken from there too.
pub async fn key_from_content<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    conn: &mut Connection,
    folder: &mut FolderInventory,
    fetched: &mut Fetched,
) -> ImapResult<()> {
    let needs: Vec<usize> = indices(folder, |m| m.header_key.is_none());
    if needs.is_empty() {
        return Ok(());
    }
    conn.examine(&folder.raw).await?;
    for i in needs {
        let Some(m) = folder.messages.get_mut(i) else {
            continue;
        };
        // Expunged meanwhile: the copy reports it if it is gone.
        let Some(full) = fetch_whole(engine, conn, m).await? else {
            continue;
        };
        fetched.record(m.uid, &full);
        m.header_key = key::header_key(&full);
        m.key = m.header_key.unwrap_or_else(|| key::fallback_key(&full));
        if m.subject.is_empty() && m.header_key.is_some() {
            m.subject = key::subject(&full);
        }
    }
    Ok(())
}

/// Header keys that occur more than once on either side.
pub fn ambiguous_keys(
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

/// Refines the key of every message whose header key is ambiguous by a digest of its body,
/// fetched unless [`key_from_content`] already did.
pub async fn refine_ambiguous<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    conn: &mut Connection,
    folder: &mut FolderInventory,
    ambiguous: &HashSet<MessageKey>,
    fetched: &mut Fetched,
) -> ImapResult<()> {
    let needs: Vec<usize> = indices(folder, |m| {
        m.header_key.is_some_and(|h| ambiguous.contains(&h))
    });
    let mut examined = false;
    for i in needs {
        let Some(m) = folder.messages.get_mut(i) else {
            continue;
        };
        let Some(h) = m.header_key else {
            continue;
        };
        if !fetched.body.contains_key(&m.uid) {
            if !examined {
                conn.examine(&folder.raw).await?;
                examined = true;
            }
            let Some(full) = fetch_whole(engine, conn, m).await? else {
                continue;
            };
            fetched.record(m.uid, &full);
        }
        if let Some(digest) = fetched.body.get(&m.uid) {
            m.key = key::refine(h, *digest);
        }
    }
    Ok(())
}

/// One side of a folder pair for the content check: its folders and what was fetched of each.
pub struct Side<'a> {
    /// The connection, authenticated.
    pub conn: &'a mut Connection,
    /// The folders (several sources may feed one target).
    pub folders: Vec<&'a mut FolderInventory>,
    /// What was fetched of each folder, in the same order.
    pub fetched: Vec<&'a mut Fetched>,
}

/// The last check: source and target messages whose keys found no partner on the other side
/// but whose sizes are equal are compared by their whole content; a target message with the
/// same content as a source message takes its key, so the copy is recognised. Returns a warning
/// naming how many were recognised this way, when any were.
pub async fn match_by_content<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    source: Side<'_>,
    target: Side<'_>,
    target_name: &str,
) -> ImapResult<Option<Warning>> {
    let Side {
        conn: src_conn,
        folders: mut sources,
        fetched: mut src_fetched,
    } = source;
    let Side {
        conn: dst_conn,
        folders: mut targets,
        fetched: mut dst_fetched,
    } = target;
    let keys_of = |folders: &[&mut FolderInventory]| -> HashSet<MessageKey> {
        folders
            .iter()
            .flat_map(|f| f.messages.iter().map(|m| m.key))
            .collect()
    };
    let (src_keys, dst_keys) = (keys_of(&sources), keys_of(&targets));
    let dst_sizes: HashSet<u64> = unmatched(&targets, &src_keys, None)
        .iter()
        .map(|&(f, i)| targets[f].messages[i].size)
        .collect();
    // Most often nothing is left unmatched on the target (a first run, a rerun that owes
    // nothing), and nothing is fetched.
    let src_cands = unmatched(&sources, &dst_keys, Some(&dst_sizes));
    if src_cands.is_empty() {
        return Ok(None);
    }
    let src_sizes: HashSet<u64> = src_cands
        .iter()
        .map(|&(f, i)| sources[f].messages[i].size)
        .collect();
    let dst_cands = unmatched(&targets, &src_keys, Some(&src_sizes));
    let (r1, r2) = tokio::join!(
        fetch_wholes(engine, src_conn, &mut sources, &mut src_fetched, &src_cands),
        fetch_wholes(engine, dst_conn, &mut targets, &mut dst_fetched, &dst_cands),
    );
    r1?;
    r2?;
    // Target candidates by (size, content); each recognises at most one source message.
    let mut by_content: HashMap<(u64, MessageKey), Vec<(usize, usize)>> = HashMap::new();
    for &(f, i) in &dst_cands {
        let m = &targets[f].messages[i];
        if let Some(whole) = dst_fetched[f].whole.get(&m.uid) {
            by_content.entry((m.size, *whole)).or_default().push((f, i));
        }
    }
    let mut recognised = 0u32;
    for &(f, i) in &src_cands {
        let m = &sources[f].messages[i];
        let Some(whole) = src_fetched[f].whole.get(&m.uid) else {
            continue;
        };
        if let Some((tf, ti)) = by_content.get_mut(&(m.size, *whole)).and_then(|v| v.pop()) {
            targets[tf].messages[ti].key = m.key;
            recognised += 1;
        }
    }
    Ok((recognised > 0).then(|| Warning {
        code: WarningCode::HeadersRenderedDifferently,
        folder: Some(target_name.to_owned()),
        message: if recognised == 1 {
            format!("1 message in {target_name:?} already on the target was recognised by its content: the two servers render its identifying header fields differently")
        } else {
            format!("{recognised} messages in {target_name:?} already on the target were recognised by their content: the two servers render their identifying header fields differently")
        },
    }))
}

/// Positions (folder, message) of messages whose key is not in `partner_keys`, limited to the
/// sizes in `sizes` when given, at most [`MAX_CONTENT_CANDIDATES`].
fn unmatched(
    folders: &[&mut FolderInventory],
    partner_keys: &HashSet<MessageKey>,
    sizes: Option<&HashSet<u64>>,
) -> Vec<(usize, usize)> {
    folders
        .iter()
        .enumerate()
        .flat_map(|(f, folder)| {
            folder
                .messages
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    !partner_keys.contains(&m.key) && sizes.is_none_or(|s| s.contains(&m.size))
                })
                .map(move |(i, _)| (f, i))
        })
        .take(MAX_CONTENT_CANDIDATES)
        .collect()
}

/// Fetches the messages at `positions` not fetched yet, folder by folder.
async fn fetch_wholes<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    conn: &mut Connection,
    folders: &mut [&mut FolderInventory],
    fetched: &mut [&mut Fetched],
    positions: &[(usize, usize)],
) -> ImapResult<()> {
    for (f, folder) in folders.iter_mut().enumerate() {
        let Some(seen) = fetched.get_mut(f) else {
            continue;
        };
        let wanted: Vec<usize> = positions
            .iter()
            .filter(|&&(pf, i)| pf == f && !seen.whole.contains_key(&folder.messages[i].uid))
            .map(|&(_, i)| i)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        conn.examine(&folder.raw).await?;
        for i in wanted {
            let Some(m) = folder.messages.get(i) else {
                continue;
            };
            if let Some(full) = fetch_whole(engine, conn, m).await? {
                seen.record(m.uid, &full);
            }
        }
    }
    Ok(())
}

fn indices(folder: &FolderInventory, want: impl Fn(&InventoryMessage) -> bool) -> Vec<usize> {
    folder
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| want(m))
        .map(|(i, _)| i)
        .collect()
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

    #[test]
    fn only_unmatched_messages_of_wanted_sizes_are_candidates() {
        let mut a = folder(vec![msg(1, 1), msg(2, 2), msg(3, 3)]);
        a.messages[2].size = 7;
        let mut b = folder(vec![msg(1, 4)]);
        let partner: HashSet<MessageKey> = [MessageKey([1; 16])].into();
        let folders = vec![&mut a, &mut b];
        assert_eq!(
            unmatched(&folders, &partner, None),
            vec![(0, 1), (0, 2), (1, 0)]
        );
        assert_eq!(
            unmatched(&folders, &partner, Some(&[7].into())),
            vec![(0, 2)]
        );
        assert!(unmatched(&folders, &partner, Some(&HashSet::new())).is_empty());
    }

    #[test]
    fn candidates_are_bounded() {
        let mut big = folder((1..=1000).map(|u| msg(u, 9)).collect());
        let folders = vec![&mut big];
        assert_eq!(
            unmatched(&folders, &HashSet::new(), None).len(),
            MAX_CONTENT_CANDIDATES
        );
    }
}
