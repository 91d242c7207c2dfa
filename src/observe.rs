//! Observability: metric names, notable events (one small struct each with an `emit()` that
//! logs and counts, as Vector's `internal_events`), process health, and the HTTP endpoints
//! `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::{info, warn};

use crate::engine::{Action, Decision, ExecutionEvent, Phase, Variant};

/// Input records read, by topic kind (`events`, `commands`).
pub const RECORDS_IN: &str = "rollout_breaker_records_in_total";
/// Decisions published, by action.
pub const DECISIONS: &str = "rollout_breaker_decisions_total";
/// Dead-lettered records, by reason.
pub const DEAD_LETTERS: &str = "rollout_breaker_dead_letters_total";
/// Events that arrived after their window closed.
pub const LATE_EVENTS: &str = "rollout_breaker_late_events_total";
/// Events of a rollout with segments or regions that fall in none of its scopes (an excluded
/// segment, an unlisted region): not judged.
pub const OUT_OF_SCOPE_EVENTS: &str = "rollout_breaker_out_of_scope_events_total";
/// Consumer lag per partition (from librdkafka statistics).
pub const CONSUMER_LAG: &str = "rollout_breaker_consumer_lag";
/// Partitions assigned / restored.
pub const PARTITIONS_ASSIGNED: &str = "rollout_breaker_partitions_assigned";
/// Partitions restored and consuming.
pub const PARTITIONS_RESTORED: &str = "rollout_breaker_partitions_restored";
/// Decision records read during restores.
pub const RESTORE_DECISIONS: &str = "rollout_breaker_restore_decisions_read_total";
/// Events re-read during restores.
pub const RESTORE_EVENTS: &str = "rollout_breaker_restore_events_replayed_total";
/// Window rebuilds that needed events retention had already deleted.
pub const RESTORE_TRUNCATED: &str = "rollout_breaker_restore_truncated_total";
/// Transactions committed.
pub const TRANSACTIONS: &str = "rollout_breaker_transactions_total";
/// Rollouts held in memory.
pub const ROLLOUTS: &str = "rollout_breaker_rollouts";
/// 1 while a broker answers, 0 after librdkafka reported every broker down.
pub const BROKER_CONNECTED: &str = "rollout_breaker_broker_connected";
/// Errors librdkafka reported about the cluster connection (refused, resolve, all down...).
pub const BROKER_ERRORS: &str = "rollout_breaker_broker_errors_total";

/// Executions read from the events topic, by variant (`BASELINE`, `CANDIDATE`) and outcome
/// (`success`, `failure`): completion per variant is `success / (success + failure)`.
pub const EXECUTIONS: &str = "rollout_breaker_executions_total";
/// Sum of those executions' latencies in ms, by variant: mean latency per variant is its rate
/// over the rate of `rollout_breaker_executions_total`.
pub const EXECUTION_LATENCY: &str = "rollout_breaker_execution_latency_ms_total";
/// Rollouts held in memory, by phase (updated when a batch published a decision and after
/// rebalances).
pub const ROLLOUTS_BY_PHASE: &str = "rollout_breaker_rollouts_by_phase";
/// Seconds the last restore took (every partition of one assignment, read in parallel).
pub const RESTORE_SECONDS: &str = "rollout_breaker_restore_duration_seconds";
/// Decisions a webhook acknowledged (2xx), by webhook.
pub const WEBHOOK_SENT: &str = "rollout_breaker_webhook_sent_total";
/// Decisions a webhook never acknowledged (attempts spent, or refused with a 4xx), by webhook.
pub const WEBHOOK_FAILED: &str = "rollout_breaker_webhook_failed_total";
/// Attempts after the first, by webhook.
pub const WEBHOOK_RETRIES: &str = "rollout_breaker_webhook_retries_total";
/// Decisions not queued for a webhook because its queue was full, by webhook.
pub const WEBHOOK_DROPPED: &str = "rollout_breaker_webhook_dropped_total";

