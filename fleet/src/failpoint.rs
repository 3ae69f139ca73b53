//! Crash points for tests that kill a worker at a chosen moment: when the environment variable
//! `MAILFERRY_FAILPOINT` names a point (`NAME` or `NAME:N` for the N-th time it is reached), the
//! process aborts there — no destructor, no flush, no goodbye to RabbitMQ or the IMAP servers,
//! exactly like `kill -9`. Unset (always, outside tests) it costs one relaxed atomic load.
//!
//! Points: `fetch` (a source FETCH has returned message data), `appended` (the target has
//! answered an APPEND, the copy is not yet recorded in the store), `outcome_published` (the
//! outcome is confirmed by RabbitMQ, the task not yet acked).
//!
//! Poison points, for the tests of poison tasks: `task_abort@USER` aborts and `task_panic@USER`
//! panics at the start of *every* task of a pair whose source login is `USER` ([`hit_task`]),
//! so a worker that takes such a task dies (or its task panics) each time, as on a mailbox that
//! trips a bug.

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

/// Whether a poison point (`task_abort@…`, `task_panic@…`) is armed, so the runner looks up a
/// task's source login only in the tests that need it.
pub fn task_point_armed() -> bool {
    armed().is_some_and(|a| a.name.starts_with("task_"))
}

/// At the start of a task of a pair whose source login is `source_user`: aborts the process
/// when `task_abort@source_user` is armed, panics when `task_panic@source_user` is (every time,
/// whatever N).
///
/// # Panics
/// On purpose, when `task_panic@source_user` is armed.
pub fn hit_task(source_user: &str) {
    let Some((point, user)) = armed().and_then(|a| a.name.split_once('@')) else {
        return;
    };
    if user != source_user {
        return;
    }
    match point {
        "task_abort" => {
            eprintln!("failpoint task_abort reached: aborting (MAILFERRY_FAILPOINT)");
            std::process::abort();
        }
        "task_panic" => panic!("failpoint task_panic reached (MAILFERRY_FAILPOINT)"),
        _ => {}
    }
}
