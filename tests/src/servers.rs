//! The pair of private Dovecot servers the scenario tests run against, and their test users.
//!
//! This module owns finding (or starting, through `scripts/test-servers start`) the two servers
//! described by a `servers.env` file, and creating a fresh, unique user per test by appending a
//! line to the server's passwd file, so tests can run in parallel against one pair of servers.
//! It must not talk IMAP; that is [`crate::imap_client`]'s job.
//!
//! Users whose name starts with [`SMALLQUOTA_PREFIX`] get a small storage quota, and users whose
//! name starts with [`SMALLMSG_PREFIX`] a small maximum message size; the limits themselves come
//! from `servers.env` (the script owns them, next to the Dovecot configuration).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::cyrus::CyrusServer;
use crate::pymap::PymapServer;

/// Environment variable naming a `servers.env` file of already running servers.
pub const SERVERS_ENV_VAR: &str = "MAILFERRY_TEST_SERVERS_ENV";

/// Users whose name starts with this get a small storage quota (see
/// [`TestServers::smallquota_bytes`]).
pub const SMALLQUOTA_PREFIX: &str = "smallquota";

/// Users whose name starts with this get a small maximum message size (see
/// [`TestServers::smallmsg_bytes`]).
pub const SMALLMSG_PREFIX: &str = "smallmsg";

/// Namespace prefixes on the source server other than the personal `INBOX.` one: a public
/// namespace (`Public.Announcements` holds one message) and a virtual `\All` folder
/// (`Virtual.All Mail`, every message of INBOX and its children except Deleted Items and
/// Junk E-mail). A migration must leave them out.
pub const SOURCE_OTHER_NAMESPACES: &[&str] = &["Public.", "Virtual."];

/// Which of the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The server mail is migrated from: Maildir++, prefix `INBOX.`, separator `.`.
    Source,
    /// The server mail is migrated to: maildir `LAYOUT=fs`, empty prefix, separator `/`.
    Target,
}

impl Side {
    /// A short name for messages: `source` or `target`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// Ports of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPorts {
    /// Plain IMAP, STARTTLS offered.
    pub imap: u16,
    /// IMAP over TLS from the first byte.
    pub imaps: u16,
}

/// A user on one of the servers, created for one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAccount {
    /// The server the user lives on.
    pub side: Side,
    /// Always `127.0.0.1`.
    pub host: String,
    /// Plain IMAP port (STARTTLS offered).
    pub imap_port: u16,
    /// IMAPS port.
    pub imaps_port: u16,
    /// Login name.
    pub user: String,
    /// Password (plain).
    pub password: String,
    /// The CA that signed the servers' certificate (for `localhost` and `127.0.0.1`).
    pub ca: PathBuf,
}

/// The two running servers, as described by `servers.env`.
#[derive(Debug, Clone)]
pub struct TestServers {
    dir: PathBuf,
    host: String,
    source: ServerPorts,
    target: ServerPorts,
    ca: PathBuf,
    passwd_source: PathBuf,
    passwd_target: PathBuf,
    smallquota_bytes: u64,
    smallquota_fields: String,
    smallmsg_bytes: u64,
    smallmsg_fields: String,
    master: Option<(String, String)>,
    /// The base64 HS256 key that signs access tokens, when the servers take OAuth 2.0 logins.
    oauth2_key: Option<String>,
    /// The private pymap, when `scripts/test-servers` started one (pymap is installed).
    pymap: Option<PymapServer>,
    /// The private Cyrus IMAP, when `scripts/test-servers` started one (it is unpacked).
    cyrus: Option<CyrusServer>,
}

