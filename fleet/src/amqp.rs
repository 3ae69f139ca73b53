//! The fleet's RabbitMQ task queue: [`AmqpQueue`] implements [`TaskQueue`] over lapin. It owns
//! the topology (declared idempotently by every role, names from `mailferry_proto::queues`),
//! publishing with confirms, the bookkeeping of deliveries handed out, dead letters turned into
//! failure outcomes, and reconnection. It must not decide retries (the coordinator does, from the
//! error kind), must never ack a task before that task's outcome is confirmed, and must never show
//! the broker URL's userinfo in an error or a log line.
//!
//! **Settling.** [`TaskQueue::publish_outcome`] publishes the outcome, waits for the broker's
//! confirm, and only then acks the delivery of that task. A worker killed before that leaves the
//! task unacked and RabbitMQ redelivers it; idempotent execution makes the rerun harmless
//! (DESIGN.md, principle 3). An outcome that cannot be confirmed requeues its task (nack,
//! requeue=true), so it runs again instead of pinning a prefetch slot until `consumer_timeout`;
//! each requeue counts towards `x-delivery-limit`, so this cannot loop for ever.
//!
//! **Dead letters.** Tasks and outcomes dead-letter into `<ns>.dead` at-least-once (quorum queues
//! with `x-dead-letter-strategy=at-least-once` and `x-overflow=reject-publish`): a poison task
//! after `x-delivery-limit` deliveries, an undecodable message at once (nack, requeue=false). A
//! worker that gives up on a task on purpose ([`AmqpQueue::reject_task`], e.g.
//! [`ErrorKind::StateLost`]) cannot use a nack, which carries no headers: it publishes the task
//! to `<ns>.dead` with [`queues::HEADER_KIND`] and [`queues::HEADER_REASON`], waits for the
//! confirm, then acks the delivery. The coordinator reads `<ns>.dead` next to the outcomes
//! ([`AmqpQueue::next_incoming`]); [`TaskQueue::next_outcome`] turns each dead task into a failure
//! outcome, so a folder's chain never hangs.
//!
//! **Delayed retries** go through one quorum queue per delay bucket with a queue-wide TTL (see
//! `mailferry_proto::queues` for why not a per-message `expiration`), dead-lettering back into the
//! tasks queue at-least-once.
//!
//! **Reconnection.** A supervisor task owns the connection. When the connection is closed or
//! errored, a channel died, the broker cancelled a consumer, or a channel stays opening longer
//! than [`AmqpOptions::recovery_timeout`], it drops the whole session and builds a new one
//! (backoff from 200 ms, doubling up to [`AmqpOptions::max_reconnect_delay`]), re-declaring the
//! topology and re-consuming, so `next_task`/`next_outcome` keep working across a broker restart.
//! lapin's own `enable_auto_recover` is deliberately left off: with lapin 4.12.3, when reconnect
//! attempts fail for a moment (a broker restarting behind a load balancer that accepts and drops,
//! as the test `work_goes_on_after_the_connection_is_cut` simulates) its recovery often stays in
//! `Reconnecting` with an open socket, and a session replaced under it leaves a zombie connection
//! and IO thread behind that could later replay our consumer and sit on prefetched tasks. Its
//! recovery would gain nothing here: deliveries of the old channel cannot be acked after it
//! either, and a rebuild takes milliseconds. Deliveries handed out before a reconnect are
//! redelivered by RabbitMQ; settling them is a logged no-op. Publishing during an outage waits for
//! a new session for up to [`AmqpOptions::publish_timeout`], then reports failure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use mailferry_proto::ErrorKind;
use mailferry_proto::queues;
use mailferry_proto::task::{OutcomeBody, OutcomeEnvelope, TaskEnvelope, TaskFailure};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use crate::queue::TaskQueue;
use crate::telemetry::{self, TraceHeaders};

/// What a process does with the queues; every role declares the whole topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Consumes tasks (at most `prefetch` unsettled at once: the worker's concurrency) and
    /// publishes outcomes.
    Worker {
        /// Deliveries RabbitMQ may hand this worker before it settles one (`basic.qos`).
        prefetch: u16,
    },
    /// Publishes tasks; consumes outcomes and dead letters.
    Coordinator,
    /// Publishes tasks only; consumes nothing.
    Publisher,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Worker { .. } => "worker",
            Role::Coordinator => "coordinator",
            Role::Publisher => "publisher",
        }
    }
}

/// Tuning of an [`AmqpQueue`]. Every process of one namespace must use the same
/// `delivery_limit`: it is a queue argument, and RabbitMQ refuses a re-declaration that differs.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// `x-delivery-limit` of the tasks and outcomes queues: deliveries beyond it dead-letter.
    pub delivery_limit: u32,
    /// How long a publish waits for the broker (outage, missing confirm) before it fails.
    pub publish_timeout: Duration,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// How long the connection or a channel may stay opening before the supervisor rebuilds the
    /// session.
    pub recovery_timeout: Duration,
    /// The cap of the supervisor's reconnect backoff.
    pub max_reconnect_delay: Duration,
    /// Prefetch of each of the coordinator's consumers (outcomes, dead letters).
    pub coordinator_prefetch: u16,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            delivery_limit: 10,
            publish_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            recovery_timeout: Duration::from_secs(10),
            max_reconnect_delay: Duration::from_secs(5),
            coordinator_prefetch: 64,
        }
    }
}

/// RabbitMQ failures. URLs in here never carry userinfo.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The namespace cannot make queue names.
    #[error(transparent)]
    InvalidNamespace(#[from] queues::InvalidNamespace),
    /// The URL could not be parsed.
    #[error("invalid RabbitMQ URL {url}: {reason} — check MAILFERRY_AMQP_URL")]
    InvalidUrl {
        /// The URL without userinfo.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker could not be reached or refused the login.
    #[error(
        "could not connect to RabbitMQ at {url}: {reason} — check MAILFERRY_AMQP_URL, its credentials, and that the broker is running"
    )]
    Connect {
        /// The URL without userinfo.
        url: String,
        /// The cause.
        reason: String,
    },
    /// An exchange, queue or binding could not be declared as this version needs it.
    #[error(
        "RabbitMQ at {url} refused to declare {what}: {reason} — all processes of a namespace need the same queue settings; delete the old queue or use another MAILFERRY_NAMESPACE"
    )]
    Topology {
        /// The URL without userinfo.
        url: String,
        /// What was declared.
        what: String,
        /// The broker's answer.
        reason: String,
    },
    /// An operation failed on an open connection.
    #[error("RabbitMQ at {url} failed while {during}: {reason}")]
    Broker {
        /// The URL without userinfo.
        url: String,
        /// What was being done.
        during: &'static str,
        /// The cause.
        reason: String,
    },
    /// No usable connection within the bound.
    #[error("RabbitMQ at {url} was unavailable for {waited:?} while {during}; try again later")]
    Unavailable {
        /// The URL without userinfo.
        url: String,
        /// What was being done.
        during: &'static str,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The queue was shut down.
    #[error("the RabbitMQ queue is shut down")]
    Shutdown,
}

/// What the coordinator reads: an outcome, or a dead letter to keep for listing and replay.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A worker's outcome (or a dead-lettered outcome, which is still an outcome).
    Outcome(OutcomeEnvelope),
    /// A task that will not run again unless replayed.
    Dead {
        /// The task, unless its body could not be decoded.
        task: Option<TaskEnvelope>,
        /// Size of the message body in bytes.
        raw_len: usize,
        /// The worker's kind ([`queues::HEADER_KIND`]), else [`ErrorKind::Permanent`].
        kind: ErrorKind,
        /// Why it died, in one sentence for people.
        reason: String,
        /// How many times RabbitMQ dead-lettered it (the sum of `x-death` counts; 0 when a
        /// worker published it to the dead-letter queue itself).
        deaths: u64,
    },
}

/// The RabbitMQ task queue of one namespace, in one role.
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

