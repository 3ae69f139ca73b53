//! What the fleet tells the outside, from real `mailferry coordinator` and `mailferry worker`
//! processes over the machine's RabbitMQ and Redis and the two private Dovecot servers:
//!
//! * `/metrics` on the admin port: a worker's copied-messages counter equals the messages it
//!   copied, the coordinator shows its queue depth and migrations by state;
//! * `--log-format json` (flag and `MAILFERRY_LOG_FORMAT`): every log line is a JSON object, and
//!   no secret is in any of them;
//! * OTLP traces: an in-process receiver gets, from both processes, spans of one trace that starts
//!   at the CreateMigration call's `traceparent` and runs through the tasks queue into the
//!   worker's task spans; `ctl` continues its own trace into the coordinator.
//!
//! Nothing here asserts on durations: each wait is for an event, with a generous limit.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions, http_get};
use mailferry_tests::otlp::{OtlpReceiver, ReceivedSpan};
use mailferry_tests::{Fixtures, ImapClient, Side, TestAccount, TestServers};
use tonic::transport::Channel;

const WORK: &str = "INBOX.Work";
/// How long a small migration's first pass may take (a debug build on 2 cores).
const PASS_LIMIT: Duration = Duration::from_secs(300);
/// How long the coordinator may take to sample its gauges (every 15 s) or a process to export
/// its spans.
const SAMPLE_LIMIT: Duration = Duration::from_secs(60);

/// A source with `inbox` messages in INBOX and `work` in `INBOX.Work`, and an empty target.
async fn seeded_pair(
    prefix: &str,
    seed: u64,
    inbox: usize,
    work: usize,
) -> (TestAccount, TestAccount) {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, prefix).unwrap();
    let dst = servers.new_user(Side::Target, prefix).unwrap();
    let mut g = Fixtures::new(seed);
    let mut c = ImapClient::connect(&src).await.unwrap();
    let first: Vec<_> = (0..inbox).map(|_| g.ordinary()).collect();
    c.append_all("INBOX", &first).await.unwrap();
    c.create_subscribed(WORK).await.unwrap();
    let second: Vec<_> = (0..work).map(|_| g.ordinary()).collect();
    c.append_all(WORK, &second).await.unwrap();
    c.logout().await;
    (src, dst)
}

/// Lease TTL 6 s and IMAP timeout 10 s, as the fleet tests use.
fn options(
    coordinator_args: &[&str],
    coordinator_env: &[(&str, &str)],
    worker_env: &[(&str, &str)],
) -> FleetOptions {
    let own = |env: &[(&str, &str)]| {
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    FleetOptions {
        workers: 1,
        concurrency: 4,
        timeout_secs: Some(10),
        lease_ttl_secs: Some(6),
        coordinator_args: coordinator_args.iter().map(|a| (*a).to_owned()).collect(),
        extra_coordinator_env: own(coordinator_env),
        extra_worker_env: own(worker_env),
        ..FleetOptions::default()
    }
}

fn endpoint(a: &TestAccount) -> pb::Endpoint {
    pb::Endpoint {
        host: a.host.clone(),
        port: u32::from(a.imap_port),
        user: a.user.clone(),
        tls: pb::TlsMode::None as i32,
        ca_file: String::new(),
        insecure_skip_verify: false,
        ca_pem: String::new(),
        auth_mechanism: 0,
    }
}

fn password(p: &str) -> Option<pb::Credentials> {
    Some(pb::Credentials {
        kind: Some(pb::credentials::Kind::Password(p.to_owned())),
    })
}

/// `msg` with the fleet's token and, when given, a W3C `traceparent`.
fn request<T>(fleet: &Fleet, msg: T, traceparent: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", fleet.token()).parse().unwrap(),
    );
    if let Some(tp) = traceparent {
        r.metadata_mut().insert("traceparent", tp.parse().unwrap());
    }
    r
}

