//! RabbitMQ names of the fleet: the exchange, queues, routing keys and message headers, each a
//! pure function of the namespace (`MAILFERRY_NAMESPACE`, default [`DEFAULT_NAMESPACE`]).
//! The adapter that declares and uses them is `fleet/src/amqp.rs`; this module does no I/O and
//! must stay the only place these strings are spelled, so that every role of every version agrees.
//!
//! | name | kind | bound with | purpose |
//! |---|---|---|---|
//! | `<ns>` | durable direct exchange | | every publish goes through it |
//! | `<ns>.tasks` | quorum queue | `tasks` | coordinator → workers; dead-letters to `dead` |
//! | `<ns>.outcomes` | quorum queue | `outcomes` | workers → coordinator; dead-letters to `dead` |
//! | `<ns>.dead` | quorum queue | `dead` | dead letters; the coordinator turns each into a failure |
//! | `<ns>.retry.<N>s` | quorum queue, queue TTL N s | `retry.<N>s` | delayed retry; expires into `tasks` |
//!
//! Delayed retries use one queue per delay bucket ([`RETRY_BUCKETS_SECS`]) with a queue-wide
//! `x-message-ttl`, never a per-message `expiration`: RabbitMQ only expires messages at the head
//! of a queue (classic and quorum alike), so a 1 h message would hold back a 5 s one queued behind
//! it. In a bucket every message has the same TTL, so arrival order is expiry order. A delay is
//! rounded *up* to its bucket: a retry never runs early.
//!
//! Headers: [`HEADER_KIND`] and [`HEADER_REASON`] are set by a worker that dead-letters a task on
//! purpose (e.g. [`crate::ErrorKind::StateLost`]); [`HEADER_DEATH`] and [`HEADER_DELIVERY_COUNT`]
//! are RabbitMQ's own.

use std::time::Duration;

/// The namespace when none is configured.
pub const DEFAULT_NAMESPACE: &str = "mailferry";

/// Routing key of the tasks queue.
pub const TASKS_KEY: &str = "tasks";
/// Routing key of the outcomes queue.
pub const OUTCOMES_KEY: &str = "outcomes";
/// Routing key of the dead-letter queue (also the `x-dead-letter-routing-key` of the others).
pub const DEAD_KEY: &str = "dead";

/// Header naming the [`crate::ErrorKind`] (snake_case, as serialised) of a task dead-lettered
/// on purpose by a worker.
pub const HEADER_KIND: &str = "x-mailferry-kind";
/// Header with the worker's one-sentence reason for dead-lettering a task.
pub const HEADER_REASON: &str = "x-mailferry-reason";
/// RabbitMQ's dead-letter history: an array of tables (`queue`, `reason`, `count`, ...), the most
/// recent death first.
pub const HEADER_DEATH: &str = "x-death";
/// RabbitMQ's count of earlier deliveries of a quorum queue message.
pub const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";

/// Delay buckets of the retry queues, in seconds, ascending. A delay above the last bucket is
/// clamped to it.
pub const RETRY_BUCKETS_SECS: &[u32] = &[
    1, 2, 5, 10, 30, 60, 120, 300, 600, 1_800, 3_600, 7_200, 21_600, 43_200, 86_400,
];

/// Longest accepted namespace: queue names are at most 255 bytes, and the longest suffix is a
/// retry queue's.
pub const MAX_NAMESPACE_LEN: usize = 200;

/// The exchange every message is published to: `<ns>`.
pub fn exchange(ns: &str) -> String {
    ns.to_owned()
}

/// The tasks queue: `<ns>.tasks`.
pub fn tasks_queue(ns: &str) -> String {
    format!("{ns}.tasks")
}

/// The outcomes queue: `<ns>.outcomes`.
pub fn outcomes_queue(ns: &str) -> String {
    format!("{ns}.outcomes")
}

/// The dead-letter queue: `<ns>.dead`.
pub fn dead_queue(ns: &str) -> String {
    format!("{ns}.dead")
}

/// The retry queue of one delay bucket: `<ns>.retry.<secs>s`.
pub fn retry_queue(ns: &str, bucket_secs: u32) -> String {
    format!("{ns}.retry.{bucket_secs}s")
}

/// The routing key of one retry bucket: `retry.<secs>s`.
pub fn retry_key(bucket_secs: u32) -> String {
    format!("retry.{bucket_secs}s")
}

/// The bucket (seconds) a delay goes to: the smallest bucket not shorter than `delay`, or the
/// longest bucket when `delay` exceeds it.
pub fn retry_bucket(delay: Duration) -> u32 {
    let wanted = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    RETRY_BUCKETS_SECS
        .iter()
        .copied()
        .find(|&b| u64::from(b) >= wanted)
        .unwrap_or(RETRY_BUCKETS_SECS[RETRY_BUCKETS_SECS.len() - 1])
}

/// A namespace RabbitMQ names cannot be built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNamespace {
    /// The namespace as given.
    pub namespace: String,
    /// Why it is refused.
    pub reason: &'static str,
}

impl std::fmt::Display for InvalidNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid queue namespace {:?}: {} (use letters, digits, '.', '_' and '-', e.g. {DEFAULT_NAMESPACE})",
            self.namespace, self.reason
        )
    }
}

impl std::error::Error for InvalidNamespace {}

/// Checks that `ns` makes valid, unambiguous names: 1 to [`MAX_NAMESPACE_LEN`] bytes of ASCII
/// letters, digits, `.`, `_` and `-`, not starting with `amq.` (reserved by RabbitMQ).
pub fn validate_namespace(ns: &str) -> Result<(), InvalidNamespace> {
    let refuse = |reason| {
        Err(InvalidNamespace {
            namespace: ns.to_owned(),
            reason,
        })
    };
    if ns.is_empty() {
        return refuse("it is empty");
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return refuse("it is longer than 200 bytes");
    }
    if !ns
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return refuse("it contains a character other than letters, digits, '.', '_' and '-'");
    }
    if ns.starts_with("amq.") {
        return refuse("names starting with \"amq.\" are reserved by RabbitMQ");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_namespace() {
        assert_eq!(exchange("mf"), "mf");
        assert_eq!(tasks_queue("mf"), "mf.tasks");
        assert_eq!(outcomes_queue("mf"), "mf.outcomes");
        assert_eq!(dead_queue("mf"), "mf.dead");
        assert_eq!(retry_queue("mf", 30), "mf.retry.30s");
        assert_eq!(retry_key(30), "retry.30s");
    }

    #[test]
    fn delays_round_up_to_their_bucket() {
        let cases = [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(3), 5),
            (Duration::from_secs(60), 60),
            (Duration::from_secs(61), 120),
            (Duration::from_secs(86_400), 86_400),
            (Duration::from_secs(1_000_000), 86_400),
        ];
        for (delay, bucket) in cases {
            assert_eq!(retry_bucket(delay), bucket, "{delay:?}");
        }
        assert!(RETRY_BUCKETS_SECS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn namespaces_are_checked() {
        for ok in ["mailferry", "mf-test_1.a"] {
            assert_eq!(validate_namespace(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(MAX_NAMESPACE_LEN + 1);
        for bad in ["", "a b", "ns/1", "amq.x", "ü", long.as_str()] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
        let longest = retry_queue(&"x".repeat(MAX_NAMESPACE_LEN), RETRY_BUCKETS_SECS[14]);
        assert!(longest.len() <= 255);
    }
}