/// The webhook metrics, labelled `webhook` (the configured name): served once webhooks are
/// configured (`[[notify.webhooks]]`), registered at zero for each at start.
pub const WEBHOOK_METRICS: &[&str] = &[
    WEBHOOK_SENT,
    WEBHOOK_FAILED,
    WEBHOOK_RETRIES,
    WEBHOOK_DROPPED,
];

/// Every processor metric, as `/metrics` shows it (and the README's Operations list names
/// it). Unlabelled ones are registered at zero by [`register_processor_metrics`], so a
/// scrape shows them before anything happened.
pub const PROCESSOR_METRICS: &[&str] = &[
    RECORDS_IN,
    DECISIONS,
    DEAD_LETTERS,
    LATE_EVENTS,
    OUT_OF_SCOPE_EVENTS,
    CONSUMER_LAG,
    PARTITIONS_ASSIGNED,
    PARTITIONS_RESTORED,
    RESTORE_DECISIONS,
    RESTORE_EVENTS,
    RESTORE_TRUNCATED,
    TRANSACTIONS,
    ROLLOUTS,
    BROKER_CONNECTED,
    BROKER_ERRORS,
    EXECUTIONS,
    EXECUTION_LATENCY,
    ROLLOUTS_BY_PHASE,
    RESTORE_SECONDS,
];

/// Registers the processor's unlabelled metrics at zero, so dashboards and alerts see them
/// from the first scrape (a counter that never moved is otherwise absent).
pub fn register_processor_metrics() {
    counter!(LATE_EVENTS).absolute(0);
    counter!(OUT_OF_SCOPE_EVENTS).absolute(0);
    counter!(RESTORE_DECISIONS).absolute(0);
    counter!(RESTORE_EVENTS).absolute(0);
    counter!(RESTORE_TRUNCATED).absolute(0);
    counter!(TRANSACTIONS).absolute(0);
    counter!(BROKER_ERRORS).absolute(0);
    gauge!(PARTITIONS_ASSIGNED).set(0.0);
    gauge!(PARTITIONS_RESTORED).set(0.0);
    gauge!(ROLLOUTS).set(0.0);
    gauge!(RESTORE_SECONDS).set(0.0);
    for phase in Phase::ALL {
        gauge!(ROLLOUTS_BY_PHASE, "phase" => phase.name()).set(0.0);
    }
    for variant in [Variant::Baseline, Variant::Candidate] {
        let v = ExecutionTally::label(variant);
        counter!(EXECUTIONS, "variant" => v, "outcome" => "success").absolute(0);
        counter!(EXECUTIONS, "variant" => v, "outcome" => "failure").absolute(0);
        counter!(EXECUTION_LATENCY, "variant" => v).absolute(0);
    }
}

/// Executions of one batch, counted in place and added to the metrics once per batch (no
/// metric lookup per record).
#[derive(Debug, Default)]
pub struct ExecutionTally {
    /// `[variant][failed]` counts.
    count: [[u64; 2]; 2],
    /// Latency sums in ms, per variant.
    latency_ms: [f64; 2],
}

impl ExecutionTally {
    /// Counts one execution.
    pub fn record(&mut self, event: &ExecutionEvent) {
        let v = usize::from(event.variant == Variant::Candidate);
        self.count[v][usize::from(!event.success)] += 1;
        self.latency_ms[v] += event.latency.get();
    }

    fn label(variant: Variant) -> &'static str {
        match variant {
            Variant::Baseline => "BASELINE",
            Variant::Candidate => "CANDIDATE",
        }
    }

    /// Adds the batch's counts to the metrics.
    pub fn emit(&self) {
        for (v, variant) in [Variant::Baseline, Variant::Candidate]
            .into_iter()
            .enumerate()
        {
            let label = Self::label(variant);
            for (f, outcome) in ["success", "failure"].into_iter().enumerate() {
                if self.count[v][f] > 0 {
                    counter!(EXECUTIONS, "variant" => label, "outcome" => outcome)
                        .increment(self.count[v][f]);
                }
            }
            if self.count[v].iter().sum::<u64>() > 0 {
                counter!(EXECUTION_LATENCY, "variant" => label)
                    .increment(self.latency_ms[v].round() as u64);
            }
        }
    }
}

