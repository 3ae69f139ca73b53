//! The private pymap server (a Python IMAP server, <https://github.com/icgood/pymap>) the
//! server scenario suite migrates from and to, and its test users.
//!
//! `scripts/test-servers` starts it next to the Dovecot pair when `scripts/pymap-server` has
//! installed it (`scripts/test` does), and names its port and data directory in `servers.env`.
//! This module owns creating a fresh user per test in pymap's maildir backend files; it must
//! not talk IMAP ([`crate::imap_client`] does, as with Dovecot).
//!
//! pymap's passwords are passlib `pbkdf2_sha256` hashes whose round count is part of the hash;
//! test users get one round, so a login costs pymap nothing (its own default is 500,000).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::servers::{Side, TestAccount};

/// The running pymap, as described by `servers.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PymapServer {
    /// Plain IMAP port (STARTTLS offered, with the Dovecot pair's certificate).
    pub port: u16,
    /// Its directory: `base/` holds the users files and the maildirs, `pymap.log` the log.
    pub dir: PathBuf,
}

static USER_COUNTER: AtomicU64 = AtomicU64::new(0);

impl PymapServer {
    /// pymap's log, for diagnosing a failed test.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("pymap.log")
    }

    /// Creates a fresh user whose name starts with `prefix` (ASCII letters, digits, `-`, `_`)
    /// and returns it as an account playing `role` in a test (the role only names the side in
    /// the harness's messages). `host` and `ca` are the Dovecot pair's: pymap listens on the
    /// same address with the same certificate.
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
        let user = format!("{prefix}-{pid}-{n}-{:x}", nanos & 0xffff_ffff_ffff);
        let password = format!("pw-{:x}-{n}", (nanos as u64) ^ (u64::from(pid) << 32));
        let salt = format!("{pid:08x}{n:08x}");
        let base = self.dir.join("base");
        // shadow(5): name:password and seven empty fields; passwd(5): the home field is the
        // user's maildir, relative to base/. The password first, so the user never exists
        // without one.
        append(
            &base.join("pymap-etc-shadow"),
            &format!(
                "{user}:{}:::::::\n",
                pbkdf2_sha256_one_round(&password, salt.as_bytes())
            ),
        )?;
        append(
            &base.join("pymap-etc-passwd"),
            &format!("{user}:::::{user}:\n"),
        )?;
        Ok(TestAccount {
            side: role,
            host: host.to_owned(),
            imap_port: self.port,
            // pymap has no implicit-TLS port; STARTTLS on the one port.
            imaps_port: self.port,
            user,
            password,
            ca: ca.to_owned(),
        })
    }
}

/// passlib's `pbkdf2_sha256` format with one round: `$pbkdf2-sha256$1$SALT$DIGEST`, both in
/// standard base64 with padding (as Python's `b64encode`). PBKDF2 (RFC 8018 §5.2) with one
/// iteration is `U1 = PRF(P, S || INT(1))`, and one block of SHA-256 is the whole 32-byte key.
fn pbkdf2_sha256_one_round(password: &str, salt: &[u8]) -> String {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let digest = crate::oauth2::hmac_sha256(password.as_bytes(), &block);
    format!(
        "$pbkdf2-sha256$1${}${}",
        B64.encode(salt),
        B64.encode(digest)
    )
}

/// Appends `line` with one `write` on an `O_APPEND` descriptor, so lines of parallel tests
/// never interleave; pymap re-reads the file on every login.
fn append(path: &Path, line: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} for append", path.display()))?;
    let written = file
        .write(line.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))?;
    if written != line.len() {
        bail!("short write to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed by pysasl's own `BuiltinHash(rounds=1).hash("secret", salt=b"0123456789abcdef")`.
    #[test]
    fn hash_matches_pysasl() {
        assert_eq!(
            pbkdf2_sha256_one_round("secret", b"0123456789abcdef"),
            "$pbkdf2-sha256$1$MDEyMzQ1Njc4OWFiY2RlZg==$YbpH4MTVriL1J0gKQnQQxyQwQcvFOwk4v2eQkU0Lbag="
        );
    }
}