/// A delivery handed out by [`TaskQueue::next_task`] and not yet settled.
struct Held {
    attempt: u32,
    acker: Acker,
    body: Vec<u8>,
    /// The publisher's trace context (W3C headers), for the worker's task span.
    trace: TraceHeaders,
}

struct Shared {
    /// Holds the password: never formatted, never logged.
    uri: AMQPUri,
    /// The URL without userinfo, for messages.
    url: String,
    ns: String,
    role: Role,
    options: AmqpOptions,
    /// The current session; `None` while the supervisor reconnects.
    session: watch::Sender<Option<Arc<Session>>>,
    /// [`TaskQueue::close`] was called: consume no more tasks.
    closed: watch::Sender<bool>,
    /// The queue is dropped or shut down: the supervisor stops.
    shutdown: watch::Sender<bool>,
    /// Deliveries handed out, by task id.
    held: Mutex<HashMap<String, Vec<Held>>>,
}

/// One connection with its channels and consumers.
struct Session {
    generation: u64,
    conn: Connection,
    /// In confirm mode; every publish goes here.
    publish: Channel,
    consume: Option<Channel>,
    tasks: Option<Consumer>,
    outcomes: Option<Consumer>,
    dead: Option<Consumer>,
    broken: watch::Sender<bool>,
    retry_declared: Mutex<HashSet<u32>>,
}

/// Where a message goes.
#[derive(Clone, Copy)]
enum Route {
    Tasks,
    Outcomes,
    Dead,
    Retry(u32),
}

/// How the broker answered a publish.
enum Published {
    Confirmed,
    Nacked,
    Returned(String),
}

enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

#[derive(PartialEq)]
enum Health {
    Good,
    Recovering,
    Dead,
}

/// `url` without its userinfo (`amqp://user:pass@host/vhost` → `amqp://host/vhost`), for
/// messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.split('@').next_back().unwrap_or_default().to_owned();
    };
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl AmqpQueue {
    /// Connects with [`AmqpOptions::default`]; see [`AmqpQueue::connect_with`].
    pub async fn connect(url: &str, namespace: &str, role: Role) -> Result<AmqpQueue, QueueError> {
        AmqpQueue::connect_with(url, namespace, role, AmqpOptions::default()).await
    }

    /// Connects, declares the topology of `namespace`, starts consuming what `role` consumes,
    /// and starts the supervisor that reconnects after a fatal error.
    pub async fn connect_with(
        url: &str,
        namespace: &str,
        role: Role,
        options: AmqpOptions,
    ) -> Result<AmqpQueue, QueueError> {
        queues::validate_namespace(namespace)?;
        let redacted = redact_url(url);
        let uri: AMQPUri = url.parse().map_err(|e: String| QueueError::InvalidUrl {
            reason: e.replace(url, &redacted),
            url: redacted.clone(),
        })?;
        let shared = Arc::new(Shared {
            uri,
            url: redacted,
            ns: namespace.to_owned(),
            role,
            options,
            session: watch::Sender::new(None),
            closed: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
            held: Mutex::new(HashMap::new()),
        });
        let first = match timeout(shared.options.connect_timeout, Session::open(&shared, 1)).await {
            Ok(session) => Arc::new(session?),
            Err(_) => {
                return Err(QueueError::Connect {
                    url: shared.url.clone(),
                    reason: format!("no connection within {:?}", shared.options.connect_timeout),
                });
            }
        };
        shared.session.send_replace(Some(first.clone()));
        tokio::spawn(supervise(shared.clone(), first));
        Ok(AmqpQueue { shared })
    }

    /// Publishes `task` so that it reaches the tasks queue after `delay` or a little later
    /// (rounded up to a bucket of [`queues::RETRY_BUCKETS_SECS`]; delays beyond the last bucket
    /// are clamped to it). `true` once the broker confirmed it.
    pub async fn publish_task_after(&self, task: &TaskEnvelope, delay: Duration) -> bool {
        if delay.is_zero() {
            return self.publish_task_ref(task).await;
        }
        let bucket = queues::retry_bucket(delay);
        if Duration::from_secs(u64::from(bucket)) < delay {
            tracing::warn!(task = %task.task_id, ?delay, bucket, "retry delay clamped to the longest bucket");
        }
        if *self.shared.closed.borrow() {
            tracing::warn!(task = %task.task_id, "publish_task_after after close: not published");
            return false;
        }
        self.publish_envelope(Route::Retry(bucket), &task.task_id, task)
            .await
    }

    /// The trace context sent with a task this worker holds (see [`TaskQueue::trace_headers`]).
    pub fn trace_headers(&self, task: &TaskEnvelope) -> TraceHeaders {
        let Ok(held) = self.shared.held.lock() else {
            return TraceHeaders::new();
        };
        held.get(&task.task_id)
            .and_then(|list| {
                list.iter()
                    .rev()
                    .find(|h| h.attempt == task.attempt)
                    .or(list.last())
            })
            .map(|h| h.trace.clone())
            .unwrap_or_default()
    }

    /// Sends a task handed out by [`TaskQueue::next_task`] to the dead-letter queue with `kind`
    /// and `reason` in its headers (e.g. [`ErrorKind::StateLost`]), then acks it; if that
    /// publish is not confirmed the delivery is nacked without requeue instead (dead-lettered by
    /// RabbitMQ, without the kind). `false` when no delivery of `task_id` is held or it could not
    /// be settled (RabbitMQ then redelivers it).
    pub async fn reject_task(&self, task_id: &str, kind: ErrorKind, reason: &str) -> bool {
        let Some(held) = self.shared.take_held(task_id, None) else {
            tracing::warn!(
                task = task_id,
                "reject_task: no delivery of this task is held"
            );
            return false;
        };
        let mut headers = FieldTable::default();
        headers.insert(
            queues::HEADER_KIND.into(),
            AMQPValue::LongString(kind_name(kind).into()),
        );
        headers.insert(
            queues::HEADER_REASON.into(),
            AMQPValue::LongString(reason.into()),
        );
        let props = message_props(task_id).with_headers(headers);
        match self
            .shared
            .publish(Route::Dead, &held.body, props, "dead-lettering a task")
            .await
        {
            Ok(Published::Confirmed) => settle(task_id, held, Settle::Ack).await,
            other => {
                tracing::warn!(task = task_id, result = %describe(&other), "could not publish the task to the dead-letter queue; letting RabbitMQ dead-letter it");
                settle(task_id, held, Settle::DeadLetter).await
            }
        }
    }

    /// Gives a task handed out by [`TaskQueue::next_task`] back to the queue (nack,
    /// requeue=true), e.g. on shutdown before it started. Counts towards `x-delivery-limit`.
    pub async fn requeue_task(&self, task_id: &str) -> bool {
        match self.shared.take_held(task_id, None) {
            Some(held) => settle(task_id, held, Settle::Requeue).await,
            None => {
                tracing::warn!(
                    task = task_id,
                    "requeue_task: no delivery of this task is held"
                );
                false
            }
        }
    }

    /// The next outcome or dead letter (coordinator role), acked as it is handed out; `None`
    /// after shutdown or in another role.
    pub async fn next_incoming(&self) -> Option<Incoming> {
        if self.shared.role != Role::Coordinator {
            tracing::warn!(
                role = self.shared.role.name(),
                "next_incoming called on a queue that consumes no outcomes"
            );
            return None;
        }
        loop {
            let s = self.shared.current(None).await?;
            let (Some(mut outcomes), Some(mut dead)) = (s.outcomes.clone(), s.dead.clone()) else {
                return None;
            };
            let (from_dead, next) = tokio::select! {
                d = outcomes.next() => (false, d),
                d = dead.next() => (true, d),
                _ = s.wait_broken() => continue,
            };
            match next {
                Some(Ok(d)) => {
                    if let Some(incoming) = self.shared.take_incoming(from_dead, d).await {
                        return Some(incoming);
                    }
                }
                Some(Err(e)) => self.shared.recover(&s, e).await,
                None => {
                    tracing::warn!(url = %self.shared.url, "RabbitMQ cancelled a consumer of the coordinator; reconnecting");
                    s.mark_broken();
                }
            }
        }
    }

    /// Messages ready in the tasks queue (not counting those handed out and unacked), for metrics.
    pub async fn task_queue_depth(&self) -> Result<u32, QueueError> {
        let shared = &self.shared;
        let waited = shared.options.publish_timeout;
        let s = shared
            .current(Some(Instant::now() + waited))
            .await
            .ok_or_else(|| shared.unavailable("reading the queue depth", waited))?;
        let during = "reading the queue depth";
        let ch = s
            .conn
            .create_channel()
            .await
            .map_err(|e| shared.broker(during, e))?;
        // A passive declare of a missing queue closes its channel: never on the session's own.
        let q = ch
            .queue_declare(
                queues::tasks_queue(&shared.ns).into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| shared.broker(during, e))?;
        let _ = ch.close(200, "OK".into()).await;
        Ok(q.message_count())
    }

    /// Stops the supervisor and closes the connection; every unacked delivery goes back to its
    /// queue. Dropping the queue does the same without waiting.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let session = self.shared.session.borrow().clone();
        if let Some(s) = session {
            let _ = timeout(Duration::from_secs(5), s.conn.close(200, "OK".into())).await;
        }
    }

    async fn publish_task_ref(&self, task: &TaskEnvelope) -> bool {
        if *self.shared.closed.borrow() {
            tracing::warn!(task = %task.task_id, "publish_task after close: not published");
            return false;
        }
        self.publish_envelope(Route::Tasks, &task.task_id, task)
            .await
    }

    async fn publish_envelope<T: serde::Serialize>(
        &self,
        route: Route,
        id: &str,
        envelope: &T,
    ) -> bool {
        let payload = match serde_json::to_vec(envelope) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(id, error = %e, "envelope could not be encoded");
                return false;
            }
        };
        let mut props = message_props(id);
        if matches!(route, Route::Tasks | Route::Retry(_)) {
            // The worker's task span continues the publisher's trace (a retry parks in a delay
            // queue, whose dead-lettering keeps the headers).
            props = with_trace_headers(props, telemetry::current_headers());
        }
        let result = self
            .shared
            .publish(route, &payload, props, "publishing")
            .await;
        if !matches!(result, Ok(Published::Confirmed)) {
            tracing::warn!(id, result = %describe(&result), "message not published");
        }
        matches!(result, Ok(Published::Confirmed))
    }
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("url", &self.shared.url)
            .field("namespace", &self.shared.ns)
            .field("role", &self.shared.role)
            .finish_non_exhaustive()
    }
}

