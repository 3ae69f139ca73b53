//! Human text for the API's messages: migrations, pairs, failures, dead letters, progress
//! lines and the summary of a finished pass. Layout only; `--json` prints the messages instead.

use std::fmt::Write;

use mailferry_proto::grpc::v1::{DeadLetter, Failure, Migration, MigrationEvent, Pair, Totals};

use super::json::{state, status, time};

use crate::output::count;

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// A message's size: exact below 10 MB, so a size and a limit never read the same.
fn size(bytes: u64) -> String {
    mailferry_proto::report::bytes_text(bytes)
}

fn when(t: Option<&prost_types::Timestamp>) -> String {
    time(t).unwrap_or_else(|| "-".into())
}

/// An enum name for people: `completed_with_failures` → `completed with failures`.
fn words(name: String) -> String {
    name.replace('_', " ")
}

/// A migration and its totals.
pub fn migration(m: &Migration) -> String {
    let mut o = String::new();
    let t = m.totals.unwrap_or_default();
    let name = if m.name.is_empty() {
        String::new()
    } else {
        format!(" {:?}", m.name)
    };
    let _ = writeln!(o, "migration {}{name}: {}", m.id, words(state(m.state)));
    let _ = writeln!(o, "  created: {}", when(m.created_at.as_ref()));
    let _ = writeln!(
        o,
        "  pass {}: started {}, finished {}",
        m.passes,
        when(m.pass_started_at.as_ref()),
        when(m.pass_finished_at.as_ref())
    );
    let _ = writeln!(
        o,
        "  pairs: {} ({} finished, {} failed)",
        m.pairs, m.pairs_finished, m.pairs_failed
    );
    totals(&mut o, &t);
    if let Some(at) = m.next_sync_at.as_ref() {
        let _ = writeln!(o, "  next sync: {}", when(Some(at)));
    }
    if m.options.as_ref().is_some_and(|o| o.dry_run) {
        let _ = writeln!(o, "  dry run: nothing is changed on the targets");
    }
    o
}

fn totals(o: &mut String, t: &Totals) {
    let _ = writeln!(
        o,
        "  folders: {} ({} created)",
        t.folders, t.folders_created
    );
    let _ = writeln!(
        o,
        "  messages copied: {} of {} planned ({})",
        t.messages_copied,
        t.planned,
        mb(t.bytes_copied)
    );
    let _ = writeln!(o, "  already on the target: {}", t.already_present);
    let _ = writeln!(o, "  left out by options: {}", t.excluded);
    let _ = writeln!(o, "  failed: {}", t.failed);
    if t.flags_updated > 0 {
        let _ = writeln!(o, "  flags updated to the source's: {}", t.flags_updated);
    }
    if t.expunged > 0 {
        let _ = writeln!(o, "  removed because deleted on the source: {}", t.expunged);
    }
    if t.deferred > 0 {
        let _ = writeln!(
            o,
            "  left for the next day (daily upload budget spent): {}",
            t.deferred
        );
    }
}

/// A table of migrations, one line each.
pub fn migrations(list: &[Migration]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let t = m.totals.unwrap_or_default();
            vec![
                m.id.clone(),
                state(m.state),
                format!("{}/{}", m.pairs_finished, m.pairs),
                t.messages_copied.to_string(),
                t.failed.to_string(),
                when(m.created_at.as_ref()),
                m.name.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATE", "PAIRS", "COPIED", "FAILED", "CREATED", "NAME",
        ],
        &rows,
    )
}

/// One pair's summary, like `mailferry migrate` prints it; `folders` adds a line per folder.
pub fn pair(p: &Pair, folders: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} -> {}: {} [pair {}]",
        p.source,
        p.target,
        words(status(p.status)),
        p.id
    );
    if !p.error.is_empty() {
        let _ = writeln!(o, "  error: {}", p.error);
    }
    totals(&mut o, &p.totals.unwrap_or_default());
    if folders {
        for f in &p.folders {
            let _ = writeln!(
                o,
                "    {} -> {}{}: {} copied ({}), {} already there, {} left out, {} failed",
                f.source,
                f.target,
                if f.created { " (created)" } else { "" },
                f.copied,
                mb(f.bytes),
                f.already_present,
                f.excluded,
                f.failed
            );
        }
    }
    for w in &p.warnings {
        let _ = writeln!(o, "  warning: {}", w.message);
    }
    let _ = writeln!(
        o,
        "  duration {:.1}s, finished {}",
        p.duration_secs,
        when(p.finished_at.as_ref())
    );
    o
}

/// Longest subject shown in the failures table, in characters.
const SUBJECT_COLUMN: usize = 40;

/// The failures table (pair as `source → target`, folder, UID, size, kind code, subject,
/// reason), then what to do, once per kind: the advice is the kind's, and repeating it on every
/// row made the table hundreds of columns wide.
pub fn failures(list: &[Failure]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|f| {
            let pair = match (f.source.is_empty(), f.target.is_empty()) {
                (true, _) => f.pair_id.clone(),
                (false, true) => f.source.clone(),
                (false, false) => format!("{} → {}", f.source, f.target),
            };
            let (folder, uid, size) = if f.folder.is_empty() {
                ("(whole pair)".to_owned(), "-".to_owned(), "-".to_owned())
            } else {
                (f.folder.clone(), f.uid.to_string(), size(f.size))
            };
            vec![
                pair,
                folder,
                uid,
                size,
                f.kind.clone(),
                shortened(&f.subject, SUBJECT_COLUMN),
                f.reason.clone(),
            ]
        })
        .collect();
    let mut o = table(
        &["PAIR", "FOLDER", "UID", "SIZE", "KIND", "SUBJECT", "REASON"],
        &rows,
    );
    let mut advised: Vec<&str> = Vec::new();
    for f in list {
        if !f.advice.is_empty() && !advised.contains(&f.kind.as_str()) {
            if advised.is_empty() {
                o.push_str("\nwhat to do:\n");
            }
            advised.push(&f.kind);
            let _ = writeln!(o, "  {}: {}", f.kind, f.advice);
        }
    }
    o
}

