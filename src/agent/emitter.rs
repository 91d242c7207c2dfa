//! [`EventEmitter`]: an asynchronous, batching producer of execution events.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::EVENTS;
use crate::codec::{Encoding, WireRecord};
use crate::engine::ExecutionEvent;

/// Configuration of an [`EventEmitter`].
///
/// ```toml
/// bootstrap_servers = "127.0.0.1:19092"
/// topic = "rollout-events"
/// encoding = "json"
/// linger_ms = 5
/// queue_capacity = 100000
/// message_timeout_ms = 30000
/// [options]                 # passed to librdkafka as is (SASL/SSL, tuning)
/// "security.protocol" = "SASL_SSL"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmitterConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// The events topic (the processor's `topics.events`).
    pub topic: String,
    /// Encoding of the events topic (the processor's `topics.events_encoding`).
    pub encoding: Encoding,
    /// `linger.ms`: how long events wait to be batched.
    pub linger_ms: u64,
    /// `queue.buffering.max.messages`: events held locally before [`EventEmitter::emit`] drops
    /// new ones.
    pub queue_capacity: u32,
    /// `message.timeout.ms`: how long librdkafka tries to deliver an event before reporting
    /// it failed.
    pub message_timeout_ms: u64,
    /// Extra librdkafka producer properties (security settings go here). `partitioner` is
    /// always `murmur2_random`.
    pub options: BTreeMap<String, String>,
}

/// Default `linger_ms`: 5 ms batches well at agent rates and adds little to event latency
/// (librdkafka's own default, since 1.x).
pub const DEFAULT_LINGER_MS: u64 = 5;
/// Default `queue_capacity`: librdkafka's default `queue.buffering.max.messages`.
pub const DEFAULT_QUEUE_CAPACITY: u32 = 100_000;
/// Default `message_timeout_ms`: 30 s, the processor's transaction timeout, instead of
/// librdkafka's 5 min, so a lost broker shows up in the failure count within a window or two.
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;

impl Default for EmitterConfig {
    fn default() -> Self {
        let topics = crate::config::TopicsConfig::default();
        Self {
            // Local broker of `scripts/kafka.sh`, as the processor's default.
            bootstrap_servers: "127.0.0.1:19092".into(),
            topic: topics.events,
            encoding: topics.events_encoding,
            linger_ms: DEFAULT_LINGER_MS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            message_timeout_ms: DEFAULT_MESSAGE_TIMEOUT_MS,
            options: BTreeMap::new(),
        }
    }
}

impl EmitterConfig {
    /// The default configuration for `topic` on `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Checks ranges (librdkafka's own ranges for its properties).
    pub fn validate(&self) -> Result<(), EmitterError> {
        let invalid = |field, message: String| Err(EmitterError::Config { field, message });
        if self.bootstrap_servers.trim().is_empty() {
            return invalid("bootstrap_servers", "must not be empty".into());
        }
        if self.topic.trim().is_empty() {
            return invalid("topic", "must not be empty".into());
        }
        if self.linger_ms > 900_000 {
            return invalid(
                "linger_ms",
                format!("must be in [0, 900000], got {}", self.linger_ms),
            );
        }
        if !(1..=2_147_483_647).contains(&self.queue_capacity) {
            return invalid(
                "queue_capacity",
                format!("must be in [1, 2147483647], got {}", self.queue_capacity),
            );
        }
        if !(1..=2_147_483_647).contains(&self.message_timeout_ms) {
            return invalid(
                "message_timeout_ms",
                format!(
                    "must be in [1, 2147483647], got {}",
                    self.message_timeout_ms
                ),
            );
        }
        Ok(())
    }
}

/// Why an [`EventEmitter`] could not be built or flushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitterError {
    /// A configuration field is out of range. Not retryable.
    #[error("invalid emitter config: `{field}` {message}")]
    Config {
        /// The field, as spelled in the file.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// librdkafka refused the producer configuration. Not retryable.
    #[error("creating the events producer: {0}")]
    Client(#[source] KafkaError),
    /// Events were still in flight when a flush timed out. Retryable.
    #[error("flushing events: {0}")]
    Flush(#[source] KafkaError),
}

impl EmitterError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EmitterError::Flush(_))
    }
}