impl Drop for AmqpQueue {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl TaskQueue for AmqpQueue {
    async fn publish_task(&self, task: TaskEnvelope) -> bool {
        self.publish_task_ref(&task).await
    }

    async fn publish_task_after(&self, task: TaskEnvelope, delay: Duration) -> bool {
        AmqpQueue::publish_task_after(self, &task, delay).await
    }

    async fn next_task(&self) -> Option<TaskEnvelope> {
        let shared = &self.shared;
        if !matches!(shared.role, Role::Worker { .. }) {
            tracing::warn!(
                role = shared.role.name(),
                "next_task called on a queue that consumes no tasks"
            );
            return None;
        }
        let mut closed = shared.closed.subscribe();
        loop {
            if *closed.borrow_and_update() {
                return None;
            }
            let s = tokio::select! {
                s = shared.current(None) => s?,
                _ = until_set(&mut closed) => return None,
            };
            let Some(mut consumer) = s.tasks.clone() else {
                // Opened after close(); the check above ends the loop.
                continue;
            };
            let next = tokio::select! {
                d = consumer.next() => d,
                _ = s.wait_broken() => continue,
                _ = until_set(&mut closed) => return None,
            };
            match next {
                Some(Ok(d)) => {
                    if let Some(task) = shared.take_task(d).await {
                        return Some(task);
                    }
                }
                Some(Err(e)) => shared.recover(&s, e).await,
                None if *shared.closed.borrow() => return None,
                None => {
                    tracing::warn!(url = %shared.url, "RabbitMQ cancelled the tasks consumer; reconnecting");
                    s.mark_broken();
                }
            }
        }
    }

    async fn publish_outcome(&self, outcome: OutcomeEnvelope) -> bool {
        let shared = &self.shared;
        let payload = match serde_json::to_vec(&outcome) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(task = %outcome.task_id, error = %e, "outcome could not be encoded");
                return false;
            }
        };
        let result = shared
            .publish(
                Route::Outcomes,
                &payload,
                message_props(&outcome.task_id),
                "publishing an outcome",
            )
            .await;
        let held = shared.take_held(&outcome.task_id, Some(outcome.attempt));
        if held.is_none() && matches!(shared.role, Role::Worker { .. }) {
            tracing::warn!(task = %outcome.task_id, "outcome of a task whose delivery is not held");
        }
        if matches!(result, Ok(Published::Confirmed)) {
            crate::failpoint::hit("outcome_published");
            if matches!(outcome.body, mailferry_proto::task::OutcomeBody::Copy(_)) {
                // The same moment, counting copy batches only (their order among the other
                // tasks' outcomes varies from run to run).
                crate::failpoint::hit("copy_outcome_published");
            }
            if let Some(held) = held {
                settle(&outcome.task_id, held, Settle::Ack).await;
            }
            return true;
        }
        tracing::warn!(task = %outcome.task_id, result = %describe(&result), "outcome not confirmed; the task is requeued to run again");
        if let Some(held) = held {
            settle(&outcome.task_id, held, Settle::Requeue).await;
        }
        false
    }

    async fn next_outcome(&self) -> Option<OutcomeEnvelope> {
        loop {
            match self.next_incoming().await? {
                Incoming::Outcome(o) => return Some(o),
                Incoming::Dead {
                    task: Some(task),
                    kind,
                    reason,
                    ..
                } => return Some(dead_outcome(task, kind, reason)),
                Incoming::Dead {
                    raw_len, reason, ..
                } => {
                    tracing::error!(bytes = raw_len, reason = %reason, "undecodable dead letter dropped: no task to report it against");
                }
            }
        }
    }

    fn close(&self) {
        self.shared.closed.send_replace(true);
    }

    fn trace_headers(&self, task: &TaskEnvelope) -> TraceHeaders {
        AmqpQueue::trace_headers(self, task)
    }
}

/// The failure outcome that stands for a dead task.
fn dead_outcome(task: TaskEnvelope, kind: ErrorKind, reason: String) -> OutcomeEnvelope {
    OutcomeEnvelope {
        task_id: task.task_id,
        migration_id: task.migration_id,
        pair_id: task.pair_id,
        attempt: task.attempt,
        finished_at: chrono::Utc::now(),
        body: OutcomeBody::Failed(TaskFailure {
            kind,
            side: None,
            message: reason,
            retry_after_ms: None,
            login: false,
            waiting: None,
        }),
    }
}

fn message_props(id: &str) -> BasicProperties {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(id.into())
        .with_timestamp(now)
}

