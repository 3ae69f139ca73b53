//! The private Cyrus IMAP server the server scenario suite migrates from and to, and its test
//! users.
//!
//! `scripts/test-servers` starts it next to the Dovecot pair when `scripts/cyrus-server` has
//! unpacked it (`scripts/test` does), and names its port and directory in `servers.env`. Cyrus
//! takes any password for any name (`sasl_pwcheck_method: alwaystrue`) and creates the INBOX at
//! the first login, so a user is only a fresh name; this module must not talk IMAP.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::servers::{Side, TestAccount};

/// The running Cyrus, as described by `servers.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CyrusServer {
    /// Plain IMAP port (STARTTLS offered, with the Dovecot pair's certificate).
    pub port: u16,
    /// Its directory: configuration, databases, spool, `master.log`.
    pub dir: PathBuf,
}

static USER_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CyrusServer {
    /// A fresh user whose name starts with `prefix` (ASCII letters, digits, `-`, `_`), as an
    /// account playing `role` in a test (the role only names the side in messages).
    pub fn new_user(&self, role: Side, prefix: &str, host: &str, ca: &Path) -> Result<TestAccount> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("user prefix {prefix:?} must be non-empty ASCII letters, digits, '-' or '_'");
        }
        let n = USER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let pid = std::process::id();
        Ok(TestAccount {
            side: role,
            host: host.to_owned(),
            imap_port: self.port,
            // No implicit-TLS port; STARTTLS on the one port.
            imaps_port: self.port,
            user: format!("{prefix}-{pid}-{n}-{:x}", nanos & 0xffff_ffff_ffff),
            // Any password logs in; one per user all the same, as on the other servers.
            password: format!("pw-{:x}-{n}", (nanos as u64) ^ (u64::from(pid) << 32)),
            ca: ca.to_owned(),
        })
    }
}
