//! The health check: what a migration would do and what would stop it, before anything is copied.

use chrono::Utc;
use mailferry_proto::report::{
    AccountReport, CheckReport, FolderFigures, Problem, Warning, WarningCode,
};
use mailferry_proto::task::{AccountListing, ListResult};

use crate::folders::{FolderRules, map_folders};

fn account_report(account: &str, l: &AccountListing) -> AccountReport {
    let folders: Vec<FolderFigures> = l
        .folders
        .iter()
        .map(|f| FolderFigures {
            name: f.path.display_slash(),
            role: f.role,
            selectable: f.selectable,
            subscribed: f.subscribed,
            messages: f.status.map(|s| s.messages).unwrap_or(0),
            bytes: f.sizes.as_ref().map(|s| s.bytes).unwrap_or(0),
            largest: f.sizes.as_ref().map(|s| s.largest).unwrap_or(0),
        })
        .collect();
    AccountReport {
        account: account.to_owned(),
        capabilities: l.capabilities.clone(),
        personal_prefix: l.personal_prefix.clone(),
        delimiter: l.delimiter.map(String::from),
        messages: saturating_sum(folders.iter().map(|f| u64::from(f.messages))),
        bytes: saturating_sum(folders.iter().map(|f| f.bytes)),
        folders,
        quota: l.quota,
        append_limit: l.append_limit,
    }
}

/// The sum of server-given figures: a server that reports sizes near `u64::MAX` must not wrap
/// the total to a small number that passes the quota check (issue 10).
fn saturating_sum(figures: impl Iterator<Item = u64>) -> u64 {
    figures.fold(0, u64::saturating_add)
}

fn size_text(bytes: u64) -> String {
    mailferry_proto::report::bytes_text(bytes)
}

/// Builds the report from a List result taken with sizes.
pub fn report(
    source: &str,
    target: &str,
    list: &ListResult,
    rules: &FolderRules,
    max_size: Option<u64>,
) -> CheckReport {
    let plan = map_folders(list, rules);
    let mut problems = Vec::new();
    let mut warnings = plan.warnings.clone();
    let included: Vec<&str> = plan
        .folders
        .iter()
        .flat_map(|f| f.sources.iter().map(|s| s.folder.raw.as_str()))
        .collect();
    let src_folders = || {
        list.source
            .folders
            .iter()
            .filter(|f| included.contains(&f.raw.as_str()))
    };
    let bytes_needed: u64 = src_folders()
        .filter_map(|f| f.sizes.as_ref())
        .map(|s| {
            let left_out = saturating_sum(
                s.oversized
                    .iter()
                    .filter(|(_, sz)| max_size.is_some_and(|m| *sz > m))
                    .map(|(_, sz)| *sz),
            );
            s.bytes.saturating_sub(left_out)
        })
        .fold(0, u64::saturating_add);
    let oversized: Vec<(String, u32, u64)> = src_folders()
        .flat_map(|f| {
            f.sizes.iter().flat_map(move |s| {
                s.oversized
                    .iter()
                    .map(move |(u, sz)| (f.path.display_slash(), *u, *sz))
            })
        })
        .collect();
    let quota_free = list
        .target
        .quota
        .and_then(|q| Some(q.storage_limit?.saturating_sub(q.storage_used.unwrap_or(0))));
    if let Some(free) = quota_free
        && bytes_needed > free
    {
        problems.push(Problem {
            blocking: true,
            message: format!(
                "the target has {} of quota free but the migration needs up to {}: raise the target's quota by {} or leave folders out with --exclude",
                size_text(free),
                size_text(bytes_needed),
                size_text(bytes_needed.saturating_sub(free))
            ),
        });
    }
    if let Some(q) = list.target.quota
        && let (Some(limit), Some(used)) = (q.messages_limit, q.messages_used)
    {
        let count = saturating_sum(
            src_folders()
                .filter_map(|f| f.status)
                .map(|s| u64::from(s.messages)),
        );
        if used.saturating_add(count) > limit {
            problems.push(Problem {
                blocking: true,
                message: format!("the target allows {limit} messages and holds {used}; the migration brings up to {count}: raise the message quota"),
            });
        }
    }
    let limit = list.target.append_limit;
    let too_big: Vec<_> = oversized
        .iter()
        .filter(|(_, _, sz)| limit.is_some_and(|l| *sz > l) && max_size.is_none_or(|m| *sz <= m))
        .collect();
    if let Some(l) = limit
        && !too_big.is_empty()
    {
        let list: Vec<String> = too_big
            .iter()
            .take(5)
            .map(|(f, u, sz)| format!("{f} UID {u} ({})", size_text(*sz)))
            .collect();
        problems.push(Problem {
            blocking: true,
            message: format!(
                "{} message(s) are larger than the target accepts ({}), e.g. {}: raise the target's limit, or leave them out with --max-size {l}",
                too_big.len(),
                size_text(l),
                list.join(", ")
            ),
        });
    }
    let target_folders_with_mail: Vec<String> = plan
        .folders
        .iter()
        .filter_map(|pf| {
            let raw = pf.target_raw.as_ref()?;
            let f = list.target.folders.iter().find(|f| &f.raw == raw)?;
            (f.status?.messages > 0 && !pf.sources.is_empty()).then(|| pf.target.display_slash())
        })
        .collect();
    if !target_folders_with_mail.is_empty() {
        warnings.push(Warning {
            code: WarningCode::TargetNotEmpty,
            folder: None,
            message: format!(
                "{} target folder(s) already hold mail ({}); messages already there are recognised and not copied again",
                target_folders_with_mail.len(),
                target_folders_with_mail.join(", ")
            ),
        });
    }
    if !list.target.has_capability("UIDPLUS") {
        problems.push(Problem {
            blocking: false,
            message: "the target does not offer UIDPLUS: copies cannot be tracked by UID, so reruns re-read target headers".into(),
        });
    }
    let unknown = unknowns(list, &plan, bytes_needed);
    CheckReport {
        source: account_report(source, &list.source),
        target: account_report(target, &list.target),
        mapping: plan.mappings,
        skipped_folders: plan.skipped,
        bytes_needed,
        quota_free,
        oversized_messages: too_big.len() as u64,
        target_folders_with_mail,
        problems,
        warnings,
        unknown,
        finished_at: Utc::now(),
    }
}

