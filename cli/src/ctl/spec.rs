//! The requests of `ctl create` and `ctl add-pairs`, built from the flags of `mailferry migrate`:
//! validated pairs become `PairSpec`s carrying their secrets (only a request ever holds them),
//! and the option flags travel as the user typed them, for the coordinator to validate.
//!
//! Nothing here may print or `Debug`-format a secret: the built requests are wrapped in
//! [`WithSecrets`].

use mailferry_fleet::Credentials;
use mailferry_proto::grpc::v1::{
    self as v1, AdminLogin, FolderMap, MigrationOptions, OAuth2Token, PairSpec, credentials::Kind,
};
use mailferry_proto::task::{self, CaFile, TlsMode};

use super::client::Failed;
use crate::args::{CommonArgs, MigrateArgs, PairInput, Settings, parse_size};

/// A request that carries passwords: its `Debug` says how many pairs, never what they hold.
pub struct WithSecrets<T>(pub T);

impl<T> std::fmt::Debug for WithSecrets<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(secrets hidden)", std::any::type_name::<T>())
    }
}

/// Checks validated settings: prints the warnings, and turns errors and bad `--batch` records
/// into a usage failure, so nothing is sent unless every pair can go; with `skip_bad` (`ctl
/// create --skip-bad-records`, as `migrate --batch` does) bad records are named and left out.
pub fn usable(
    validated: Result<Settings, Vec<String>>,
    common: &CommonArgs,
    skip_bad: bool,
) -> Result<Settings, Failed> {
    let settings = validated.map_err(|errors| Failed::usage(errors.join("\nerror: ")))?;
    for w in &settings.warnings {
        eprintln!("warning: {w}");
    }
    if skip_bad && !settings.bad_records.is_empty() {
        for b in &settings.bad_records {
            eprintln!("warning: {}; left out", b.error);
        }
        eprintln!(
            "warning: {} left out of --batch; fix them and send them with `ctl add-pairs`",
            crate::output::count(
                settings.bad_records.len() as u64,
                "bad record",
                "bad records"
            )
        );
    } else if !settings.bad_records.is_empty() {
        let mut lines: Vec<String> = settings
            .bad_records
            .iter()
            .map(|b| b.error.clone())
            .collect();
        lines.push(format!(
            "{} record(s) of --batch {} cannot be used; nothing was sent to the coordinator — fix them and run again, or add --skip-bad-records to create the migration of the others",
            settings.bad_records.len(),
            common.batch.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
        ));
        return Err(Failed::usage(lines.join("\nerror: ")));
    }
    if settings.pairs.is_empty() {
        return Err(Failed::usage(
            "no mailbox pair to send; nothing was sent to the coordinator",
        ));
    }
    Ok(settings)
}

