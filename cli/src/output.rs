//! Text rendering of reports and summaries for people. `--json` prints the proto types instead.

use std::fmt::Write;

use mailferry_proto::report::{CheckReport, PairStatus, PairSummary};

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// `1 message`, `2 messages`: a count with its noun in the right number.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The health check as text.
pub fn check_text(r: &CheckReport) -> String {
    let mut o = String::new();
    for (label, a) in [("Source", &r.source), ("Target", &r.target)] {
        let _ = writeln!(o, "{label}: {}", a.account);
        let _ = writeln!(o, "  capabilities: {}", a.capabilities.join(" "));
        let _ = writeln!(
            o,
            "  namespace prefix {:?}, delimiter {:?}; {}, {}, {}",
            a.personal_prefix,
            a.delimiter.clone().unwrap_or_default(),
            count(a.folders.len() as u64, "folder", "folders"),
            count(a.messages, "message", "messages"),
            mb(a.bytes)
        );
        if let Some(q) = a.quota {
            let _ = writeln!(
                o,
                "  quota: {} of {} used",
                q.storage_used.map(mb).unwrap_or_else(|| "?".into()),
                q.storage_limit
                    .map(mb)
                    .unwrap_or_else(|| "unlimited".into())
            );
        }
        if let Some(l) = a.append_limit {
            let _ = writeln!(o, "  largest message accepted (APPENDLIMIT): {}", mb(l));
        }
        let _ = writeln!(
            o,
            "  {:<40} {:>9} {:>12} {:>12}",
            "folder", "messages", "bytes", "largest"
        );
        for f in &a.folders {
            let mut name = f.name.clone();
            if !f.selectable {
                name.push_str(" (no mail)");
            }
            let _ = writeln!(
                o,
                "  {:<40} {:>9} {:>12} {:>12}",
                name, f.messages, f.bytes, f.largest
            );
        }
    }
    let _ = writeln!(o, "Folder mapping:");
    for m in &r.mapping {
        let exists = if m.target_exists {
            "exists"
        } else {
            "will be created"
        };
        let _ = writeln!(o, "  {} -> {} ({exists})", m.source, m.target);
    }
    for s in &r.skipped_folders {
        let _ = writeln!(o, "  {} -> skipped: {}", s.name, s.reason);
    }
    let _ = writeln!(
        o,
        "Needs up to {} on the target{}",
        mb(r.bytes_needed),
        r.quota_free
            .map(|f| format!("; {} of quota free", mb(f)))
            .unwrap_or_default()
    );
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {}", w.message);
    }
    for u in &r.unknown {
        let _ = writeln!(o, "not known: {u}");
    }
    match (r.problems.is_empty(), r.unknown.is_empty()) {
        (true, true) => {
            let _ = writeln!(o, "No problems found.");
        }
        (true, false) => {
            let _ = writeln!(
                o,
                "No problems found in what could be checked (see \"not known\" above)."
            );
        }
        _ => {}
    }
    for p in &r.problems {
        let _ = writeln!(
            o,
            "{}: {}",
            if p.blocking { "PROBLEM" } else { "note" },
            p.message
        );
    }
    o
}

/// A migration summary as text.
pub fn summary_text(s: &PairSummary) -> String {
    let mut o = String::new();
    let status = match s.status {
        PairStatus::Completed => "completed",
        PairStatus::CompletedWithFailures => "completed with failures",
        PairStatus::AuthFailed => "login failed",
        PairStatus::ConnectFailed => "could not connect",
        PairStatus::Failed => "failed",
        PairStatus::Interrupted => "interrupted",
        PairStatus::Deferred => "waiting for the next day's upload budget",
    };
    let _ = writeln!(
        o,
        "{} -> {}: {status}{}",
        s.source,
        s.target,
        if s.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    );
    if let Some(e) = &s.error {
        let _ = writeln!(o, "  error: {e}");
    }
    let _ = writeln!(
        o,
        "  folders: {} ({} created)",
        s.folders, s.folders_created
    );
    if s.dry_run {
        let _ = writeln!(o, "  messages to copy: {}", s.planned);
    }
    let _ = writeln!(
        o,
        "  messages copied: {} ({})",
        s.messages_copied,
        mb(s.bytes_copied)
    );
    let _ = writeln!(o, "  already on the target: {}", s.already_present);
    let _ = writeln!(o, "  left out by options: {}", s.excluded);
    let _ = writeln!(o, "  failed: {}", s.failed);
    if s.flags_updated > 0 {
        let _ = writeln!(o, "  flags updated to the source's: {}", s.flags_updated);
    }
    if s.deferred > 0 {
        let _ = writeln!(
            o,
            "  left for the next day (daily upload budget spent): {}",
            s.deferred
        );
    }
    if s.expunged > 0 {
        let _ = writeln!(o, "  removed because deleted on the source: {}", s.expunged);
    }
    if s.throttled_secs > 0.0 {
        let _ = writeln!(
            o,
            "  paused because a server asked to slow down: {:.0} s",
            s.throttled_secs
        );
    }
    for f in &s.folder_failures {
        let _ = writeln!(
            o,
            "    folder {}: {}{} — {}",
            f.folder,
            f.reason,
            not_copied(f.messages),
            f.advice
        );
    }
    for f in &s.failures {
        let _ = writeln!(
            o,
            "    {} UID {} {:?} ({}): {} — {}",
            f.folder,
            f.uid,
            f.subject,
            mb(f.size),
            f.reason,
            f.advice
        );
    }
    for w in &s.warnings {
        let _ = writeln!(o, "  warning: {}", w.message);
    }
    for f in &s.skipped_folders {
        let _ = writeln!(o, "  skipped folder {}: {}", f.name, f.reason);
    }
    let _ = writeln!(
        o,
        "  duration {:.1}s, finished {}",
        s.duration_secs,
        mailferry_proto::rfc3339(&s.finished_at)
    );
    o
}

