//! Running one input through a target the way the worker would: on a thread with the worker's
//! stack size, with a panic caught and turned into a message instead of unwinding further.
//!
//! Used by the child's loop, by `replay` and by the regression test. An abort or a stack
//! overflow still ends the process: only a separate process (see `supervisor`) survives those.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::targets::Target;

thread_local! {
    /// Set while a target runs on this thread: its panics are recorded here, not printed.
    static CAPTURE: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) a panic hook that records panics of running targets, with their
/// location, and leaves every other panic to the previous hook (so test failures still print).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE.with(|c| {
                let mut c = c.borrow_mut();
                let Some(slot) = c.as_mut() else {
                    return false;
                };
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic payload)".to_owned());
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_else(|| "unknown location".to_owned());
                *slot = Some(format!("panicked at {location}: {message}"));
                true
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

/// Runs `target` on `input` on the current thread, catching a panic: `Err` holds
/// "panicked at FILE:LINE:COL: MESSAGE". Call [`install_panic_hook`] first to get the message.
pub fn run_here(target: &Target, input: &[u8]) -> Result<(), String> {
    CAPTURE.with(|c| *c.borrow_mut() = Some(None));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let message = CAPTURE.with(|c| c.borrow_mut().take().flatten());
    result.map_err(|_| message.unwrap_or_else(|| "panicked (no message captured)".to_owned()))
}

/// Runs `target` on `input` on a fresh thread of [`crate::TARGET_STACK`] bytes, as
/// [`run_here`] does.
pub fn run_on_worker_stack(target: &'static Target, input: Vec<u8>) -> Result<(), String> {
    install_panic_hook();
    std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .stack_size(crate::TARGET_STACK)
        .spawn(move || run_here(target, &input))
        .map_err(|e| format!("could not start a thread: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the target's thread panicked outside the target".to_owned()))
}
