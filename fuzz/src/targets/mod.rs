//! The fuzz targets: one file per parser of foreign input, and the registry below.
//!
//! A target is a `fn(&[u8])` that must not panic, abort, hang or allocate without bound on any
//! input, and asserts (with `assert!`, so a violation is a panic the fuzzer saves) the invariants
//! of its parser. Adding a target is one file exporting `pub const TARGET: Target` and its
//! module name in the `registry!` line; its seed corpus goes in `fuzz/corpus/<name>/`.

use crate::rng::Rng;

pub mod dict;
pub mod generate;

/// One fuzz target.
#[derive(Debug)]
pub struct Target {
    /// Name on the command line and directory name under `fuzz/corpus` and `fuzz/crashes`.
    pub name: &'static str,
    /// What the target feeds and checks, for `list`.
    pub about: &'static str,
    /// Runs one input; panics on a violated invariant.
    pub run: fn(&[u8]),
    /// Tokens the mutator inserts (see [`dict`]).
    pub dictionaries: &'static [&'static [&'static [u8]]],
    /// A structured generator of plausible inputs, for syntax mutations rarely reach (such as a
    /// literal whose announced length is right).
    pub generate: Option<fn(&mut Rng, &mut Vec<u8>)>,
    /// Longest input generated (long enough for the deep-nesting runs the mutator inserts).
    pub max_len: usize,
    /// Left out of `list` and of runs of all targets (the fuzzer's own self-test).
    pub hidden: bool,
}

macro_rules! registry {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every target, in the order `list` shows and `run` runs them.
        pub const ALL: &[Target] = &[$($module::TARGET),*];
    };
}

registry!(
    wire_frame,
    wire_tokenize,
    wire_parse,
    wire_quote,
    mutf7,
    mailbox_name,
    message_key,
    throttle_hint,
    uid_set,
    batch_csv,
    endpoint_url,
    selftest,
);

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}

/// The targets a run of "all" covers (every target but hidden ones).
pub fn visible() -> impl Iterator<Item = &'static Target> {
    ALL.iter().filter(|t| !t.hidden)
}
