//! `mailferry-seed`: creates a source and a target user on the test servers and fills the source
//! with a deterministic mailbox, for the README's demo and for `scripts/bench`.
//!
//! Usage: `mailferry-seed demo|bench|target-user` (servers from `$MAILFERRY_TEST_SERVERS_ENV`, or started).
//! Prints shell assignments: `SRC_USER`, `SRC_PASSWORD`, `DST_USER`, `DST_PASSWORD`,
//! `SRC_PORT`, `DST_PORT`, `CA`, `MESSAGES`, `BYTES`.
//!
//! For fleet benchmarks: `mailferry-seed fleet-sources N M` creates N source mailboxes of M
//! messages each (12 folders, 2–20 KB messages, some larger) and prints one `USER PASSWORD` line
//! each, then `# MESSAGES=… BYTES=…`; `mailferry-seed fleet-csv FILE` reads such a file, creates
//! as many fresh, empty target users and prints a `--batch` CSV pairing them.

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
    if profile == "fleet-sources" {
        let arg = |i: usize| -> Result<usize> {
            let v = std::env::args().nth(i).unwrap_or_default();
            v.parse()
                .map_err(|_| anyhow::anyhow!("fleet-sources N M: {v:?} is not a number"))
        };
        return fleet_sources(arg(2)?, arg(3)?).await;
    }
    if profile == "fleet-csv" {
        let file = std::env::args().nth(2).unwrap_or_default();
        return fleet_csv(&file);
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

/// Creates `n` source mailboxes of `m` messages each, appending from a few connections at once.
async fn fleet_sources(n: usize, m: usize) -> Result<()> {
    let servers = TestServers::try_get()?;
    let users = servers.new_users(Side::Source, "fleet", n)?;
    let mut bytes = 0u64;
    let mut handles = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let u = u.clone();
        handles.push(tokio::spawn(async move {
            let mut client = ImapClient::connect(&u).await?;
            for f in FOLDERS.iter().filter(|f| **f != "INBOX") {
                client.create_subscribed(f).await?;
            }
            let seed = 5000 + i as u64;
            let mut fx = Fixtures::new(seed);
            let mut rng = SplitMix64::new(seed);
            let mut bytes = 0u64;
            for k in 0..m {
                let folder = if k % 3 == 0 {
                    "INBOX"
                } else {
                    *rng.pick(FOLDERS)
                };
                let f = if k % 50 == 0 {
                    fx.multipart()
                } else {
                    fx.ordinary()
                };
                bytes += f.raw.len() as u64;
                client.append(folder, &f).await?;
            }
            client.logout().await;
            anyhow::Ok(bytes)
        }));
        if handles.len() >= 8 {
            bytes += handles.remove(0).await??;
        }
    }
    for h in handles {
        bytes += h.await??;
    }
    for u in &users {
        println!("{} {}", u.user, u.password);
    }
    println!(
        "# MESSAGES={} BYTES={bytes} SRC_PORT={}",
        n * m,
        users.first().map_or(0, |u| u.imap_port)
    );
    Ok(())
}

/// Pairs the sources of a `fleet-sources` file with fresh target users, as a `--batch` CSV.
fn fleet_csv(file: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("fleet-csv {file:?}: {e}"))?;
    let sources: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let servers = TestServers::try_get()?;
    let targets = servers.new_users(Side::Target, "fleetdst", sources.len())?;
    println!("src_user,src_password,dst_user,dst_password,src_host,dst_host");
    for ((su, sp), t) in sources.iter().zip(&targets) {
        let src_port = servers.ports(Side::Source).imap;
        println!(
            "{su},{sp},{},{},127.0.0.1:{src_port},127.0.0.1:{}",
            t.user, t.password, t.imap_port
        );
    }
    Ok(())
}