/// Sets `rollout_breaker_rollouts_by_phase` from the phases of the rollouts held.
pub fn set_rollouts_by_phase(phases: impl Iterator<Item = Phase>) {
    let mut n = [0u64; Phase::ALL.len()];
    for phase in phases {
        n[phase as usize] += 1;
    }
    for phase in Phase::ALL {
        gauge!(ROLLOUTS_BY_PHASE, "phase" => phase.name()).set(n[phase as usize] as f64);
    }
}

/// librdkafka reported an error about the cluster connection.
pub struct BrokerUnreachable<'a> {
    /// The configured `bootstrap.servers`.
    pub bootstrap: &'a str,
    /// librdkafka's error.
    pub error: &'a str,
    /// Whether every broker is down (librdkafka's `AllBrokersDown`), not just one connection.
    pub all_down: bool,
}

impl BrokerUnreachable<'_> {
    /// Logs a warning naming the bootstrap servers and counts; marks the broker down when
    /// every broker is.
    pub fn emit(&self, health: &Health) {
        counter!(BROKER_ERRORS).increment(1);
        warn!(
            bootstrap = self.bootstrap,
            error = self.error,
            "Kafka cluster at {} cannot be reached: {}; retrying.",
            self.bootstrap,
            self.error
        );
        if self.all_down {
            gauge!(BROKER_CONNECTED).set(0.0);
            health.set_broker_down(format!("{}: {}", self.bootstrap, self.error));
        }
    }
}

/// A topic check at start found something to warn about (short retention, producer
/// timestamps).
pub struct TopicCheckWarning<'a>(pub &'a dyn std::fmt::Display);

impl TopicCheckWarning<'_> {
    /// Logs a warning.
    pub fn emit(&self) {
        warn!("{}", self.0);
    }
}

/// A topic's configs could not be read at start, so its checks were skipped.
pub struct TopicCheckSkipped<'a> {
    /// The topic.
    pub topic: &'a str,
    /// Why DescribeConfigs failed.
    pub error: &'a dyn std::fmt::Display,
}

impl TopicCheckSkipped<'_> {
    /// Logs a warning.
    pub fn emit(&self) {
        warn!(topic = self.topic, error = %self.error, "Could not read the topic's configs; its cleanup.policy, retention and timestamp type are not checked.");
    }
}

/// A broker answered (again).
pub struct BrokerConnected<'a> {
    /// The configured `bootstrap.servers`.
    pub bootstrap: &'a str,
}

impl BrokerConnected<'_> {
    /// Sets the gauge; logs when the cluster was unreachable before.
    pub fn emit(&self, health: &Health) {
        gauge!(BROKER_CONNECTED).set(1.0);
        if health.set_broker_up() {
            info!(bootstrap = self.bootstrap, "Kafka cluster reachable again.");
        }
    }
}

/// A decision was published.
pub struct DecisionPublished<'a>(pub &'a Decision, pub i32);

impl DecisionPublished<'_> {
    /// Logs and counts.
    pub fn emit(&self) {
        let d = self.0;
        counter!(DECISIONS, "action" => d.action.name()).increment(1);
        let msg = match d.action {
            Action::Rollback => "Rolled back rollout.",
            Action::Advance => "Advanced rollout.",
            Action::Start => "Started rollout.",
            Action::Pause => "Paused rollout.",
            Action::Resume => "Resumed rollout.",
            Action::Maintain => "Maintained rollout.",
            Action::Retire => "Retired rollout.",
            Action::Warning if d.warning.as_ref().is_some_and(|w| w.cleared) => {
                "Cleared early warning."
            }
            Action::Warning => "Early warning.",
        };
        let raised = d.warning.as_ref().is_some_and(|w| !w.cleared);
        if d.action == Action::Rollback || raised {
            warn!(rollout = %d.rollout_id, partition = self.1, seq = d.sequence, from = %d.from, to = %d.to, reason = %d.reason, "{msg}");
        } else {
            info!(rollout = %d.rollout_id, partition = self.1, seq = d.sequence, from = %d.from, to = %d.to, reason = %d.reason, "{msg}");
        }
    }
}

