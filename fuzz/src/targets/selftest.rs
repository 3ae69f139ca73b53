//! The fuzzer's own self-test (hidden from `list` and from runs of all targets): a target that
//! panics, aborts, overflows its stack, hangs or allocates without bound when its input holds
//! `PANIC`, `ABORT`, `DEEP`, `HANG` or `OOM`, so a test can check that the supervisor catches and
//! saves each kind of failure.

use std::hint::black_box;

use super::Target;

/// The target.
pub const TARGET: Target = Target {
    name: "selftest",
    about: "the fuzzer's self-test: fails on purpose on marker words",
    run,
    dictionaries: &[&[b"PANIC", b"ABORT", b"DEEP", b"HANG", b"OOM"]],
    generate: None,
    max_len: 64,
    hidden: true,
};

fn has(data: &[u8], word: &[u8]) -> bool {
    data.windows(word.len()).any(|w| w == word)
}

/// Recursion without end, each frame holding a kilobyte, as an unbounded recursive parser does.
fn deep(n: u64) -> u64 {
    let frame = black_box([n as u8; 1024]);
    if black_box(n) == u64::MAX {
        return 0;
    }
    deep(n + 1).wrapping_add(u64::from(frame[(n % 1024) as usize]))
}

fn run(data: &[u8]) {
    if has(data, b"PANIC") {
        panic!("selftest panic");
    }
    if has(data, b"ABORT") {
        std::process::abort();
    }
    if has(data, b"DEEP") {
        black_box(deep(0));
    }
    if has(data, b"HANG") {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    if has(data, b"OOM") {
        // Far more than the child's address-space limit.
        let v: Vec<u8> = Vec::with_capacity(black_box(64 << 30));
        black_box(v);
    }
}
