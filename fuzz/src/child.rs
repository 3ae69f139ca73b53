//! The child process of a fuzz run: executes inputs `from..until` of a target under an
//! address-space limit, with a watchdog thread, and reports to the supervisor on stdout, one
//! event per line:
//!
//! - `checkpoint I`: input `I` is about to run (every [`CHECKPOINT`] inputs); if the process then
//!   dies, the culprit is in `I..I + CHECKPOINT`;
//! - `at I`: input `I` is about to run (careful mode only, used to find a culprit);
//! - `panic I MESSAGE`: input `I` panicked (the loop goes on);
//! - `hang I`: input `I` ran longer than the timeout (the process then exits with [`HANG_EXIT`]);
//! - `done N`: inputs up to `N` (exclusive) ran; the process exits with 0.
//!
//! An abort, a stack overflow or a failed allocation ends the process without a last word: the
//! supervisor finds the input from the last checkpoint.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::exec;
use crate::input;
use crate::targets::Target;

/// Inputs between two checkpoints.
pub const CHECKPOINT: u64 = 1024;

/// Exit code of a child that stopped on a hang.
pub const HANG_EXIT: i32 = 3;

/// What a child runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seed of the run.
    pub seed: u64,
    /// First input.
    pub from: u64,
    /// One past the last input (`None`: until the deadline).
    pub until: Option<u64>,
    /// Stop starting inputs after this long.
    pub budget: Duration,
    /// Report every input before running it.
    pub careful: bool,
    /// An input running longer than this is a hang.
    pub timeout: Duration,
    /// Address-space limit in MiB (0: none).
    pub memory_mb: u64,
}

/// Progress shared with the watchdog: the input running and since when (nanoseconds after the
/// child's start, plus one; zero between inputs).
struct Progress {
    base: Instant,
    input: AtomicU64,
    since: AtomicU64,
}

impl Progress {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // The supervisor reading our stdout is gone only if it died: nothing left to report to.
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Limits the address space so an unbounded allocation fails (and aborts) here instead of
/// exhausting the machine.
fn limit_memory(memory_mb: u64) {
    if memory_mb == 0 {
        return;
    }
    let bytes = memory_mb.saturating_mul(1024 * 1024);
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes) {
        eprintln!("mailferry-fuzz: could not limit the address space to {memory_mb} MiB: {e}");
    }
}

fn run_inputs(target: &'static Target, corpus: &[Vec<u8>], plan: &Plan, progress: &Progress) {
    exec::install_panic_hook();
    let mut buf = Vec::new();
    let mut i = plan.from;
    while plan.until.is_none_or(|u| i < u) {
        if progress.base.elapsed() >= plan.budget {
            break;
        }
        if i.is_multiple_of(CHECKPOINT) && !plan.careful {
            say(format_args!("checkpoint {i}"));
        }
        input::build(target, corpus, plan.seed, i, &mut buf);
        if plan.careful {
            say(format_args!("at {i}"));
        }
        progress.input.store(i, Ordering::Relaxed);
        progress.since.store(progress.now(), Ordering::Release);
        if let Err(message) = exec::run_here(target, &buf) {
            say(format_args!("panic {i} {}", message.replace('\n', " ")));
        }
        progress.since.store(0, Ordering::Release);
        i += 1;
    }
    say(format_args!("done {i}"));
}

/// Runs the plan and exits the process (see the module documentation for the protocol).
pub fn run(target: &'static Target, corpus: Vec<Vec<u8>>, plan: Plan) -> ! {
    limit_memory(plan.memory_mb);
    let progress = Arc::new(Progress {
        base: Instant::now(),
        input: AtomicU64::new(plan.from),
        since: AtomicU64::new(0),
    });
    let worker = {
        let progress = Arc::clone(&progress);
        let plan = plan.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .stack_size(crate::TARGET_STACK)
            .spawn(move || run_inputs(target, &corpus, &plan, &progress))
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            eprintln!("mailferry-fuzz: could not start the input thread: {e}");
            std::process::exit(2);
        }
    };
    let timeout_ns = u64::try_from(plan.timeout.as_nanos()).unwrap_or(u64::MAX);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if worker.is_finished() {
            let code = if worker.join().is_ok() { 0 } else { 2 };
            std::process::exit(code);
        }
        let since = progress.since.load(Ordering::Acquire);
        if since != 0 && progress.now().saturating_sub(since) > timeout_ns {
            let i = progress.input.load(Ordering::Relaxed);
            // The input may have finished just now; a stale report only costs a replay.
            if progress.since.load(Ordering::Acquire) == since {
                say(format_args!("hang {i}"));
                std::process::exit(HANG_EXIT);
            }
        }
    }
}