/// A webhook acknowledged a decision.
pub struct WebhookDelivered<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The delivery's idempotency key.
    pub key: &'a str,
    /// Attempts it took.
    pub attempts: u32,
}

impl WebhookDelivered<'_> {
    /// Registers the webhook metrics of `webhook` at zero, so they show before anything
    /// happened.
    pub fn register(webhook: &str) {
        for name in WEBHOOK_METRICS {
            counter!(*name, "webhook" => webhook.to_owned()).absolute(0);
        }
    }

    /// Logs (debug) and counts.
    pub fn emit(&self) {
        counter!(WEBHOOK_SENT, "webhook" => self.webhook.to_owned()).increment(1);
        tracing::debug!(
            webhook = self.webhook,
            key = self.key,
            attempts = self.attempts,
            "Webhook delivered."
        );
    }
}

/// An attempt at a webhook failed and is about to be repeated.
pub struct WebhookRetried<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The delivery's idempotency key.
    pub key: &'a str,
    /// The attempt about to be made (2 = first retry).
    pub attempt: u32,
    /// Why the previous attempt failed.
    pub error: &'a str,
}

impl WebhookRetried<'_> {
    /// Logs (info) and counts.
    pub fn emit(&self) {
        counter!(WEBHOOK_RETRIES, "webhook" => self.webhook.to_owned()).increment(1);
        info!(
            webhook = self.webhook,
            key = self.key,
            attempt = self.attempt,
            error = self.error,
            "Webhook attempt failed; retrying."
        );
    }
}

/// A webhook never acknowledged a decision.
pub struct WebhookFailed<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The delivery's idempotency key.
    pub key: &'a str,
    /// Why the last attempt failed.
    pub error: &'a str,
}

impl WebhookFailed<'_> {
    /// Logs a warning and counts.
    pub fn emit(&self) {
        counter!(WEBHOOK_FAILED, "webhook" => self.webhook.to_owned()).increment(1);
        warn!(
            webhook = self.webhook,
            key = self.key,
            error = self.error,
            "Webhook delivery failed; giving up on this decision."
        );
    }
}

/// A decision was not queued for a webhook: its queue was full.
pub struct WebhookDropped<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The dropped decision.
    pub decision: &'a Decision,
    /// The first drop since the queue last took a decision (logged as a warning; the
    /// following ones at debug).
    pub first: bool,
}

impl WebhookDropped<'_> {
    /// Logs and counts.
    pub fn emit(&self) {
        counter!(WEBHOOK_DROPPED, "webhook" => self.webhook.to_owned()).increment(1);
        let d = self.decision;
        if self.first {
            warn!(webhook = self.webhook, rollout = %d.rollout_id, seq = d.sequence, "Webhook queue full: dropping decisions until it drains.");
        } else {
            tracing::debug!(webhook = self.webhook, rollout = %d.rollout_id, seq = d.sequence, "Webhook queue full: decision dropped.");
        }
    }
}

/// A record went to the dead-letter topic.
pub struct DeadLettered<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Stable reason label.
    pub reason: &'static str,
    /// Full error text.
    pub error: &'a str,
}

impl DeadLettered<'_> {
    /// Logs (the first of each reason at warn, the rest at debug) and counts.
    pub fn emit(&self) {
        counter!(DEAD_LETTERS, "reason" => self.reason).increment(1);
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = self.reason,
            error = self.error,
            "Dead-lettered record."
        );
    }
}

/// Liveness and readiness of the processor, shared with the HTTP endpoints.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    last_poll_ms: AtomicU64,
    assigned: AtomicUsize,
    restored: AtomicUsize,
    running: AtomicBool,
    /// The group has handed this instance its assignment at least once.
    assignment_received: AtomicBool,
    /// Why the cluster cannot be reached, while it cannot.
    broker_down: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_poll_ms: AtomicU64::new(0),
            assigned: AtomicUsize::new(0),
            restored: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            assignment_received: AtomicBool::new(false),
            broker_down: Mutex::new(None),
        }
    }
}

