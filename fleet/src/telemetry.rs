//! Trace context across process boundaries: W3C `traceparent`/`tracestate` out of the current
//! `tracing` span into message headers or gRPC metadata, and back onto a span on the receiving
//! side, so a worker's task span is a child of the coordinator span that published the task.
//!
//! This module only carries context. It must not set up exporters or subscribers (the binary
//! does, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and it never reads or writes anything but the
//! two W3C fields. Without an OpenTelemetry layer in the subscriber the current span has no
//! OpenTelemetry context: nothing is injected and extraction is a no-op, so callers need not
//! know whether tracing is on.

use mailferry_proto::task::{TaskBody, TaskEnvelope};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sha2::{Digest, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context fields of one message: `(name, value)` pairs, at most `traceparent`
/// and `tracestate`. Empty when there is no trace to continue.
pub type TraceHeaders = Vec<(String, String)>;

struct Collect<'a>(&'a mut TraceHeaders);

impl Injector for Collect<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing; leave it out of the headers.
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

/// The trace context of the current span, as headers to send along (empty when the current span
/// is not part of a sampled OpenTelemetry trace).
pub fn current_headers() -> TraceHeaders {
    headers_of(&tracing::Span::current())
}

/// The trace context of `span`, as headers to send along.
pub fn headers_of(span: &tracing::Span) -> TraceHeaders {
    let cx = span.context();
    let mut out = TraceHeaders::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut Collect(&mut out));
    }
    out
}

/// Makes the trace context in `get` (a lookup of header names, e.g. over AMQP headers or gRPC
/// metadata) the parent of `span`, which must not have been entered yet. Does nothing when
/// there is no valid context to continue or tracing is off.
pub fn set_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    // Only the W3C fields are read: copy them out, so the extractor can lend them.
    let fields: Vec<(&'static str, String)> = W3C_FIELDS
        .iter()
        .filter_map(|name| get(name).map(|v| (*name, v)))
        .collect();
    if fields.is_empty() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Fields(&fields));
    if cx.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed, when there is nothing to do.
        let _ = span.set_parent(cx);
    }
}

/// The header names of the W3C trace context (<https://www.w3.org/TR/trace-context/>).
pub const W3C_FIELDS: [&str; 2] = ["traceparent", "tracestate"];

/// Makes the trace context in `headers` the parent of `span` (see [`set_parent`]).
pub fn set_parent_from_headers(span: &tracing::Span, headers: &[(String, String)]) {
    set_parent(span, |name| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    });
}

struct Fields<'a>(&'a [(&'static str, String)]);

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// Which end of the queue a [`task_span`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStep {
    /// The coordinator publishes the task (`publish <type>`, a producer span).
    Publish,
    /// A worker runs the task (`task <type>`, a consumer span).
    Run,
}

/// The span of one task at one end of the queue: its ids (migration, pair, task, and the target
/// folder's [`folder_id`], never a name), attempt and type, under `parent` (`None`: a root,
/// whose parent a worker then takes from the task's trace headers, [`set_parent`]). A run span
/// has an empty `outcome` field to record.
pub fn task_span(
    task: &TaskEnvelope,
    step: TaskStep,
    parent: Option<tracing::Id>,
) -> tracing::Span {
    let kind = crate::metrics::task_type(&task.body);
    let (verb, otel_kind) = match step {
        TaskStep::Publish => ("publish", "producer"),
        TaskStep::Run => ("task", "consumer"),
    };
    let span = tracing::info_span!(
        parent: parent,
        "task",
        otel.name = %format_args!("{verb} {kind}"),
        otel.kind = otel_kind,
        task.kind = kind,
        migration_id = %task.migration_id,
        pair_id = %task.pair_id,
        task_id = %task.task_id,
        attempt = task.attempt,
        folder_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if let Some(raw) = target_folder(&task.body) {
        span.record("folder_id", folder_id(raw).as_str());
    }
    span
}

/// The raw name of the target folder a task works on, if one.
pub fn target_folder(body: &TaskBody) -> Option<&str> {
    #[allow(unreachable_patterns)]
    match body {
        TaskBody::Inventory(t) => t.target_raw.as_deref(),
        TaskBody::CopyBatch(t) => Some(&t.target_raw),
        TaskBody::UpdateTarget(t) => Some(&t.target_raw),
        _ => None,
    }
}

/// A folder's id on spans: the first 8 bytes of the SHA-256 of its raw target name, in hex.
/// Stable across processes and runs (the spans of one folder can be found together), and never
/// the name itself, which may say more about a person than a trace backend should hold.
pub fn folder_id(raw: &str) -> String {
    let digest = Sha256::digest(raw.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_ids_are_stable_short_and_not_the_name() {
        let a = folder_id("INBOX.Archive");
        assert_eq!(a, folder_id("INBOX.Archive"));
        assert_eq!(a.len(), 16);
        assert!(!a.contains("Archive"));
        assert_ne!(a, folder_id("INBOX.archive"));
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_injected_and_extraction_is_harmless() {
        let span = tracing::info_span!("t");
        assert!(headers_of(&span).is_empty());
        set_parent_from_headers(
            &span,
            &[(
                "traceparent".into(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            )],
        );
    }

    #[test]
    fn a_w3c_context_round_trips_through_headers() {
        let headers: TraceHeaders = vec![(
            "traceparent".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        )];
        let fields: Vec<(&'static str, String)> = vec![("traceparent", headers[0].1.clone())];
        let cx = TraceContextPropagator::new().extract(&Fields(&fields));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = TraceHeaders::new();
        TraceContextPropagator::new().inject_context(&cx, &mut Collect(&mut out));
        assert_eq!(out, headers);
    }
}
