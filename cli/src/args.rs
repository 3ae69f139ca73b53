//! Command-line arguments and their validation into typed settings. Every flag also reads
//! `MAILFERRY_<FLAG>` (the flag wins); secrets come only from the environment or a file. All bad
//! values are reported at once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailferry_coordinator::folders::FolderRules;
use mailferry_coordinator::plan::PlanOptions;
use mailferry_fleet::{Credentials, Secret};
use mailferry_proto::FolderPath;
use mailferry_proto::task::{Endpoint, TlsMode};

use crate::endpoint;

/// mailferry: exact IMAP-to-IMAP mailbox migration.
#[derive(Debug, Parser)]
#[command(name = "mailferry", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to both sides and report what a migration would do; copies nothing.
    Check(CommonArgs),
    /// Migrate one mailbox: every folder, message, flag and date; reruns copy only what is missing.
    Migrate(MigrateArgs),
}

/// TLS mode flag values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TlsFlag {
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS, required.
    Starttls,
    /// No TLS (loopback only, unless --allow-insecure-auth).
    None,
}

/// Flags shared by `check` and `migrate`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Source mailbox: imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT] (STARTTLS).
    #[arg(long, env = "MAILFERRY_SRC")]
    pub src: String,
    /// Target mailbox: imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT] (STARTTLS).
    #[arg(long, env = "MAILFERRY_DST")]
    pub dst: String,
    /// Override the source's TLS mode.
    #[arg(long, env = "MAILFERRY_SRC_TLS", value_enum)]
    pub src_tls: Option<TlsFlag>,
    /// Override the target's TLS mode.
    #[arg(long, env = "MAILFERRY_DST_TLS", value_enum)]
    pub dst_tls: Option<TlsFlag>,
    /// Allow --tls none towards a host that is not on loopback (the password crosses the network in clear).
    #[arg(long, env = "MAILFERRY_ALLOW_INSECURE_AUTH")]
    pub allow_insecure_auth: bool,
    /// Extra trusted CA certificate (PEM) for the source.
    #[arg(long, env = "MAILFERRY_SRC_CA")]
    pub src_ca: Option<PathBuf>,
    /// Extra trusted CA certificate (PEM) for the target.
    #[arg(long, env = "MAILFERRY_DST_CA")]
    pub dst_ca: Option<PathBuf>,
    /// Do not verify the source's certificate (dangerous).
    #[arg(long, env = "MAILFERRY_SRC_INSECURE_SKIP_VERIFY")]
    pub src_insecure_skip_verify: bool,
    /// Do not verify the target's certificate (dangerous).
    #[arg(long, env = "MAILFERRY_DST_INSECURE_SKIP_VERIFY")]
    pub dst_insecure_skip_verify: bool,
    /// File holding the source password (instead of MAILFERRY_SRC_PASSWORD).
    #[arg(long, env = "MAILFERRY_SRC_PASSWORD_FILE")]
    pub src_password_file: Option<PathBuf>,
    /// File holding the target password (instead of MAILFERRY_DST_PASSWORD).
    #[arg(long, env = "MAILFERRY_DST_PASSWORD_FILE")]
    pub dst_password_file: Option<PathBuf>,
    /// Only source folders whose decoded name (with `/` separators) matches; repeatable.
    #[arg(long, env = "MAILFERRY_INCLUDE")]
    pub include: Vec<String>,
    /// Leave out source folders whose decoded name (with `/` separators) matches; repeatable.
    #[arg(long, env = "MAILFERRY_EXCLUDE")]
    pub exclude: Vec<String>,
    /// Map one folder: 'SOURCE=TARGET' (decoded names, `/` separators); repeatable.
    #[arg(long, env = "MAILFERRY_MAP")]
    pub map: Vec<String>,
    /// Do not map special-use folders (Sent, Trash, ...) onto the target's.
    #[arg(long, env = "MAILFERRY_NO_AUTOMAP")]
    pub no_automap: bool,
    /// Also copy virtual folders such as Gmail's All Mail (\All, \Flagged).
    #[arg(long, env = "MAILFERRY_INCLUDE_VIRTUAL")]
    pub include_virtual: bool,
    /// Leave out messages larger than this (bytes; K, M, G suffixes allowed).
    #[arg(long, env = "MAILFERRY_MAX_SIZE")]
    pub max_size: Option<String>,
    /// Connections per account and side.
    #[arg(long, env = "MAILFERRY_CONNECTIONS", default_value_t = 4)]
    pub connections: usize,
    /// Seconds of silence from a server before a wait is given up.
    #[arg(long, env = "MAILFERRY_TIMEOUT", default_value_t = 120)]
    pub timeout: u64,
    /// Print the report or summary as one JSON document on stdout.
    #[arg(long, env = "MAILFERRY_JSON")]
    pub json: bool,
}

