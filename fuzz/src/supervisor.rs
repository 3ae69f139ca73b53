//! The parent side of a fuzz run: starts children (see [`crate::child`]), reads their reports,
//! finds the input that killed a child by replaying from its last checkpoint one input at a
//! time, and saves every finding under the crashes directory.
//!
//! A finding matching a [`crate::known_open`] entry is counted as known and not saved (its
//! reproducer is already committed, and a saved duplicate would fail the regression test).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::child::{CHECKPOINT, HANG_EXIT, Plan};
use crate::targets::Target;
use crate::{corpus, input, known_open};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// This program, to start as the child.
    pub exe: PathBuf,
    /// Time for the target.
    pub budget: Duration,
    /// Seed of the run.
    pub seed: u64,
    /// An input running longer than this is a hang.
    pub timeout: Duration,
    /// The child's address-space limit in MiB.
    pub memory_mb: u64,
    /// Directory holding `<target>/` seed corpora.
    pub corpus_dir: PathBuf,
    /// Directory findings are saved under, in `<target>/`.
    pub crashes_dir: PathBuf,
}

/// Kind of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The target panicked (a violated invariant, an index out of bounds, ...).
    Panic,
    /// The target ran longer than the timeout.
    Hang,
    /// The child process died (abort, stack overflow, failed allocation).
    Killed,
}

/// One finding of a run.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What happened.
    pub kind: Kind,
    /// Input number in the run.
    pub iteration: Option<u64>,
    /// Panic message, or what killed the child.
    pub detail: String,
    /// Where the input was saved (`None`: known open, a duplicate, or not reproduced).
    pub saved: Option<PathBuf>,
    /// The known-open entry it belongs to.
    pub known: Option<&'static known_open::KnownOpen>,
}

/// The result of fuzzing one target.
#[derive(Debug)]
pub struct Report {
    /// Target name.
    pub target: &'static str,
    /// Inputs executed.
    pub execs: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// Everything found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Findings that are not known open.
    pub fn new_findings(&self) -> usize {
        self.findings.iter().filter(|f| f.known.is_none()).count()
    }

    /// Findings of known open bugs.
    pub fn known_findings(&self) -> usize {
        self.findings.len() - self.new_findings()
    }
}

/// How a child ended.
enum End {
    Done(u64),
    Hang(u64),
    Killed(String),
}

/// What one child reported.
struct ChildRun {
    panics: Vec<(u64, String)>,
    last_checkpoint: Option<u64>,
    last_at: Option<u64>,
    end: End,
}

fn describe_death(status: ExitStatus, stderr: &str) -> String {
    let why = if stderr.contains("has overflowed its stack") {
        "stack overflow".to_owned()
    } else if let Some(line) = stderr.lines().find(|l| l.contains("memory allocation of")) {
        format!("allocation failure ({})", line.trim())
    } else {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(s) => format!("killed by signal {s}"),
            None => format!("exited with {status}"),
        }
    };
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("{why}; stderr: {}", tail.join(" | "))
}

