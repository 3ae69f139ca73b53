//! The Redis key layout of the fleet: every key the fleet's Redis store (fleet/src/redis_store.rs)
//! reads or writes, as a pure function of the namespace. This module owns the names only; it must
//! not do I/O or decide what is stored under a name.
//!
//! Every key starts with `<ns>:`, so one namespace can be listed (`SCAN MATCH <ns>:*`) or removed
//! without touching another. Ids, lease names and folder names are arbitrary text (a folder may
//! hold `:`, `{`, spaces, any Unicode), so each is written as one [`segment`]: the text itself when
//! it is made of `A-Z a-z 0-9 _ . -` only, otherwise `~` followed by the hex of its UTF-8 bytes. A
//! segment therefore never holds `:`, `{`, `}` or a glob character, and two different texts never
//! share a segment.
//!
//! | key                                        | function               | type       | holds                                           |
//! |--------------------------------------------|------------------------|------------|-------------------------------------------------|
//! | `<ns>:{coord}:epoch`                       | [`epoch`]              | string     | when the store's data began (Redis time, ms)    |
//! | `<ns>:{coord}:lease:<name>`                | [`lease`]              | hash       | `holder`, `token`; expires with the lease (PX)  |
//! | `<ns>:{coord}:lease-token`                 | [`lease_counter`]      | string     | the last fencing token issued (INCR)            |
//! | `<ns>:{coord}:slots:<set>`                 | [`slots`]              | sorted set | connection slot tokens scored by expiry (ms)    |
//! | `<ns>:{coord}:slots-queue:<set>`           | [`slots_queue`]        | sorted set | waiter ids scored by their first arrival (ms)   |
//! | `<ns>:{coord}:slots-waiting:<set>`         | [`slots_waiting`]      | sorted set | the same ids scored by when their place lapses  |
//! | `<ns>:{coord}:slots-need:<set>`            | [`slots_need`]         | hash       | waiter id → slots it needs in the set           |
//! | `<ns>:migrations`                          | [`migrations_index`]   | sorted set | migration ids scored by creation time (ms)      |
//! | `<ns>:migration:<id>`                      | [`migration`]          | string     | the coordinator's migration record (JSON)       |
//! | `<ns>:migration:<id>:pairs`                | [`pair_summaries`]     | hash       | pair id → pair summary (JSON)                   |
//! | `<ns>:request:<id>`                        | [`request`]            | string     | the migration a CreateMigration request created |
//! | `<ns>:pair:{<pair>}:account:<side>`        | [`account`]            | string     | one side's endpoint and credentials, sealed     |
//! | `<ns>:pair:{<pair>}:done:<folder>:<uv>`    | [`done`]               | hash       | `<src folder>:<src uv>:<src uid>` → key (hex)   |
//! | `<ns>:pair:{<pair>}:done-by-dst:<folder>:<uv>` | [`done_by_dst`]    | sorted set | the same fields, scored by target UID           |
//! | `<ns>:pair:{<pair>}:done-keys`             | [`pair_done_keys`]     | set        | the pair's `done` and `done-by-dst` keys        |
//! | `<ns>:pair:{<pair>}:watermarks`            | [`watermark`]          | hash       | target folder (raw name) → watermark (JSON)     |
//! | `<ns>:dead-letters`                        | [`dead_letters`]       | hash       | dead letter id → dead letter (JSON)             |
//! | `<ns>:upload:<account>:<day>`              | [`daily_upload`]       | string     | bytes sent to a target account that UTC day     |
//! | `<ns>:dead-letter-id`                      | [`dead_letter_counter`]| string     | the last dead letter id issued (INCR)           |
//! | `<ns>:task-runs:<task>:<attempt>`          | [`task_runs`]          | string     | runs of a task started and not ended (poison)   |
//!
//! `<folder>` is the target folder, `<uv>` a UIDVALIDITY in decimal, `<side>` `source` or `target`.
//!
//! Hash tags (the text in `{}`) keep keys that one script or transaction touches together in one
//! cluster slot: `{coord}` for the lease and slot scripts (epoch, lease, counter, slot sets, which
//! one script takes together), `{<pair>}` for a pair's
//! copy entries, key set, watermarks and accounts.

/// Lease names that guard writes into a target folder start with this; the store refuses them
/// within one lease TTL of the epoch's creation (DESIGN.md, "Idempotency", *Exclusion*).
pub const FOLDER_LEASE_PREFIX: &str = "folder:";

