//! `mailferry-seed`: creates a source and a target user on the test servers and fills the source
//! with a deterministic mailbox, for the README's demo and for `scripts/bench`.
//!
//! Usage: `mailferry-seed demo|bench|target-user` (servers from `$MAILFERRY_TEST_SERVERS_ENV`, or started).
//! Prints shell assignments: `SRC_USER`, `SRC_PASSWORD`, `DST_USER`, `DST_PASSWORD`,
//! `SRC_PORT`, `DST_PORT`, `CA`, `MESSAGES`, `BYTES`.

use anyhow::{Result, bail};
use mailferry_tests::{Fixture, Fixtures, ImapClient, Side, SplitMix64, TestServers};

/// Folders of the seeded mailbox (raw source names; `&AOQ-` is "ä").
const FOLDERS: &[&str] = &[
    "INBOX",
    "INBOX.Sent Items",
    "INBOX.Drafts",
    "INBOX.Deleted Items",
    "INBOX.Archive",
    "INBOX.Archive.2023",
    "INBOX.Archive.2024",
    "INBOX.Projects",
    "INBOX.Projects.Alpha",
    "INBOX.Projects.Beta",
    "INBOX.Rechnungen &- Belege",
    "INBOX.&AMQ-rger",
];

/// A size between `lo` and `hi`, log-uniform (mail sizes cluster at the small end of a band).
fn log_uniform(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    let u = rng.below(1 << 20) as f64 / f64::from(1u32 << 20);
    ((lo as f64).ln() + u * ((hi as f64).ln() - (lo as f64).ln())).exp() as u64
}

/// Bench profile: most messages 2–20 KB, ~10 % 50–500 KB, ~1 % 1–10 MB, each band log-uniform,
/// about 300 MB for 5,000 messages (issue "Speed and memory").
fn bench_message(fx: &mut Fixtures, rng: &mut SplitMix64) -> Fixture {
    let roll = rng.below(100);
    let size = if roll == 0 {
        log_uniform(rng, 1 << 20, 10 << 20)
    } else if roll <= 10 {
        log_uniform(rng, 50_000, 500_000)
    } else {
        log_uniform(rng, 2_000, 20_000)
    };
    if size < 20_000 && rng.below(2) == 0 {
        let f = fx.ordinary();
        if f.raw.len() <= 20_000 {
            return f;
        }
    }
    fx.big(size as usize)
}

#[tokio::main]
async fn main() -> Result<()> {
    let profile = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    if profile == "target-user" {
        // A fresh, empty target account (benchmarks copy onto an emptied target each run).
        let dst = TestServers::try_get()?.new_user(Side::Target, "empty")?;
        println!("DST_USER={}", dst.user);
        println!("DST_PASSWORD={}", dst.password);
        return Ok(());
    }
    let (count, seed) = match profile.as_str() {
        "demo" => (120, 7),
        "bench" => (5000, 2026),
        other => bail!("unknown profile {other:?}: use demo or bench"),
    };
    let servers = TestServers::try_get()?;
    let src = servers.new_user(Side::Source, &profile)?;
    let dst = servers.new_user(Side::Target, &profile)?;
    let mut client = ImapClient::connect(&src).await?;
    for f in FOLDERS.iter().filter(|f| **f != "INBOX") {
        client.create_subscribed(f).await?;
    }
    let mut fx = Fixtures::new(seed);
    let mut rng = SplitMix64::new(seed);
    let mut bytes = 0u64;
    for i in 0..count {
        let folder = if i % 3 == 0 {
            "INBOX"
        } else {
            *rng.pick(FOLDERS)
        };
        let f = if profile == "bench" {
            bench_message(&mut fx, &mut rng)
        } else if i % 10 == 0 {
            fx.multipart()
        } else {
            fx.ordinary()
        };
        bytes += f.raw.len() as u64;
        client.append(folder, &f).await?;
    }
    client.logout().await;
    println!("SRC_USER={}", src.user);
    println!("SRC_PASSWORD={}", src.password);
    println!("DST_USER={}", dst.user);
    println!("DST_PASSWORD={}", dst.password);
    println!("SRC_PORT={}", src.imap_port);
    println!("DST_PORT={}", dst.imap_port);
    println!("CA={}", src.ca.display());
    println!("MESSAGES={count}");
    println!("BYTES={bytes}");
    Ok(())
}