static SERVERS: OnceLock<std::result::Result<TestServers, String>> = OnceLock::new();
static USER_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestServers {
    /// The servers for this test process: from `$MAILFERRY_TEST_SERVERS_ENV` when set, otherwise
    /// started (or reused) once through `scripts/test-servers start`.
    ///
    /// # Panics
    /// When the servers can neither be found nor started; every test needs them.
    pub fn get() -> &'static TestServers {
        match Self::try_get() {
            Ok(servers) => servers,
            Err(e) => panic!("test servers unavailable: {e:#}"),
        }
    }

    /// Like [`TestServers::get`], returning the error instead of panicking.
    pub fn try_get() -> Result<&'static TestServers> {
        let cell = SERVERS.get_or_init(|| Self::locate().map_err(|e| format!("{e:#}")));
        cell.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn locate() -> Result<TestServers> {
        if let Some(path) = std::env::var_os(SERVERS_ENV_VAR) {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {SERVERS_ENV_VAR}={}", path.display()))?;
            return Self::parse(&text).with_context(|| format!("parsing {}", path.display()));
        }
        let script = repo_root().join("scripts").join("test-servers");
        // The script takes a per-directory flock, so concurrent test binaries serialise here
        // and all but the first reuse the running servers.
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} start failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self::parse(&String::from_utf8_lossy(&out.stdout))
            .context("parsing the output of test-servers start")
    }

    /// Parses `servers.env` text (`KEY=value` lines, values optionally single-quoted).
    pub fn parse(text: &str) -> Result<TestServers> {
        let vars: HashMap<&str, &str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), unquote(v.trim())))
            .collect();
        let get = |key: &str| -> Result<&str> {
            vars.get(key)
                .copied()
                .with_context(|| format!("servers.env lacks {key}"))
        };
        let port = |key: &str| -> Result<u16> {
            get(key)?
                .parse()
                .with_context(|| format!("servers.env: {key} is not a port"))
        };
        let number = |key: &str| -> Result<u64> {
            get(key)?
                .parse()
                .with_context(|| format!("servers.env: {key} is not a number"))
        };
        Ok(TestServers {
            dir: get("MAILFERRY_TEST_DIR")?.into(),
            host: vars
                .get("MAILFERRY_TEST_HOST")
                .copied()
                .unwrap_or("127.0.0.1")
                .to_owned(),
            source: ServerPorts {
                imap: port("MAILFERRY_TEST_SRC_IMAP_PORT")?,
                imaps: port("MAILFERRY_TEST_SRC_IMAPS_PORT")?,
            },
            target: ServerPorts {
                imap: port("MAILFERRY_TEST_DST_IMAP_PORT")?,
                imaps: port("MAILFERRY_TEST_DST_IMAPS_PORT")?,
            },
            ca: get("MAILFERRY_TEST_CA")?.into(),
            passwd_source: get("MAILFERRY_TEST_PASSWD_SRC")?.into(),
            passwd_target: get("MAILFERRY_TEST_PASSWD_DST")?.into(),
            smallquota_bytes: number("MAILFERRY_TEST_SMALLQUOTA_BYTES")?,
            smallquota_fields: get("MAILFERRY_TEST_SMALLQUOTA_FIELDS")?.to_owned(),
            smallmsg_bytes: number("MAILFERRY_TEST_SMALLMSG_BYTES")?,
            smallmsg_fields: get("MAILFERRY_TEST_SMALLMSG_FIELDS")?.to_owned(),
            master: match (
                vars.get("MAILFERRY_TEST_MASTER_USER"),
                vars.get("MAILFERRY_TEST_MASTER_PASSWORD"),
            ) {
                (Some(u), Some(p)) => Some(((*u).to_owned(), (*p).to_owned())),
                _ => None,
            },
            oauth2_key: vars
                .get("MAILFERRY_TEST_OAUTH2_HS256_KEY")
                .filter(|k| !k.is_empty())
                .map(|k| (*k).to_owned()),
            pymap: match vars.get("MAILFERRY_TEST_PYMAP_PORT") {
                None => None,
                Some(_) => Some(PymapServer {
                    port: port("MAILFERRY_TEST_PYMAP_PORT")?,
                    dir: get("MAILFERRY_TEST_PYMAP_DIR")?.into(),
                }),
            },
            cyrus: match vars.get("MAILFERRY_TEST_CYRUS_PORT") {
                None => None,
                Some(_) => Some(CyrusServer {
                    port: port("MAILFERRY_TEST_CYRUS_PORT")?,
                    dir: get("MAILFERRY_TEST_CYRUS_DIR")?.into(),
                }),
            },
        })
    }

    /// The private pymap, when these servers include one (`scripts/pymap-server install` had
    /// run before `scripts/test-servers start`).
    pub fn pymap(&self) -> Option<&PymapServer> {
        self.pymap.as_ref()
    }

    /// A fresh user on the private pymap, playing `role` in the test; fails when these servers
    /// include no pymap.
    pub fn new_pymap_user(&self, role: Side, prefix: &str) -> Result<TestAccount> {
        let pymap = self.pymap().context(
            "these test servers include no pymap: run scripts/pymap-server install, then \
             scripts/test-servers stop and start",
        )?;
        pymap.new_user(role, prefix, &self.host, &self.ca)
    }

    /// The private Cyrus IMAP, when these servers include one (`scripts/cyrus-server install`
    /// had run before `scripts/test-servers start`).
    pub fn cyrus(&self) -> Option<&CyrusServer> {
        self.cyrus.as_ref()
    }

    /// A fresh user on the private Cyrus, playing `role` in the test; fails when these servers
    /// include no Cyrus.
    pub fn new_cyrus_user(&self, role: Side, prefix: &str) -> Result<TestAccount> {
        let cyrus = self.cyrus().context(
            "these test servers include no Cyrus: run scripts/cyrus-server install, then \
             scripts/test-servers start",
        )?;
        cyrus.new_user(role, prefix, &self.host, &self.ca)
    }

    /// The directory holding both servers' configuration, mail and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The address both servers listen on (`127.0.0.1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Ports of one server.
    pub fn ports(&self, side: Side) -> ServerPorts {
        match side {
            Side::Source => self.source,
            Side::Target => self.target,
        }
    }

    /// The administrator (Dovecot master user) of both servers and its password, when the
    /// servers were started by a `scripts/test-servers` that configures one.
    pub fn master(&self) -> Option<(&str, &str)> {
        self.master.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// An OAuth 2.0 access token (OAUTHBEARER, XOAUTH2) both servers accept for `user` for the
    /// next `valid_for` seconds; a negative `valid_for` gives a token that expired that long
    /// ago, which the servers refuse. Fails when the servers were started by a
    /// `scripts/test-servers` without OAuth 2.0 (restart them).
    pub fn oauth2_token(&self, user: &str, valid_for: i64) -> Result<String> {
        use base64::Engine as _;
        let encoded = self.oauth2_key.as_deref().context(
            "servers.env lacks MAILFERRY_TEST_OAUTH2_HS256_KEY: these servers were started \
             without OAuth 2.0; stop and start them with the current scripts/test-servers",
        )?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("servers.env: MAILFERRY_TEST_OAUTH2_HS256_KEY is not base64")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let now = i64::try_from(now).context("the clock is past 2262")?;
        Ok(crate::oauth2::hs256_token(&key, user, now, valid_for))
    }

    /// PEM file of the CA that signed both servers' certificate.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The Dovecot log of one server, for diagnosing a failed test.
    pub fn log_path(&self, side: Side) -> PathBuf {
        self.dir
            .join(side_dir(side))
            .join("log")
            .join("dovecot.log")
    }

    /// Storage quota of users named `smallquota…`, in bytes.
    pub fn smallquota_bytes(&self) -> u64 {
        self.smallquota_bytes
    }

    /// Maximum message size of users named `smallmsg…`, in bytes.
    pub fn smallmsg_bytes(&self) -> u64 {
        self.smallmsg_bytes
    }

    /// Creates a fresh user on `side` whose name starts with `prefix` (ASCII letters, digits,
    /// `-` and `_`), followed by a suffix unique across processes and runs.
    ///
    /// Blocks for up to a second, until Dovecot is sure to see the new user (it re-reads its
    /// passwd file at most once per second), so the account works as soon as this returns,
    /// for the harness and for the `mailferry` binary alike.
    pub fn new_user(&self, side: Side, prefix: &str) -> Result<TestAccount> {
        let mut users = self.new_users(side, prefix, 1)?;
        users.pop().context("no user created")
    }

    /// Creates `count` fresh users at once (one write, one wait for Dovecot to see them): for
    /// fleets of mailboxes.
    pub fn new_users(&self, side: Side, prefix: &str, count: usize) -> Result<Vec<TestAccount>> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("user prefix {prefix:?} must be non-empty ASCII letters, digits, '-' or '_'");
        }
        let extra = if prefix.starts_with(SMALLQUOTA_PREFIX) {
            self.smallquota_fields.as_str()
        } else if prefix.starts_with(SMALLMSG_PREFIX) {
            self.smallmsg_fields.as_str()
        } else {
            ""
        };
        let ports = self.ports(side);
        let mut lines = String::new();
        let mut accounts = Vec::with_capacity(count);
        for _ in 0..count {
            let n = USER_COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let pid = std::process::id();
            let user = format!("{prefix}-{pid}-{n}-{:x}", nanos & 0xffff_ffff_ffff);
            let password = format!("pw-{:x}-{n}", (nanos as u64) ^ (u64::from(pid) << 32));
            // passwd-file: user:password:uid:gid:gecos:home:shell:extra_fields. uid, gid and
            // home come from the server's configuration (mail_uid, mail_gid, mail_home).
            lines.push_str(&format!("{user}:{{PLAIN}}{password}::::::{extra}\n"));
            accounts.push(TestAccount {
                side,
                host: self.host.clone(),
                imap_port: ports.imap,
                imaps_port: ports.imaps,
                user,
                password,
                ca: self.ca.clone(),
            });
        }
        let passwd = match side {
            Side::Source => &self.passwd_source,
            Side::Target => &self.passwd_target,
        };
        append_line(passwd, lines.as_bytes())?;
        wait_for_passwd_reload();
        Ok(accounts)
    }
}