/// What the target does not tell, so the check cannot: its message size limit without
/// APPENDLIMIT (RFC 7889), its storage quota without QUOTA (RFC 9208) or a STORAGE limit. Each
/// says what the migration brings that the unknown limit could refuse.
fn unknowns(
    list: &ListResult,
    plan: &crate::folders::FolderPlan,
    bytes_needed: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let target = &list.target;
    if target.append_limit.is_none() {
        let included: Vec<&str> = plan
            .folders
            .iter()
            .flat_map(|f| f.sources.iter().map(|s| s.folder.raw.as_str()))
            .collect();
        let largest = list
            .source
            .folders
            .iter()
            .filter(|f| included.contains(&f.raw.as_str()))
            .filter_map(|f| Some((f.sizes.as_ref()?.largest, f.path.display_slash())))
            .max_by_key(|(size, _)| *size);
        let brings = match largest {
            Some((size, folder)) if size > 0 => format!(
                "; the largest source message is {} (in \"{folder}\"): a target that refuses it fails it as too_large",
                size_text(size)
            ),
            _ => String::new(),
        };
        out.push(format!(
            "the target's message size limit: it does not advertise APPENDLIMIT{brings}"
        ));
    }
    let quota_known = target.quota.is_some_and(|q| q.storage_limit.is_some());
    if !quota_known {
        let why = if target.has_capability("QUOTA") {
            "it reports no storage limit for the INBOX's quota root"
        } else {
            "it does not offer QUOTA"
        };
        out.push(format!(
            "the target's storage quota: {why}; the migration brings up to {}",
            size_text(bytes_needed)
        ));
    }
    out
}

/// Runs a health check of one pair through the queue: one List task with sizes.
pub async fn run<Q: mailferry_fleet::TaskQueue>(
    queue: &Q,
    migration_id: &str,
    pair: &crate::migration::PairSpec,
    rules: &FolderRules,
    max_size: Option<u64>,
) -> Result<CheckReport, mailferry_proto::task::TaskFailure> {
    use mailferry_proto::task::{
        ENVELOPE_VERSION, ListTask, OutcomeBody, TaskBody, TaskEnvelope, TaskFailure,
    };
    let task = TaskEnvelope {
        version: ENVELOPE_VERSION,
        task_id: format!("{migration_id}-check"),
        migration_id: migration_id.to_owned(),
        pair_id: pair.pair_id.clone(),
        attempt: 0,
        body: TaskBody::List(ListTask {
            with_sizes: true,
            report_larger_than: max_size,
            close_sessions: true,
        }),
    };
    queue.publish_task(task).await;
    while let Some(o) = queue.next_outcome().await {
        if o.pair_id != pair.pair_id {
            continue;
        }
        return match o.body {
            OutcomeBody::List(list) => {
                Ok(report(&pair.source, &pair.target, &list, rules, max_size))
            }
            OutcomeBody::Failed(f) => Err(f),
            _ => Err(TaskFailure {
                kind: mailferry_proto::ErrorKind::Protocol,
                side: None,
                message: "unexpected outcome".into(),
                retry_after_ms: None,
                login: false,
                waiting: None,
            }),
        };
    }
    Err(TaskFailure {
        kind: mailferry_proto::ErrorKind::Transient,
        side: None,
        message: "the check was interrupted".into(),
        retry_after_ms: None,
        login: false,
        waiting: None,
    })
}