/// The pairs as the API takes them. An OAuth 2.0 token file is read now and its token sent
/// (the coordinator cannot read the caller's files); one that cannot be read is a usage error
/// naming its flag.
pub fn pair_specs(pairs: &[PairInput]) -> Result<Vec<PairSpec>, Failed> {
    let mut errors = Vec::new();
    let mut specs = Vec::with_capacity(pairs.len());
    for p in pairs {
        let src = credentials(&p.src.credentials, "--src");
        let dst = credentials(&p.dst.credentials, "--dst");
        let source = endpoint(&p.src.endpoint, "--src");
        let target = endpoint(&p.dst.endpoint, "--dst");
        match (src, dst, source, target) {
            (Ok(src), Ok(dst), Ok(source), Ok(target)) => specs.push(PairSpec {
                source: Some(source),
                source_credentials: Some(src),
                target: Some(target),
                target_credentials: Some(dst),
            }),
            (src, dst, source, target) => {
                for e in [src.err(), dst.err(), source.err(), target.err()]
                    .into_iter()
                    .flatten()
                {
                    // Every record of a batch uses the same flags: say it once.
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    match errors.is_empty() {
        true => Ok(specs),
        false => Err(Failed::usage(errors.join("\nerror: "))),
    }
}

/// An endpoint as the API takes it. A `--src-ca`/`--dst-ca` file is read here and its PEM sent
/// inline: the coordinator reads no file an API client names outside its own CA directory.
fn endpoint(e: &task::Endpoint, flag: &str) -> Result<v1::Endpoint, String> {
    let tls = match e.tls {
        TlsMode::Implicit => v1::TlsMode::Implicit,
        TlsMode::Starttls => v1::TlsMode::Starttls,
        TlsMode::None => v1::TlsMode::None,
    };
    let ca_pem = match &e.ca_file {
        None => String::new(),
        Some(CaFile::Pem(pem)) => pem.clone(),
        Some(CaFile::Path(path)) => {
            let shown = crate::input::shown(path);
            crate::input::read_small(std::path::Path::new(path), CA_LIMIT)
                .map_err(|e| format!("{flag}-ca {shown}: {e}"))?
        }
    };
    let auth_mechanism = match e.auth_mechanism {
        None => v1::AuthMechanism::Unspecified,
        Some(task::AuthMechanism::Login) => v1::AuthMechanism::Login,
        Some(task::AuthMechanism::Plain) => v1::AuthMechanism::Plain,
        Some(task::AuthMechanism::Xoauth2) => v1::AuthMechanism::Xoauth2,
        Some(task::AuthMechanism::Oauthbearer) => v1::AuthMechanism::Oauthbearer,
    };
    Ok(v1::Endpoint {
        host: e.host.clone(),
        port: u32::from(e.port),
        user: e.user.clone(),
        tls: tls.into(),
        ca_file: String::new(),
        insecure_skip_verify: e.insecure_skip_verify,
        ca_pem,
        auth_mechanism: auth_mechanism.into(),
    })
}

/// The largest CA bundle (or token file) read: the coordinator takes at most 64 KiB of PEM, and
/// access tokens are a few KiB.
const CA_LIMIT: u64 = 64 * 1024;

fn credentials(c: &Credentials, flag: &str) -> Result<v1::Credentials, String> {
    let kind = match c {
        Credentials::Password(secret) => Kind::Password(secret.expose().to_owned()),
        Credentials::Admin { admin, secret } => Kind::Admin(AdminLogin {
            admin_user: admin.clone(),
            admin_password: secret.expose().to_owned(),
        }),
        Credentials::OAuth2Token(token) => Kind::Oauth2(OAuth2Token {
            access_token: token.expose().to_owned(),
        }),
        Credentials::OAuth2 { token_file } => {
            let shown = crate::input::shown_path(token_file);
            let text = crate::input::read_small(token_file, CA_LIMIT)
                .map_err(|e| format!("{flag}-oauth2-token-file {shown}: {e}"))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(format!(
                    "{flag}-oauth2-token-file {shown} is empty: write the current access token into it"
                ));
            }
            // The coordinator keeps this token, not the file: refresh it with
            // UpdatePairCredentials before it expires.
            Kind::Oauth2(OAuth2Token {
                access_token: token.to_owned(),
            })
        }
    };
    Ok(v1::Credentials { kind: Some(kind) })
}

/// The migration options, as typed (already checked locally by `settings`; the coordinator
/// validates them again and names the field it refuses).
pub fn options(m: &MigrateArgs) -> MigrationOptions {
    let c = &m.common;
    MigrationOptions {
        include: c.include.clone(),
        exclude: c.exclude.clone(),
        map: c
            .map
            .iter()
            .filter_map(|m| m.split_once('='))
            .map(|(source, target)| FolderMap {
                source: source.to_owned(),
                target: target.to_owned(),
            })
            .collect(),
        no_automap: c.no_automap,
        include_virtual: c.include_virtual,
        exclude_folder_roles: c.exclude_folder_role.clone(),
        regex_rename: c.regex_rename.clone(),
        skip_deleted: m.skip_deleted,
        max_size: c.max_size.as_deref().and_then(parse_size).unwrap_or(0),
        since: m.since.clone().unwrap_or_default(),
        before: m.before.clone().unwrap_or_default(),
        batch_messages: 0,
        batch_bytes: 0,
        dry_run: m.dry_run,
        sync_interval: m.sync_every.clone().unwrap_or_default(),
        full_flag_sync: m.full_flag_sync,
        delete_propagation: m.delete_propagation,
        daily_upload_budget: m.daily_upload_budget(),
    }
}

/// Flags of `migrate` that a fleet migration does not use: the workers' own configuration sets
/// connections and rates, and the coordinator keeps the state and the reports.
pub fn unused_by_fleet(m: &MigrateArgs) -> Vec<&'static str> {
    let c = &m.common;
    let set = [
        ("--connections", c.connections.is_some()),
        ("--max-bytes-per-second", c.max_bytes_per_second.is_some()),
        (
            "--max-messages-per-second",
            c.max_messages_per_second.is_some(),
        ),
        ("--provider", c.provider.is_some()),
        ("--parallel", c.parallel != 4),
        ("--state", m.state.is_some()),
        ("--memory-budget", m.memory_budget != "64M"),
        ("--report-dir", m.report_dir.is_some()),
        ("--report", m.report.is_some()),
        ("--trace-imap", c.trace_imap.is_some()),
    ];
    set.into_iter()
        .filter(|(_, s)| *s)
        .map(|(f, _)| f)
        .collect()
}

/// Option flags given to `add-pairs`, which the new pairs do not use: they take the options the
/// migration was created with.
pub fn options_given(c: &CommonArgs) -> Vec<&'static str> {
    let set = [
        ("--include", !c.include.is_empty()),
        ("--exclude", !c.exclude.is_empty()),
        ("--map", !c.map.is_empty()),
        ("--no-automap", c.no_automap),
        ("--exclude-folder-role", !c.exclude_folder_role.is_empty()),
        ("--regex-rename", !c.regex_rename.is_empty()),
        ("--include-virtual", c.include_virtual),
        ("--max-size", c.max_size.is_some()),
        ("--connections", c.connections.is_some()),
        ("--max-bytes-per-second", c.max_bytes_per_second.is_some()),
        (
            "--max-messages-per-second",
            c.max_messages_per_second.is_some(),
        ),
        ("--provider", c.provider.is_some()),
        ("--parallel", c.parallel != 4),
    ];
    set.into_iter()
        .filter(|(_, s)| *s)
        .map(|(f, _)| f)
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::SecretEnv;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        migrate: MigrateArgs,
    }

    struct Env;
    impl SecretEnv for Env {
        fn var(&self, name: &str) -> Option<String> {
            match name {
                "MAILFERRY_SRC_PASSWORD" => Some("src-s3cret".into()),
                "MAILFERRY_DST_PASSWORD" => Some("dst-s3cret".into()),
                _ => None,
            }
        }
    }

    fn migrate(extra: &[&str]) -> MigrateArgs {
        let mut argv = vec![
            "ctl-create",
            "--src",
            "imaps://alice@old.example",
            "--dst",
            "imap://alice@new.example:1143",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().migrate
    }

    #[test]
    fn settings_become_pair_specs_with_their_secrets() {
        let m = migrate(&["--dst-authuser", "admin", "--src-tls", "starttls"]);
        let s = usable(m.request_settings(&Env), &m.common, false).unwrap();
        let specs = pair_specs(&s.pairs).unwrap();
        assert_eq!(specs.len(), 1);
        let src = specs[0].source.as_ref().unwrap();
        assert_eq!(
            (src.host.as_str(), src.port, src.user.as_str(), src.tls),
            ("old.example", 993, "alice", v1::TlsMode::Starttls as i32)
        );
        let dst = specs[0].target.as_ref().unwrap();
        assert_eq!((dst.port, dst.tls), (1143, v1::TlsMode::Starttls as i32));
        assert_eq!(
            specs[0].source_credentials.as_ref().unwrap().kind,
            Some(Kind::Password("src-s3cret".into()))
        );
        assert_eq!(
            specs[0].target_credentials.as_ref().unwrap().kind,
            Some(Kind::Admin(AdminLogin {
                admin_user: "admin".into(),
                admin_password: "dst-s3cret".into()
            }))
        );
        let shown = format!("{:?}", WithSecrets(specs));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn an_oauth2_token_file_sends_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "ya29.tok-1\n").unwrap();
        let m = migrate(&["--src-oauth2-token-file", file.to_str().unwrap()]);
        let s = usable(m.request_settings(&Env), &m.common, false).unwrap();
        let specs = pair_specs(&s.pairs).unwrap();
        assert_eq!(
            specs[0].source_credentials.as_ref().unwrap().kind,
            Some(Kind::Oauth2(OAuth2Token {
                access_token: "ya29.tok-1".into()
            }))
        );
        let shown = format!("{:?}", WithSecrets(specs));
        assert!(!shown.contains("ya29"), "{shown}");
        // Emptied after the flags were checked: an error naming the flag, not an empty token.
        std::fs::write(&file, "\n").unwrap();
        let f = pair_specs(&s.pairs).unwrap_err();
        assert_eq!(f.code, 2);
        assert!(
            f.message.contains("--src-oauth2-token-file") && f.message.contains("is empty"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("--dst"), "{}", f.message);
    }

    #[test]
    fn options_travel_as_typed() {
        let m = migrate(&[
            "--include",
            "^INBOX",
            "--exclude",
            "Spam",
            "--map",
            "Old/Sent=Sent",
            "--exclude-folder-role",
            "junk",
            "--regex-rename",
            "s/^Old\\/(.*)$/$1/",
            "--skip-deleted",
            "--max-size",
            "10M",
            "--since",
            "2020-01-01",
            "--before",
            "2024-06-30T00:00:00Z",
            "--dry-run",
            "--no-automap",
        ]);
        let o = options(&m);
        assert_eq!(o.include, ["^INBOX"]);
        assert_eq!(o.exclude, ["Spam"]);
        assert_eq!(
            o.map,
            [FolderMap {
                source: "Old/Sent".into(),
                target: "Sent".into()
            }]
        );
        assert_eq!(o.exclude_folder_roles, ["junk"]);
        assert_eq!(o.regex_rename, ["s/^Old\\/(.*)$/$1/"]);
        assert!(o.skip_deleted && o.dry_run && o.no_automap && !o.include_virtual);
        assert_eq!(o.max_size, 10 << 20);
        assert_eq!(
            (o.since.as_str(), o.before.as_str()),
            ("2020-01-01", "2024-06-30T00:00:00Z")
        );
        assert_eq!(options(&migrate(&[])).max_size, 0);
    }

    #[test]
    fn bad_records_are_left_out_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(&file, "src_user,dst_user\nalice,alice\n,bob\n").unwrap();
        let argv = [
            "ctl-create",
            "--batch",
            file.to_str().unwrap(),
            "--src",
            "imaps://old.example",
            "--dst",
            "imaps://new.example",
        ];
        let m = Cli::try_parse_from(argv).unwrap().migrate;
        let s = usable(m.request_settings(&Env), &m.common, true).unwrap();
        assert_eq!(s.pairs.len(), 1);
        assert_eq!(s.bad_records.len(), 1);
    }

    #[test]
    fn bad_records_stop_everything() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(&file, "src_user,dst_user\nalice,alice\n,bob\n").unwrap();
        let argv = [
            "ctl-create",
            "--batch",
            file.to_str().unwrap(),
            "--src",
            "imaps://old.example",
            "--dst",
            "imaps://new.example",
        ];
        let m = Cli::try_parse_from(argv).unwrap().migrate;
        let Err(f) = usable(m.request_settings(&Env), &m.common, false) else {
            panic!("bad records must stop the request")
        };
        assert_eq!(f.code, 2);
        assert!(f.message.contains("record 2"), "{}", f.message);
        assert!(f.message.contains("nothing was sent"), "{}", f.message);
    }

    #[test]
    fn flags_the_fleet_does_not_use_are_named() {
        let m = migrate(&["--connections", "2", "--report-dir", "/tmp/x"]);
        assert_eq!(unused_by_fleet(&m), ["--connections", "--report-dir"]);
        assert!(unused_by_fleet(&migrate(&[])).is_empty());
        assert_eq!(
            options_given(&migrate(&["--include", "x"]).common),
            ["--include"]
        );
    }
}
