//! The private Cyrus IMAP server the server scenario suite migrates from and to, and its test
//! users.
//!
//! `scripts/test-servers` starts it next to the Dovecot pair when `scripts/cyrus-server` has
//! unpacked it (`scripts/test` does), and names its port and directory in `servers.env`. Cyrus
//! takes any password for any name (`sasl_pwcheck_method: alwaystrue`) and creates the INBOX at
//! the first login, so a user is only a fresh name plus that first login, which this module
//! makes alone (see [`CyrusServer::new_user`]); beyond it, it must not talk IMAP.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

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

/// First logins, one at a time (see [`CyrusServer::new_user`]).
static FIRST_LOGIN: Mutex<()> = Mutex::new(());

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
        let account = TestAccount {
            side: role,
            host: host.to_owned(),
            imap_port: self.port,
            // No implicit-TLS port; STARTTLS on the one port.
            imaps_port: self.port,
            user: format!("{prefix}-{pid}-{n}-{:x}", nanos & 0xffff_ffff_ffff),
            // Any password logs in; one per user all the same, as on the other servers.
            password: format!("pw-{:x}-{n}", (nanos as u64) ^ (u64::from(pid) << 32)),
            ca: ca.to_owned(),
        };
        // Cyrus 3.6 creates a user's INBOX at the first login, and first logins of several
        // users at once were seen to give them one INBOX between them (3 of 8 users in a
        // direct test with Python's imaplib): the first login happens here, alone.
        let _alone = FIRST_LOGIN.lock().unwrap_or_else(|e| e.into_inner());
        first_login(&account)
            .with_context(|| format!("first login of {} on Cyrus", account.user))?;
        Ok(account)
    }
}

/// LOGIN, then LOGOUT, in plain text (the test Cyrus allows it), each answer read to its tag.
fn first_login(account: &TestAccount) -> Result<()> {
    let stream = TcpStream::connect((account.host.as_str(), account.imap_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("* OK") {
        bail!("greeting {line:?}");
    }
    for (tag, command) in [
        ("a", format!("LOGIN {} {}", account.user, account.password)),
        ("b", "LOGOUT".to_owned()),
    ] {
        writer.write_all(format!("{tag} {command}\r\n").as_bytes())?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("connection closed before the answer to {tag}");
            }
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                if !rest.starts_with("OK") {
                    bail!("answer {line:?}");
                }
                break;
            }
        }
    }
    Ok(())
}
