//! The edge of the API: wire messages into validated domain types (every error names its field)
//! and domain views back into wire messages. Nothing behind this module sees an `Option` from
//! the wire.

use mailferry_fleet::{Credentials, Secret};
use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::report::PairStatus;
use mailferry_proto::task::{AuthMechanism, CaFile, Endpoint, Side, TlsMode};

use super::ca::{self, CaDir};

use crate::control::{
    ControlError, FailureView, MigrationView, NewPair, PairView, Totals, state_name,
};
use crate::options::OptionsSpec;
use crate::record::MigrationState;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ControlError {
    ControlError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether a host is on the loopback interface.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The extra CA of an endpoint: a bundle of the CA directory or inline PEM, never a path a worker
/// would open. A `ca_file` refused gets [`ca::REFUSED`] whatever the cause; the cause is logged.
fn ca(e: &pb::Endpoint, field: &str, cas: &CaDir) -> Result<Option<CaFile>, ControlError> {
    match (e.ca_file.is_empty(), e.ca_pem.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err(invalid(
            format!("{field}.ca_pem"),
            "set ca_file or ca_pem, not both",
        )),
        (false, true) => cas.resolve(&e.ca_file).map(Some).map_err(|why| {
            tracing::warn!(field = %format_args!("{field}.ca_file"), why, "CA bundle refused");
            invalid(format!("{field}.ca_file"), ca::REFUSED)
        }),
        (true, false) => ca::inline(&e.ca_pem).map(Some).map_err(|why| {
            invalid(
                format!("{field}.ca_pem"),
                format!("{why}: send the PEM text of one or more CA certificates"),
            )
        }),
    }
}

/// An endpoint from the wire; its CA bundle is taken from `cas` or inline.
pub fn endpoint(
    e: Option<&pb::Endpoint>,
    field: &str,
    cas: &CaDir,
) -> Result<Endpoint, ControlError> {
    let e = e.ok_or_else(|| invalid(field, "is required"))?;
    let host = e.host.trim();
    if host.is_empty() {
        return Err(invalid(format!("{field}.host"), "is required"));
    }
    if host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(invalid(
            format!("{field}.host"),
            format!("{host:?} is not a host name or address"),
        ));
    }
    if e.user.is_empty() {
        return Err(invalid(format!("{field}.user"), "is required"));
    }
    if e.user.chars().any(char::is_control) {
        return Err(invalid(
            format!("{field}.user"),
            "must not contain control characters",
        ));
    }
    let tls = match pb::TlsMode::try_from(e.tls) {
        Ok(pb::TlsMode::Unspecified | pb::TlsMode::Implicit) => TlsMode::Implicit,
        Ok(pb::TlsMode::Starttls) => TlsMode::Starttls,
        Ok(pb::TlsMode::None) => TlsMode::None,
        Err(_) => {
            return Err(invalid(
                format!("{field}.tls"),
                format!(
                    "unknown TLS mode {}: use TLS_MODE_IMPLICIT, TLS_MODE_STARTTLS or TLS_MODE_NONE",
                    e.tls
                ),
            ));
        }
    };
    if tls == TlsMode::None && !is_loopback(host) {
        return Err(invalid(
            format!("{field}.tls"),
            format!(
                "TLS_MODE_NONE would send the password in the clear to {host}; it is allowed on loopback only: use TLS_MODE_STARTTLS or TLS_MODE_IMPLICIT"
            ),
        ));
    }
    let port = match e.port {
        0 if tls == TlsMode::Implicit => 993,
        0 => 143,
        p => u16::try_from(p).map_err(|_| {
            invalid(
                format!("{field}.port"),
                format!("{p} is not a TCP port (1-65535)"),
            )
        })?,
    };
    let auth_mechanism = match pb::AuthMechanism::try_from(e.auth_mechanism) {
        Ok(pb::AuthMechanism::Unspecified) => None,
        Ok(pb::AuthMechanism::Login) => Some(AuthMechanism::Login),
        Ok(pb::AuthMechanism::Plain) => Some(AuthMechanism::Plain),
        Ok(pb::AuthMechanism::Xoauth2) => Some(AuthMechanism::Xoauth2),
        Ok(pb::AuthMechanism::Oauthbearer) => Some(AuthMechanism::Oauthbearer),
        Err(_) => {
            return Err(invalid(
                format!("{field}.auth_mechanism"),
                format!(
                    "unknown mechanism {}: use AUTH_MECHANISM_LOGIN, AUTH_MECHANISM_PLAIN, AUTH_MECHANISM_XOAUTH2, AUTH_MECHANISM_OAUTHBEARER, or leave it unset",
                    e.auth_mechanism
                ),
            ));
        }
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
        user: e.user.clone(),
        tls,
        ca_file: ca(e, field, cas)?,
        insecure_skip_verify: e.insecure_skip_verify,
        auth_mechanism,
    })
}

