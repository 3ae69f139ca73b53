//! The connection to the coordinator: its URL and TLS, the API token and the interceptor that
//! sends it, and what a failed call means for people and for the exit code. Every call goes
//! through [`Session`], which also gives up on Ctrl-C, and runs in a `ctl` client span whose
//! W3C trace context the interceptor sends along, so the coordinator's work for the call joins
//! the caller's trace (when traces are exported, see `crate::telemetry`).
//!
//! It must never print, log or `Debug`-format the token.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailferry_fleet::Secret;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use tokio::sync::watch;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::args::SecretEnv;
use crate::exit;

/// Exit codes of `ctl` beyond those it shares with `migrate`.
pub mod code {
    /// The coordinator cannot be reached (refused, timed out, TLS failed, UNAVAILABLE).
    pub const UNREACHABLE: i32 = 7;
    /// The coordinator refused the API token (UNAUTHENTICATED or PERMISSION_DENIED).
    pub const TOKEN_REFUSED: i32 = 8;
}

/// The generated client, with the bearer token on every call.
pub type Client = MigrationServiceClient<InterceptedService<Channel, Bearer>>;

/// A command that failed: what to tell people, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The exit code.
    pub code: i32,
    /// What happened and what to do (may hold several lines).
    pub message: String,
}

impl Failed {
    /// A usage or configuration error: nothing was sent.
    pub fn usage(message: impl Into<String>) -> Failed {
        Failed {
            code: exit::USAGE,
            message: message.into(),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call (none when no token was given, so the
/// coordinator's UNAUTHENTICATED can say so), and the current span's trace context.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Bearer(***)"),
            None => f.write_str("Bearer(none)"),
        }
    }
}

impl Bearer {
    /// The header value for a token.
    pub fn new(token: Option<&Secret>) -> Result<Bearer, Failed> {
        let Some(token) = token else {
            return Ok(Bearer(None));
        };
        // The error would quote the value: say which rule it broke, not what it was.
        let mut value = MetadataValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| {
                Failed::usage(
                    "the API token holds characters a header cannot carry (only visible ASCII is allowed) — check MAILFERRY_API_TOKEN or --api-token-file",
                )
            })?;
        // HTTP/2 never puts a sensitive value in the HPACK table.
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        for (name, value) in mailferry_fleet::telemetry::current_headers() {
            let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes());
            if let (Ok(name), Ok(value)) = (name, MetadataValue::try_from(value)) {
                request.metadata_mut().insert(name, value);
            }
        }
        Ok(request)
    }
}

/// The API token: from `--api-token-file` if given (the flag wins), else `MAILFERRY_API_TOKEN`.
pub fn token(file: Option<&Path>, env: &dyn SecretEnv) -> Result<Option<Secret>, Failed> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failed::usage(format!("--api-token-file {}: {e}", file.display())))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Failed::usage(format!(
                "--api-token-file {}: the file is empty",
                file.display()
            )));
        }
        return Ok(Some(Secret::new(token)));
    }
    Ok(env
        .var("MAILFERRY_API_TOKEN")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new))
}

/// Where and how to reach the coordinator.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: String,
    /// Extra trusted CA (PEM) for `https://`.
    pub ca: Option<PathBuf>,
    /// How long to wait for the connection (and TLS handshake).
    pub connect_timeout: Duration,
}

/// An open connection: the client, what messages about it need, and the stop signal.
pub struct Session {
    /// The client (cheap to clone: calls share one HTTP/2 connection).
    pub client: Client,
    /// The coordinator's URL, for messages.
    pub url: String,
    token_sent: bool,
    stop: watch::Receiver<bool>,
}