/// Adds the W3C trace context fields to a message's headers.
fn with_trace_headers(props: BasicProperties, trace: TraceHeaders) -> BasicProperties {
    if trace.is_empty() {
        return props;
    }
    let mut headers = props.headers().clone().unwrap_or_default();
    for (name, value) in trace {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    props.with_headers(headers)
}

/// The W3C trace context fields of a delivery's headers.
fn trace_headers(props: &BasicProperties) -> TraceHeaders {
    let Some(headers) = props.headers() else {
        return TraceHeaders::new();
    };
    telemetry::W3C_FIELDS
        .iter()
        .filter_map(|name| {
            let value = headers.inner().get(*name).and_then(text)?;
            Some(((*name).to_owned(), value))
        })
        .collect()
}

fn kind_name(kind: ErrorKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

fn describe(result: &Result<Published, QueueError>) -> String {
    match result {
        Ok(Published::Confirmed) => "confirmed".into(),
        Ok(Published::Nacked) => "refused by the broker (nack; is the queue full?)".into(),
        Ok(Published::Returned(why)) => format!("unroutable ({why}); is the topology missing?"),
        Err(e) => e.to_string(),
    }
}

async fn settle(task_id: &str, held: Held, how: Settle) -> bool {
    let (what, result) = match how {
        Settle::Ack => ("ack", held.acker.ack(Default::default()).await),
        Settle::Requeue | Settle::DeadLetter => {
            let requeue = matches!(how, Settle::Requeue);
            let options = BasicNackOptions {
                requeue,
                multiple: false,
            };
            ("nack", held.acker.nack(options).await)
        }
    };
    match result {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                task = task_id,
                what,
                "delivery not settled: its channel is gone, RabbitMQ redelivers the task"
            );
            false
        }
        Err(e) => {
            tracing::warn!(task = task_id, what, error = %e, "delivery not settled; RabbitMQ redelivers the task");
            false
        }
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// A quorum queue that dead-letters at-least-once into `<ns>` with `routing_key`.
fn dead_lettering_args(ns: &str, routing_key: &str) -> FieldTable {
    let mut args = quorum_args();
    let mut text = |k: &str, v: &str| {
        args.insert(k.into(), AMQPValue::LongString(v.into()));
    };
    text("x-dead-letter-exchange", &queues::exchange(ns));
    text("x-dead-letter-routing-key", routing_key);
    // At-most-once (the default) can lose a dead letter; at-least-once needs reject-publish.
    text("x-dead-letter-strategy", "at-least-once");
    text("x-overflow", "reject-publish");
    args
}

fn clamp_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Session {
    async fn open(shared: &Shared, generation: u64) -> Result<Session, QueueError> {
        // No lapin auto-recovery: see "Reconnection" in the module doc.
        let props = ConnectionProperties::default().with_connection_name(
            format!("mailferry {} ({})", shared.role.name(), shared.ns).into(),
        );
        let conn = Connection::connect_uri(shared.uri.clone(), props)
            .await
            .map_err(|e| QueueError::Connect {
                url: shared.url.clone(),
                reason: shared.scrub(e),
            })?;
        let during = "opening a channel";
        let publish = conn
            .create_channel()
            .await
            .map_err(|e| shared.broker(during, e))?;
        shared.declare_topology(&publish).await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| shared.broker("enabling publisher confirms", e))?;
        let tag = |what: &str| {
            let nonce = getrandom::u32().unwrap_or_default();
            format!(
                "mailferry.{what}.{}.{generation}.{nonce:08x}",
                std::process::id()
            )
        };
        let consume_from = |ch: &Channel, queue: String, tag: String| {
            let ch = ch.clone();
            async move {
                ch.basic_consume(
                    queue.into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| shared.broker("starting to consume", e))
            }
        };
        let (mut consume, mut tasks, mut outcomes, mut dead) = (None, None, None, None);
        let prefetch = match shared.role {
            Role::Worker { prefetch } => Some(prefetch.max(1)),
            Role::Coordinator => Some(shared.options.coordinator_prefetch.max(1)),
            Role::Publisher => None,
        };
        if let Some(prefetch) = prefetch {
            let ch = conn
                .create_channel()
                .await
                .map_err(|e| shared.broker(during, e))?;
            // Per consumer (global=false): quorum queues do not support a global prefetch.
            ch.basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| shared.broker("setting the prefetch", e))?;
            let ns = &shared.ns;
            if shared.role == Role::Coordinator {
                outcomes =
                    Some(consume_from(&ch, queues::outcomes_queue(ns), tag("outcomes")).await?);
                dead = Some(consume_from(&ch, queues::dead_queue(ns), tag("dead")).await?);
            } else if !*shared.closed.borrow() {
                tasks = Some(consume_from(&ch, queues::tasks_queue(ns), tag("tasks")).await?);
            }
            consume = Some(ch);
        }
        Ok(Session {
            generation,
            conn,
            publish,
            consume,
            tasks,
            outcomes,
            dead,
            broken: watch::Sender::new(false),
            retry_declared: Mutex::new(HashSet::new()),
        })
    }

    fn mark_broken(&self) {
        self.broken.send_replace(true);
    }

    fn is_broken(&self) -> bool {
        *self.broken.borrow()
    }

    async fn wait_broken(&self) {
        let mut rx = self.broken.subscribe();
        let _ = rx.wait_for(|b| *b).await;
    }

    fn health(&self) -> Health {
        let conn = self.conn.status();
        if conn.connected() {
            let channels = std::iter::once(&self.publish).chain(self.consume.as_ref());
            let mut health = Health::Good;
            for ch in channels {
                let st = ch.status();
                if st.reconnecting() || st.initializing() {
                    health = Health::Recovering;
                } else if !st.connected() {
                    return Health::Dead;
                }
            }
            health
        } else if conn.reconnecting() || conn.connecting() {
            Health::Recovering
        } else {
            Health::Dead
        }
    }

    /// Cancels the tasks consumer and requeues what RabbitMQ already pushed to it.
    async fn stop_consuming_tasks(&self, url: &str) {
        let (Some(ch), Some(consumer)) = (&self.consume, &self.tasks) else {
            return;
        };
        let cancel = ch.basic_cancel(consumer.tag(), BasicCancelOptions::default());
        let error = match timeout(Duration::from_secs(5), cancel).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer within 5 s".to_owned()),
        };
        if let Some(error) = error {
            tracing::warn!(
                url,
                error,
                "could not cancel the tasks consumer; its prefetched tasks return to the queue when the connection closes"
            );
            return;
        }
        // After cancel-ok the stream yields what was prefetched, then ends.
        let mut consumer = consumer.clone();
        let mut requeued = 0u32;
        while let Ok(Some(Ok(d))) = timeout(Duration::from_secs(2), consumer.next()).await {
            let options = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            if matches!(d.acker.nack(options).await, Ok(true)) {
                requeued += 1;
            }
        }
        tracing::info!(url, requeued, "stopped consuming tasks");
    }
}

impl Shared {
    /// `text` with the URL's password masked, should a library ever echo it.
    fn scrub(&self, text: impl std::fmt::Display) -> String {
        let text = text.to_string();
        let password = &self.uri.authority.userinfo.password;
        if password.is_empty() {
            text
        } else {
            text.replace(password.as_str(), "***")
        }
    }

    fn broker(&self, during: &'static str, e: lapin::Error) -> QueueError {
        QueueError::Broker {
            url: self.url.clone(),
            during,
            reason: self.scrub(e),
        }
    }

    fn unavailable(&self, during: &'static str, waited: Duration) -> QueueError {
        if *self.shutdown.borrow() {
            return QueueError::Shutdown;
        }
        QueueError::Unavailable {
            url: self.url.clone(),
            during,
            waited,
        }
    }

    async fn declare_topology(&self, ch: &Channel) -> Result<(), QueueError> {
        let ns = &self.ns;
        ch.exchange_declare(
            queues::exchange(ns).into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| self.topology(format!("exchange {ns}"), e))?;
        let limit = clamp_i32(u64::from(self.options.delivery_limit));
        let mut work = dead_lettering_args(ns, queues::DEAD_KEY);
        work.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
        let queues_to_declare = [
            (queues::tasks_queue(ns), queues::TASKS_KEY, work.clone()),
            (queues::outcomes_queue(ns), queues::OUTCOMES_KEY, work),
            (queues::dead_queue(ns), queues::DEAD_KEY, quorum_args()),
        ];
        for (queue, key, args) in queues_to_declare {
            self.declare_queue(ch, queue, key, args).await?;
        }
        Ok(())
    }

