//! Crash points for tests that kill a worker at a chosen moment: when the environment variable
//! `MAILFERRY_FAILPOINT` names a point (`NAME` or `NAME:N` for the N-th time it is reached), the
//! process aborts there — no destructor, no flush, no goodbye to RabbitMQ or the IMAP servers,
//! exactly like `kill -9`. Unset (always, outside tests) it costs one relaxed atomic load.
//!
//! Points: `fetch` (a source FETCH has returned message data), `appended` (the target has
//! answered an APPEND, the copy is not yet recorded in the store), `outcome_published` (the
//! outcome is confirmed by RabbitMQ, the task not yet acked).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("MAILFERRY_FAILPOINT").ok()?;
            let (name, nth) = match v.split_once(':') {
                Some((n, k)) => (n.to_owned(), k.parse().ok()?),
                None => (v, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process if `name` is the armed point and this is its N-th hit.
pub fn hit(name: &str) {
    if let Some(a) = armed()
        && a.name == name
        && a.hits.fetch_add(1, Ordering::Relaxed) + 1 == a.nth
    {
        eprintln!("failpoint {name} reached: aborting (MAILFERRY_FAILPOINT)");
        std::process::abort();
    }
}
