//! Checks made before `migrate` copies anything, of what it would otherwise find out only at the
//! end: that its report outputs can be written. A run of hours whose report then fails to land
//! is a run whose result is lost.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

use crate::input::shown_path;

/// `--report-dir DIR`: creates it (as the run would) and writes and removes a probe file in it.
pub fn report_dir(dir: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!(
            "--report-dir {}: cannot write there ({e}); choose a writable directory — nothing was copied",
            shown_path(dir)
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".mailferry-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(fail)?;
    // A probe left behind is harmless; the check has answered.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `--report FILE`: a file that exists must open for writing (it is not truncated now); a new one
/// is created and removed again.
pub fn report_file(file: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!(
            "--report {}: cannot write it ({e}); choose a writable file — nothing was copied",
            shown_path(file)
        )
    };
    if file.is_dir() {
        return Err(format!(
            "--report {} is a directory; name a file",
            shown_path(file)
        ));
    }
    match OpenOptions::new().append(true).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file)
                .map_err(fail)?;
            let _ = std::fs::remove_file(file);
            Ok(())
        }
        Err(e) => Err(fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_places_pass_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let reports = dir.path().join("a/b");
        report_dir(&reports).expect("creatable");
        assert_eq!(std::fs::read_dir(&reports).expect("dir").count(), 0);
        let file = dir.path().join("report.csv");
        report_file(&file).expect("creatable");
        assert!(!file.exists(), "the probe is removed");
        std::fs::write(&file, "kept").expect("write");
        report_file(&file).expect("existing");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "kept");
    }

    #[test]
    fn unwritable_places_are_refused_with_their_flag() {
        let dir = tempfile::tempdir().expect("dir");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").expect("write");
        let e = report_dir(&plain.join("sub")).expect_err("under a file");
        assert!(
            e.starts_with("--report-dir ") && e.contains("nothing was copied"),
            "{e}"
        );
        let e = report_file(&plain.join("r.csv")).expect_err("under a file");
        assert!(e.starts_with("--report "), "{e}");
        assert!(
            report_file(dir.path())
                .expect_err("dir")
                .contains("is a directory")
        );
    }
}