/// Refuses credentials the endpoint's login mechanism cannot use (a password with XOAUTH2, an
/// administrator with LOGIN, a token with PLAIN), naming the endpoint's field.
pub fn mechanism_fits(
    endpoint: &Endpoint,
    credentials: &Credentials,
    field: &str,
) -> Result<(), ControlError> {
    let Some(m) = endpoint.auth_mechanism else {
        return Ok(());
    };
    match credentials.refuses(m) {
        Some(why) => Err(invalid(
            format!("{field}.auth_mechanism"),
            format!("{} {why}", m.name().to_ascii_uppercase()),
        )),
        None => Ok(()),
    }
}

/// Credentials from the wire.
pub fn credentials(c: Option<&pb::Credentials>, field: &str) -> Result<Credentials, ControlError> {
    match c.and_then(|c| c.kind.as_ref()) {
        None => Err(invalid(field, "is required: set password, admin or oauth2")),
        Some(pb::credentials::Kind::Password(p)) if p.is_empty() => {
            Err(invalid(format!("{field}.password"), "is empty"))
        }
        Some(pb::credentials::Kind::Password(p)) => Ok(Credentials::Password(Secret::new(p))),
        Some(pb::credentials::Kind::Admin(a)) => {
            if a.admin_user.is_empty() {
                return Err(invalid(format!("{field}.admin.admin_user"), "is required"));
            }
            if a.admin_password.is_empty() {
                return Err(invalid(format!("{field}.admin.admin_password"), "is empty"));
            }
            Ok(Credentials::Admin {
                admin: a.admin_user.clone(),
                secret: Secret::new(&a.admin_password),
            })
        }
        Some(pb::credentials::Kind::Oauth2(t)) => {
            // Pasted tokens often carry a line end; a token never holds white space.
            let token = t.access_token.trim();
            if token.is_empty() {
                return Err(invalid(format!("{field}.oauth2.access_token"), "is empty"));
            }
            Ok(Credentials::OAuth2Token(Secret::new(token)))
        }
    }
}

/// Whether two endpoints are one mailbox: the same user on the same host (names compared
/// without case, as DNS does) and port, whatever the TLS settings.
pub fn same_mailbox(a: &Endpoint, b: &Endpoint) -> bool {
    a.user == b.user && a.port == b.port && a.host.eq_ignore_ascii_case(&b.host)
}

/// Pairs from the wire: at least one, each valid, no two alike (nor alike one of `existing`).
pub fn pairs(
    pairs: &[pb::PairSpec],
    existing: &[(String, String)],
    cas: &CaDir,
) -> Result<Vec<NewPair>, ControlError> {
    if pairs.is_empty() {
        return Err(invalid("pairs", "at least one pair is required"));
    }
    if pairs.len() > 100_000 {
        return Err(invalid(
            "pairs",
            format!("{} pairs in one request; send at most 100000", pairs.len()),
        ));
    }
    let mut seen: std::collections::HashMap<(String, String), usize> = Default::default();
    let mut out = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let f = format!("pairs[{i}]");
        let source = endpoint(p.source.as_ref(), &format!("{f}.source"), cas)?;
        let target = endpoint(p.target.as_ref(), &format!("{f}.target"), cas)?;
        let source_credentials = credentials(
            p.source_credentials.as_ref(),
            &format!("{f}.source_credentials"),
        )?;
        let target_credentials = credentials(
            p.target_credentials.as_ref(),
            &format!("{f}.target_credentials"),
        )?;
        mechanism_fits(&source, &source_credentials, &format!("{f}.source"))?;
        mechanism_fits(&target, &target_credentials, &format!("{f}.target"))?;
        if same_mailbox(&source, &target) {
            return Err(invalid(&f, "source and target are the same mailbox"));
        }
        let key = (source.display(), target.display());
        if let Some(j) = seen.get(&key) {
            return Err(invalid(&f, format!("duplicate of pairs[{j}]")));
        }
        if existing.contains(&key) {
            return Err(invalid(
                &f,
                format!("{} → {} is already in the migration", key.0, key.1),
            ));
        }
        seen.insert(key, i);
        out.push(NewPair {
            source,
            source_credentials,
            target,
            target_credentials,
        });
    }
    Ok(out)
}

