//! mailferry's own fuzzer: a coverage-free, mutational fuzzer that runs on the stable toolchain
//! (cargo-fuzz needs nightly for its sanitizers and coverage instrumentation; this machine and CI
//! have only stable).
//!
//! Every parser of foreign input has a [`target`](targets) here: a `fn(&[u8])` that must not
//! panic, abort, hang or allocate without bound on any input, and that asserts the invariants
//! worth checking (round trips where they exist). Inputs are mutations of a seed corpus in
//! `fuzz/corpus/<target>/` (bit flips, insertions, deletions, duplications, splices, tokens from
//! a per-target dictionary, long repetition runs such as 10,000 `(`), plus structured
//! generators where those reach deeper. Input number `i` of a run is a pure function of the seed,
//! `i` and the corpus ([`input::build`]), so every finding is reproducible from `--seed` alone.
//!
//! A run is two processes ([`supervisor`] and [`child`]): the child executes inputs under an
//! address-space limit and a watchdog and reports panics and hangs; when the child dies (abort,
//! stack overflow, allocation failure) the supervisor replays the last stretch one input at a
//! time to find the input that killed it. Findings are saved under `fuzz/crashes/<target>/`.
//!
//! This crate must not be a dependency of the product: it only calls the parsers' public APIs.

pub mod child;
pub mod corpus;
pub mod exec;
pub mod input;
pub mod known_open;
pub mod mutate;
pub mod rng;
pub mod supervisor;
pub mod targets;

/// Stack size of the thread inputs run on: tokio's default for worker threads, where the worker
/// runs these parsers in production. A parser that needs more stack than this crashes the worker.
pub const TARGET_STACK: usize = 2 * 1024 * 1024;
