//! List task: log into both sides and report capabilities, folders (personal namespace only),
//! subscriptions, STATUS, quota and APPENDLIMIT, and, for `check`, per-folder sizes. The login
//! probe at create and the health check close their sessions afterwards (`close_sessions`).

use std::collections::HashSet;

use mailferry_fleet::{CredentialSource, Store};
use mailferry_proto::task::{
    AccountListing, FolderListing, FolderSizes, FolderUnavailable, ListResult, ListTask,
};
use mailferry_proto::{ErrorKind, FolderRole};

use super::Engine;
use crate::imap::ops::FolderTree;
use crate::imap::{Connection, ImapResult};
use crate::mailbox::name::{decode_name, lossy_name};

/// Runs a List task.
pub async fn run<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &ListTask,
) -> ImapResult<ListResult> {
    // Both sessions at once: their slots are taken together (open.rs).
    let (mut src, mut dst) = engine.open_both(pair).await?;
    let listed = list_both(task, engine.config.max_folders, &mut src, &mut dst).await;
    for session in [src, dst] {
        if listed.is_err() {
            // Its state is unknown: dropped, which gives its slots back.
            drop(session);
        } else if task.close_sessions {
            engine.close(session).await;
        } else {
            engine.release(pair, session);
        }
    }
    listed
}

/// Lists both accounts on their sessions.
async fn list_both(
    task: &ListTask,
    max_folders: usize,
    src: &mut Connection,
    dst: &mut Connection,
) -> ImapResult<ListResult> {
    if !task.with_sizes {
        let (source, target) = tokio::join!(
            list_side(src, false, None, max_folders),
            list_side(dst, false, None, max_folders)
        );
        return Ok(ListResult {
            source: source?,
            target: target?,
        });
    }
    // With sizes (the health check), the target first: its APPENDLIMIT decides which source
    // messages are reported too large.
    let target = list_side(dst, true, None, max_folders).await?;
    let larger_than = match (task.report_larger_than, target.append_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let source = list_side(src, true, larger_than, max_folders).await?;
    Ok(ListResult { source, target })
}

async fn list_side(
    conn: &mut Connection,
    with_sizes: bool,
    larger_than: Option<u64>,
    max_folders: usize,
) -> ImapResult<AccountListing> {
    conn.deselect().await?;
    list_account(conn, with_sizes, larger_than, max_folders).await
}

/// Lists one account; more than `max_folders` folders is a configuration error (the limit is
/// raised on purpose, never silently).
pub async fn list_account(
    conn: &mut Connection,
    with_sizes: bool,
    larger_than: Option<u64>,
    max_folders: usize,
) -> ImapResult<AccountListing> {
    let FolderTree {
        namespaces: ns,
        entries,
        subscribed,
    } = conn.folder_tree().await?;
    if entries.len() > max_folders {
        return Err(conn.err(
            ErrorKind::Config,
            format!(
                "the account lists {} folders, more than the {max_folders} allowed; if it really has that many, raise the limit with --max-folders (MAILFERRY_MAX_FOLDERS)",
                entries.len()
            ),
        ));
    }
    // RFC 3501 §6.3.9: LSUB marks `\Noselect` a name that is not subscribed itself but has
    // subscribed children (Gmail's `[Gmail]`); it is no subscription of its own.
    let subscribed: HashSet<String> = subscribed
        .into_iter()
        .filter(|e| {
            !e.attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
        })
        .map(|e| e.name)
        .collect();
    let (prefix, ns_delim) = ns.personal.clone().unwrap_or_default();
    let delimiter = ns_delim.or_else(|| entries.iter().find_map(|e| e.delimiter));
    let mut folders = Vec::new();
    let mut others = Vec::new();
    for e in entries {
        // RFC 2342: a name under a more specific prefix of another namespace (or that prefix's
        // own root) belongs to that namespace, even when the personal prefix is empty.
        let in_other = ns.others.iter().any(|p| {
            !p.is_empty()
                && p.len() > prefix.len()
                && (e.name.starts_with(p.as_str())
                    || e.delimiter.is_some_and(|d| format!("{}{d}", e.name) == *p))
        });
        // The target's name comes from the decoded form; bytes that are not text become U+FFFD
        // and the name counts as undecodable (a warning). `raw` keeps every byte for the source.
        let decoded = decode_name(&lossy_name(&e.name), e.delimiter.or(delimiter), &prefix);
        if in_other || !decoded.in_personal_namespace {
            // Named for people as every other folder is: decoded, `/` between levels (not
            // `Virtual.All Mail` with the server's delimiter).
            others.push(decoded.path.display_slash());
            continue;
        }
        let selectable = !e.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        });
        let role = e
            .attributes
            .iter()
            .find_map(|a| FolderRole::from_attribute(a));
        folders.push(FolderListing {
            subscribed: subscribed.contains(&e.name),
            raw: e.name,
            path: decoded.path,
            decode_error: decoded.decode_error,
            delimiter: e.delimiter,
            attributes: e.attributes,
            role,
            selectable,
            status: None,
            sizes: None,
            unavailable: None,
        });
    }
    // One pipelined round of STATUS commands: an unchanged mailbox costs little more than its
    // logins (issue "Keep in sync until cutover").
    let raws: Vec<&str> = folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| f.raw.as_str())
        .collect();
    let statuses = conn.statuses(&raws).await?;
    for (f, st) in folders.iter_mut().filter(|f| f.selectable).zip(statuses) {
        match st {
            Ok(st) => f.status = Some(st),
            Err(refused) => {
                tracing::warn!(folder = %f.raw, "{}", refused.message);
                f.unavailable = Some(FolderUnavailable {
                    vanished: refused.vanished,
                    reason: refused.message,
                });
            }
        }
    }
    if with_sizes {
        for f in folders
            .iter_mut()
            .filter(|f| f.selectable && f.unavailable.is_none())
        {
            f.sizes = Some(folder_sizes(conn, &f.raw, larger_than).await?);
        }
    }
    let quota = conn.inbox_quota().await?;
    let append_limit = conn
        .capability_value("APPENDLIMIT")
        .and_then(|v| v.parse().ok());
    Ok(AccountListing {
        capabilities: conn.capabilities().to_vec(),
        personal_prefix: prefix,
        delimiter,
        folders,
        other_namespace_folders: others,
        quota,
        append_limit,
    })
}

async fn folder_sizes(
    conn: &mut Connection,
    raw: &str,
    larger_than: Option<u64>,
) -> ImapResult<FolderSizes> {
    let sel = conn.examine(raw).await?;
    let mut sizes = FolderSizes {
        bytes: 0,
        largest: 0,
        oversized: Vec::new(),
    };
    if sel.exists == 0 {
        return Ok(sizes);
    }
    let tag = conn.start_uid_fetch("1:*", "UID RFC822.SIZE").await?;
    while let Some(item) = conn.next_fetch(&tag).await? {
        let size = item.size.unwrap_or(0);
        // Server-given: saturate rather than wrap (issue 10).
        sizes.bytes = sizes.bytes.saturating_add(size);
        sizes.largest = sizes.largest.max(size);
        if larger_than.is_some_and(|l| size > l) {
            sizes.oversized.push((item.uid, size));
        }
    }
    Ok(sizes)
}