/// Options from the wire (checked by [`OptionsSpec::validate`]).
pub fn options(o: Option<&pb::MigrationOptions>) -> OptionsSpec {
    let Some(o) = o else {
        return OptionsSpec::default();
    };
    OptionsSpec {
        include: o.include.clone(),
        exclude: o.exclude.clone(),
        map: o
            .map
            .iter()
            .map(|m| (m.source.clone(), m.target.clone()))
            .collect(),
        no_automap: o.no_automap,
        include_virtual: o.include_virtual,
        exclude_folder_roles: o.exclude_folder_roles.clone(),
        regex_rename: o.regex_rename.clone(),
        skip_deleted: o.skip_deleted,
        max_size: o.max_size,
        since: o.since.clone(),
        before: o.before.clone(),
        batch_messages: o.batch_messages,
        batch_bytes: o.batch_bytes,
        dry_run: o.dry_run,
        full_flag_sync: o.full_flag_sync,
        delete_propagation: o.delete_propagation,
        sync_interval: o.sync_interval.clone(),
        daily_upload_budget: o.daily_upload_budget,
    }
}

/// Options back to the wire.
pub fn options_out(o: &OptionsSpec) -> pb::MigrationOptions {
    pb::MigrationOptions {
        include: o.include.clone(),
        exclude: o.exclude.clone(),
        map: o
            .map
            .iter()
            .map(|(s, t)| pb::FolderMap {
                source: s.clone(),
                target: t.clone(),
            })
            .collect(),
        no_automap: o.no_automap,
        include_virtual: o.include_virtual,
        exclude_folder_roles: o.exclude_folder_roles.clone(),
        regex_rename: o.regex_rename.clone(),
        skip_deleted: o.skip_deleted,
        max_size: o.max_size,
        since: o.since.clone(),
        before: o.before.clone(),
        batch_messages: o.batch_messages,
        batch_bytes: o.batch_bytes,
        dry_run: o.dry_run,
        sync_interval: o.sync_interval.clone(),
        full_flag_sync: o.full_flag_sync,
        delete_propagation: o.delete_propagation,
        daily_upload_budget: o.daily_upload_budget,
    }
}

/// A side from the wire.
pub fn side(s: i32) -> Result<Side, ControlError> {
    match pb::Side::try_from(s) {
        Ok(pb::Side::Source) => Ok(Side::Source),
        Ok(pb::Side::Target) => Ok(Side::Target),
        _ => Err(invalid(
            "side",
            format!("{s} is not a side: use SIDE_SOURCE or SIDE_TARGET"),
        )),
    }
}

/// A time on the wire.
pub fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn totals(t: &Totals) -> pb::Totals {
    pb::Totals {
        folders: t.folders,
        folders_created: t.folders_created,
        planned: t.planned,
        messages_copied: t.messages_copied,
        bytes_copied: t.bytes_copied,
        already_present: t.already_present,
        excluded: t.excluded,
        failed: t.failed,
        flags_updated: t.flags_updated,
        expunged: t.expunged,
        deferred: t.deferred,
    }
}

fn state(s: MigrationState) -> pb::MigrationState {
    match s {
        MigrationState::Running => pb::MigrationState::Running,
        MigrationState::Idle => pb::MigrationState::Idle,
        MigrationState::Paused => pb::MigrationState::Paused,
        MigrationState::Completing => pb::MigrationState::Completing,
        MigrationState::Completed => pb::MigrationState::Completed,
        MigrationState::Cancelled => pb::MigrationState::Cancelled,
    }
}

