//! UpdateTarget task: brings copies already on the target in line with their source message
//! in a sync pass (DESIGN.md, "Incremental sync"). Flags: `UID STORE … FLAGS.SILENT` with the
//! source's flags as far as the folder keeps them. Deletions: `UID STORE +FLAGS.SILENT (\Deleted)`
//! and `UID EXPUNGE` of the copies the plan names, which are only copies recorded from
//! APPENDUID; without UIDPLUS nothing is expunged (a plain EXPUNGE would also remove messages the
//! target user marked deleted) and the result says so.
//!
//! Both operations are idempotent, so a redelivered task repeats them harmlessly, and UIDs are
//! never reused within a UIDVALIDITY, so an expunge can only remove the copy it names.

use std::collections::BTreeMap;

use mailferry_fleet::{CredentialSource, EntryScope, Store};
use mailferry_proto::ErrorKind;
use mailferry_proto::report::{Warning, WarningCode};
use mailferry_proto::task::{Side, UpdateResult, UpdateTargetTask, same_flags};

use super::Engine;
use super::pipeline::{is_sendable_flag, uid_set};
use crate::imap::{Connection, ImapResult};

/// UIDs per STORE or EXPUNGE command, so no command line grows without bound.
const UIDS_PER_COMMAND: usize = 500;

/// Runs an UpdateTarget task.
pub async fn run<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &UpdateTargetTask,
) -> ImapResult<UpdateResult> {
    let mut conn = engine.open(pair, Side::Target).await?;
    let res = update(engine, pair, &mut conn, task).await;
    if res.is_ok() {
        engine.release(pair, conn);
    }
    res
}

async fn update<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    conn: &mut Connection,
    task: &UpdateTargetTask,
) -> ImapResult<UpdateResult> {
    let mut out = UpdateResult::default();
    let folder = task.target.display_slash();
    let sel = conn.select(&task.target_raw).await?;
    if sel.uidvalidity != task.dst_uidvalidity {
        // The folder was recreated since the plan: its UIDs name other messages now. The next
        // pass inventories it again.
        return Err(conn.err(
            ErrorKind::Transient,
            format!(
                "the target folder {folder:?} changed its UIDVALIDITY since it was planned; it will be inventoried again"
            ),
        ));
    }
    let keeps = Keeps::new(&sel.permanent_flags, &sel.flags);
    // Group copies by the flag list they must get: one command per distinct list.
    let mut by_flags: BTreeMap<Vec<String>, Vec<u32>> = BTreeMap::new();
    let mut not_kept: BTreeMap<String, ()> = BTreeMap::new();
    for u in &task.flags {
        let mut wanted = Vec::new();
        for f in &u.wanted {
            if !is_sendable_flag(f) {
                continue;
            }
            if keeps.keeps(f) {
                wanted.push(f.clone());
            } else {
                not_kept.insert(f.clone(), ());
            }
        }
        // What the copy has that the folder could not have been given stays out of the
        // comparison; what it has that the source no longer has is removed.
        let current: Vec<String> = u
            .current
            .iter()
            .filter(|f| keeps.keeps(f))
            .cloned()
            .collect();
        if same_flags(&wanted, &current) {
            continue;
        }
        wanted.sort_by_key(|f| f.to_ascii_lowercase());
        by_flags.entry(wanted).or_default().push(u.dst_uid);
    }
    for (flags, mut uids) in by_flags {
        uids.sort_unstable();
        for chunk in uids.chunks(UIDS_PER_COMMAND) {
            conn.uid_store_flags(&uid_set(chunk.iter().copied()), &flags)
                .await?;
            out.flags_set += chunk.len() as u64;
        }
    }
    for flag in not_kept.into_keys() {
        out.warnings.push(Warning {
            code: WarningCode::FlagNotKept,
            folder: Some(folder.clone()),
            message: format!(
                "the target folder {folder:?} does not keep the flag {flag}; copies there were updated without it"
            ),
        });
    }
    if !task.expunge.is_empty() {
        if !conn.has_capability("UIDPLUS") {
            out.warnings.push(Warning {
                code: WarningCode::DeletionsNotPropagated,
                folder: Some(folder.clone()),
                message: format!(
                    "{} messages deleted on the source were kept in {folder:?}: the target server lacks UIDPLUS, and without it removing them could also remove mail the user marked deleted there",
                    task.expunge.len()
                ),
            });
        } else {
            let mut uids = task.expunge.clone();
            uids.sort_unstable();
            uids.dedup();
            let scope = EntryScope {
                pair: pair.to_owned(),
                dst_folder: task.target_raw.clone(),
                dst_uidvalidity: task.dst_uidvalidity,
            };
            for chunk in uids.chunks(UIDS_PER_COMMAND) {
                conn.uid_expunge(&uid_set(chunk.iter().copied())).await?;
                out.expunged += chunk.len() as u64;
                // The copies are gone: their entries would only point at nothing.
                engine
                    .store
                    .forget_done(&scope, chunk.to_vec())
                    .await
                    .map_err(|e| {
                        conn.err(
                            ErrorKind::Transient,
                            format!("the state store failed after an expunge: {e}"),
                        )
                    })?;
            }
        }
    }
    Ok(out)
}

/// Which flags a selected folder keeps (PERMANENTFLAGS; `\*`: any keyword). A server that sends
/// no PERMANENTFLAGS keeps what FLAGS lists (RFC 3501 §7.1).
struct Keeps {
    listed: Vec<String>,
    any_keyword: bool,
}

impl Keeps {
    fn new(permanent: &[String], flags: &[String]) -> Keeps {
        let src = if permanent.is_empty() {
            flags
        } else {
            permanent
        };
        Keeps {
            listed: src.iter().map(|f| f.to_ascii_lowercase()).collect(),
            any_keyword: src.iter().any(|f| f == "\\*"),
        }
    }

    fn keeps(&self, flag: &str) -> bool {
        let lower = flag.to_ascii_lowercase();
        self.listed.contains(&lower) || (self.any_keyword && !flag.starts_with('\\'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_compare_without_case_or_order() {
        assert!(same_flags(
            &v(&["\\Seen", "$Work"]),
            &v(&["$work", "\\SEEN"])
        ));
        assert!(!same_flags(&v(&["\\Seen"]), &v(&["\\Seen", "\\Flagged"])));
        assert!(same_flags(&v(&[]), &v(&[])));
    }

    #[test]
    fn permanent_flags_decide_what_is_kept() {
        let k = Keeps::new(&v(&["\\Seen", "\\Flagged", "\\*"]), &v(&[]));
        assert!(k.keeps("\\seen") && k.keeps("$Label") && !k.keeps("\\Draft"));
        let k = Keeps::new(&v(&["\\Seen"]), &v(&["\\Seen", "\\Draft"]));
        assert!(!k.keeps("$Label") && !k.keeps("\\Draft"));
        // No PERMANENTFLAGS at all: FLAGS decides.
        let k = Keeps::new(&v(&[]), &v(&["\\Seen", "\\Draft"]));
        assert!(k.keeps("\\Draft") && !k.keeps("\\Flagged"));
    }
}
