//! The fuzzer catches every kind of failure: the hidden `selftest` target panics, aborts,
//! overflows its stack, hangs and allocates without bound on marker words, and a short run must
//! report each kind, save the inputs and exit non-zero, while a clean target exits zero.

use std::process::Command;

fn fuzz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailferry-fuzz"))
}

#[test]
fn every_kind_of_failure_is_caught_and_saved() {
    let dir = std::env::temp_dir().join(format!("mailferry-fuzz-selftest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seeds = dir.join("corpus/selftest");
    std::fs::create_dir_all(&seeds).expect("corpus dir");
    for marker in ["PANIC", "ABORT", "DEEP", "HANG", "OOM"] {
        std::fs::write(seeds.join(marker), format!("xx{marker}xx")).expect("seed");
    }
    let out = fuzz()
        .args([
            "run",
            "selftest",
            "--seconds",
            "15",
            "--seed",
            "3",
            "--timeout-ms",
            "300",
        ])
        .args(["--memory-mb", "1024"])
        .arg("--corpus")
        .arg(dir.join("corpus"))
        .arg("--crashes")
        .arg(dir.join("crashes"))
        .output()
        .expect("running mailferry-fuzz");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for kind in [
        "Panic at input",
        "selftest panic",
        "Hang at input",
        "stack overflow",
        "allocation failure",
        "killed by signal 6",
    ] {
        assert!(stderr.contains(kind), "no {kind:?} in:\n{stderr}");
    }
    let saved = std::fs::read_dir(dir.join("crashes/selftest"))
        .expect("crashes saved")
        .count();
    assert!(saved >= 5, "{saved} inputs saved");
    // A saved panic replays as a failure.
    let replay = fuzz()
        .args(["replay", "selftest"])
        .arg(
            dir.join("crashes/selftest")
                .read_dir()
                .expect("dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    std::fs::read(p).is_ok_and(|d| {
                        d.windows(5).any(|w| w == b"PANIC")
                            && !["ABORT", "DEEP", "HANG", "OOM"]
                                .iter()
                                .any(|m| d.windows(m.len()).any(|w| w == m.as_bytes()))
                    })
                })
                .expect("a saved panic"),
        )
        .output()
        .expect("replaying");
    assert_eq!(replay.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_clean_target_exits_zero_with_a_table() {
    let out = fuzz()
        .args(["run", "throttle_hint", "--seconds", "2", "--seed", "1"])
        .arg("--crashes")
        .arg(std::env::temp_dir().join(format!("mailferry-fuzz-clean-{}", std::process::id())))
        .output()
        .expect("running mailferry-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("throttle_hint"), "{stdout}");
    assert!(stdout.contains("execs/s"), "{stdout}");
}