/// A migration on the wire.
pub fn migration(v: &MigrationView) -> pb::Migration {
    let r = &v.record;
    let _ = state_name;
    pb::Migration {
        id: r.id.clone(),
        name: r.name.clone(),
        state: state(r.state) as i32,
        created_at: Some(timestamp(&r.created_at)),
        pairs: u32::try_from(r.pairs.len()).unwrap_or(u32::MAX),
        pairs_finished: v.pairs_finished,
        pairs_failed: v.pairs_failed,
        totals: Some(totals(&v.totals)),
        passes: r.passes,
        pass_started_at: r.pass_started_at.as_ref().map(timestamp),
        pass_finished_at: r.pass_finished_at.as_ref().map(timestamp),
        options: Some(options_out(&r.options)),
        request_id: r.request_id.clone(),
        next_sync_at: r.next_sync_at.as_ref().map(timestamp),
        waiting: v.waiting.clone().unwrap_or_default(),
    }
}

fn pair_status(s: PairStatus) -> pb::PairStatus {
    match s {
        PairStatus::Completed => pb::PairStatus::Completed,
        PairStatus::CompletedWithFailures => pb::PairStatus::CompletedWithFailures,
        PairStatus::AuthFailed => pb::PairStatus::AuthFailed,
        PairStatus::ConnectFailed => pb::PairStatus::ConnectFailed,
        PairStatus::Failed => pb::PairStatus::Failed,
        PairStatus::Interrupted => pb::PairStatus::Interrupted,
        PairStatus::Deferred => pb::PairStatus::Deferred,
    }
}