impl Session {
    /// Connects now, so that an unreachable coordinator is reported before anything else.
    pub async fn open(
        target: &Target,
        token: Option<&Secret>,
        stop: watch::Receiver<bool>,
    ) -> Result<Session, Failed> {
        let endpoint = endpoint(target, token.is_some())?;
        let secs = target.connect_timeout.as_secs();
        let hint = connect_hint(&target.url);
        let channel = match tokio::time::timeout(target.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                return Err(Failed {
                    code: code::UNREACHABLE,
                    message: format!(
                        "coordinator at {} is unreachable: {} — {hint}",
                        target.url,
                        root_cause(&e)
                    ),
                });
            }
            Err(_) => {
                return Err(Failed {
                    code: code::UNREACHABLE,
                    message: format!(
                        "coordinator at {} did not answer within {secs} s — {hint}; or raise --timeout",
                        target.url
                    ),
                });
            }
        };
        Ok(Session {
            client: MigrationServiceClient::with_interceptor(channel, Bearer::new(token)?),
            url: target.url.clone(),
            token_sent: token.is_some(),
            stop,
        })
    }

    /// Awaits a call; a failure becomes a message about `what`, Ctrl-C gives up waiting.
    pub async fn call<T>(
        &mut self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Failed> {
        self.guard(what, async { call.await.map(tonic::Response::into_inner) })
            .await
    }

    /// Like [`Session::call`] for anything that fails with a status (a stream's next message).
    pub async fn guard<T>(
        &mut self,
        what: &str,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Failed> {
        let span = tracing::info_span!(
            "ctl",
            otel.name = %format_args!("ctl {what}"),
            otel.kind = "client",
        );
        // The interceptor runs when the call is first polled, inside this span.
        let work = tracing::Instrument::instrument(work, span);
        let stop = &mut self.stop;
        let stopped = async {
            if stop.wait_for(|s| *s).await.is_err() {
                // No one can stop us any more: wait for the call alone.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = work => r.map_err(|s| explain(what, &s, &self.url, self.token_sent)),
            () = stopped => Err(Failed {
                code: exit::INTERRUPTED,
                message: format!("{what}: interrupted"),
            }),
        }
    }

    /// Every page of a paged list, in order.
    pub async fn pages<T, F, Fut>(&mut self, what: &str, mut page: F) -> Result<Vec<T>, Failed>
    where
        F: FnMut(Client, String) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, String), Status>>,
    {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let (items, next) = self
                .guard(what, page(self.client.clone(), token.clone()))
                .await?;
            all.extend(items);
            if next.is_empty() {
                return Ok(all);
            }
            if next == token {
                // A coordinator that hands back the same token would keep us here forever.
                return Err(Failed {
                    code: exit::FATAL,
                    message: format!(
                        "{what}: the coordinator returned the same page token twice; stopped after {} items",
                        all.len()
                    ),
                });
            }
            token = next;
        }
    }
}

/// The tonic endpoint for a target: URL checked, TLS set up for `https://`.
fn endpoint(target: &Target, with_token: bool) -> Result<Endpoint, Failed> {
    let bad_url = || {
        Failed::usage(format!(
            "--coordinator {:?} is not a coordinator URL: use http://HOST:PORT or https://HOST:PORT (or set MAILFERRY_COORDINATOR)",
            target.url
        ))
    };
    let endpoint = Endpoint::from_shared(target.url.clone()).map_err(|_| bad_url())?;
    let host = endpoint
        .uri()
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let endpoint = endpoint
        .connect_timeout(target.connect_timeout)
        .tcp_nodelay(true)
        // A watch can be quiet between events: notice a coordinator that went away.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &target.ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| Failed::usage(format!("--ca {}: {e}", ca.display())))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint.tls_config(tls).map_err(|e| {
                Failed::usage(format!("TLS towards {}: {}", target.url, root_cause(&e)))
            })
        }
        Some("http") => {
            if let Some(ca) = &target.ca {
                eprintln!(
                    "warning: --ca {} is not used: {} is not https://",
                    ca.display(),
                    target.url
                );
            }
            if with_token && !crate::endpoint::is_loopback(&host) {
                eprintln!(
                    "warning: the API token crosses the network in clear to {}; use an https:// coordinator URL",
                    target.url
                );
            }
            Ok(endpoint)
        }
        _ => Err(bad_url()),
    }
}

fn connect_hint(url: &str) -> &'static str {
    if url.starts_with("https://") {
        "is `mailferry coordinator` running there with TLS? for a private CA pass --ca FILE (or MAILFERRY_CA); set MAILFERRY_COORDINATOR or --coordinator to another address"
    } else {
        "is `mailferry coordinator` running? if it serves TLS (--tls-cert), use https:// (and --ca for a private CA); set MAILFERRY_COORDINATOR or --coordinator to its address"
    }
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than
/// "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The exit code for a status code.
pub fn exit_code(code: Code) -> i32 {
    match code {
        Code::Ok => exit::OK,
        Code::Unavailable => code::UNREACHABLE,
        Code::Unauthenticated | Code::PermissionDenied => code::TOKEN_REFUSED,
        Code::NotFound | Code::InvalidArgument => exit::USAGE,
        Code::FailedPrecondition => exit::FAILURES,
        _ => exit::FATAL,
    }
}