impl Health {
    /// The consumer polled just now.
    pub fn polled(&self) {
        self.last_poll_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    /// Sets assignment counts.
    pub fn set_partitions(&self, assigned: usize, restored: usize) {
        self.assigned.store(assigned, Ordering::Relaxed);
        self.restored.store(restored, Ordering::Relaxed);
        gauge!(PARTITIONS_ASSIGNED).set(assigned as f64);
        gauge!(PARTITIONS_RESTORED).set(restored as f64);
    }
    /// The group handed this instance an assignment (possibly empty): from now on
    /// `assigned`/`restored` describe it.
    pub fn set_assignment_received(&self) {
        self.assignment_received.store(true, Ordering::Relaxed);
    }
    /// librdkafka reported every broker down; `why` names the bootstrap servers and error.
    pub fn set_broker_down(&self, why: String) {
        *self.broker_down.lock().expect("health lock") = Some(why);
    }
    /// A broker answered; returns whether it was down before.
    pub fn set_broker_up(&self) -> bool {
        self.broker_down
            .lock()
            .expect("health lock")
            .take()
            .is_some()
    }
    /// Why the cluster cannot be reached, while it cannot.
    pub fn broker_down(&self) -> Option<String> {
        self.broker_down.lock().expect("health lock").clone()
    }
    /// Marks the processing loop as running (or stopped).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }
    /// Alive: the loop runs and polled (or a restore made the loop wait) within `max_gap`,
    /// and the cluster is not known to be unreachable.
    pub fn is_alive(&self, max_gap: Duration) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        self.running.load(Ordering::Relaxed)
            && now.saturating_sub(self.last_poll_ms.load(Ordering::Relaxed))
                <= max_gap.as_millis() as u64
            && self.broker_down().is_none()
    }
    /// Ready: alive, the group has assigned this instance its partitions, and every one of
    /// them is restored.
    pub fn is_ready(&self, max_gap: Duration) -> bool {
        self.is_alive(max_gap)
            && self.assignment_received.load(Ordering::Relaxed)
            && self.restored.load(Ordering::Relaxed) == self.assigned.load(Ordering::Relaxed)
    }
    /// Why the process is not alive (`None` when it is): the text `/healthz` answers.
    pub fn not_alive_reason(&self, max_gap: Duration) -> Option<String> {
        if let Some(why) = self.broker_down() {
            return Some(format!("broker unreachable: {why}"));
        }
        if !self.running.load(Ordering::Relaxed) {
            return Some(
                "processing loop not running (starting: checking topics, or stopped)".into(),
            );
        }
        (!self.is_alive(max_gap)).then(|| {
            format!(
                "processing loop has not polled within {} ms",
                max_gap.as_millis()
            )
        })
    }
    /// (assigned, restored) partitions.
    pub fn partitions(&self) -> (usize, usize) {
        (
            self.assigned.load(Ordering::Relaxed),
            self.restored.load(Ordering::Relaxed),
        )
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (e.g. by an embedding application);
        // then our metrics go there and this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[derive(Clone)]
struct HttpState {
    health: Arc<Health>,
    max_gap: Duration,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` completes.
pub async fn serve_http(
    addr: SocketAddr,
    health: Arc<Health>,
    max_gap: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let handle = prometheus();
    let app = Router::new()
        .route("/metrics", get(move || async move { handle.render() }))
        .route(
            "/healthz",
            get(|State(s): State<HttpState>| async move {
                match s.health.not_alive_reason(s.max_gap) {
                    None => (StatusCode::OK, "alive\n".to_owned()),
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                let (assigned, restored) = s.health.partitions();
                let mut body = format!("partitions assigned {assigned}, restored {restored}\n");
                if !s.health.assignment_received.load(Ordering::Relaxed) {
                    body.push_str("no assignment from the consumer group yet\n");
                }
                if let Some(why) = s.health.not_alive_reason(s.max_gap) {
                    body.push_str(&why);
                    body.push('\n');
                }
                if s.health.is_ready(s.max_gap) {
                    (StatusCode::OK, body)
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, body)
                }
            }),
        )
        .with_state(HttpState { health, max_gap });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    info!(%local, "HTTP listener for /metrics, /healthz, /readyz.");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "HTTP listener failed.");
        }
    });
    Ok(local)
}
