//! Sync passes, pure: which copies already on the target must change to follow their source
//! (DESIGN.md, "Incremental sync").
//!
//! A source message is matched to its copy by the store's entries (recorded from APPENDUID) when
//! the entry still points at a target message with the same key; otherwise, for flag updates only,
//! by key and rank: the n-th source message with key k (in chain order) and the n-th unmatched
//! target message with key k (in UID order). A copy is expunged only through an entry: a target
//! message found by key alone could be the target user's own mail.

use std::collections::{HashMap, HashSet, VecDeque};

use mailferry_fleet::CopyEntry;
use mailferry_proto::MessageKey;
use mailferry_proto::task::{
    FlagUpdate, InventoryMessage, InventoryResult, UpdateTargetTask, same_flags,
};

use crate::plan::PlanOptions;

/// What a sync pass changes on copies already on the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Compare the flags of every copy, not only of source messages whose MODSEQ moved (the only
    /// way to see flag changes on a source without CONDSTORE; costs a full inventory per folder).
    pub full_flag_sync: bool,
    /// Expunge copies whose source message was deleted (UID EXPUNGE of recorded copies only).
    pub delete_propagation: bool,
}

/// Which source messages may have changed their flags since the last pass.
pub struct FlagScope<'a> {
    /// Per source folder (raw name): the HIGHESTMODSEQ at the start of the last pass whose flag
    /// updates all succeeded. A folder without one is not compared (unless `full`).
    pub baseline: &'a HashMap<String, u64>,
    /// Compare every copy.
    pub full: bool,
}

impl FlagScope<'_> {
    fn changed(&self, folder: &str, m: &InventoryMessage) -> bool {
        self.full
            || self
                .baseline
                .get(folder)
                .is_some_and(|b| m.modseq.is_some_and(|ms| ms > *b))
    }

    /// Whether any source message of the inventory needs its copy's flags compared.
    pub fn any(&self, inv: &InventoryResult) -> bool {
        inv.sources
            .iter()
            .any(|f| f.messages.iter().any(|m| self.changed(&f.raw, m)))
    }
}

/// The updates of one target folder, or `None` when nothing must change. `entries` are the
/// store's copies into this folder (at its current UIDVALIDITY); `expunge_allowed` is false when
/// deletions are not propagated.
pub fn reconcile(
    inv: &InventoryResult,
    entries: &[CopyEntry],
    flags: &FlagScope<'_>,
    expunge_allowed: bool,
    plan: &PlanOptions,
) -> Option<UpdateTargetTask> {
    let target = inv.target_inventory.as_ref()?;
    let by_uid: HashMap<u32, &InventoryMessage> =
        target.messages.iter().map(|m| (m.uid, m)).collect();
    // Entries that still point at their copy, by source message.
    let mut mapped: HashMap<(&str, u32), u32> = HashMap::new();
    let mut used: HashSet<u32> = HashSet::new();
    let current_uv: HashMap<&str, u32> = inv
        .sources
        .iter()
        .map(|f| (f.raw.as_str(), f.uidvalidity))
        .collect();
    for e in entries {
        let live = current_uv.get(e.src_folder.as_str()) == Some(&e.src_uidvalidity)
            && by_uid.get(&e.dst_uid).is_some_and(|t| t.key == e.key);
        if live && used.insert(e.dst_uid) {
            mapped.insert((e.src_folder.as_str(), e.src_uid), e.dst_uid);
        }
    }

    let mut updates = Vec::new();
    let mut free = unmatched_by_key(target, &used);
    for f in &inv.sources {
        for m in &f.messages {
            if plan.excludes(m) {
                continue;
            }
            // Every source message takes its copy (so ranks stay right for duplicates), even
            // those whose flags are not compared.
            let dst_uid = match mapped.get(&(f.raw.as_str(), m.uid)) {
                Some(u) => Some(*u),
                None => free.get_mut(&m.key).and_then(VecDeque::pop_front),
            };
            if !flags.changed(&f.raw, m) {
                continue;
            }
            let Some(t) = dst_uid.and_then(|u| by_uid.get(&u)) else {
                // Not on the target (yet): the copy plan takes care of it.
                continue;
            };
            if !same_flags(&m.flags, &t.flags) {
                updates.push(FlagUpdate {
                    dst_uid: t.uid,
                    current: t.flags.clone(),
                    wanted: m.flags.clone(),
                });
            }
        }
    }

    let mut expunge = Vec::new();
    if expunge_allowed {
        let present: HashMap<&str, HashSet<u32>> = inv
            .sources
            .iter()
            .map(|f| (f.raw.as_str(), f.messages.iter().map(|m| m.uid).collect()))
            .collect();
        for e in entries {
            let gone = present
                .get(e.src_folder.as_str())
                .is_some_and(|uids| !uids.contains(&e.src_uid));
            if gone
                && current_uv.get(e.src_folder.as_str()) == Some(&e.src_uidvalidity)
                && by_uid.get(&e.dst_uid).is_some_and(|t| t.key == e.key)
            {
                expunge.push(e.dst_uid);
            }
        }
        expunge.sort_unstable();
        expunge.dedup();
    }

    (!updates.is_empty() || !expunge.is_empty()).then(|| UpdateTargetTask {
        target: inv.target.clone(),
        target_raw: inv.target_raw.clone(),
        dst_uidvalidity: target.uidvalidity,
        flags: updates,
        expunge,
    })
}