/// Why [`EventEmitter::emit`] did not enqueue an event. Either way the event is dropped and
/// counted; the caller was not blocked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The local queue holds `queue_capacity` events already (the broker is slow or gone).
    /// Retryable later.
    #[error("event dropped: the local queue is full")]
    QueueFull,
    /// librdkafka refused the event at once (e.g. larger than `message.max.bytes`). Not
    /// retryable.
    #[error("event dropped: {0}")]
    Rejected(#[source] KafkaError),
}

/// An event librdkafka gave up delivering, as passed to a failure handler.
#[derive(Debug, Clone)]
pub struct DeliveryFailure {
    /// The rollout of the event (the record key).
    pub rollout_id: String,
    /// The event's timestamp (the record timestamp), when known.
    pub timestamp: Option<i64>,
    /// Why delivery failed.
    pub error: KafkaError,
}

/// Events by outcome since the emitter was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitterStats {
    /// Handed to librdkafka.
    pub enqueued: u64,
    /// Acknowledged by the broker.
    pub delivered: u64,
    /// Given up on by librdkafka (after `message_timeout_ms`, or a permanent error).
    pub failed: u64,
    /// Dropped by `emit` because the local queue was full.
    pub dropped: u64,
    /// Refused by librdkafka at once.
    pub rejected: u64,
}

/// Where a [`crate::agent::GuardedAgent`] sends its events: [`EventEmitter`], or a fake in tests.
pub trait EventSink: Send + Sync {
    /// Hands an event over without blocking.
    fn emit(&self, event: &ExecutionEvent) -> Result<(), EmitError>;
}

type FailureHandler = Arc<dyn Fn(&DeliveryFailure) + Send + Sync>;

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
}

struct EmitterContext {
    topic: String,
    counters: Arc<Counters>,
    on_failure: Option<FailureHandler>,
}

impl ClientContext for EmitterContext {}

impl ProducerContext for EmitterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS, "outcome" => "delivered").increment(1);
            }
            Err((error, message)) => {
                let n = self.counters.failed.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS, "outcome" => "failed").increment(1);
                let rollout_id = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                // A lost broker fails every queued event at once: warn for the first of each
                // power of two, so the log shows the scale without one line per event.
                if n.is_power_of_two() || n == 0 {
                    warn!(topic = %self.topic, rollout = %rollout_id, error = %error, failed = n + 1, "Execution event not delivered.");
                }
                if let Some(handler) = &self.on_failure {
                    handler(&DeliveryFailure {
                        rollout_id,
                        timestamp: message.timestamp().to_millis(),
                        error: error.clone(),
                    });
                }
            }
        }
    }
}

/// An asynchronous, batching producer of [`ExecutionEvent`]s.
///
/// - Record key: the rollout id; partitioner `murmur2_random`, so an event lands on the same
///   partition as a Java client (and the processor's commands) would put it.
/// - Record timestamp: the event's own `timestamp`, so `offsets_for_times` on the events topic
///   follows event time (the processor's restore relies on it).
/// - [`emit`](Self::emit) only encodes and enqueues: it never waits for the broker. When the
///   local queue is full the event is dropped and counted ([`EmitError::QueueFull`]).
/// - Delivery failures are counted, logged and passed to the optional failure handler, on
///   librdkafka's delivery thread (keep the handler short).
///
/// Dropping the emitter waits up to one second for queued events, then discards the rest
/// (librdkafka purges its queue): call [`flush`](Self::flush) before dropping it to wait longer.
pub struct EventEmitter {
    producer: ThreadedProducer<EmitterContext>,
    topic: String,
    encoding: Encoding,
    counters: Arc<Counters>,
}

impl fmt::Debug for EventEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventEmitter")
            .field("topic", &self.topic)
            .field("encoding", &self.encoding)
            .field("stats", &self.stats())
            .finish()
    }
}