/// A failed call as a message for people: what happened to `what`, and what to do.
pub fn explain(what: &str, status: &Status, url: &str, token_sent: bool) -> Failed {
    let said = match status.message() {
        "" => status.code().description().to_owned(),
        m => m.to_owned(),
    };
    // A status with a cause was made by this client from a transport failure (e.g. HTTP/2
    // garbled by a TLS server answering plain text); the coordinator never said it.
    if std::error::Error::source(status).is_some() && status.code() != Code::Unavailable {
        return Failed {
            code: code::UNREACHABLE,
            message: format!(
                "{what}: no gRPC answer from {url} ({said}) — {}",
                connect_hint(url)
            ),
        };
    }
    let message = match status.code() {
        Code::Unavailable => format!(
            "{what}: coordinator at {url} is unreachable: {said} — {}",
            connect_hint(url)
        ),
        Code::Unauthenticated if token_sent => format!(
            "{what}: coordinator at {url} refused the API token ({said}) — set MAILFERRY_API_TOKEN or --api-token-file to a token it accepts"
        ),
        Code::Unauthenticated => format!(
            "{what}: coordinator at {url} wants an API token ({said}) — set MAILFERRY_API_TOKEN or --api-token-file"
        ),
        Code::PermissionDenied => format!(
            "{what}: the API token may not do this ({said}) — use a token the coordinator allows it"
        ),
        Code::NotFound => {
            format!("{what}: {said} — `mailferry ctl list` shows the migrations there are")
        }
        Code::InvalidArgument => format!("{what}: the coordinator refused the request: {said}"),
        Code::FailedPrecondition => format!("{what}: cannot be done now: {said}"),
        Code::DeadlineExceeded => format!(
            "{what}: the coordinator gave up waiting ({said}) — are workers running? try again"
        ),
        Code::Unimplemented => format!(
            "{what}: {url} does not offer this call ({said}) — is it a `mailferry coordinator` of this version?"
        ),
        other => format!("{what}: the coordinator answered {other:?}: {said}"),
    };
    Failed {
        code: exit_code(status.code()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_failure_is_unreachable_and_suggests_https() {
        let garbled = Status::from_error(Box::new(std::io::Error::other("http2 error")));
        let f = explain("list migrations", &garbled, "http://127.0.0.1:1", true);
        assert_eq!(f.code, 7, "{}", f.message);
        assert!(
            f.message.contains("no gRPC answer from http://127.0.0.1:1")
                && f.message
                    .contains("if it serves TLS (--tls-cert), use https://"),
            "{}",
            f.message
        );
        let f = explain("list migrations", &garbled, "https://127.0.0.1:1", true);
        assert!(f.message.contains("pass --ca FILE"), "{}", f.message);
        // The coordinator's own statuses keep their meaning.
        let f = explain("get", &Status::internal("boom"), "http://127.0.0.1:1", true);
        assert_eq!(f.code, 6, "{}", f.message);
    }

    #[test]
    fn status_codes_map_to_exit_codes() {
        let table = [
            (Code::Ok, 0),
            (Code::Unavailable, 7),
            (Code::Unauthenticated, 8),
            (Code::PermissionDenied, 8),
            (Code::NotFound, 2),
            (Code::InvalidArgument, 2),
            (Code::FailedPrecondition, 3),
            (Code::DeadlineExceeded, 6),
            (Code::Internal, 6),
            (Code::Unknown, 6),
            (Code::AlreadyExists, 6),
            (Code::ResourceExhausted, 6),
        ];
        for (c, want) in table {
            assert_eq!(exit_code(c), want, "{c:?}");
        }
    }

    #[test]
    fn messages_name_the_cause_and_the_remedy() {
        let url = "http://127.0.0.1:50051";
        let f = explain(
            "get migration m1",
            &Status::invalid_argument("pairs[2].source.tls: unknown mode"),
            url,
            true,
        );
        assert_eq!(f.code, 2);
        assert!(f.message.contains("pairs[2].source.tls"), "{}", f.message);
        let f = explain("list migrations", &Status::unauthenticated(""), url, false);
        assert_eq!(f.code, 8);
        assert!(f.message.contains("MAILFERRY_API_TOKEN"), "{}", f.message);
        let f = explain(
            "pause m1",
            &Status::failed_precondition("completed"),
            url,
            true,
        );
        assert_eq!((f.code, f.message.contains("completed")), (3, true));
        let f = explain("get m1", &Status::unavailable("gone"), url, true);
        assert!(f.message.contains("MAILFERRY_COORDINATOR"), "{}", f.message);
    }

    struct Env(Option<&'static str>);
    impl SecretEnv for Env {
        fn var(&self, name: &str) -> Option<String> {
            (name == "MAILFERRY_API_TOKEN").then_some(self.0?.to_owned())
        }
    }

    #[test]
    fn the_token_file_wins_and_the_token_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file-t0ken\n").unwrap();
        let t = token(Some(&file), &Env(Some("from-env"))).unwrap().unwrap();
        assert_eq!(t.expose(), "from-file-t0ken");
        let t = token(None, &Env(Some(" env-t0ken "))).unwrap().unwrap();
        assert_eq!(t.expose(), "env-t0ken");
        assert!(token(None, &Env(None)).unwrap().is_none());
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(token(Some(&file), &Env(None)).unwrap_err().code, 2);

        let bearer = Bearer::new(Some(&Secret::new("env-t0ken"))).unwrap();
        assert!(!format!("{bearer:?}").contains("t0ken"));
        let mut b = bearer.clone();
        let req = b.call(tonic::Request::new(())).unwrap();
        let sent = req.metadata().get("authorization").unwrap();
        assert_eq!(sent.to_str().unwrap(), "Bearer env-t0ken");
        let bad = Bearer::new(Some(&Secret::new("line\nbreak-s3cret"))).unwrap_err();
        assert!(!bad.message.contains("s3cret"));
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for url in ["127.0.0.1:50051", "ftp://x", "not a url"] {
            let t = Target {
                url: url.into(),
                ca: None,
                connect_timeout: Duration::from_secs(1),
            };
            assert_eq!(endpoint(&t, false).unwrap_err().code, 2, "{url}");
        }
    }
}