/// Target messages no entry claims, by key, in UID order (a queue per key).
fn unmatched_by_key(
    target: &mailferry_proto::task::FolderInventory,
    used: &HashSet<u32>,
) -> HashMap<MessageKey, VecDeque<u32>> {
    let mut out: HashMap<MessageKey, VecDeque<u32>> = HashMap::new();
    for m in &target.messages {
        if !used.contains(&m.uid) {
            out.entry(m.key).or_default().push_back(m.uid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use mailferry_proto::FolderPath;
    use mailferry_proto::task::FolderInventory;

    use super::*;

    fn m(uid: u32, k: u8, flags: &[&str], modseq: u64) -> InventoryMessage {
        InventoryMessage {
            uid,
            size: 10,
            key: MessageKey([k; 16]),
            header_key: Some(MessageKey([k; 16])),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            internal_date: None,
            subject: String::new(),
            modseq: Some(modseq),
        }
    }

    fn folder(raw: &str, uv: u32, messages: Vec<InventoryMessage>) -> FolderInventory {
        FolderInventory {
            raw: raw.into(),
            uidvalidity: uv,
            uidnext: messages.last().map_or(1, |m| m.uid.saturating_add(1)),
            permanent_flags: vec![],
            messages,
        }
    }

    fn inv(sources: Vec<FolderInventory>, target: FolderInventory) -> InventoryResult {
        InventoryResult {
            target: FolderPath::from_slash("INBOX"),
            target_raw: "INBOX".into(),
            target_inventory: Some(target),
            sources,
            warnings: vec![],
        }
    }

    fn entry(src_uid: u32, dst_uid: u32, k: u8) -> CopyEntry {
        CopyEntry {
            src_folder: "INBOX".into(),
            src_uidvalidity: 7,
            src_uid,
            dst_uid,
            key: MessageKey([k; 16]),
        }
    }

    #[test]
    fn only_messages_whose_modseq_moved_get_their_copys_flags() {
        let i = inv(
            vec![folder(
                "INBOX",
                7,
                vec![m(1, 1, &["\\Seen"], 5), m(2, 2, &["\\Flagged"], 20)],
            )],
            // Both copies differ from the source; only message 2 changed since the baseline.
            folder("INBOX", 3, vec![m(10, 1, &[], 1), m(11, 2, &[], 1)]),
        );
        let baseline = HashMap::from([("INBOX".to_string(), 10u64)]);
        let scope = FlagScope {
            baseline: &baseline,
            full: false,
        };
        let u = reconcile(&i, &[], &scope, false, &PlanOptions::default()).unwrap();
        assert_eq!(u.flags.len(), 1);
        assert_eq!(u.flags[0].dst_uid, 11);
        assert_eq!(u.flags[0].wanted, vec!["\\Flagged".to_string()]);
        assert_eq!(u.dst_uidvalidity, 3);
        // A full flag sync compares every copy; no baseline compares none.
        let full = FlagScope {
            baseline: &HashMap::new(),
            full: true,
        };
        assert_eq!(
            reconcile(&i, &[], &full, false, &PlanOptions::default())
                .unwrap()
                .flags
                .len(),
            2
        );
        let none = FlagScope {
            baseline: &HashMap::new(),
            full: false,
        };
        assert!(reconcile(&i, &[], &none, false, &PlanOptions::default()).is_none());
    }

    #[test]
    fn entries_win_over_rank_for_genuine_duplicates() {
        // Two identical source messages; the entry says source 2 landed at target 21.
        let i = inv(
            vec![folder(
                "INBOX",
                7,
                vec![m(1, 9, &[], 1), m(2, 9, &["\\Seen"], 50)],
            )],
            folder("INBOX", 3, vec![m(20, 9, &[], 1), m(21, 9, &[], 1)]),
        );
        let entries = [entry(1, 20, 9), entry(2, 21, 9)];
        let baseline = HashMap::from([("INBOX".to_string(), 10u64)]);
        let scope = FlagScope {
            baseline: &baseline,
            full: false,
        };
        let u = reconcile(&i, &entries, &scope, false, &PlanOptions::default()).unwrap();
        assert_eq!(u.flags.iter().map(|f| f.dst_uid).collect::<Vec<_>>(), [21]);
        // Without entries, rank pairs source 2 with the second target copy too.
        let u = reconcile(&i, &[], &scope, false, &PlanOptions::default()).unwrap();
        assert_eq!(u.flags.iter().map(|f| f.dst_uid).collect::<Vec<_>>(), [21]);
    }

    #[test]
    fn expunge_only_recorded_copies_of_messages_gone_from_the_source() {
        let i = inv(
            vec![folder("INBOX", 7, vec![m(1, 1, &[], 1)])],
            // 10: copy of source 1 (kept); 11: copy of source 2 (deleted on the source);
            // 12: the target user's own message (no entry); 13: an entry whose copy holds
            // another message now (never expunged).
            folder(
                "INBOX",
                3,
                vec![
                    m(10, 1, &[], 1),
                    m(11, 2, &[], 1),
                    m(12, 3, &[], 1),
                    m(13, 5, &[], 1),
                ],
            ),
        );
        let entries = [entry(1, 10, 1), entry(2, 11, 2), entry(4, 13, 4)];
        let none = FlagScope {
            baseline: &HashMap::new(),
            full: false,
        };
        let u = reconcile(&i, &entries, &none, true, &PlanOptions::default()).unwrap();
        assert_eq!(u.expunge, vec![11]);
        assert!(u.flags.is_empty());
        // Not asked: nothing.
        assert!(reconcile(&i, &entries, &none, false, &PlanOptions::default()).is_none());
        // Entries of an older source UIDVALIDITY never expunge anything.
        let mut reset = i.clone();
        reset.sources[0].uidvalidity = 8;
        assert!(reconcile(&reset, &entries, &none, true, &PlanOptions::default()).is_none());
    }

    #[test]
    fn flags_compare_without_case_order_or_recent() {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(same_flags(
            &s(&["\\Seen", "$A"]),
            &s(&["$a", "\\SEEN", "\\Recent"])
        ));
        assert!(!same_flags(&s(&["\\Seen"]), &s(&[])));
    }
}