thread_local! {
    /// Encoding buffer reused across events (librdkafka copies the payload).
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

impl EventEmitter {
    /// Builds an emitter; nothing is sent until the first event.
    pub fn new(config: EmitterConfig) -> Result<Self, EmitterError> {
        Self::build(config, None)
    }

    /// Builds an emitter that also calls `on_failure` for every event librdkafka gives up on.
    pub fn with_failure_handler(
        config: EmitterConfig,
        on_failure: impl Fn(&DeliveryFailure) + Send + Sync + 'static,
    ) -> Result<Self, EmitterError> {
        Self::build(config, Some(Arc::new(on_failure)))
    }

    fn build(
        config: EmitterConfig,
        on_failure: Option<FailureHandler>,
    ) -> Result<Self, EmitterError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.bootstrap_servers)
            // No duplicates when librdkafka retries; the options may turn it off.
            .set("enable.idempotence", "true");
        for (k, v) in &config.options {
            c.set(k, v);
        }
        c.set("linger.ms", config.linger_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                config.queue_capacity.to_string(),
            )
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            // Java's default partitioner: partitions agree with Java producers and commands.
            .set("partitioner", "murmur2_random");
        let producer = c
            .create_with_context(EmitterContext {
                topic: config.topic.clone(),
                counters: Arc::clone(&counters),
                on_failure,
            })
            .map_err(EmitterError::Client)?;
        Ok(Self {
            producer,
            topic: config.topic,
            encoding: config.encoding,
            counters,
        })
    }

    /// Encodes and enqueues an event; returns at once. A full local queue drops the event.
    pub fn emit(&self, event: &ExecutionEvent) -> Result<(), EmitError> {
        let sent = BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            event.encode_into(self.encoding, &mut buffer);
            let record = BaseRecord::to(&self.topic)
                .key(event.rollout_id.as_bytes())
                .payload(buffer.as_slice())
                .timestamp(event.timestamp);
            self.producer.send(record).map_err(|(e, _)| e)
        });
        match sent {
            Ok(()) => {
                self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS, "outcome" => "dropped").increment(1);
                if n.is_power_of_two() || n == 0 {
                    warn!(topic = %self.topic, dropped = n + 1, "Event queue full; execution event dropped.");
                }
                Err(EmitError::QueueFull)
            }
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS, "outcome" => "rejected").increment(1);
                warn!(topic = %self.topic, rollout = %event.rollout_id, error = %e, "Execution event refused.");
                Err(EmitError::Rejected(e))
            }
        }
    }

    /// Waits until every enqueued event is delivered or failed, at most `timeout`. Blocking:
    /// from async code, call it in `spawn_blocking`.
    pub fn flush(&self, timeout: Duration) -> Result<(), EmitterError> {
        self.producer.flush(timeout).map_err(EmitterError::Flush)
    }

    /// Events enqueued and not yet delivered or failed.
    pub fn in_flight(&self) -> usize {
        self.producer.in_flight_count().max(0) as usize
    }

    /// Events by outcome since the emitter was built.
    pub fn stats(&self) -> EmitterStats {
        let c = &self.counters;
        EmitterStats {
            enqueued: c.enqueued.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl EventSink for EventEmitter {
    fn emit(&self, event: &ExecutionEvent) -> Result<(), EmitError> {
        EventEmitter::emit(self, event)
    }
}

impl Drop for EventEmitter {
    fn drop(&mut self) {
        if self.producer.in_flight_count() > 0 {
            if let Err(e) = self.producer.flush(Duration::from_secs(1)) {
                warn!(topic = %self.topic, in_flight = self.in_flight(), error = %e, "Dropping the emitter discards undelivered events.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        let c: EmitterConfig = toml::from_str("topic = \"ev\"\nlinger_ms = 2").unwrap();
        assert_eq!((c.linger_ms, c.encoding), (2, Encoding::Json));
        c.validate().unwrap();
        assert!(toml::from_str::<EmitterConfig>("lingr_ms = 2").is_err());
        let e = EmitterConfig {
            queue_capacity: 0,
            ..EmitterConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("queue_capacity"), "{e}");
    }
}
