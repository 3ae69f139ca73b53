//! Findings in code this crate may not fix itself, kept open on purpose: the one place that
//! says which saved crashes the regression test skips, and which crash signatures a fuzz run
//! counts as known instead of failing on, with the reason. Remove an entry when its fix lands;
//! the regression test then replays the file like every other.

/// One known, still open finding.
#[derive(Debug)]
pub struct KnownOpen {
    /// The target it was found by.
    pub target: &'static str,
    /// Its file name under `fuzz/crashes/<target>/`.
    pub file: &'static str,
    /// Text in a finding's description (panic message, or what killed the child) that marks
    /// further findings of the same bug in a fuzz run.
    pub signature: &'static str,
    /// Why it is open, and where the fix is being made.
    pub reason: &'static str,
}

/// The known open findings (none: the 10,000-nested-`(` stack overflow of `imap::wire` found
/// by `wire_parse`, `wire_tokenize` and `wire_frame` is fixed by its depth limit, and its saved
/// inputs replay as regression cases).
pub const KNOWN_OPEN: &[KnownOpen] = &[];

/// The entry for the saved file `file` of `target`, if it is known open.
pub fn for_file(target: &str, file: &str) -> Option<&'static KnownOpen> {
    KNOWN_OPEN
        .iter()
        .find(|k| k.target == target && k.file == file)
}

/// The entry a finding of `target` described by `detail` belongs to, if any.
pub fn for_finding(target: &str, detail: &str) -> Option<&'static KnownOpen> {
    KNOWN_OPEN
        .iter()
        .find(|k| k.target == target && detail.contains(k.signature))
}