fn run_child(target: &Target, options: &Options, plan: &Plan) -> anyhow::Result<ChildRun> {
    let mut cmd = Command::new(&options.exe);
    cmd.arg("child")
        .arg(target.name)
        .arg("--seed")
        .arg(plan.seed.to_string())
        .arg("--from")
        .arg(plan.from.to_string())
        .arg("--budget-ms")
        .arg(plan.budget.as_millis().to_string())
        .arg("--timeout-ms")
        .arg(plan.timeout.as_millis().to_string())
        .arg("--memory-mb")
        .arg(plan.memory_mb.to_string())
        .arg("--corpus")
        .arg(&options.corpus_dir);
    if let Some(until) = plan.until {
        cmd.arg("--until").arg(until.to_string());
    }
    if plan.careful {
        cmd.arg("--careful");
    }
    // No backtraces: symbolising one in a dying child outlasts the hang timeout (and may not fit
    // in its memory limit), and the supervisor reads only the first lines.
    let mut child = cmd
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", options.exe.display()))?;
    let stderr = child.stderr.take().context("child stderr")?;
    // Keep only the end of stderr: what a dying process said last.
    let stderr_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut stderr = stderr;
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if tail.len() > 16 * 1024 {
                tail.drain(..tail.len() - 8 * 1024);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    let stdout = child.stdout.take().context("child stdout")?;
    let mut run = ChildRun {
        panics: Vec::new(),
        last_checkpoint: None,
        last_at: None,
        end: End::Killed(String::new()),
    };
    let mut done = None;
    let mut hang = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the child's reports")?;
        let mut parts = line.splitn(3, ' ');
        let event = parts.next().unwrap_or_default();
        let Some(i) = parts.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        match event {
            "checkpoint" => run.last_checkpoint = Some(i),
            "at" => run.last_at = Some(i),
            "panic" => run
                .panics
                .push((i, parts.next().unwrap_or_default().to_owned())),
            "hang" => hang = Some(i),
            "done" => done = Some(i),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the child")?;
    let stderr = stderr_reader.join().unwrap_or_default();
    run.end = match (status.code(), done, hang) {
        (Some(0), Some(n), _) => End::Done(n),
        (Some(HANG_EXIT), _, Some(i)) => End::Hang(i),
        _ => End::Killed(describe_death(status, &stderr)),
    };
    Ok(run)
}

/// Collects findings, saving each new one (at most three inputs per distinct cause).
struct Findings<'a> {
    target: &'static Target,
    corpus: &'a [Vec<u8>],
    options: &'a Options,
    seen: HashSet<u64>,
    per_cause: HashMap<String, usize>,
    list: Vec<Finding>,
}

impl Findings<'_> {
    fn record(&mut self, kind: Kind, iteration: Option<u64>, detail: String) -> anyhow::Result<()> {
        if let Some(i) = iteration
            && !self.seen.insert(i)
        {
            return Ok(());
        }
        let known = known_open::for_finding(self.target.name, &detail);
        // The cause: the panic location, or what killed the child, without the input's details.
        let cause = format!(
            "{kind:?} {}",
            detail.split([';', ',']).next().unwrap_or_default()
        );
        let count = self.per_cause.entry(cause).or_default();
        *count += 1;
        let mut saved = None;
        if let (Some(i), None, true) = (iteration, known, *count <= 3) {
            let mut buf = Vec::new();
            input::build(self.target, self.corpus, self.options.seed, i, &mut buf);
            let dir = self.options.crashes_dir.join(self.target.name);
            saved = Some(
                corpus::save(&dir, &buf)
                    .with_context(|| format!("saving a finding in {}", dir.display()))?,
            );
        }
        let label = match known {
            Some(k) => format!("known open ({})", k.file),
            None => saved.as_deref().map_or_else(
                || "not saved (duplicate cause)".to_owned(),
                |p| format!("saved {}", p.display()),
            ),
        };
        if (known.is_none() && *count <= 3) || *count <= 1 {
            eprintln!(
                "{}: {kind:?} at input {}: {detail} [{label}]",
                self.target.name,
                iteration.map_or_else(|| "?".to_owned(), |i| i.to_string())
            );
        }
        self.list.push(Finding {
            kind,
            iteration,
            detail,
            saved,
            known,
        });
        Ok(())
    }
}

