//! Progress on stderr: one updating line on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailferry_coordinator::migration::{PairSpec, Progress};
use mailferry_proto::task::TaskFailure;

struct State {
    /// Per target folder: (copied, planned) messages.
    folders: std::collections::HashMap<String, (u64, u64)>,
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
    start: Instant,
    state: Mutex<State>,
}

impl Printer {
    /// A printer; `quiet` prints nothing (e.g. with `--json` when stderr is not a terminal).
    pub fn new(quiet: bool) -> Printer {
        Printer {
            tty: std::io::stderr().is_terminal(),
            quiet,
            start: Instant::now(),
            state: Mutex::new(State {
                folders: std::collections::HashMap::new(),
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

    fn line(&self, st: &State, folder: &str) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = st.done_msgs as f64 / secs;
        let mbps = st.done_bytes as f64 / secs / 1_000_000.0;
        let left = st.planned_msgs.saturating_sub(st.done_msgs);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".into()
        };
        let (f_done, f_planned) = st.folders.get(folder).copied().unwrap_or((0, 0));
        format!(
            "{}/{} messages, {:.1}/{:.1} MB, {rate:.0} msg/s, {mbps:.1} MB/s, ETA {eta} [{folder}: {f_done}/{f_planned}]",
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
        }
        if !self.quiet {
            eprintln!(
                "{} -> {}: {messages} messages ({:.1} MB) to copy",
                pair.source,
                pair.target,
                bytes as f64 / 1e6
            );
        }
    }

    fn folder_planned(&self, _pair: &PairSpec, folder: &str, messages: u64, _bytes: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.folders.entry(folder.to_owned()).or_default().1 += messages;
        }
    }

    fn copied(&self, _pair: &PairSpec, folder: &str, messages: u64, bytes: u64) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.done_msgs += messages;
        st.done_bytes += bytes;
        let entry = st.folders.entry(folder.to_owned()).or_default();
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
        let line = self.line(&st, folder);
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