    async fn declare_retry_bucket(&self, ch: &Channel, bucket: u32) -> Result<(), QueueError> {
        let ns = &self.ns;
        let mut args = dead_lettering_args(ns, queues::TASKS_KEY);
        let ttl_ms = clamp_i32(u64::from(bucket) * 1000);
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl_ms));
        let queue = queues::retry_queue(ns, bucket);
        self.declare_queue(ch, queue, &queues::retry_key(bucket), args)
            .await
    }

    async fn declare_queue(
        &self,
        ch: &Channel,
        queue: String,
        key: &str,
        args: FieldTable,
    ) -> Result<(), QueueError> {
        ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(|e| self.topology(format!("queue {queue}"), e))?;
        ch.queue_bind(
            queue.as_str().into(),
            queues::exchange(&self.ns).into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| self.topology(format!("binding of {queue} to {key}"), e))
    }

    fn topology(&self, what: String, e: lapin::Error) -> QueueError {
        QueueError::Topology {
            url: self.url.clone(),
            what,
            reason: self.scrub(e),
        }
    }

    /// The current session once there is a healthy one; `None` on shutdown or at `deadline`.
    async fn current(&self, deadline: Option<Instant>) -> Option<Arc<Session>> {
        let mut session = self.session.subscribe();
        let mut shutdown = self.shutdown.subscribe();
        let ready = async {
            session
                .wait_for(|s| s.as_ref().is_some_and(|s| !s.is_broken()))
                .await
                .ok()
                .and_then(|s| s.clone())
        };
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            s = ready => s,
            _ = until_set(&mut shutdown) => None,
            _ = expired => None,
        }
    }

    /// After an error on `s`: give the session up if it is dead, else pause briefly and let the
    /// caller retry (the supervisor's health check is the judge).
    async fn recover(&self, s: &Session, error: lapin::Error) {
        tracing::debug!(url = %self.url, error = %self.scrub(&error), "RabbitMQ operation failed");
        if s.health() == Health::Dead {
            s.mark_broken();
            return;
        }
        tokio::select! {
            _ = sleep(Duration::from_millis(250)) => {}
            _ = s.wait_broken() => {}
        }
    }

    /// Publishes with mandatory and a confirm, retrying across reconnects until
    /// `publish_timeout`. A nack or a return is an answer, not retried.
    async fn publish(
        &self,
        route: Route,
        payload: &[u8],
        props: BasicProperties,
        during: &'static str,
    ) -> Result<Published, QueueError> {
        let waited = self.options.publish_timeout;
        let deadline = Instant::now() + waited;
        let key = match route {
            Route::Tasks => queues::TASKS_KEY.to_owned(),
            Route::Outcomes => queues::OUTCOMES_KEY.to_owned(),
            Route::Dead => queues::DEAD_KEY.to_owned(),
            Route::Retry(bucket) => queues::retry_key(bucket),
        };
        loop {
            let s = self
                .current(Some(deadline))
                .await
                .ok_or_else(|| self.unavailable(during, waited))?;
            let attempt = async {
                if let Route::Retry(bucket) = route {
                    self.ensure_retry_bucket(&s, bucket).await?;
                }
                let confirm = s
                    .publish
                    .basic_publish(
                        queues::exchange(&self.ns).into(),
                        key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        payload,
                        props.clone(),
                    )
                    .await
                    .map_err(Some)?;
                confirm.await.map_err(Some)
            };
            // A publish on a session the supervisor gave up on may never be answered.
            let attempt = async {
                tokio::select! {
                    r = attempt => Some(r),
                    _ = s.wait_broken() => None,
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => return Err(self.unavailable(during, waited)),
                Ok(None) => {}
                Ok(Some(r)) => match r {
                    Ok(Confirmation::Ack(None)) => return Ok(Published::Confirmed),
                    Ok(Confirmation::Ack(Some(r)) | Confirmation::Nack(Some(r))) => {
                        return Ok(Published::Returned(r.reply_text.to_string()));
                    }
                    Ok(Confirmation::Nack(None)) => return Ok(Published::Nacked),
                    Ok(Confirmation::NotRequested) => {
                        // The channel lost confirm mode: never trust it again.
                        tracing::warn!(url = %self.url, "publish channel is not in confirm mode; reconnecting");
                        s.mark_broken();
                    }
                    Err(Some(e)) => self.recover(&s, e).await,
                    Err(None) => {}
                },
            }
        }
    }

    /// Declares a retry bucket once per session; on failure the session's channel is gone and
    /// the caller retries on the next one.
    async fn ensure_retry_bucket(
        &self,
        s: &Session,
        bucket: u32,
    ) -> Result<(), Option<lapin::Error>> {
        let known = s
            .retry_declared
            .lock()
            .is_ok_and(|declared| declared.contains(&bucket));
        if known {
            return Ok(());
        }
        if let Err(e) = self.declare_retry_bucket(&s.publish, bucket).await {
            tracing::warn!(error = %e, "retry queue not declared");
            s.mark_broken();
            return Err(None);
        }
        if let Ok(mut declared) = s.retry_declared.lock() {
            declared.insert(bucket);
        }
        Ok(())
    }

    /// Removes and returns a held delivery of `task_id`, of `attempt` when given and held.
    fn take_held(&self, task_id: &str, attempt: Option<u32>) -> Option<Held> {
        let mut held = self.held.lock().ok()?;
        let list = held.get_mut(task_id)?;
        let at = attempt
            .and_then(|a| list.iter().position(|h| h.attempt == a))
            .unwrap_or(0);
        let taken = (at < list.len()).then(|| list.remove(at));
        if list.is_empty() {
            held.remove(task_id);
        }
        taken
    }

    /// Decodes a task delivery and remembers it for the settle; dead-letters what cannot be
    /// decoded.
    async fn take_task(&self, d: Delivery) -> Option<TaskEnvelope> {
        if !d.acker.usable() {
            // From a channel that is gone: RabbitMQ redelivers it.
            return None;
        }
        if *self.closed.borrow() {
            let options = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            let _ = d.acker.nack(options).await;
            return None;
        }
        match serde_json::from_slice::<TaskEnvelope>(&d.data) {
            Ok(task) => {
                if let Ok(mut held) = self.held.lock() {
                    held.entry(task.task_id.clone()).or_default().push(Held {
                        attempt: task.attempt,
                        acker: d.acker,
                        body: d.data,
                        trace: trace_headers(&d.properties),
                    });
                }
                Some(task)
            }
            Err(e) => {
                let id = d.properties.message_id().as_ref().map(|m| m.to_string());
                tracing::warn!(url = %self.url, message_id = ?id, bytes = d.data.len(), error = %e, "undecodable task dead-lettered");
                let options = BasicNackOptions {
                    requeue: false,
                    multiple: false,
                };
                let _ = d.acker.nack(options).await;
                None
            }
        }
    }

    /// Turns an outcome or dead-letter delivery into an [`Incoming`] and acks it.
    async fn take_incoming(&self, from_dead: bool, d: Delivery) -> Option<Incoming> {
        if !d.acker.usable() {
            return None;
        }
        let incoming = if from_dead {
            self.dead_letter(&d)
        } else {
            match serde_json::from_slice::<OutcomeEnvelope>(&d.data) {
                Ok(o) => Incoming::Outcome(o),
                Err(e) => {
                    tracing::warn!(url = %self.url, bytes = d.data.len(), error = %e, "undecodable outcome dead-lettered");
                    let options = BasicNackOptions {
                        requeue: false,
                        multiple: false,
                    };
                    let _ = d.acker.nack(options).await;
                    return None;
                }
            }
        };
        match d.acker.ack(Default::default()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("outcome handed out but not acked: it will be redelivered")
            }
            Err(e) => {
                tracing::warn!(error = %e, "outcome handed out but not acked: it will be redelivered")
            }
        }
        Some(incoming)
    }

    fn dead_letter(&self, d: &Delivery) -> Incoming {
        let headers = d.properties.headers().clone().unwrap_or_default();
        let header = |name: &str| headers.inner().get(name).and_then(text);
        let deaths = deaths(&headers);
        let total: u64 = deaths.iter().map(|d| d.count).sum();
        let latest = deaths.first();
        if latest.is_some_and(|l| l.queue == queues::outcomes_queue(&self.ns))
            && let Ok(outcome) = serde_json::from_slice::<OutcomeEnvelope>(&d.data)
        {
            return Incoming::Outcome(outcome);
        }
        let task = serde_json::from_slice::<TaskEnvelope>(&d.data).ok();
        let kind = header(queues::HEADER_KIND)
            .and_then(|k| serde_json::from_value(serde_json::Value::String(k)).ok())
            .unwrap_or(ErrorKind::Permanent);
        let deliveries = headers
            .inner()
            .get(queues::HEADER_DELIVERY_COUNT)
            .and_then(number)
            .map(|c| c + 1);
        let reason = match (header(queues::HEADER_REASON), latest) {
            (Some(why), _) => format!("a worker dead-lettered the task: {why}"),
            (None, Some(l)) => death_reason(l, deliveries, self.options.delivery_limit),
            (None, None) => {
                "the task reached the dead-letter queue without a recorded reason".into()
            }
        };
        let reason = match &task {
            Some(_) => reason,
            None => format!(
                "{reason} (body of {} bytes could not be decoded)",
                d.data.len()
            ),
        };
        Incoming::Dead {
            task,
            raw_len: d.data.len(),
            kind,
            reason,
            deaths: total,
        }
    }
}