/// The closing lines of a batch: totals and the records that could not be used.
pub fn batch_text(b: &mailferry_proto::report::BatchSummary) -> String {
    let mut o = String::new();
    let done = b
        .pairs
        .iter()
        .filter(|p| p.summary.status == PairStatus::Completed)
        .count();
    let copied: u64 = b.pairs.iter().map(|p| p.summary.messages_copied).sum();
    let failed: u64 = b.pairs.iter().map(|p| p.summary.failed).sum();
    let _ = writeln!(
        o,
        "batch: {}, {done} completed, {} with problems, {}; {} copied, {failed} failed",
        count(b.pairs.len() as u64, "pair", "pairs"),
        b.pairs.len() - done,
        count(b.bad_records.len() as u64, "bad record", "bad records"),
        count(copied, "message", "messages"),
    );
    for r in &b.bad_records {
        let _ = writeln!(o, "  bad record: {}", r.error);
    }
    o
}

/// Quotes a CSV field when needed (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `--report FILE.csv`: one row per pair (and per bad record).
pub fn batch_report_csv(b: &mailferry_proto::report::BatchSummary) -> String {
    let mut o = String::from(
        "record,source,target,status,copied,already_present,failed,bytes,duration_secs,first_error\r\n",
    );
    for p in &b.pairs {
        let s = &p.summary;
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let first_error = s
            .error
            .clone()
            .or_else(|| {
                s.folder_failures
                    .first()
                    .map(|f| format!("{}: {}", f.folder, f.reason))
            })
            .or_else(|| {
                s.failures
                    .first()
                    .map(|f| format!("{} UID {}: {}", f.folder, f.uid, f.reason))
            })
            .unwrap_or_default();
        let _ = write!(
            o,
            "{},{},{},{},{},{},{},{},{:.1},{}\r\n",
            p.record,
            csv_field(&s.source),
            csv_field(&s.target),
            status,
            s.messages_copied,
            s.already_present,
            s.failed,
            s.bytes_copied,
            s.duration_secs,
            csv_field(&first_error)
        );
    }
    for r in &b.bad_records {
        let _ = write!(
            o,
            "{},,,bad_record,0,0,0,0,0.0,{}\r\n",
            r.record,
            csv_field(&r.error)
        );
    }
    o
}

/// A file name for a pair's reports: the record number (in a batch) and the source account,
/// with anything but letters, digits, `@`, `.`, `-` and `_` replaced.
pub fn report_name(record: Option<u64>, source: &str) -> String {
    let clean: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match record {
        Some(r) => format!("{r:04}-{clean}"),
        None => clean,
    }
}

/// ` (N message(s) not copied)` after a folder's failure; nothing for an empty folder.
pub fn not_copied(messages: u64) -> String {
    match messages {
        0 => String::new(),
        n => format!(" ({n} message(s) not copied)"),
    }
}

/// `--report-dir`: the failures of one pair as CSV (folder, UID, subject, size, kind, reason,
/// advice); a folder that failed as a whole is one row with UID 0.
pub fn failures_csv(s: &PairSummary) -> String {
    let mut o = String::from("folder,uid,subject,size,kind,reason,advice\r\n");
    for f in &s.folder_failures {
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let reason = format!("{}{}", f.reason, not_copied(f.messages));
        let _ = write!(
            o,
            "{},0,,0,{kind},{},{}\r\n",
            csv_field(&f.folder),
            csv_field(&reason),
            csv_field(&f.advice)
        );
    }
    for f in &s.failures {
        let kind = f.kind.code();
        let _ = write!(
            o,
            "{},{},{},{},{},{},{}\r\n",
            csv_field(&f.folder),
            f.uid,
            csv_field(&f.subject),
            f.size,
            kind,
            csv_field(&f.reason),
            csv_field(&f.advice)
        );
    }
    o
}

/// `3h`, `90m`, `1d 2h`, `45s`: an interval as people write it.
pub fn duration_text(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, rest) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (mins, "m"), (rest, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}