/// `s` cut to `max` characters, an ellipsis marking the cut.
fn shortened(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A table of dead letters.
pub fn dead_letters(list: &[DeadLetter]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.migration_id.clone(),
                d.pair_id.clone(),
                d.deaths.to_string(),
                when(d.at.as_ref()),
                d.reason.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "MIGRATION", "PAIR", "DEATHS", "AT", "REASON"],
        &rows,
    )
}

/// One progress line of `watch`.
pub fn event(e: &MigrationEvent) -> String {
    let Some(m) = &e.migration else {
        return "progress: (no figures)".into();
    };
    let t = m.totals.unwrap_or_default();
    let mut line = format!(
        "{}: pairs {}/{} finished, messages {}/{} copied, {}",
        words(state(m.state)),
        m.pairs_finished,
        m.pairs,
        t.messages_copied,
        t.planned,
        mb(t.bytes_copied)
    );
    if m.pairs_failed > 0 || t.failed > 0 {
        let _ = write!(
            line,
            ", {} and {} failed",
            count(m.pairs_failed, "pair", "pairs"),
            count(t.failed, "message", "messages")
        );
    }
    if !m.waiting.is_empty() && !e.pass_finished {
        let _ = write!(line, " — {}", m.waiting);
    }
    if e.pass_finished {
        line.push_str(" — pass finished");
    }
    line
}

/// The summary of a finished pass: each pair as `migrate` prints it, the failures, the totals.
pub fn pass(m: &Migration, pairs: &[Pair], failed: &[Failure]) -> String {
    let mut o = String::new();
    for p in pairs {
        o.push_str(&pair(p, false));
    }
    if !failed.is_empty() {
        let _ = writeln!(o, "failures:");
        o.push_str(&failures(failed));
    }
    let t = m.totals.unwrap_or_default();
    let done = pairs
        .iter()
        .filter(|p| p.status == mailferry_proto::grpc::v1::PairStatus::Completed as i32)
        .count();
    let _ = writeln!(
        o,
        "migration {}: pass {} finished {}: {}, {done} completed, {} with problems; {} copied ({}), {} already on the target, {} failed",
        m.id,
        m.passes,
        when(m.pass_finished_at.as_ref()),
        count(pairs.len() as u64, "pair", "pairs"),
        pairs.len() - done,
        count(t.messages_copied, "message", "messages"),
        mb(t.bytes_copied),
        t.already_present,
        t.failed
    );
    o
}

/// Left-aligned columns; the last one is not padded.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut o = String::new();
    let head: Vec<String> = head.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(o, "{}", line.trim_end());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_form_a_table_with_whole_pair_failures_marked() {
        let list = [
            Failure {
                source: "a@old:993".into(),
                folder: "Archive/2019".into(),
                uid: 4812,
                size: 14_200_000,
                kind: "too_large".into(),
                subject: "Re: the quarterly figures, with every table attached".into(),
                reason: "message larger than the target allows".into(),
                advice: "exclude with --max-size".into(),
                ..Failure::default()
            },
            Failure {
                pair_id: "p2".into(),
                kind: "auth".into(),
                reason: "login refused".into(),
                advice: "check the password".into(),
                ..Failure::default()
            },
            Failure {
                source: "x@old".into(),
                target: "y@new".into(),
                folder: "INBOX".into(),
                uid: 7,
                size: 10,
                kind: "too_large".into(),
                reason: "r".into(),
                advice: "exclude with --max-size".into(),
                ..Failure::default()
            },
        ];
        let t = failures(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 8, "{t}");
        assert!(lines[0].starts_with("PAIR"));
        assert!(
            lines[1].starts_with("a@old:993 ")
                && lines[1].contains("Archive/2019  4812  14.2 MB (14,200,000 bytes)  too_large  Re: the quarterly figures, with every t…  message"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("p2 ") && lines[2].contains("(whole pair)"),
            "{t}"
        );
        let col = lines[0].find("FOLDER").unwrap();
        assert_eq!(lines[1].find("Archive").unwrap(), col);
        assert_eq!(
            lines[4..],
            [
                "",
                "what to do:",
                "  too_large: exclude with --max-size",
                "  auth: check the password"
            ]
        );
        assert!(
            t.contains("x@old → y@new "),
            "two pairs of one source tell apart\n{t}"
        );
    }

    #[test]
    fn a_progress_line_says_what_the_pass_waits_for() {
        let waiting = "waiting 42 s before the first copy: a fresh or flushed Redis (see README)";
        let mut e = MigrationEvent {
            migration: Some(Migration {
                pairs: 3,
                waiting: waiting.into(),
                ..Migration::default()
            }),
            pass_finished: false,
        };
        let line = event(&e);
        assert!(line.contains("messages 0/0 copied"), "{line}");
        assert!(line.ends_with(&format!(" — {waiting}")), "{line}");
        e.pass_finished = true;
        assert!(!event(&e).contains("waiting"));
    }
}