/// Flags of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Leave out messages flagged \Deleted.
    #[arg(long, env = "MAILFERRY_SKIP_DELETED")]
    pub skip_deleted: bool,
    /// Plan and report, change nothing.
    #[arg(long, env = "MAILFERRY_DRY_RUN")]
    pub dry_run: bool,
    /// State directory (a cache: deleting it never causes duplicates). Default: $XDG_STATE_HOME/mailferry.
    #[arg(long, env = "MAILFERRY_STATE")]
    pub state: Option<PathBuf>,
    /// In-flight byte budget for message data held in memory (bytes; K, M, G suffixes).
    #[arg(long, env = "MAILFERRY_MEMORY_BUDGET", default_value = "64M")]
    pub memory_budget: String,
}

/// One side, validated.
pub struct Side {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Credentials.
    pub credentials: Credentials,
}

/// Validated settings shared by `check` and `migrate`.
pub struct Settings {
    /// Source.
    pub src: Side,
    /// Target.
    pub dst: Side,
    /// Folder rules.
    pub rules: FolderRules,
    /// Plan options.
    pub plan: PlanOptions,
    /// Warnings to show (password in URL, insecure TLS).
    pub warnings: Vec<String>,
}

/// Where the environment's secrets come from (injectable for tests).
pub trait SecretEnv {
    /// A variable's value.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl SecretEnv for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Parses `123`, `10K`, `5M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

impl CommonArgs {
    /// Validates everything, collecting every problem.
    pub fn settings(
        &self,
        env: &dyn SecretEnv,
        skip_deleted: bool,
    ) -> Result<Settings, Vec<String>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let src = self.side(
            "--src",
            &self.src,
            self.src_tls,
            &self.src_ca,
            self.src_insecure_skip_verify,
            &self.src_password_file,
            "MAILFERRY_SRC_PASSWORD",
            env,
            &mut errors,
            &mut warnings,
        );
        let dst = self.side(
            "--dst",
            &self.dst,
            self.dst_tls,
            &self.dst_ca,
            self.dst_insecure_skip_verify,
            &self.dst_password_file,
            "MAILFERRY_DST_PASSWORD",
            env,
            &mut errors,
            &mut warnings,
        );
        let mut regexes = |list: &[String], flag: &str| -> Vec<regex::Regex> {
            list.iter()
                .filter_map(|r| match regex::Regex::new(r) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        errors.push(format!(
                            "{flag} {r:?} is not a valid regular expression: {e}"
                        ));
                        None
                    }
                })
                .collect()
        };
        let include = regexes(&self.include, "--include");
        let exclude = regexes(&self.exclude, "--exclude");
        let mut maps = Vec::new();
        for m in &self.map {
            match m.split_once('=') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                    maps.push((FolderPath::from_slash(a), FolderPath::from_slash(b)))
                }
                _ => errors.push(format!("--map {m:?} must be 'SOURCE=TARGET'")),
            }
        }
        let max_size = match &self.max_size {
            None => None,
            Some(s) => match parse_size(s) {
                Some(v) => Some(v),
                None => {
                    errors.push(format!(
                        "--max-size {s:?} is not a size (bytes, or with K, M, G)"
                    ));
                    None
                }
            },
        };
        if self.connections == 0 || self.connections > 64 {
            errors.push(format!(
                "--connections {} must be between 1 and 64",
                self.connections
            ));
        }
        if self.timeout == 0 {
            errors.push("--timeout must be at least 1 second".into());
        }
        match (src, dst) {
            (Some(src), Some(dst)) if errors.is_empty() => Ok(Settings {
                src,
                dst,
                rules: FolderRules {
                    include,
                    exclude,
                    maps,
                    automap: !self.no_automap,
                    include_virtual: self.include_virtual,
                },
                plan: PlanOptions {
                    max_size,
                    skip_deleted,
                    ..PlanOptions::default()
                },
                warnings,
            }),
            _ => Err(errors),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn side(
        &self,
        flag: &str,
        url: &str,
        tls: Option<TlsFlag>,
        ca: &Option<PathBuf>,
        skip_verify: bool,
        password_file: &Option<PathBuf>,
        password_var: &str,
        env: &dyn SecretEnv,
        errors: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Option<Side> {
        let parsed = match endpoint::parse(url, flag) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        let tls = match tls {
            Some(TlsFlag::Implicit) => TlsMode::Implicit,
            Some(TlsFlag::Starttls) => TlsMode::Starttls,
            Some(TlsFlag::None) => TlsMode::None,
            None => parsed.tls,
        };
        if tls == TlsMode::None && !endpoint::is_loopback(&parsed.host) && !self.allow_insecure_auth
        {
            errors.push(format!(
                "{flag}-tls none would send the password in clear to {}; use TLS, or add --allow-insecure-auth if the network is trusted",
                parsed.host
            ));
        }
        if skip_verify {
            warnings.push(format!("{flag}-insecure-skip-verify: the certificate of {} is NOT verified; anyone on the path can read the password and the mail", parsed.host));
        }
        if let Some(ca) = ca
            && !ca.is_file()
        {
            errors.push(format!("{flag}-ca {}: no such file", ca.display()));
        }
        let password = if let Some(p) = &parsed.password {
            warnings.push(format!("{flag}: a password in the URL can leak through the process list and shell history; use {password_var} or {flag}-password-file"));
            Some(p.clone())
        } else if let Some(file) = password_file {
            match std::fs::read_to_string(file) {
                Ok(s) => Some(s.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => {
                    errors.push(format!("{flag}-password-file {}: {e}", file.display()));
                    None
                }
            }
        } else {
            env.var(password_var)
        };
        let Some(password) = password else {
            errors.push(format!(
                "no password for {flag}: set {password_var} or use {flag}-password-file"
            ));
            return None;
        };
        Some(Side {
            endpoint: Endpoint {
                host: parsed.host,
                port: parsed.port,
                user: parsed.user,
                tls,
                ca_file: ca.as_ref().map(|p| p.display().to_string()),
                insecure_skip_verify: skip_verify,
            },
            credentials: Credentials::Password(Secret::new(password)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Env(Vec<(&'static str, &'static str)>);
    impl SecretEnv for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn args(extra: &[&str]) -> CommonArgs {
        let mut v = vec![
            "mailferry",
            "check",
            "--src",
            "imaps://a@127.0.0.1",
            "--dst",
            "imap://b@example.org",
        ];
        v.extend_from_slice(extra);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Check(c) => c,
            Command::Migrate(_) => unreachable!(),
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("10K"), Some(10240));
        assert_eq!(parse_size("2m"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let a = args(&[
            "--include",
            "(",
            "--map",
            "nope",
            "--max-size",
            "lots",
            "--dst-tls",
            "none",
            "--connections",
            "0",
        ]);
        let errs = a
            .settings(&Env(vec![("MAILFERRY_SRC_PASSWORD", "s")]), false)
            .err()
            .unwrap();
        let all = errs.join("\n");
        for needle in [
            "--include",
            "--map",
            "--max-size",
            "in clear",
            "--connections",
            "no password for --dst",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
    }

    #[test]
    fn valid_settings_carry_endpoints_and_never_print_secrets() {
        let a = args(&["--map", "Old/Sent=Sent", "--max-size", "1M"]);
        let env = Env(vec![
            ("MAILFERRY_SRC_PASSWORD", "s3cret"),
            ("MAILFERRY_DST_PASSWORD", "t0p"),
        ]);
        let s = a.settings(&env, true).ok().unwrap();
        assert_eq!(s.src.endpoint.port, 993);
        assert_eq!(s.dst.endpoint.tls, TlsMode::Starttls);
        assert_eq!(s.plan.max_size, Some(1 << 20));
        assert!(s.plan.skip_deleted);
        assert!(!format!("{:?}", s.src.credentials).contains("s3cret"));
    }
}
