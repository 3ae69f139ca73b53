//! Progress on stderr: one updating line on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailferry_coordinator::migration::{PairSpec, Progress};
use mailferry_proto::task::TaskFailure;

struct State {
    /// Per pair and target folder: (copied, planned) messages.
    folders: std::collections::HashMap<(String, String), (u64, u64)>,
    /// Pairs that planned anything: with more than one (`--batch`), lines name the account.
    pairs: std::collections::HashSet<String>,
    /// When the first message was copied: the rate (and the ETA) counts from there, not from
    /// the logins and listing before it.
    first_copy: Option<Instant>,
    planned_msgs: u64,
    planned_bytes: u64,
    done_msgs: u64,
    done_bytes: u64,
    last_print: Option<Instant>,
}

/// Prints progress for people.
pub struct Printer {
    tty: bool,
    quiet: bool,
    state: Mutex<State>,
}

impl Printer {
    /// A printer; `quiet` prints nothing (e.g. with `--json` when stderr is not a terminal).
    pub fn new(quiet: bool) -> Printer {
        Printer {
            tty: std::io::stderr().is_terminal(),
            quiet,
            state: Mutex::new(State {
                folders: std::collections::HashMap::new(),
                pairs: std::collections::HashSet::new(),
                first_copy: None,
                planned_msgs: 0,
                planned_bytes: 0,
                done_msgs: 0,
                done_bytes: 0,
                last_print: None,
            }),
        }
    }

    /// Ends the updating line.
    pub fn finish(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }

    /// The progress line: totals, rate, ETA, and the folder being copied (with its account
    /// when several pairs run), or how many folders are done when none is half-way.
    fn line(&self, st: &State, pair: &PairSpec, folder: &str) -> String {
        let copying = st
            .first_copy
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
            .max(0.001);
        let rate = st.done_msgs as f64 / copying;
        let mbps = st.done_bytes as f64 / copying / 1_000_000.0;
        let left = st.planned_msgs.saturating_sub(st.done_msgs);
        // A rate from the first second or the first percent says little: no ETA until then.
        let settled = copying >= 2.0 && st.done_msgs * 100 >= st.planned_msgs;
        let eta = if rate > 0.0 && settled {
            crate::output::duration_text(Duration::from_secs_f64(left as f64 / rate))
        } else {
            "?".into()
        };
        let key = (pair.source.clone(), folder.to_owned());
        let current = match st.folders.get(&key) {
            Some(&(done, planned)) if done < planned => Some((&key, done, planned)),
            _ => st
                .folders
                .iter()
                .filter(|(_, (done, planned))| *done > 0 && done < planned)
                .min_by(|a, b| a.0.cmp(b.0))
                .map(|(k, (done, planned))| (k, *done, *planned)),
        };
        let where_ = match current {
            Some(((account, folder), done, planned)) if st.pairs.len() > 1 => {
                format!(" [{account} {folder}: {done}/{planned}]")
            }
            Some(((_, folder), done, planned)) => format!(" [{folder}: {done}/{planned}]"),
            None => {
                let finished = st.folders.values().filter(|(d, p)| d >= p).count();
                format!(" [{finished}/{} folders done]", st.folders.len())
            }
        };
        format!(
            "{}/{} messages, {:.1}/{:.1} MB, {rate:.0} msg/s, {mbps:.1} MB/s, ETA {eta}{where_}",
            st.done_msgs,
            st.planned_msgs,
            st.done_bytes as f64 / 1e6,
            st.planned_bytes as f64 / 1e6
        )
    }
}

impl Progress for Printer {
    fn planned(&self, pair: &PairSpec, messages: u64, bytes: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.planned_msgs += messages;
            st.planned_bytes += bytes;
            st.pairs.insert(pair.source.clone());
        }
        if !self.quiet {
            eprintln!(
                "{} -> {}: {} ({:.1} MB) to copy",
                pair.source,
                pair.target,
                crate::output::count(messages, "message", "messages"),
                bytes as f64 / 1e6
            );
        }
    }

    fn folder_planned(&self, pair: &PairSpec, folder: &str, messages: u64, _bytes: u64) {
        if let Ok(mut st) = self.state.lock() {
            let key = (pair.source.clone(), folder.to_owned());
            st.folders.entry(key).or_default().1 += messages;
        }
    }

    fn copied(&self, pair: &PairSpec, folder: &str, messages: u64, bytes: u64) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.first_copy.get_or_insert_with(Instant::now);
        st.done_msgs += messages;
        st.done_bytes += bytes;
        let key = (pair.source.clone(), folder.to_owned());
        let entry = st.folders.entry(key).or_default();
        entry.0 += messages;
        let folder_done = entry.0 >= entry.1;
        if self.quiet {
            return;
        }
        let now = Instant::now();
        // On a terminal the line updates in place; otherwise a line every 2 s and one per
        // finished folder.
        let due = (!self.tty && folder_done)
            || st.last_print.is_none_or(|t| {
                now - t >= Duration::from_millis(if self.tty { 200 } else { 2000 })
            });
        if !due && st.done_msgs < st.planned_msgs {
            return;
        }
        st.last_print = Some(now);
        let line = self.line(&st, pair, folder);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn retrying(&self, pair: &PairSpec, failure: &TaskFailure, delay: Duration) {
        if !self.quiet {
            eprintln!(
                "{} -> {}: {}; retrying in {}s",
                pair.source,
                pair.target,
                failure.message,
                delay.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str) -> PairSpec {
        PairSpec {
            pair_id: source.into(),
            source: source.into(),
            target: format!("{source}-new"),
        }
    }

    #[test]
    fn the_line_names_the_folder_being_copied_and_its_account_in_a_batch() {
        let p = Printer::new(true);
        let (a, b) = (spec("a@old"), spec("b@old"));
        p.planned(&a, 10, 1000);
        p.folder_planned(&a, "INBOX", 4, 0);
        p.folder_planned(&a, "Sent", 6, 0);
        p.copied(&a, "INBOX", 4, 400);
        p.copied(&a, "Sent", 2, 200);
        let st = p.state.lock().unwrap();
        let line = p.line(&st, &a, "INBOX");
        assert!(
            line.ends_with(" [Sent: 2/6]"),
            "a finished folder is not named: {line}"
        );
        assert!(
            line.contains("ETA ?"),
            "no ETA from the first second: {line}"
        );
        drop(st);
        p.planned(&b, 1, 10);
        p.folder_planned(&b, "INBOX", 1, 0);
        let st = p.state.lock().unwrap();
        let line = p.line(&st, &a, "Sent");
        assert!(line.ends_with(" [a@old Sent: 2/6]"), "{line}");
    }

    #[test]
    fn with_no_folder_half_way_the_line_counts_finished_folders() {
        let p = Printer::new(true);
        let a = spec("a@old");
        p.planned(&a, 1, 10);
        p.folder_planned(&a, "INBOX", 1, 0);
        p.folder_planned(&a, "Sent", 0, 0);
        p.copied(&a, "INBOX", 1, 10);
        let st = p.state.lock().unwrap();
        assert!(p.line(&st, &a, "INBOX").ends_with(" [2/2 folders done]"));
    }
}