/// Fuzzes `target` for the options' budget.
pub fn run(target: &'static Target, options: &Options) -> anyhow::Result<Report> {
    let corpus_dir = options.corpus_dir.join(target.name);
    let corpus =
        corpus::load(&corpus_dir).with_context(|| format!("reading {}", corpus_dir.display()))?;
    let mut findings = Findings {
        target,
        corpus: &corpus,
        options,
        seen: HashSet::new(),
        per_cause: HashMap::new(),
        list: Vec::new(),
    };
    let start = Instant::now();
    let mut next = 0u64;
    let mut execs = 0u64;
    while let Some(left) = options
        .budget
        .checked_sub(start.elapsed())
        .filter(|d| !d.is_zero())
    {
        let plan = Plan {
            seed: options.seed,
            from: next,
            until: None,
            budget: left,
            careful: false,
            timeout: options.timeout,
            memory_mb: options.memory_mb,
        };
        let child = run_child(target, options, &plan)?;
        for (i, message) in &child.panics {
            findings.record(Kind::Panic, Some(*i), message.clone())?;
        }
        let resume = match child.end {
            End::Done(n) => n,
            End::Hang(i) => {
                if hangs_again(target, options, &plan, i)? {
                    findings.record(
                        Kind::Hang,
                        Some(i),
                        format!("ran longer than {:?}, twice", options.timeout),
                    )?;
                }
                i + 1
            }
            End::Killed(why) => locate(
                target,
                options,
                &mut findings,
                &plan,
                child.last_checkpoint,
                why,
            )?,
        };
        execs += resume.saturating_sub(next);
        next = resume;
    }
    Ok(Report {
        target: target.name,
        execs,
        elapsed: start.elapsed(),
        findings: findings.list,
    })
}

/// Finds the input that killed a child by running the stretch from its last checkpoint again,
/// reporting each input before it runs; records it and returns where to resume.
fn locate(
    target: &'static Target,
    options: &Options,
    findings: &mut Findings<'_>,
    plan: &Plan,
    checkpoint: Option<u64>,
    why: String,
) -> anyhow::Result<u64> {
    let from = checkpoint.unwrap_or(plan.from);
    let careful = Plan {
        from,
        until: Some(from + CHECKPOINT),
        budget: Duration::from_secs(3600),
        careful: true,
        ..plan.clone()
    };
    let replay = run_child(target, options, &careful)?;
    for (i, message) in &replay.panics {
        findings.record(Kind::Panic, Some(*i), message.clone())?;
    }
    match replay.end {
        End::Killed(again) => {
            let i = replay.last_at.unwrap_or(from);
            findings.record(Kind::Killed, Some(i), again)?;
            Ok(i + 1)
        }
        End::Hang(i) => {
            if hangs_again(target, options, plan, i)? {
                findings.record(
                    Kind::Hang,
                    Some(i),
                    format!("ran longer than {:?}, twice", options.timeout),
                )?;
            }
            Ok(i + 1)
        }
        End::Done(n) => {
            // Not reproducible from one process alone (e.g. memory left over from earlier
            // inputs): still a crash, but without an input to save.
            findings.record(
                Kind::Killed,
                None,
                format!("{why} (not reproduced from input {from})"),
            )?;
            Ok(n)
        }
    }
}

/// Runs input `i` alone in a fresh child: a hang is a finding only when it happens again. On a
/// loaded machine (the fuzzer beside a build, at low priority) an input that takes microseconds
/// can wait longer than the timeout for a core; seen once, it is not worth a saved "crash".
fn hangs_again(
    target: &'static Target,
    options: &Options,
    plan: &Plan,
    i: u64,
) -> anyhow::Result<bool> {
    let alone = Plan {
        from: i,
        until: Some(i + 1),
        budget: Duration::from_secs(3600),
        careful: true,
        ..plan.clone()
    };
    Ok(matches!(
        run_child(target, options, &alone)?.end,
        End::Hang(_)
    ))
}

/// Prints the table of a run's reports.
pub fn print_table(reports: &[Report], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16} {:>12} {:>10} {:>8} {:>11}",
        "target", "execs", "execs/s", "crashes", "known-open"
    )?;
    for r in reports {
        let rate = r.execs as f64 / r.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "{:<16} {:>12} {:>10.0} {:>8} {:>11}",
            r.target,
            r.execs,
            rate,
            r.new_findings(),
            r.known_findings()
        )?;
    }
    Ok(())
}
