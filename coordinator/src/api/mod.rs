//! The coordinator's gRPC server: `mailferry.v1.MigrationService`, `grpc.health.v1` and server
//! reflection (v1 and v1alpha, since grpcurl and Python's tools speak only v1alpha), bearer-token
//! auth on everything but health, TLS when configured. Each call runs in a `grpc` span that
//! continues the caller's trace from the W3C `traceparent` in its metadata, so a pass a
//! CreateMigration call starts, and the worker tasks of that pass, belong to the caller's trace.

pub mod auth;
pub mod ca;
pub mod convert;
pub mod service;

use std::net::SocketAddr;

use mailferry_proto::grpc::v1::migration_service_server::MigrationServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use auth::Tokens;
pub use service::Api;

/// PEM certificate and key for gRPC over TLS.
#[derive(Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: Vec<u8>,
    /// Private key (PEM).
    pub key: Vec<u8>,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The server could not be built or failed.
    #[error("gRPC server on {addr}: {message}")]
    Server {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        message: String,
    },
}

/// The span of one call: its method (`/package.Service/Method`, never its arguments), a child of
/// the trace context the caller sent. Health checks get none.
fn call_span(req: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = req.uri().path();
    if path.starts_with("/grpc.health.") {
        return tracing::Span::none();
    }
    let method = path.rsplit('/').next().unwrap_or(path);
    let span = tracing::info_span!(
        "grpc",
        otel.name = %format_args!("grpc {method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
    );
    let headers = req.headers();
    mailferry_fleet::telemetry::set_parent(&span, |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    span
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    api: Api,
    tokens: Tokens,
    tls: Option<TlsFiles>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|e| ServeError::Server {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        message: e.to_string(),
    })?;
    let err = |message: String| ServeError::Server { addr, message };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<MigrationServiceServer<Api>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mailferry_proto::grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| err(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mailferry_proto::grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| err(format!("reflection: {e}")))?;
    let mut builder = Server::builder().trace_fn(call_span);
    if let Some(t) = tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(t.cert, t.key)))
            .map_err(|e| err(format!("TLS: {e}")))?;
    }
    let check = move |t: &Tokens| {
        let t = t.clone();
        move |req| t.check(req)
    };
    builder
        .add_service(health_service)
        .add_service(MigrationServiceServer::with_interceptor(
            api,
            check(&tokens),
        ))
        .add_service(InterceptedService::new(reflection_v1, check(&tokens)))
        .add_service(InterceptedService::new(reflection_v1alpha, check(&tokens)))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| err(e.to_string()))
}