async fn client(fleet: &Fleet) -> MigrationServiceClient<Channel> {
    MigrationServiceClient::connect(fleet.grpc_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", fleet.grpc_url()))
}

/// CreateMigration for one pair (with the probe), sent with `traceparent` if given.
async fn create(
    fleet: &Fleet,
    src: &TestAccount,
    dst: &TestAccount,
    request_id: &str,
    traceparent: Option<&str>,
) -> pb::Migration {
    let req = pb::CreateMigrationRequest {
        request_id: request_id.to_owned(),
        name: "observability test".to_owned(),
        pairs: vec![pb::PairSpec {
            source: Some(endpoint(src)),
            source_credentials: password(&src.password),
            target: Some(endpoint(dst)),
            target_credentials: password(&dst.password),
        }],
        options: None,
        skip_probe: false,
    };
    let mut c = client(fleet).await;
    let call = c.create_migration(request(fleet, req, traceparent));
    match tokio::time::timeout(Duration::from_secs(150), call).await {
        Ok(Ok(m)) => m.into_inner(),
        Ok(Err(s)) => panic!("CreateMigration: {s:?}\n{}", tail(&fleet.logs())),
        Err(_) => panic!("CreateMigration: no answer\n{}", tail(&fleet.logs())),
    }
}

/// Polls GetMigration until its first pass has finished; the migration then.
async fn first_pass(fleet: &Fleet, id: &str) -> pb::Migration {
    let mut c = client(fleet).await;
    let deadline = std::time::Instant::now() + PASS_LIMIT;
    loop {
        let get = pb::GetMigrationRequest {
            migration_id: id.to_owned(),
        };
        let m = c
            .get_migration(request(fleet, get, None))
            .await
            .unwrap_or_else(|s| panic!("GetMigration: {s:?}"))
            .into_inner();
        if m.passes >= 1 && m.pass_finished_at.is_some() {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first pass did not finish within {PASS_LIMIT:?}: {m:?}\n{}",
            tail(&fleet.logs())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn tail(text: &str) -> String {
    let mut start = text.len().saturating_sub(12_000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("--- fleet logs (tail) ---\n{}", &text[start..])
}

/// The value of the sample `name{labels}` (labels as rendered, e.g. `{side="source"}`, or empty)
/// in a Prometheus text page.
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{labels} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /metrics` of an admin address: the page.
async fn scrape(addr: &str) -> String {
    let (code, body) = http_get(addr, "/metrics").await.unwrap();
    assert_eq!(code, 200, "GET http://{addr}/metrics: {body}");
    body
}

/// Scrapes `addr` until `done` holds, at most [`SAMPLE_LIMIT`]; the page then.
async fn scrape_until(addr: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + SAMPLE_LIMIT;
    loop {
        let page = scrape(addr).await;
        if done(&page) {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "http://{addr}/metrics showed no {what} within {SAMPLE_LIMIT:?}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A small migration by one worker: the worker's counters equal what it copied, the coordinator
/// samples its queue and its migrations; both processes log JSON lines only (one told by
/// `--log-format json`, the other by `MAILFERRY_LOG_FORMAT`), and no secret reaches a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_small_migration_and_logs_are_json_lines() {
    let (src, dst) = seeded_pair("obsmetrics", 71_000, 6, 3).await;
    let env = FleetEnv::shared();
    let fleet = Fleet::start(
        &env,
        options(
            &["--log-format", "json"],
            &[],
            &[("MAILFERRY_LOG_FORMAT", "json")],
        ),
    )
    .await;
    let worker = fleet.worker_admin_addr(0).unwrap();
    let coordinator = fleet.coordinator_admin_addr();

    let before = scrape(&worker).await;
    assert_eq!(
        sample(&before, "mailferry_messages_copied_total", ""),
        None,
        "a fresh worker has copied nothing:\n{before}"
    );

    let m = create(&fleet, &src, &dst, "obs-metrics-1", None).await;
    let m = first_pass(&fleet, &m.id).await;
    let totals = m.totals.unwrap_or_default();
    assert_eq!(
        totals.messages_copied, 9,
        "the pass copied every message: {m:?}"
    );
    assert_eq!(totals.failed, 0, "{m:?}");

    let page = scrape(&worker).await;
    let copied = sample(&page, "mailferry_messages_copied_total", "");
    assert_eq!(
        copied,
        Some(totals.messages_copied as f64),
        "the worker's copied-messages counter equals the messages copied:\n{page}"
    );
    assert_eq!(
        sample(&page, "mailferry_bytes_copied_total", ""),
        Some(totals.bytes_copied as f64),
        "{page}"
    );
    let batches = sample(
        &page,
        "mailferry_tasks_total",
        "{type=\"copy_batch\",outcome=\"ok\"}",
    );
    assert!(
        batches.is_some_and(|n| n >= 2.0),
        "a batch per folder:\n{page}"
    );
    assert!(
        page.contains("mailferry_task_duration_seconds_bucket{type=\"copy_batch\",le=\"+Inf\"}"),
        "task durations are a histogram:\n{page}"
    );
    for side in ["source", "target"] {
        let open = sample(
            &page,
            "mailferry_imap_connections",
            &format!("{{side=\"{side}\"}}"),
        );
        // Pooled sessions stay open for a while after the pass.
        assert!(
            open.is_some_and(|n| n >= 0.0),
            "{side} connections:\n{page}"
        );
    }
    assert!(
        !page.contains(&src.user) && !page.contains(&dst.user) && !page.contains("Work"),
        "no mailbox or folder name in a label:\n{page}"
    );

    let page = scrape_until(&coordinator, "migration in the idle state", |p| {
        sample(p, "mailferry_migrations", "{state=\"idle\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&page, "mailferry_migrations", "{state=\"running\"}"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "mailferry_queue_depth", "{queue=\"tasks\"}"),
        Some(0.0),
        "nothing waits in the tasks queue after the pass:\n{page}"
    );

    // JSON logs: every line a tracing event wrote is one JSON object; the other lines are the
    // processes' own plain announcements on stderr.
    let coordinator_log =
        std::fs::read_to_string(fleet.dir().join("coordinator-1.log")).unwrap_or_default();
    let worker_log = fleet.worker_log(0);
    for (name, log) in [("coordinator", &coordinator_log), ("worker", &worker_log)] {
        let mut objects = 0;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            if line.starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
                assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
                objects += 1;
            } else {
                assert!(
                    line.starts_with("mailferry ")
                        || line.starts_with("waiting for ")
                        || line.starts_with("warning: ")
                        || line.starts_with("stopping"),
                    "{name}: a log line that is neither JSON nor an announcement: {line}"
                );
            }
        }
        assert!(objects > 0, "{name} wrote no JSON log line:\n{log}");
    }
    assert!(
        coordinator_log
            .lines()
            .any(|l| l.contains("\"coordinator serving\"")),
        "{coordinator_log}"
    );

    let hits = fleet.find_secrets(&[src.password.as_str(), dst.password.as_str()], &[]);
    assert!(hits.is_empty(), "secrets found: {hits:?}");
}

/// The trace id of a `traceparent` this test sends (fixed: spans of other tests never have it).
const TRACE_ID: &str = "4d61696c666572727954726163654964";
const PARENT_SPAN: &str = "0b5e2a7c9d1f3e41";

fn in_trace<'a>(spans: &'a [ReceivedSpan], trace: &str, service: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.service == service)
        .collect()
}

/// Traces over OTLP from a coordinator and a worker process: the CreateMigration call's span
/// continues the caller's `traceparent`, the pass it starts is its child, and the worker's task
/// spans (ids and kind, no names) are children of the coordinator spans that published their
/// tasks, all in the caller's trace. `ctl` starts a trace that the coordinator continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_run_from_the_api_call_through_the_queue_to_the_worker() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export every 200 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let (src, dst) = seeded_pair("obstraces", 72_000, 4, 2).await;
    let env = FleetEnv::shared();
    let fleet = Fleet::start(&env, options(&[], &otel, &otel)).await;

    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN}-01");
    let m = create(&fleet, &src, &dst, "obs-traces-1", Some(&traceparent)).await;
    let m = first_pass(&fleet, &m.id).await;
    assert_eq!(m.totals.unwrap_or_default().messages_copied, 6, "{m:?}");

    let spans = receiver
        .wait_for(
            "coordinator and worker spans of the caller's trace",
            SAMPLE_LIMIT,
            |all| {
                let coordinator = in_trace(all, TRACE_ID, "mailferry-coordinator");
                let worker = in_trace(all, TRACE_ID, "mailferry-worker");
                coordinator.iter().any(|s| s.name == "pass")
                    && worker
                        .iter()
                        .filter(|s| s.name == "task copy_batch")
                        .count()
                        >= 2
            },
        )
        .await
        .unwrap();
    let coordinator = in_trace(&spans, TRACE_ID, "mailferry-coordinator");
    let worker = in_trace(&spans, TRACE_ID, "mailferry-worker");
    let call = coordinator
        .iter()
        .find(|s| s.name == "grpc CreateMigration")
        .unwrap_or_else(|| panic!("no CreateMigration span: {coordinator:#?}"));
    assert_eq!(
        call.parent_span_id, PARENT_SPAN,
        "the caller's span is its parent"
    );
    let pass = coordinator.iter().find(|s| s.name == "pass").unwrap();
    assert_eq!(
        pass.parent_span_id, call.span_id,
        "the call started the pass"
    );
    assert_eq!(pass.attr("migration_id"), Some(m.id.as_str()));

    let coordinator_ids: Vec<&str> = coordinator.iter().map(|s| s.span_id.as_str()).collect();
    for task in &worker {
        assert!(
            coordinator_ids.contains(&task.parent_span_id.as_str()),
            "a worker span's parent is a coordinator span: {task:#?}\n{coordinator:#?}"
        );
        if task.name.starts_with("task ") {
            assert_eq!(task.attr("migration_id"), Some(m.id.as_str()), "{task:#?}");
            assert!(
                task.attr("pair_id").is_some_and(|p| !p.is_empty()),
                "{task:#?}"
            );
            assert!(task.attr("task.kind").is_some(), "{task:#?}");
        }
    }
    let batch = worker.iter().find(|s| s.name == "task copy_batch").unwrap();
    assert!(
        batch.attr("folder_id").is_some_and(|f| f.len() == 16),
        "a batch names its folder by id: {batch:#?}"
    );
    for s in spans.iter().filter(|s| s.trace_id == TRACE_ID) {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(&src.user) && !v.contains(&dst.user) && !v.contains("Work"),
                "span {:?} names a mailbox or folder in {k}={v}",
                s.name
            );
        }
    }

    // ctl: its own trace, continued by the coordinator.
    let ctl_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let out = fleet
        .ctl_with(&["get", &m.id, "--json"], &ctl_env, Duration::from_secs(60))
        .await;
    assert_eq!(out.code, 0, "{out}");
    let spans = receiver
        .wait_for(
            "a ctl span continued by the coordinator",
            SAMPLE_LIMIT,
            |all| {
                all.iter()
                    .filter(|s| s.service == "mailferry-ctl")
                    .any(|c| {
                        all.iter().any(|s| {
                            s.service == "mailferry-coordinator"
                                && s.trace_id == c.trace_id
                                && s.parent_span_id == c.span_id
                                && s.name == "grpc GetMigration"
                        })
                    })
            },
        )
        .await
        .unwrap();
    assert!(spans.iter().all(|s| s.trace_id.len() == 32));
}
