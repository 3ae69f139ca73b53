//! `mailferry-fuzz`: runs the fuzz targets of `mailferry_fuzz` (see the library documentation),
//! replays saved inputs, and, as a hidden subcommand, is its own child process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use mailferry_fuzz::supervisor::{self, Options};
use mailferry_fuzz::targets::{self, Target};
use mailferry_fuzz::{child, corpus, exec};

#[derive(Parser)]
#[command(
    name = "mailferry-fuzz",
    about = "Fuzzes mailferry's parsers of foreign input"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets.
    List,
    /// Fuzzes targets for a time budget; prints a table and exits 1 on any new crash.
    Run {
        /// Targets to run (default: all).
        targets: Vec<String>,
        /// Seconds for each target.
        #[arg(long, conflicts_with = "total")]
        seconds: Option<f64>,
        /// Seconds for all targets together, shared equally.
        #[arg(long)]
        total: Option<f64>,
        /// Seed of the run (default: from the clock; printed, so any run can be repeated).
        #[arg(long)]
        seed: Option<u64>,
        /// An input running longer than this many milliseconds is a hang.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Address-space limit of the process running inputs, in MiB.
        #[arg(long, default_value_t = 2048)]
        memory_mb: u64,
        /// Seed corpora, in one directory per target.
        #[arg(long, default_value_os_t = corpus::default_corpus_dir())]
        corpus: PathBuf,
        /// Where findings are saved, in one directory per target.
        #[arg(long, default_value_os_t = corpus::default_crashes_dir())]
        crashes: PathBuf,
    },
    /// Runs files through a target, in this process, and says which fail.
    Replay {
        /// Target name.
        target: String,
        /// Input files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The child process of `run` (internal).
    #[command(hide = true)]
    Child {
        target: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        until: Option<u64>,
        #[arg(long)]
        budget_ms: u64,
        #[arg(long)]
        careful: bool,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(long)]
        memory_mb: u64,
        #[arg(long)]
        corpus: PathBuf,
    },
}

fn target(name: &str) -> anyhow::Result<&'static Target> {
    targets::find(name).with_context(|| {
        let names: Vec<&str> = targets::visible().map(|t| t.name).collect();
        format!("no target {name:?}; the targets are: {}", names.join(", "))
    })
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn replay(name: &str, files: &[PathBuf]) -> anyhow::Result<bool> {
    let target = target(name)?;
    let mut clean = true;
    for file in files {
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let start = std::time::Instant::now();
        match exec::run_on_worker_stack(target, data) {
            Ok(()) => println!("ok     {} ({:?})", file.display(), start.elapsed()),
            Err(message) => {
                clean = false;
                println!("FAILED {}: {message}", file.display());
            }
        }
    }
    Ok(clean)
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::List => {
            for t in targets::visible() {
                println!("{:<16} {}", t.name, t.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            targets: names,
            seconds,
            total,
            seed,
            timeout_ms,
            memory_mb,
            corpus,
            crashes,
        } => {
            let chosen: Vec<&'static Target> = if names.is_empty() {
                targets::visible().collect()
            } else {
                names
                    .iter()
                    .map(|n| target(n))
                    .collect::<anyhow::Result<_>>()?
            };
            let each = match (seconds, total) {
                (Some(s), _) => s,
                (None, Some(t)) => t / chosen.len() as f64,
                (None, None) => 60.0,
            };
            if !(each.is_finite() && each > 0.0) {
                bail!("the time per target must be a positive number of seconds, not {each}");
            }
            let seed = seed.unwrap_or_else(clock_seed);
            eprintln!(
                "mailferry-fuzz: seed {seed}, {each:.1} s per target, {} targets",
                chosen.len()
            );
            let options = Options {
                exe: std::env::current_exe().context("locating this program")?,
                budget: Duration::from_secs_f64(each),
                seed,
                timeout: Duration::from_millis(timeout_ms),
                memory_mb,
                corpus_dir: corpus,
                crashes_dir: crashes,
            };
            let mut reports = Vec::new();
            for t in chosen {
                reports.push(supervisor::run(t, &options)?);
            }
            supervisor::print_table(&reports, &mut std::io::stdout())?;
            let new: usize = reports.iter().map(|r| r.new_findings()).sum();
            if new > 0 {
                eprintln!(
                    "mailferry-fuzz: {new} new crashes (seed {seed}); replay them with `mailferry-fuzz replay TARGET FILE`"
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay { target, files } => Ok(if replay(&target, &files)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Cmd::Child {
            target: name,
            seed,
            from,
            until,
            budget_ms,
            careful,
            timeout_ms,
            memory_mb,
            corpus: dir,
        } => {
            let t = target(&name)?;
            let seeds = corpus::load(&dir.join(t.name))
                .with_context(|| format!("reading {}", dir.display()))?;
            child::run(
                t,
                seeds,
                child::Plan {
                    seed,
                    from,
                    until,
                    budget: Duration::from_millis(budget_ms),
                    careful,
                    timeout: Duration::from_millis(timeout_ms),
                    memory_mb,
                },
            )
        }
    }
}
