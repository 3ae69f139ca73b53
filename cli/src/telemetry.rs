//! What the process tells the outside about itself: log lines (text or JSON, `--log-format`,
//! filtered by `MAILFERRY_LOG`), OTLP trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and
//! the Prometheus recorder a fleet role renders on its admin port's `/metrics`.
//!
//! It owns the set-up and the flush on exit only. Metric names live in
//! `mailferry_fleet::metrics`, trace context propagation in `mailferry_fleet::telemetry`. Nothing
//! here may log a secret: fields are what the libraries put on their events and spans.
//!
//! OTLP uses the gRPC (tonic) exporter with the SDK's batch span processor. That processor runs
//! on a thread of its own and blocks on the export future, which needs this tokio runtime to make
//! progress, so the exporter is built inside the runtime, the runtime keeps at least two workers
//! (`main`), and the final flush runs on a blocking thread while the runtime still runs
//! (dependencies.md, pitfall 15).

use std::time::Duration;

use clap::ValueEnum;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`, `spans`).
    Json,
}

/// The environment variable that switches OTLP trace export on.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Which spans go to the trace backend: mailferry's own at info and above. Library internals
/// (tonic, h2, lapin, the OpenTelemetry SDK itself, whose export would trace itself) stay out.
const TRACE_FILTER: &str =
    "off,mailferry=info,mailferry_coordinator=info,mailferry_worker=info,mailferry_fleet=info";

/// The set-up telemetry; [`Telemetry::shutdown`] flushes what is buffered.
#[must_use = "call shutdown() before exiting, or buffered spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Sets up logging to stderr in `format` and, when [`OTLP_ENDPOINT_VAR`] is set, trace export
/// under `service` (unless `OTEL_SERVICE_NAME` names one). Must run inside the tokio runtime.
/// Returns the error of an exporter that could not be built, after setting up logging without it.
pub fn init(format: LogFormat, service: &str) -> (Telemetry, Option<String>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILFERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour codes only for a person at a terminal; a log file or a pipe gets plain text
            // (NO_COLOR, https://no-color.org, turns them off at a terminal too).
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (traces, error) = match std::env::var(OTLP_ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.trim().is_empty() => match tracer_provider(service) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(format!("{OTLP_ENDPOINT_VAR}={endpoint}: {e}"))),
        },
        _ => (None, None),
    };
    let otel = traces.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("mailferry"))
            .with_filter(tracing_subscriber::EnvFilter::new(TRACE_FILTER))
    });
    tracing_subscriber::registry().with(logs).with(otel).init();
    (Telemetry { traces }, error)
}

/// The OTLP/gRPC exporter (endpoint, headers and timeout from the standard `OTEL_EXPORTER_OTLP_*`
/// variables) behind a batch span processor (`OTEL_BSP_*`).
fn tracer_provider(service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (bounded: a backend that does not
    /// answer costs at most a few seconds at exit).
    pub async fn shutdown(self) {
        let Some(provider) = self.traces else {
            return;
        };
        // The processor blocks its caller until the export is done, and the export needs this
        // runtime: never block a runtime worker on it.
        let flush = tokio::task::spawn_blocking(move || {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("warning: traces not all exported: {e}");
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(6), flush).await;
    }
}

/// Installs the process-wide Prometheus recorder (once; a fleet role calls it before it starts
/// recording) and keeps it tidy; its handle renders `/metrics`.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(mailferry_fleet::metrics::TASK_DURATION.to_owned()),
            mailferry_fleet::metrics::TASK_DURATION_BUCKETS,
        )
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    mailferry_fleet::metrics::describe();
    // Upkeep drains histogram samples into their buckets even when nobody scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
