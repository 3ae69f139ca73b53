//! Planning, pure: one target folder's inventory → its chain of copy batches.
//!
//! Dedup is a multiset difference per target folder (DESIGN.md, "Dedup"): a key present 3 times
//! in the sources and once in the target owes 2 copies, whatever the messages look like; genuine
//! duplicates stay duplicates. Each owed copy gets its rank among the copies of its key, across
//! every batch of the chain, which is what makes a retried batch idempotent.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mailferry_proto::MessageKey;
use mailferry_proto::task::{
    BatchItem, CopyBatchTask, InventoryMessage, InventoryResult, SourceFolderRef,
};

/// Options that decide what is copied and how batches are cut.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Leave out messages larger than this.
    pub max_size: Option<u64>,
    /// Leave out messages flagged `\Deleted`.
    pub skip_deleted: bool,
    /// Leave out messages whose INTERNALDATE is before this instant (`--since`, inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Leave out messages whose INTERNALDATE is at or after this instant (`--before`, exclusive).
    pub before: Option<DateTime<Utc>>,
    /// Messages per batch.
    pub batch_messages: usize,
    /// Bytes per batch.
    pub batch_bytes: u64,
    /// Bytes each target account may receive per UTC day (`None`: no limit). Not part of the
    /// fingerprint: it decides when mail is copied, not what.
    pub daily_upload_budget: Option<u64>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_size: None,
            skip_deleted: false,
            since: None,
            before: None,
            batch_messages: 500,
            batch_bytes: 64 << 20,
            daily_upload_budget: None,
        }
    }
}

impl PlanOptions {
    /// A fingerprint of the options that decide exclusion (a change voids folder watermarks).
    pub fn fingerprint(&self) -> String {
        format!(
            "max_size={:?};skip_deleted={};since={:?};before={:?}",
            self.max_size, self.skip_deleted, self.since, self.before
        )
    }

    /// Whether the options leave this message out. A message whose INTERNALDATE the server did
    /// not report is never left out by a date: losing mail silently is worse than copying it.
    pub fn excludes(&self, m: &InventoryMessage) -> bool {
        let deleted = m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"));
        let date = m.internal_date.map(|d| d.with_timezone(&Utc));
        (self.skip_deleted && deleted)
            || self.max_size.is_some_and(|max| m.size > max)
            || date.zip(self.since).is_some_and(|(d, since)| d < since)
            || date.zip(self.before).is_some_and(|(d, before)| d >= before)
    }
}

/// One source folder's figures in a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFigures {
    /// Messages in the folder.
    pub messages: u64,
    /// Already on the target.
    pub already_present: u64,
    /// Left out by options.
    pub excluded: u64,
    /// To copy.
    pub planned: u64,
    /// Bytes to copy.
    pub planned_bytes: u64,
}

/// The plan of one target folder.
#[derive(Debug, Clone)]
pub struct ChainPlan {
    /// Batches in chain order.
    pub batches: Vec<CopyBatchTask>,
    /// Figures per source folder (raw name), in chain order.
    pub figures: Vec<(SourceFolderRef, SourceFigures)>,
}