/// One entry of RabbitMQ's `x-death` header.
struct Death {
    queue: String,
    reason: String,
    count: u64,
}

fn deaths(headers: &FieldTable) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(list)) = headers.inner().get(queues::HEADER_DEATH) else {
        return Vec::new();
    };
    list.as_slice()
        .iter()
        .filter_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(Death {
                queue: t.inner().get("queue").and_then(text).unwrap_or_default(),
                reason: t.inner().get("reason").and_then(text).unwrap_or_default(),
                count: t.inner().get("count").and_then(number).unwrap_or(1),
            }),
            _ => None,
        })
        .collect()
}

fn death_reason(death: &Death, deliveries: Option<u64>, limit: u32) -> String {
    let queue = &death.queue;
    match death.reason.as_str() {
        "delivery_limit" => {
            let n = deliveries.unwrap_or(u64::from(limit) + 1);
            format!(
                "task dead-lettered by RabbitMQ after {n} deliveries (delivery_limit {limit}): a worker crashed on it or gave it back each time"
            )
        }
        "rejected" => format!(
            "task rejected without requeue from {queue}: a worker could not decode or would not run it"
        ),
        "expired" => format!("task expired in {queue} before a worker took it"),
        "maxlen" => format!("task dropped from {queue}, which was full"),
        other => format!("task dead-lettered from {queue} ({other})"),
    }
}

/// Waits until a flag is set (or its sender is gone), without holding the watch's lock.
async fn until_set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn number(v: &AMQPValue) -> Option<u64> {
    match *v {
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(n)),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(n)),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(n)),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

/// Watches the session; rebuilds it when it is dead or stuck recovering; stops consuming tasks
/// after `close()`; closes the connection on shutdown.
async fn supervise(shared: Arc<Shared>, mut session: Arc<Session>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut closed = shared.closed.subscribe();
    let url = shared.url.clone();
    loop {
        let mut drained = session.tasks.is_none();
        let mut recovering_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = until_set(&mut shutdown) => {
                    let _ = timeout(Duration::from_secs(5), session.conn.close(200, "OK".into())).await;
                    shared.session.send_replace(None);
                    return;
                }
                _ = session.wait_broken() => break,
                _ = until_set(&mut closed), if !drained => {
                    session.stop_consuming_tasks(&url).await;
                    drained = true;
                }
                _ = tick.tick() => match session.health() {
                    Health::Good => recovering_since = None,
                    Health::Recovering => {
                        let since = *recovering_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > shared.options.recovery_timeout {
                            tracing::warn!(url = %url, "RabbitMQ connection still recovering after {:?}; reconnecting", shared.options.recovery_timeout);
                            break;
                        }
                    }
                    Health::Dead => break,
                },
            }
        }
        session.mark_broken();
        shared.session.send_replace(None);
        tracing::warn!(url = %url, generation = session.generation, "RabbitMQ connection lost; reconnecting (tasks in hand will be redelivered)");
        let old = session.clone();
        tokio::spawn(async move {
            let _ = timeout(
                Duration::from_secs(5),
                old.conn.close(200, "reconnecting".into()),
            )
            .await;
        });
        let mut delay = Duration::from_millis(200);
        let mut generation = session.generation;
        session = loop {
            generation += 1;
            let opened = tokio::select! {
                r = timeout(shared.options.connect_timeout, Session::open(&shared, generation)) => r,
                _ = until_set(&mut shutdown) => return,
            };
            match opened {
                Ok(Ok(s)) => break Arc::new(s),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "RabbitMQ reconnect failed")
                }
                Err(_) => {
                    tracing::warn!(url = %url, retry_in = ?delay, "RabbitMQ reconnect timed out")
                }
            }
            tokio::select! {
                _ = sleep(delay) => {}
                _ = until_set(&mut shutdown) => return,
            }
            delay = (delay * 2).min(shared.options.max_reconnect_delay);
        };
        shared.session.send_replace(Some(session.clone()));
        tracing::info!(url = %url, generation, "reconnected to RabbitMQ");
    }
}

#[cfg(test)]
mod tests {
    //! Against the real RabbitMQ of `MAILFERRY_TEST_AMQP_URL`, each test in its own namespace.

    use super::*;
    use mailferry_proto::task::{ENVELOPE_VERSION, ListTask, TaskBody};

    const WAIT: Duration = Duration::from_secs(5);