/// A pair on the wire.
pub fn pair(p: &PairView) -> pb::Pair {
    let s = p
        .summary
        .as_ref()
        .filter(|_| !p.running)
        .map(|s| &s.summary);
    pb::Pair {
        id: p.record.id.clone(),
        source: p.record.source.display(),
        target: p.record.target.display(),
        status: s.map_or(pb::PairStatus::Pending, |s| pair_status(s.status)) as i32,
        totals: Some(totals(&p.totals)),
        error: s.and_then(|s| s.error.clone()).unwrap_or_default(),
        folders: s
            .map(|s| {
                s.folder_details
                    .iter()
                    .map(|f| pb::FolderSummary {
                        source: f.source.clone(),
                        target: f.target.clone(),
                        created: f.created,
                        copied: f.copied,
                        bytes: f.bytes,
                        already_present: f.already_present,
                        excluded: f.excluded,
                        failed: f.failed,
                        error: f.error.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        warnings: s
            .map(|s| s.warnings.iter().map(warning).collect())
            .unwrap_or_default(),
        started_at: s.map(|s| timestamp(&s.started_at)),
        finished_at: s.map(|s| timestamp(&s.finished_at)),
        duration_secs: s.map_or(0.0, |s| s.duration_secs),
    }
}

/// A warning on the wire.
pub fn warning(w: &mailferry_proto::report::Warning) -> pb::Warning {
    pb::Warning {
        code: serde_json::to_value(w.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        folder: w.folder.clone().unwrap_or_default(),
        message: w.message.clone(),
    }
}

/// A failure on the wire.
pub fn failure(f: &FailureView) -> pb::Failure {
    pb::Failure {
        pair_id: f.pair_id.clone(),
        source: f.source.clone(),
        target: f.target.clone(),
        folder: f.folder.clone(),
        uid: f.uid,
        subject: f.subject.clone(),
        size: f.size,
        kind: f.kind.clone(),
        reason: f.reason.clone(),
        advice: f.advice.clone(),
    }
}

/// A check report on the wire.
pub fn check_report(r: &mailferry_proto::report::CheckReport) -> pb::CheckReport {
    let account = |a: &mailferry_proto::report::AccountReport| pb::AccountReport {
        account: a.account.clone(),
        capabilities: a.capabilities.clone(),
        folders: a
            .folders
            .iter()
            .map(|f| pb::FolderFigures {
                name: f.name.clone(),
                role: f
                    .role
                    .map(|r| format!("{r:?}").to_lowercase())
                    .unwrap_or_default(),
                selectable: f.selectable,
                messages: f.messages,
                bytes: f.bytes,
                largest: f.largest,
            })
            .collect(),
        messages: a.messages,
        bytes: a.bytes,
        quota_limit: a.quota.as_ref().and_then(|q| q.storage_limit),
        quota_used: a.quota.as_ref().and_then(|q| q.storage_used),
        append_limit: a.append_limit,
    };
    pb::CheckReport {
        source: Some(account(&r.source)),
        target: Some(account(&r.target)),
        mapping: r
            .mapping
            .iter()
            .map(|m| pb::FolderMap {
                source: m.source.clone(),
                target: m.target.clone(),
            })
            .collect(),
        bytes_needed: r.bytes_needed,
        quota_free: r.quota_free,
        oversized_messages: r.oversized_messages,
        target_folders_with_mail: r.target_folders_with_mail.clone(),
        blocking_problems: r
            .problems
            .iter()
            .filter(|p| p.blocking)
            .map(|p| p.message.clone())
            .collect(),
        notes: r
            .problems
            .iter()
            .filter(|p| !p.blocking)
            .map(|p| p.message.clone())
            .collect(),
        warnings: r.warnings.iter().map(warning).collect(),
        unknown: r.unknown.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, tls: i32) -> pb::Endpoint {
        pb::Endpoint {
            host: host.into(),
            port: 0,
            user: "u".into(),
            tls,
            ca_file: String::new(),
            insecure_skip_verify: false,
            ca_pem: String::new(),
            auth_mechanism: 0,
        }
    }

    fn pw(p: &str) -> Option<pb::Credentials> {
        Some(pb::Credentials {
            kind: Some(pb::credentials::Kind::Password(p.into())),
        })
    }

    fn spec(src: &str, dst: &str) -> pb::PairSpec {
        pb::PairSpec {
            source: Some(ep(src, 3)),
            source_credentials: pw("a"),
            target: Some(ep(dst, 3)),
            target_credentials: pw("b"),
        }
    }

    fn field(e: ControlError) -> String {
        match e {
            ControlError::Invalid { field, .. } => field,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn login_mechanisms_are_taken_and_checked_against_the_credentials() {
        let mut s = spec("127.0.0.1", "127.0.0.2");
        s.source.as_mut().expect("s").auth_mechanism = pb::AuthMechanism::Login as i32;
        let p = pairs(&[s.clone()], &[], &CaDir::none()).expect("valid");
        assert_eq!(p[0].source.auth_mechanism, Some(AuthMechanism::Login));
        assert_eq!(p[0].target.auth_mechanism, None);
        let mut unknown = s.clone();
        unknown.target.as_mut().expect("t").auth_mechanism = 9;
        assert_eq!(
            field(pairs(&[unknown], &[], &CaDir::none()).expect_err("unknown")),
            "pairs[0].target.auth_mechanism"
        );
        let mut token = s.clone();
        token.target.as_mut().expect("t").auth_mechanism = pb::AuthMechanism::Oauthbearer as i32;
        assert_eq!(
            field(pairs(&[token], &[], &CaDir::none()).expect_err("password")),
            "pairs[0].target.auth_mechanism"
        );
        let mut admin = s;
        admin.source_credentials = Some(pb::Credentials {
            kind: Some(pb::credentials::Kind::Admin(pb::AdminLogin {
                admin_user: "root".into(),
                admin_password: "p".into(),
            })),
        });
        assert_eq!(
            field(pairs(&[admin], &[], &CaDir::none()).expect_err("admin")),
            "pairs[0].source.auth_mechanism"
        );
    }

    #[test]
    fn every_wrong_field_is_named() {
        assert_eq!(
            field(pairs(&[], &[], &CaDir::none()).expect_err("empty")),
            "pairs"
        );
        let mut bad_tls = spec("127.0.0.1", "127.0.0.2");
        bad_tls.source.as_mut().expect("s").tls = 9;
        assert_eq!(
            field(pairs(&[bad_tls], &[], &CaDir::none()).expect_err("tls")),
            "pairs[0].source.tls"
        );
        let clear = spec("127.0.0.1", "mail.example.org");
        assert_eq!(
            field(pairs(&[clear], &[], &CaDir::none()).expect_err("clear")),
            "pairs[0].target.tls"
        );
        let mut no_user = spec("127.0.0.1", "127.0.0.2");
        no_user.target.as_mut().expect("t").user.clear();
        assert_eq!(
            field(pairs(&[no_user], &[], &CaDir::none()).expect_err("user")),
            "pairs[0].target.user"
        );
        let mut no_pw = spec("127.0.0.1", "127.0.0.2");
        no_pw.source_credentials = None;
        assert_eq!(
            field(pairs(&[no_pw], &[], &CaDir::none()).expect_err("pw")),
            "pairs[0].source_credentials"
        );
        let mut empty_token = spec("127.0.0.1", "127.0.0.2");
        empty_token.target_credentials = Some(pb::Credentials {
            kind: Some(pb::credentials::Kind::Oauth2(pb::OAuth2Token {
                access_token: " \n".into(),
            })),
        });
        assert_eq!(
            field(
                pairs(
                    &[spec("127.0.0.1", "127.0.0.3"), empty_token],
                    &[],
                    &CaDir::none()
                )
                .expect_err("token")
            ),
            "pairs[1].target_credentials.oauth2.access_token"
        );
        let mut big_port = spec("127.0.0.1", "127.0.0.2");
        big_port.source.as_mut().expect("s").port = 70_000;
        assert_eq!(
            field(pairs(&[big_port], &[], &CaDir::none()).expect_err("port")),
            "pairs[0].source.port"
        );
        let a = spec("127.0.0.1", "127.0.0.2");
        assert_eq!(
            field(pairs(&[a.clone(), a], &[], &CaDir::none()).expect_err("dup")),
            "pairs[1]"
        );
    }

    #[test]
    fn valid_pairs_carry_defaults_and_hide_secrets() {
        let mut s = spec("127.0.0.1", "127.0.0.2");
        s.source.as_mut().expect("s").tls = 0;
        s.source.as_mut().expect("s").host = "localhost".into();
        let p = pairs(&[s], &[], &CaDir::none()).expect("valid");
        assert_eq!(p[0].source.port, 993);
        assert_eq!(p[0].target.port, 143);
        assert!(!format!("{:?}", p[0]).contains("\"a\""));
        let mut t = spec("127.0.0.1", "127.0.0.2");
        t.source_credentials = Some(pb::Credentials {
            kind: Some(pb::credentials::Kind::Oauth2(pb::OAuth2Token {
                access_token: "ya29.a0-token\n".into(),
            })),
        });
        let p = pairs(&[t], &[], &CaDir::none()).expect("valid");
        assert!(
            matches!(&p[0].source_credentials, Credentials::OAuth2Token(s) if s.expose() == "ya29.a0-token")
        );
        assert!(!format!("{:?}", p[0]).contains("ya29"));
    }

    fn message(e: ControlError) -> String {
        match e {
            ControlError::Invalid { field, message } => format!("{field}: {message}"),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn every_refused_ca_file_gets_the_same_answer() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("notes.txt"), "not a certificate").expect("write");
        let cas = CaDir::open(dir.path()).expect("open");
        let answers: Vec<String> = ["/etc/passwd", "../x", "missing.pem", "notes.txt", "."]
            .into_iter()
            .map(|name| {
                let mut s = spec("127.0.0.1", "127.0.0.2");
                s.source.as_mut().expect("s").ca_file = name.into();
                message(pairs(&[s], &[], &cas).expect_err(name))
            })
            .collect();
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
        assert_eq!(
            answers[0],
            format!("pairs[0].source.ca_file: {}", ca::REFUSED)
        );
        let mut both = spec("127.0.0.1", "127.0.0.2");
        both.target.as_mut().expect("t").ca_file = "a.pem".into();
        both.target.as_mut().expect("t").ca_pem = "x".into();
        assert_eq!(
            field(pairs(&[both], &[], &cas).expect_err("both")),
            "pairs[0].target.ca_pem"
        );
    }

    #[test]
    fn one_mailbox_on_both_sides_is_refused_whatever_its_tls() {
        let mut s = spec("127.0.0.1", "127.0.0.1");
        s.target.as_mut().expect("t").tls = 2;
        s.target.as_mut().expect("t").port = 143;
        assert_eq!(
            field(pairs(&[s], &[], &CaDir::none()).expect_err("same")),
            "pairs[0]"
        );
        let mut s = spec("localhost", "LOCALHOST");
        s.target.as_mut().expect("t").insecure_skip_verify = true;
        assert_eq!(
            field(pairs(&[s], &[], &CaDir::none()).expect_err("same")),
            "pairs[0]"
        );
    }

    #[test]
    fn sides_parse() {
        assert_eq!(side(1).expect("source"), Side::Source);
        assert_eq!(side(2).expect("target"), Side::Target);
        assert_eq!(field(side(0).expect_err("unspecified")), "side");
    }
}