/// Plans the chain of one target folder.
pub fn plan_chain(
    inv: &InventoryResult,
    sources: &[SourceFolderRef],
    generation: u64,
    opts: &PlanOptions,
) -> ChainPlan {
    let mut on_target: HashMap<MessageKey, u32> = HashMap::new();
    if let Some(t) = &inv.target_inventory {
        for m in &t.messages {
            *on_target.entry(m.key).or_default() += 1;
        }
    }
    let (dst_uidvalidity, dst_uidnext) = match &inv.target_inventory {
        Some(t) => (Some(t.uidvalidity), t.uidnext.max(1)),
        None => (None, 1),
    };
    let mut seen: HashMap<MessageKey, u32> = HashMap::new();
    let mut batches = Vec::new();
    let mut figures = Vec::new();
    for (src_ref, folder) in sources.iter().zip(&inv.sources) {
        let mut fig = SourceFigures {
            messages: folder.messages.len() as u64,
            ..Default::default()
        };
        let mut items: Vec<BatchItem> = Vec::new();
        let mut bytes = 0u64;
        let flush =
            |items: &mut Vec<BatchItem>, bytes: &mut u64, batches: &mut Vec<CopyBatchTask>| {
                if items.is_empty() {
                    return;
                }
                batches.push(CopyBatchTask {
                    generation,
                    target: inv.target.clone(),
                    target_raw: inv.target_raw.clone(),
                    dst_uidvalidity,
                    dst_uidnext_at_plan: dst_uidnext,
                    source: src_ref.clone(),
                    src_uidvalidity: folder.uidvalidity,
                    items: std::mem::take(items),
                    seq: u32::try_from(batches.len()).unwrap_or(u32::MAX),
                    daily_upload_budget: opts.daily_upload_budget,
                });
                *bytes = 0;
            };
        for m in &folder.messages {
            if opts.excludes(m) {
                fig.excluded += 1;
                continue;
            }
            let n = seen.entry(m.key).or_default();
            *n += 1;
            let present = on_target.get(&m.key).copied().unwrap_or(0);
            if *n <= present {
                fig.already_present += 1;
                continue;
            }
            fig.planned += 1;
            // Sizes are the server's word: saturate, never wrap (issue 10).
            fig.planned_bytes = fig.planned_bytes.saturating_add(m.size);
            if !items.is_empty()
                && (items.len() >= opts.batch_messages
                    || bytes.saturating_add(m.size) > opts.batch_bytes)
            {
                flush(&mut items, &mut bytes, &mut batches);
            }
            bytes = bytes.saturating_add(m.size);
            items.push(BatchItem {
                uid: m.uid,
                size: m.size,
                key: m.key,
                header_key: m.header_key,
                rank: *n - present,
                subject: m.subject.clone(),
            });
        }
        flush(&mut items, &mut bytes, &mut batches);
        figures.push((src_ref.clone(), fig));
    }
    ChainPlan { batches, figures }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailferry_proto::FolderPath;
    use mailferry_proto::task::{FolderInventory, InventoryMessage};

    fn m(uid: u32, k: u8, size: u64, flags: &[&str]) -> InventoryMessage {
        InventoryMessage {
            uid,
            size,
            key: MessageKey([k; 16]),
            header_key: Some(MessageKey([k; 16])),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            internal_date: None,
            subject: format!("s{uid}"),
            modseq: None,
        }
    }

    fn folder(raw: &str, msgs: Vec<InventoryMessage>) -> FolderInventory {
        FolderInventory {
            raw: raw.into(),
            uidvalidity: 7,
            uidnext: 100,
            permanent_flags: vec![],
            messages: msgs,
        }
    }

    fn src(raw: &str) -> SourceFolderRef {
        SourceFolderRef {
            raw: raw.into(),
            path: FolderPath::from_slash(raw),
        }
    }

    fn inv(target: Option<FolderInventory>, sources: Vec<FolderInventory>) -> InventoryResult {
        InventoryResult {
            target: FolderPath::from_slash("Sent"),
            target_raw: "Sent".into(),
            target_inventory: target,
            sources,
            warnings: vec![],
        }
    }

    #[test]
    fn genuine_duplicates_stay_duplicates_and_present_ones_are_skipped() {
        // Key 1 three times in the source, once on the target: owes 2, ranks 1 and 2.
        let i = inv(
            Some(folder("Sent", vec![m(5, 1, 10, &[])])),
            vec![folder(
                "a",
                vec![
                    m(1, 1, 10, &[]),
                    m(2, 1, 10, &[]),
                    m(3, 1, 10, &[]),
                    m(4, 2, 10, &[]),
                ],
            )],
        );
        let p = plan_chain(&i, &[src("a")], 1, &PlanOptions::default());
        let items: Vec<(u32, u32)> = p
            .batches
            .iter()
            .flat_map(|b| b.items.iter().map(|i| (i.uid, i.rank)))
            .collect();
        assert_eq!(items, vec![(2, 1), (3, 2), (4, 1)]);
        assert_eq!(p.figures[0].1.already_present, 1);
        assert_eq!(p.batches[0].dst_uidnext_at_plan, 100);
        assert_eq!(p.batches[0].dst_uidvalidity, Some(7));
    }

    #[test]
    fn ranks_run_across_source_folders_of_one_target() {
        let i = inv(
            None,
            vec![
                folder("Sent", vec![m(1, 1, 1, &[])]),
                folder("Sent Items", vec![m(9, 1, 1, &[])]),
            ],
        );
        let p = plan_chain(
            &i,
            &[src("Sent"), src("Sent Items")],
            1,
            &PlanOptions::default(),
        );
        assert_eq!(p.batches.len(), 2, "one batch per source folder");
        assert_eq!(p.batches[1].items[0].rank, 2);
        assert_eq!(p.batches[0].dst_uidnext_at_plan, 1);
        assert_eq!(p.batches[0].dst_uidvalidity, None);
    }

    #[test]
    fn options_exclude_and_batches_are_cut_by_count_and_bytes() {
        let msgs = (1..=10)
            .map(|u| {
                m(
                    u,
                    u as u8,
                    if u == 3 { 1000 } else { 10 },
                    if u == 4 { &["\\Deleted"] } else { &[] },
                )
            })
            .collect();
        let i = inv(None, vec![folder("a", msgs)]);
        let opts = PlanOptions {
            max_size: Some(100),
            skip_deleted: true,
            batch_messages: 3,
            batch_bytes: 25,
            ..PlanOptions::default()
        };
        let p = plan_chain(&i, &[src("a")], 1, &opts);
        assert_eq!(p.figures[0].1.excluded, 2);
        assert_eq!(p.figures[0].1.planned, 8);
        let sizes: Vec<usize> = p.batches.iter().map(|b| b.items.len()).collect();
        assert_eq!(sizes, vec![2, 2, 2, 2], "25 bytes fit two 10-byte messages");
        assert!(
            p.batches
                .iter()
                .enumerate()
                .all(|(i, b)| b.seq as usize == i)
        );
        let uids: Vec<u32> = p
            .batches
            .iter()
            .flat_map(|b| b.items.iter().map(|i| i.uid))
            .collect();
        assert!(
            uids.windows(2).all(|w| w[0] < w[1]),
            "ascending source UID order"
        );
    }

    #[test]
    fn dates_filter_since_inclusive_and_before_exclusive() {
        use chrono::TimeZone;
        let at = |y: i32| {
            chrono::FixedOffset::east_opt(3600)
                .unwrap()
                .with_ymd_and_hms(y, 1, 1, 1, 0, 0)
                .unwrap()
        };
        let mut msgs: Vec<InventoryMessage> = (2014..=2021)
            .map(|y| {
                let mut x = m(y as u32, y as u8, 10, &[]);
                x.internal_date = Some(at(y));
                x
            })
            .collect();
        // No INTERNALDATE reported: never left out by a date.
        msgs.push(m(9999, 99, 10, &[]));
        let i = inv(None, vec![folder("a", msgs)]);
        let utc = |y: i32| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap();
        let opts = PlanOptions {
            since: Some(utc(2015)),
            before: Some(utc(2020)),
            ..PlanOptions::default()
        };
        let p = plan_chain(&i, &[src("a")], 1, &opts);
        let uids: Vec<u32> = p
            .batches
            .iter()
            .flat_map(|b| b.items.iter().map(|i| i.uid))
            .collect();
        // 01-Jan 01:00 +0100 is midnight UTC: since is inclusive, before exclusive.
        assert_eq!(uids, vec![2015, 2016, 2017, 2018, 2019, 9999]);
        assert_eq!(p.figures[0].1.excluded, 3);
        assert_ne!(opts.fingerprint(), PlanOptions::default().fingerprint());
    }
}