    fn url() -> String {
        std::env::var("MAILFERRY_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    fn namespace() -> String {
        format!("mftest-{:016x}", getrandom::u64().expect("random"))
    }

    fn options() -> AmqpOptions {
        AmqpOptions {
            publish_timeout: WAIT,
            connect_timeout: Duration::from_secs(10),
            ..AmqpOptions::default()
        }
    }

    async fn open(ns: &str, role: Role) -> AmqpQueue {
        open_with(ns, role, options()).await
    }

    async fn open_with(ns: &str, role: Role, options: AmqpOptions) -> AmqpQueue {
        AmqpQueue::connect_with(&url(), ns, role, options)
            .await
            .expect("connect to the test RabbitMQ")
    }

    fn task(id: &str) -> TaskEnvelope {
        TaskEnvelope {
            version: ENVELOPE_VERSION,
            task_id: id.into(),
            migration_id: "m1".into(),
            pair_id: "p1".into(),
            attempt: 0,
            body: TaskBody::List(ListTask {
                with_sizes: false,
                report_larger_than: None,
                close_sessions: false,
            }),
        }
    }

    fn outcome(task: &TaskEnvelope) -> OutcomeEnvelope {
        dead_outcome(task.clone(), ErrorKind::Transient, "test outcome".into())
    }

    async fn next_task(q: &AmqpQueue) -> TaskEnvelope {
        timeout(WAIT, q.next_task())
            .await
            .expect("a task within 5 s")
            .expect("queue open")
    }

    /// Asserts that no task arrives within `wait`.
    async fn no_task(q: &AmqpQueue, wait: Duration) {
        if let Ok(t) = timeout(wait, q.next_task()).await {
            panic!("unexpected task {:?}", t.map(|t| t.task_id));
        }
    }

    async fn raw_channel() -> (Connection, Channel) {
        let conn = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .expect("raw connection");
        let ch = conn.create_channel().await.expect("raw channel");
        (conn, ch)
    }

    /// Shuts the queues down, then deletes the namespace's queues and exchange.
    async fn cleanup(ns: &str, queues_open: Vec<AmqpQueue>, retry_buckets: &[u32]) {
        for q in &queues_open {
            q.shutdown().await;
        }
        drop(queues_open);
        let (conn, ch) = raw_channel().await;
        let mut names = vec![
            queues::tasks_queue(ns),
            queues::outcomes_queue(ns),
            queues::dead_queue(ns),
        ];
        names.extend(retry_buckets.iter().map(|&b| queues::retry_queue(ns, b)));
        for name in names {
            let _ = ch.queue_delete(name.into(), Default::default()).await;
        }
        let _ = ch
            .exchange_delete(queues::exchange(ns).into(), Default::default())
            .await;
        let _ = conn.close(200, "OK".into()).await;
    }

    #[test]
    fn urls_lose_their_userinfo() {
        let cases = [
            ("amqp://guest:s3cret@host:5672/%2f", "amqp://host:5672/%2f"),
            (
                "amqps://u:p%40ss@rabbit/vh?heartbeat=10",
                "amqps://rabbit/vh?heartbeat=10",
            ),
            ("amqp://host/%2f", "amqp://host/%2f"),
            ("amqp://host/path@x", "amqp://host/path@x"),
            ("user:pw@host", "host"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        let bad = url().replacen("guest:guest@", "guest:Wr0ngPassw0rd@", 1);
        let quick = AmqpOptions {
            connect_timeout: Duration::from_secs(5),
            ..options()
        };
        let err = AmqpQueue::connect_with(&bad, &namespace(), Role::Publisher, quick)
            .await
            .expect_err("login refused");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("Wr0ngPassw0rd"), "{text}");
        let err = AmqpQueue::connect_with(
            "amqp://u:Wr0ngPassw0rd@[bad",
            "ns",
            Role::Publisher,
            options(),
        )
        .await
        .expect_err("invalid url");
        assert!(!format!("{err} {err:?}").contains("Wr0ngPassw0rd"), "{err}");
    }

    #[tokio::test]
    async fn a_task_round_trips_and_its_outcome_settles_it() {
        let ns = namespace();
        let coord = open(&ns, Role::Coordinator).await;
        let worker = open(&ns, Role::Worker { prefetch: 2 }).await;
        for q in [&coord, &worker] {
            let session = q.shared.session.borrow().clone().expect("a session");
            assert!(
                session.health() == Health::Good,
                "fresh session not healthy"
            );
        }
        assert!(coord.publish_task(task("t1")).await);
        let got = next_task(&worker).await;
        assert_eq!(got.task_id, "t1");
        assert!(worker.publish_outcome(outcome(&got)).await);
        let o = timeout(WAIT, coord.next_outcome())
            .await
            .expect("in time")
            .expect("outcome");
        assert_eq!((o.task_id.as_str(), o.pair_id.as_str()), ("t1", "p1"));
        // Acked: with the worker's connection gone the task does not come back.
        worker.shutdown().await;
        drop(worker);
        let other = open(&ns, Role::Worker { prefetch: 1 }).await;
        no_task(&other, Duration::from_millis(1500)).await;
        assert_eq!(coord.task_queue_depth().await.expect("depth"), 0);
        // Nothing made the supervisor rebuild a session.
        let session = coord.shared.session.borrow().clone().expect("a session");
        assert_eq!(session.generation, 1);
        cleanup(&ns, vec![coord, other], &[]).await;
    }

    #[tokio::test]
    async fn an_unsettled_task_is_redelivered_when_its_worker_dies() {
        let ns = namespace();
        let coord = open(&ns, Role::Publisher).await;
        let first = open(&ns, Role::Worker { prefetch: 1 }).await;
        let second = open(&ns, Role::Worker { prefetch: 1 }).await;
        assert!(coord.publish_task(task("t1")).await);
        let got = tokio::select! {
            t = next_task(&first) => (t, true),
            t = next_task(&second) => (t, false),
        };
        let (dies, survives) = if got.1 {
            (first, second)
        } else {
            (second, first)
        };
        assert_eq!(got.0.task_id, "t1");
        drop(dies); // like kill -9: no outcome, no ack
        let again = next_task(&survives).await;
        assert_eq!(again.task_id, "t1");
        assert!(survives.publish_outcome(outcome(&again)).await);
        cleanup(&ns, vec![coord, survives], &[]).await;
    }

    #[tokio::test]
    async fn a_rejected_task_becomes_a_state_lost_failure() {
        let ns = namespace();
        let coord = open(&ns, Role::Coordinator).await;
        let worker = open(&ns, Role::Worker { prefetch: 1 }).await;
        assert!(coord.publish_task(task("t1")).await);
        let got = next_task(&worker).await;
        let why = "pair p1 is no longer in the store";
        assert!(
            worker
                .reject_task(&got.task_id, ErrorKind::StateLost, why)
                .await
        );
        assert!(
            !worker
                .reject_task(&got.task_id, ErrorKind::StateLost, why)
                .await
        );
        let o = timeout(WAIT, coord.next_outcome())
            .await
            .expect("in time")
            .expect("outcome");
        assert_eq!((o.task_id.as_str(), o.migration_id.as_str()), ("t1", "m1"));
        let OutcomeBody::Failed(f) = o.body else {
            panic!("expected a failure, got {:?}", o.body);
        };
        assert_eq!(f.kind, ErrorKind::StateLost);
        assert!(f.message.contains(why), "{}", f.message);
        no_task(&worker, Duration::from_millis(1000)).await;
        cleanup(&ns, vec![coord, worker], &[]).await;
    }

    #[tokio::test]
    async fn a_task_requeued_beyond_the_delivery_limit_is_dead_lettered() {
        let ns = namespace();
        let options = AmqpOptions {
            delivery_limit: 2,
            ..options()
        };
        let coord = open_with(&ns, Role::Coordinator, options.clone()).await;
        let worker = open_with(&ns, Role::Worker { prefetch: 1 }, options).await;
        assert!(coord.publish_task(task("poison")).await);
        let mut deliveries = 0;
        while let Ok(Some(t)) = timeout(Duration::from_secs(2), worker.next_task()).await {
            deliveries += 1;
            assert!(worker.requeue_task(&t.task_id).await);
            assert!(deliveries <= 10, "never dead-lettered");
        }
        assert_eq!(deliveries, 3, "limit 2: the third return dead-letters it");
        let incoming = timeout(WAIT, coord.next_incoming()).await.expect("in time");
        let Some(Incoming::Dead {
            task,
            kind,
            reason,
            deaths,
            ..
        }) = incoming
        else {
            panic!("expected a dead letter, got {incoming:?}");
        };
        assert_eq!(task.map(|t| t.task_id).as_deref(), Some("poison"));
        assert_eq!(kind, ErrorKind::Permanent);
        assert!(deaths >= 1);
        assert!(reason.contains("deliver"), "{reason}");
        cleanup(&ns, vec![coord, worker], &[]).await;
    }

    #[tokio::test]
    async fn an_undecodable_task_is_dead_lettered_and_skipped() {
        let ns = namespace();
        let coord = open(&ns, Role::Coordinator).await;
        let worker = open(&ns, Role::Worker { prefetch: 2 }).await;
        let (conn, ch) = raw_channel().await;
        ch.basic_publish(
            queues::exchange(&ns).into(),
            queues::TASKS_KEY.into(),
            BasicPublishOptions::default(),
            b"not json",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("raw publish");
        let _ = conn.close(200, "OK".into()).await;
        assert!(coord.publish_task(task("good")).await);
        assert_eq!(next_task(&worker).await.task_id, "good");
        let incoming = timeout(WAIT, coord.next_incoming()).await.expect("in time");
        let Some(Incoming::Dead {
            task,
            raw_len,
            reason,
            ..
        }) = incoming
        else {
            panic!("expected a dead letter, got {incoming:?}");
        };
        assert!(task.is_none());
        assert_eq!(raw_len, 8);
        assert!(reason.contains("rejected"), "{reason}");
        cleanup(&ns, vec![coord, worker], &[]).await;
    }

    #[tokio::test]
    async fn a_delayed_task_arrives_after_its_delay() {
        let ns = namespace();
        let coord = open(&ns, Role::Coordinator).await;
        let worker = open(&ns, Role::Worker { prefetch: 2 }).await;
        let start = Instant::now();
        let delay = Duration::from_millis(1500);
        assert!(coord.publish_task_after(&task("later"), delay).await);
        assert!(coord.publish_task(task("now")).await);
        let first = next_task(&worker).await;
        assert_eq!(first.task_id, "now");
        assert!(worker.publish_outcome(outcome(&first)).await);
        let second = timeout(Duration::from_secs(10), worker.next_task())
            .await
            .expect("the delayed task within 10 s")
            .expect("queue open");
        assert_eq!(second.task_id, "later");
        assert!(
            start.elapsed() >= delay,
            "arrived after {:?}",
            start.elapsed()
        );
        assert!(worker.publish_outcome(outcome(&second)).await);
        cleanup(&ns, vec![coord, worker], &[queues::retry_bucket(delay)]).await;
    }

    #[tokio::test]
    async fn close_stops_consuming_and_requeues_what_was_prefetched() {
        let ns = namespace();
        let coord = open(&ns, Role::Publisher).await;
        for id in ["a", "b", "c"] {
            assert!(coord.publish_task(task(id)).await);
        }
        let first = open(&ns, Role::Worker { prefetch: 3 }).await;
        let taken = next_task(&first).await;
        sleep(Duration::from_millis(300)).await; // let the other two be prefetched
        first.close();
        assert!(
            timeout(WAIT, first.next_task())
                .await
                .expect("in time")
                .is_none()
        );
        let second = open(&ns, Role::Worker { prefetch: 5 }).await;
        let mut rest = vec![next_task(&second).await, next_task(&second).await];
        rest.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let mut expected: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .filter(|id| *id != taken.task_id)
            .collect();
        expected.sort_unstable();
        let got: Vec<_> = rest.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(got, expected);
        // The task in hand still settles after close.
        assert!(first.publish_outcome(outcome(&taken)).await);
        for t in &rest {
            assert!(second.publish_outcome(outcome(t)).await);
        }
        assert!(!first.publish_task(task("late")).await);
        cleanup(&ns, vec![coord, first, second], &[]).await;
    }

    /// A TCP proxy in front of the broker whose connections can be cut and whose "broker" can
    /// be down, to test recovery without restarting the shared RabbitMQ.
    struct Proxy {
        url: String,
        cut: watch::Sender<u64>,
        up: watch::Sender<bool>,
        /// Connections open through the proxy.
        live: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Proxy {
        async fn start() -> Proxy {
            let mut uri: AMQPUri = url().parse().expect("test url");
            let broker = format!("{}:{}", uri.authority.host, uri.authority.port);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            uri.authority.host = "127.0.0.1".into();
            uri.authority.port = port;
            let (cut, _) = watch::channel(0u64);
            let (up, _) = watch::channel(true);
            let (cut_rx, up_rx) = (cut.subscribe(), up.subscribe());
            let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = live.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !*up_rx.borrow() {
                        continue; // dropped: the broker is "down"
                    }
                    let (broker, mut cut) = (broker.clone(), cut_rx.clone());
                    let live = counter.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(broker).await else {
                            return;
                        };
                        cut.mark_unchanged();
                        live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                        live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    });
                }
            });
            Proxy {
                url: uri.to_string(),
                cut,
                up,
                live,
            }
        }

