//! Automatic incremental syncs: when each migration's next sync is due, and a loop that starts
//! them on time. Only the coordinator holding the leader lease runs a [`Scheduler`], so one
//! scheduler serves the whole fleet.
//!
//! Times are wall-clock (`DateTime<Utc>`, as stored in records), read through a [`Clock`] that
//! advances with tokio's clock: under paused tokio time (tests) the schedule moves exactly as
//! far as the test advances it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Wall-clock time derived from tokio's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_utc: DateTime<Utc>,
    base: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            base_utc: Utc::now(),
            base: Instant::now(),
        }
    }
}

impl Clock {
    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.base.elapsed()).unwrap_or_default();
        self.base_utc + elapsed
    }

    /// The tokio instant of a wall-clock time (now, if it has passed).
    pub fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        let ahead = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + ahead
    }
}

/// When mail deferred by a daily upload budget may go: one minute into the next UTC day.
pub fn next_budget_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive() + chrono::Days::new(1);
    tomorrow
        .and_hms_opt(0, 1, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now + chrono::Duration::days(1))
}

/// The next sync after a pass that ended `now`: one interval later (`None`: syncing is off),
/// but no later than the next budget day when mail was deferred.
pub fn next_sync(
    now: DateTime<Utc>,
    interval: Option<Duration>,
    deferred: bool,
) -> Option<DateTime<Utc>> {
    let every = interval
        .and_then(|i| chrono::Duration::from_std(i).ok())
        .map(|i| now + i);
    let budget = deferred.then(|| next_budget_day(now));
    match (every, budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Default)]
struct Due {
    /// (due, migration id), earliest first.
    queue: BTreeSet<(DateTime<Utc>, String)>,
    by_id: HashMap<String, DateTime<Utc>>,
}

/// The due times of every migration that syncs automatically.
#[derive(Default)]
pub struct Scheduler {
    due: Mutex<Due>,
    changed: Notify,
}

impl Scheduler {
    /// Sets (or with `None`, clears) a migration's next sync.
    pub fn set(&self, id: &str, at: Option<DateTime<Utc>>) {
        let Ok(mut d) = self.due.lock() else {
            return;
        };
        if let Some(old) = d.by_id.remove(id) {
            d.queue.remove(&(old, id.to_owned()));
        }
        if let Some(at) = at {
            d.by_id.insert(id.to_owned(), at);
            d.queue.insert((at, id.to_owned()));
        }
        drop(d);
        self.changed.notify_one();
    }

    /// The earliest due time.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.due
            .lock()
            .ok()
            .and_then(|d| d.queue.first().map(|(at, _)| *at))
    }

    /// Takes every migration due at `now`, earliest first.
    pub fn take_due(&self, now: DateTime<Utc>) -> Vec<String> {
        let Ok(mut d) = self.due.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some((at, id)) = d.queue.first().cloned() {
            if at > now {
                break;
            }
            d.queue.remove(&(at, id.clone()));
            d.by_id.remove(&id);
            out.push(id);
        }
        out
    }

    /// How late the most overdue sync is at `now` (zero when none is overdue).
    pub fn lag(&self, now: DateTime<Utc>) -> Duration {
        self.next()
            .and_then(|at| (now - at).to_std().ok())
            .unwrap_or(Duration::ZERO)
    }

    /// Starts each migration's sync when it is due, for ever: `start` is called with the id (and
    /// is expected to set the next due time when that sync has ended).
    pub async fn run<F, Fut>(&self, clock: Clock, mut start: F)
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            for id in self.take_due(clock.now()) {
                start(id).await;
            }
            // Register interest before reading the next due time, so a `set` in between is
            // not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.next() {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(clock.instant_of(at)) => {}
                        _ = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    type Log = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

    fn hours(h: i64) -> chrono::Duration {
        chrono::Duration::hours(h)
    }

    /// Runs a scheduler whose `start` records (id, time) and schedules the next sync
    /// `interval` later, like the coordinator does when a pass ends.
    fn spawn(s: Arc<Scheduler>, clock: Clock, interval: chrono::Duration) -> Log {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        tokio::spawn(async move {
            let s2 = s.clone();
            s.run(clock, move |id| {
                let (l, s2) = (l.clone(), s2.clone());
                async move {
                    let now = clock.now();
                    l.lock().unwrap().push((id.clone(), now));
                    s2.set(&id, Some(now + interval));
                }
            })
            .await
        });
        log
    }

    #[tokio::test(start_paused = true)]
    async fn syncs_start_when_due_and_every_interval_after() {
        let clock = Clock::default();
        let t0 = clock.now();
        let s = Arc::new(Scheduler::default());
        s.set("a", Some(t0 + hours(3)));
        s.set("b", Some(t0 + hours(1)));
        let log = spawn(s.clone(), clock, hours(3));
        tokio::time::sleep(Duration::from_secs(7 * 3600 + 60)).await;
        let log = log.lock().unwrap().clone();
        let got: Vec<(String, i64)> = log
            .iter()
            .map(|(id, at)| (id.clone(), (*at - t0).num_minutes()))
            .collect();
        // b at 1 h, 4 h, 7 h; a at 3 h, 6 h; in time order, each on the minute.
        assert_eq!(
            got,
            vec![
                ("b".to_string(), 60),
                ("a".to_string(), 180),
                ("b".to_string(), 240),
                ("a".to_string(), 360),
                ("b".to_string(), 420),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_due_time_set_while_waiting_wins_and_a_cleared_one_never_fires() {
        let clock = Clock::default();
        let t0 = clock.now();
        let s = Arc::new(Scheduler::default());
        s.set("late", Some(t0 + hours(3)));
        s.set("gone", Some(t0 + hours(2)));
        let log = spawn(s.clone(), clock, hours(100));
        tokio::time::sleep(Duration::from_secs(60)).await;
        // While the loop sleeps towards 2 h: a sync due in 10 minutes, and "gone" paused.
        s.set("soon", Some(clock.now() + chrono::Duration::minutes(10)));
        s.set("gone", None);
        tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
        let got: Vec<(String, i64)> = log
            .lock()
            .unwrap()
            .iter()
            .map(|(id, at)| (id.clone(), (*at - t0).num_minutes()))
            .collect();
        assert_eq!(
            got,
            vec![("soon".to_string(), 11), ("late".to_string(), 180)]
        );
    }

    #[test]
    fn deferred_mail_goes_at_the_next_utc_day_unless_a_sync_comes_sooner() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let now = at("2026-11-26T22:30:00Z");
        let three_h = Some(Duration::from_secs(3 * 3600));
        assert_eq!(
            next_sync(now, three_h, false),
            Some(at("2026-11-27T01:30:00Z"))
        );
        assert_eq!(
            next_sync(now, three_h, true),
            Some(at("2026-11-27T00:01:00Z"))
        );
        assert_eq!(next_sync(now, None, true), Some(at("2026-11-27T00:01:00Z")));
        assert_eq!(next_sync(now, None, false), None);
        let one_h = Some(Duration::from_secs(3600));
        assert_eq!(
            next_sync(now, one_h, true),
            Some(at("2026-11-26T23:30:00Z"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_overdue_sync_starts_at_once_and_lag_says_how_late() {
        let clock = Clock::default();
        let t0 = clock.now();
        let s = Scheduler::default();
        s.set("x", Some(t0 - hours(2)));
        assert_eq!(s.lag(t0), Duration::from_secs(7200));
        assert_eq!(s.take_due(t0), vec!["x".to_string()]);
        assert_eq!(s.lag(t0), Duration::ZERO);
        assert!(s.next().is_none());
    }
}