impl TestServers {
    /// Sets the storage quota of an existing user to `bytes` (`None`: no quota) by rewriting
    /// its passwd line, and waits until Dovecot is sure to see the change (it re-reads the
    /// file at most once per second). Other extra fields of the line are dropped. Sessions
    /// opened before keep the old limit; new logins get the new one.
    pub fn set_quota(&self, account: &TestAccount, bytes: Option<u64>) -> Result<()> {
        let passwd = self.passwd(account.side);
        let _lock = lock_passwd(passwd)?;
        let text = std::fs::read_to_string(passwd)
            .with_context(|| format!("reading {}", passwd.display()))?;
        let prefix = format!("{}:", account.user);
        let extra = bytes
            .map(|b| format!("userdb_quota_rule=*:storage={b}B"))
            .unwrap_or_default();
        let mut found = false;
        let mut out = String::with_capacity(text.len() + extra.len());
        for line in text.lines() {
            if line.starts_with(&prefix) {
                found = true;
                out.push_str(&format!(
                    "{}:{{PLAIN}}{}::::::{extra}\n",
                    account.user, account.password
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !found {
            bail!("{} has no line for {}", passwd.display(), account.user);
        }
        // Write a sibling and rename it over the file, so Dovecot never reads half a file.
        let tmp = passwd.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, out).with_context(|| format!("writing {}", tmp.display()))?;
        // Dovecot compares mtime (whole seconds) and size: start a new second first, so an
        // edit that keeps the size is still seen.
        wait_for_passwd_reload();
        std::fs::rename(&tmp, passwd)
            .with_context(|| format!("renaming {} to {}", tmp.display(), passwd.display()))?;
        wait_for_passwd_reload();
        Ok(())
    }

    fn passwd(&self, side: Side) -> &Path {
        match side {
            Side::Source => &self.passwd_source,
            Side::Target => &self.passwd_target,
        }
    }
}

/// Takes an exclusive lock on `PASSWD.lock`, held until the returned file is dropped; appends
/// and rewrites of the passwd file take it, so a rewrite never loses a line appended meanwhile
/// by a parallel test or process.
fn lock_passwd(passwd: &Path) -> Result<std::fs::File> {
    let path = passwd.with_extension("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Dovecot re-reads a changed passwd-file at most once per second (on the first lookup of a
/// second, comparing mtime and size), so a user appended in the same second as an earlier
/// lookup stays unknown until the next second: wait for that second to begin. Measured: without
/// this, 18 of 20 logins right after the append failed with `[AUTHENTICATIONFAILED]`.
fn wait_for_passwd_reload() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let into_second = now.subsec_nanos();
    let rest = Duration::from_nanos(u64::from(1_000_000_000 - into_second));
    std::thread::sleep(rest + Duration::from_millis(20));
}

/// Appends one line with a single `write` on an `O_APPEND` descriptor, so lines written by
/// parallel tests (and processes) never interleave.
fn append_line(path: &Path, line: &[u8]) -> Result<()> {
    let _lock = lock_passwd(path)?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} for append", path.display()))?;
    let written = file
        .write(line)
        .with_context(|| format!("appending to {}", path.display()))?;
    if written != line.len() {
        bail!(
            "short write to {}: {written} of {} bytes; the file may need repair",
            path.display(),
            line.len()
        );
    }
    Ok(())
}

fn side_dir(side: Side) -> &'static str {
    match side {
        Side::Source => "src",
        Side::Target => "dst",
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
        .unwrap_or(v)
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "MAILFERRY_TEST_DIR=/tmp/x
MAILFERRY_TEST_HOST=127.0.0.1
MAILFERRY_TEST_SRC_IMAP_PORT=14300
MAILFERRY_TEST_SRC_IMAPS_PORT=14301
MAILFERRY_TEST_DST_IMAP_PORT=14302
MAILFERRY_TEST_DST_IMAPS_PORT=14303
MAILFERRY_TEST_CA=/tmp/x/ca.pem
MAILFERRY_TEST_PASSWD_SRC=/tmp/x/src/passwd
MAILFERRY_TEST_PASSWD_DST=/tmp/x/dst/passwd
MAILFERRY_TEST_SMALLQUOTA_BYTES=1048576
MAILFERRY_TEST_SMALLQUOTA_FIELDS='userdb_quota_rule=*:storage=1048576B'
MAILFERRY_TEST_SMALLMSG_BYTES=102400
MAILFERRY_TEST_SMALLMSG_FIELDS='userdb_quota_max_mail_size=102400B'
";

    #[test]
    fn parses_servers_env() {
        let s = TestServers::parse(SAMPLE).unwrap();
        assert_eq!(s.ports(Side::Source).imaps, 14301);
        assert_eq!(s.ports(Side::Target).imap, 14302);
        assert_eq!(s.smallquota_fields, "userdb_quota_rule=*:storage=1048576B");
        assert_eq!(s.smallmsg_bytes(), 102_400);
        assert_eq!(
            s.log_path(Side::Target),
            Path::new("/tmp/x/dst/log/dovecot.log")
        );
    }

    #[test]
    fn missing_key_is_named() {
        let err = TestServers::parse("MAILFERRY_TEST_DIR=/tmp/x\n").unwrap_err();
        assert!(format!("{err:#}").contains("MAILFERRY_TEST_SRC_IMAP_PORT"));
    }
}