        /// Cuts every open connection, like a broker crash.
        fn cut(&self) {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    #[tokio::test]
    async fn work_goes_on_after_the_connection_is_cut() {
        let ns = namespace();
        let proxy = Proxy::start().await;
        let patient = AmqpOptions {
            publish_timeout: Duration::from_secs(15),
            ..options()
        };
        let through_proxy = |role| AmqpQueue::connect_with(&proxy.url, &ns, role, patient.clone());
        let coord = through_proxy(Role::Coordinator).await.expect("coordinator");
        let worker = through_proxy(Role::Worker { prefetch: 2 })
            .await
            .expect("worker");
        assert!(coord.publish_task(task("t1")).await);
        let t1 = next_task(&worker).await;
        // The broker goes away with t1 in hand, and comes back a second later.
        proxy.up.send_replace(false);
        proxy.cut();
        let back = async {
            sleep(Duration::from_millis(1000)).await;
            proxy.up.send_replace(true);
        };
        // The outcome waits for the broker; the old delivery cannot be acked any more.
        let (published, ()) = tokio::join!(worker.publish_outcome(outcome(&t1)), back);
        assert!(published, "outcome published once the broker is back");
        // So t1 comes again (at least once), then new work flows.
        assert!(coord.publish_task(task("t2")).await);
        let mut ran = Vec::new();
        while ran.len() < 2 {
            let t = timeout(Duration::from_secs(15), worker.next_task())
                .await
                .expect("tasks after the cut")
                .expect("queue open");
            assert!(worker.publish_outcome(outcome(&t)).await);
            ran.push(t.task_id);
        }
        ran.sort();
        assert_eq!(ran, ["t1", "t2"]);
        // The coordinator reads outcomes across the cut too (t1's may come twice).
        let mut answered = HashSet::new();
        while answered.len() < 2 {
            let o = timeout(Duration::from_secs(15), coord.next_outcome())
                .await
                .expect("outcomes after the cut")
                .expect("queue open");
            answered.insert(o.task_id);
        }
        // No replaced connection lingers: a zombie could hold prefetched tasks nobody reads.
        let live = || proxy.live.load(std::sync::atomic::Ordering::SeqCst);
        let start = Instant::now();
        while live() != 2 {
            assert!(start.elapsed() < WAIT, "{} live connections", live());
            sleep(Duration::from_millis(100)).await;
        }
        cleanup(&ns, vec![coord, worker], &[]).await;
    }

    #[tokio::test]
    async fn a_cancelled_consumer_is_restarted() {
        let ns = namespace();
        let publisher = open(&ns, Role::Publisher).await;
        let worker = Arc::new(open(&ns, Role::Worker { prefetch: 1 }).await);
        let waiting = tokio::spawn({
            let worker = worker.clone();
            async move { timeout(Duration::from_secs(15), worker.next_task()).await }
        });
        sleep(Duration::from_millis(200)).await;
        // Deleting the queue makes RabbitMQ cancel the consumer; the worker rebuilds its
        // session, which declares the queue again.
        let (conn, ch) = raw_channel().await;
        ch.queue_delete(queues::tasks_queue(&ns).into(), Default::default())
            .await
            .expect("delete the tasks queue");
        let _ = conn.close(200, "OK".into()).await;
        let start = Instant::now();
        while !publisher.publish_task(task("t1")).await {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "queue never re-declared"
            );
            sleep(Duration::from_millis(200)).await;
        }
        let got = waiting
            .await
            .expect("join")
            .expect("in time")
            .expect("open");
        assert_eq!(got.task_id, "t1");
        assert!(worker.publish_outcome(outcome(&got)).await);
        let session = worker.shared.session.borrow().clone().expect("a session");
        assert!(session.generation > 1);
        let worker = Arc::into_inner(worker).expect("sole owner");
        cleanup(&ns, vec![publisher, worker], &[]).await;
    }

    #[tokio::test]
    async fn an_unroutable_publish_is_reported() {
        let ns = namespace();
        let publisher = open(&ns, Role::Publisher).await;
        let (conn, ch) = raw_channel().await;
        ch.queue_delete(queues::tasks_queue(&ns).into(), Default::default())
            .await
            .expect("delete the tasks queue");
        let _ = conn.close(200, "OK".into()).await;
        assert!(!publisher.publish_task(task("nowhere")).await);
        cleanup(&ns, vec![publisher], &[]).await;
    }
}
