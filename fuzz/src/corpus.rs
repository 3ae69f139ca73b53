//! The fuzzer's files: seed corpora (`fuzz/corpus/<target>/`) and saved findings
//! (`fuzz/crashes/<target>/<hash>`), named by the first 8 bytes of the input's SHA-256 in hex so
//! the same input is never saved twice.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `fuzz/corpus` of this source tree.
pub fn default_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// `fuzz/crashes` of this source tree.
pub fn default_crashes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes")
}

/// The files directly in `dir`, sorted by name (the order is part of what makes a run
/// reproducible); none when `dir` does not exist.
pub fn files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The contents of every file in `dir`, in name order.
pub fn load(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    files(dir)?.iter().map(std::fs::read).collect()
}

/// The file name an input is saved under.
pub fn name_of(input: &[u8]) -> String {
    Sha256::digest(input)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Saves `input` as `dir/<hash>` (creating `dir`) and returns the path.
pub fn save(dir: &Path, input: &[u8]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name_of(input));
    std::fs::write(&path, input)?;
    Ok(path)
}
