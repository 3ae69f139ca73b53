//! Replays every seed-corpus input and every saved crash through its target, on a thread of the
//! worker's stack size: a fixed parser stays fixed, and a new crash in `fuzz/crashes/` fails the
//! suite until it is fixed (or listed in `KNOWN_OPEN` with its reason).

use std::path::Path;

use mailferry_fuzz::known_open::{self, KNOWN_OPEN};
use mailferry_fuzz::{corpus, exec, targets};

/// Runs every file under `root/<target>/`; returns the failures and how many files ran.
fn replay_tree(root: &Path) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut ran = 0;
    let Ok(dirs) = std::fs::read_dir(root) else {
        return (failures, ran);
    };
    let mut dirs: Vec<_> = dirs.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(target) = targets::find(name) else {
            failures.push(format!("{}: no target called {name:?}", dir.display()));
            continue;
        };
        for file in corpus::files(dir).expect("listing inputs") {
            let file_name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if known_open::for_file(name, file_name).is_some() {
                continue;
            }
            let data = std::fs::read(&file).expect("reading an input");
            ran += 1;
            if let Err(message) = exec::run_on_worker_stack(target, data) {
                failures.push(format!("{}: {message}", file.display()));
            }
        }
    }
    (failures, ran)
}

#[test]
fn every_corpus_input_passes_its_target() {
    let (failures, ran) = replay_tree(&corpus::default_corpus_dir());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran >= 50, "only {ran} corpus inputs");
    // Every visible target has a seed corpus.
    for t in targets::visible() {
        let files = corpus::files(&corpus::default_corpus_dir().join(t.name)).expect("listing");
        assert!(!files.is_empty(), "target {} has no seed corpus", t.name);
    }
}

#[test]
fn every_saved_crash_is_fixed_or_known_open() {
    let (failures, _) = replay_tree(&corpus::default_crashes_dir());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn known_open_entries_name_saved_files() {
    for k in KNOWN_OPEN {
        let path = corpus::default_crashes_dir().join(k.target).join(k.file);
        assert!(
            path.is_file(),
            "KNOWN_OPEN names {}, which is missing",
            path.display()
        );
        assert!(!k.reason.is_empty() && !k.signature.is_empty());
    }
}
