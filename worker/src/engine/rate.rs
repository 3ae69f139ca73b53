//! Per-pair rate limits (`--max-bytes-per-second`, `--max-messages-per-second`): a virtual
//! schedule (GCRA without burst) shared by every task of the pair, so connections together stay
//! under the limits a provider sets.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Limits of one pair; `None` means unlimited.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: Option<u64>,
    messages_per_second: Option<u64>,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter with these limits (a zero limit counts as none).
    pub fn new(bytes_per_second: Option<u64>, messages_per_second: Option<u64>) -> RateLimiter {
        RateLimiter {
            bytes_per_second: bytes_per_second.filter(|v| *v > 0),
            messages_per_second: messages_per_second.filter(|v| *v > 0),
            next_free: Mutex::new(None),
        }
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.bytes_per_second.is_some() || self.messages_per_second.is_some()
    }

    /// Waits until `bytes` and `messages` more may move; returns how long it waited.
    pub async fn take(&self, bytes: u64, messages: u64) -> Duration {
        if !self.is_limited() {
            return Duration::ZERO;
        }
        let secs = |amount: u64, rate: Option<u64>| rate.map_or(0.0, |r| amount as f64 / r as f64);
        let cost = Duration::from_secs_f64(
            secs(bytes, self.bytes_per_second).max(secs(messages, self.messages_per_second)),
        );
        let start = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + cost);
            start
        };
        let wait = start.saturating_duration_since(Instant::now());
        tokio::time::sleep(wait).await;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_and_messages_are_spread_over_time() {
        let l = RateLimiter::new(Some(1000), Some(2));
        let t0 = Instant::now();
        for _ in 0..5 {
            l.take(100, 1).await;
        }
        // Five messages at two per second: the fifth may start at 2 s.
        assert_eq!(Instant::now() - t0, Duration::from_secs(2));
        let t1 = Instant::now();
        l.take(3000, 1).await;
        l.take(0, 0).await;
        assert_eq!(
            Instant::now() - t1,
            Duration::from_millis(3500),
            "3000 bytes at 1000/s after the last 0.5 s slot"
        );
        assert_eq!(
            RateLimiter::new(None, Some(0)).take(1 << 30, 1000).await,
            Duration::ZERO
        );
    }
}