/// Longest namespace [`valid_namespace`] accepts.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Whether `ns` can prefix keys: 1 to [`MAX_NAMESPACE_LEN`] characters of `A-Z a-z 0-9 _ . -`
/// (no hash-tag braces, no glob characters, so `SCAN MATCH <ns>:*` matches exactly its keys).
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty() && ns.len() <= MAX_NAMESPACE_LEN && ns.bytes().all(plain_byte)
}

fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// One key segment for arbitrary text: the text itself if it is non-empty and plain
/// (`A-Z a-z 0-9 _ . -`), otherwise `~` and the lower-case hex of its UTF-8 bytes.
pub fn segment(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(plain_byte) {
        return text.to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(1 + 2 * text.len());
    out.push('~');
    for b in text.bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// When the store's data began (see the module table).
pub fn epoch(ns: &str) -> String {
    format!("{ns}:{{coord}}:epoch")
}

/// A named lease.
pub fn lease(ns: &str, name: &str) -> String {
    format!("{ns}:{{coord}}:lease:{}", segment(name))
}

/// The fencing token counter of all leases.
pub fn lease_counter(ns: &str) -> String {
    format!("{ns}:{{coord}}:lease-token")
}

/// One set of connection slots (e.g. `acct:source:alice@imap.example.com:993`): the tokens of
/// the sessions that hold a slot, scored by when they expire. Shares the lease counter's slot, so
/// one script takes slots in several sets and a token from the counter at once.
pub fn slots(ns: &str, set: &str) -> String {
    format!("{ns}:{{coord}}:slots:{}", segment(set))
}

/// The queue of tasks waiting for a slot in `set`: waiter ids scored by when each first asked
/// (first come, first served; fleet/src/slots.rs). Holders of idle sessions there close them.
pub fn slots_queue(ns: &str, set: &str) -> String {
    format!("{ns}:{{coord}}:slots-queue:{}", segment(set))
}

/// The waiters of [`slots_queue`] scored by when their place lapses unless they ask again, so a
/// dead worker's waiter cannot block the queue.
pub fn slots_waiting(ns: &str, set: &str) -> String {
    format!("{ns}:{{coord}}:slots-waiting:{}", segment(set))
}

/// How many slots of `set` each waiter of [`slots_queue`] needs (two when both sides of a pair
/// are on one server).
pub fn slots_need(ns: &str, set: &str) -> String {
    format!("{ns}:{{coord}}:slots-need:{}", segment(set))
}

/// Migration ids by creation time.
pub fn migrations_index(ns: &str) -> String {
    format!("{ns}:migrations")
}

/// One migration record.
pub fn migration(ns: &str, migration_id: &str) -> String {
    format!("{ns}:migration:{}", segment(migration_id))
}

/// The per-pair summaries of one migration.
pub fn pair_summaries(ns: &str, migration_id: &str) -> String {
    format!("{ns}:migration:{}:pairs", segment(migration_id))
}

/// The claim of one CreateMigration request id.
pub fn request(ns: &str, request_id: &str) -> String {
    format!("{ns}:request:{}", segment(request_id))
}

/// The prefix of every key of one pair (ends with `:`).
pub fn pair_prefix(ns: &str, pair_id: &str) -> String {
    format!("{ns}:pair:{{{}}}:", segment(pair_id))
}

/// One side's sealed endpoint and credentials. `side` is `source` or `target`.
pub fn account(ns: &str, pair_id: &str, side: &str) -> String {
    format!("{}account:{}", pair_prefix(ns, pair_id), segment(side))
}

/// A pair's copy entries into one target folder of one UIDVALIDITY, by source message.
pub fn done(ns: &str, pair_id: &str, dst_folder: &str, dst_uidvalidity: u32) -> String {
    format!(
        "{}done:{}:{dst_uidvalidity}",
        pair_prefix(ns, pair_id),
        segment(dst_folder)
    )
}

/// The same copy entries as [`done`], ordered by target UID.
pub fn done_by_dst(ns: &str, pair_id: &str, dst_folder: &str, dst_uidvalidity: u32) -> String {
    format!(
        "{}done-by-dst:{}:{dst_uidvalidity}",
        pair_prefix(ns, pair_id),
        segment(dst_folder)
    )
}

/// The set of a pair's [`done`] and [`done_by_dst`] keys.
pub fn pair_done_keys(ns: &str, pair_id: &str) -> String {
    format!("{}done-keys", pair_prefix(ns, pair_id))
}

/// A pair's folder watermarks (one hash field per target folder).
pub fn watermark(ns: &str, pair_id: &str) -> String {
    format!("{}watermarks", pair_prefix(ns, pair_id))
}

/// Bytes sent to one target account (`user@host:port`) on one UTC day (`YYYY-MM-DD`); expires
/// two days later.
pub fn daily_upload(ns: &str, account: &str, day: &str) -> String {
    format!("{ns}:upload:{}:{}", segment(account), segment(day))
}

/// Dead letters by id.
pub fn dead_letters(ns: &str) -> String {
    format!("{ns}:dead-letters")
}

/// The dead letter id counter.
pub fn dead_letter_counter(ns: &str) -> String {
    format!("{ns}:dead-letter-id")
}

/// Runs of one attempt of a task that a worker started and no worker ended with an outcome: a
/// count that reaches the worker's limit means the task kills its workers (fleet/src/poison.rs).
pub fn task_runs(ns: &str, task_id: &str, attempt: u32) -> String {
    format!("{ns}:task-runs:{}:{attempt}", segment(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_plain_or_hex_and_never_collide() {
        let cases = [
            ("INBOX", "INBOX"),
            ("a-b_c.d", "a-b_c.d"),
            ("", "~"),
            ("a:b", "~613a62"),
            ("{x}", "~7b787d"),
            ("Sent Items", "~53656e74204974656d73"),
            ("Entwürfe", "~456e7477c3bc726665"),
            ("~61", "~7e3631"),
        ];
        for (text, want) in cases {
            assert_eq!(segment(text), want, "{text:?}");
        }
        // A hex segment always starts with `~`, which a plain one never holds.
        assert_ne!(segment("~61"), segment("a"));
        for text in ["a:b", "{x}", "Sent Items", "x*y?[z]\\"] {
            let s = segment(text);
            assert!(
                !s.contains([':', '{', '}', '*', '?', '[', ']', '\\', ' ']),
                "{s}"
            );
        }
    }

    #[test]
    fn keys_stay_in_their_namespace_and_slot() {
        let ns = "mf";
        let keys = [
            epoch(ns),
            lease(ns, "folder:p:INBOX"),
            lease_counter(ns),
            slots(ns, "acct:source:a@h:993"),
            slots_queue(ns, "acct:source:a@h:993"),
            slots_waiting(ns, "acct:source:a@h:993"),
            slots_need(ns, "acct:source:a@h:993"),
            migrations_index(ns),
            migration(ns, "m1"),
            pair_summaries(ns, "m1"),
            request(ns, "r1"),
            account(ns, "p1", "source"),
            done(ns, "p1", "A:{b} c", 7),
            done_by_dst(ns, "p1", "A:{b} c", 7),
            pair_done_keys(ns, "p1"),
            watermark(ns, "p1"),
            dead_letters(ns),
            dead_letter_counter(ns),
            task_runs(ns, "t:1", 0),
        ];
        for k in &keys {
            assert!(k.starts_with("mf:"), "{k}");
        }
        assert_eq!(
            done(ns, "p1", "A:{b} c", 7),
            "mf:pair:{p1}:done:~413a7b627d2063:7"
        );
        assert_eq!(lease(ns, "leader"), "mf:{coord}:lease:leader");
        let tag = |k: &str| {
            let open = k.find('{').map(|i| i + 1).unwrap_or(0);
            let close = k[open..].find('}').map(|i| open + i).unwrap_or(k.len());
            k[open..close].to_owned()
        };
        assert_eq!(tag(&epoch(ns)), tag(&lease(ns, "folder:x")));
        assert_eq!(tag(&epoch(ns)), tag(&lease_counter(ns)));
        assert_eq!(tag(&epoch(ns)), tag(&slots(ns, "host:h:993")));
        assert_eq!(tag(&epoch(ns)), tag(&slots_queue(ns, "host:h:993")));
        assert_eq!(tag(&epoch(ns)), tag(&slots_waiting(ns, "host:h:993")));
        assert_eq!(tag(&epoch(ns)), tag(&slots_need(ns, "host:h:993")));
        assert_eq!(tag(&done(ns, "p1", "x", 1)), tag(&pair_done_keys(ns, "p1")));
        assert_eq!(tag(&watermark(ns, "p1")), tag(&account(ns, "p1", "target")));
        assert_ne!(
            tag(&watermark(ns, "p1")),
            tag(&watermark(ns, "p2")),
            "pairs spread over slots"
        );
    }

    #[test]
    fn namespaces_are_validated() {
        assert!(valid_namespace("mailferry"));
        assert!(valid_namespace("test-0a1b.c_d"));
        for bad in ["", "a:b", "a{b}", "a*", "a b", "ü", &"x".repeat(65)] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
    }
}
