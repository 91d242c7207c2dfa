//! What an operator does from a terminal: send a command and see what became of it, and read
//! where every rollout stands. No control port: both go through the topics, so who may command
//! a rollout is decided by Kafka ACLs on the commands topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::client::{client_config, reader_config};
use crate::codec::{self, DecodeError};
use crate::config::Config;
use crate::engine::{Cause, Command, Decision, LatestDecisions};
use crate::input::admission::kafka_partition;

/// Why an operator action could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperateError {
    /// The broker could not be reached or refused a call. Retryable.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic the action needs does not exist (wrong config, or the processor never ran).
    #[error("topic `{0}` does not exist; is the configuration the processor's?")]
    UnknownTopic(String),
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// The processor applied it; this is the decision it published (a RETIRE: `None`, its
    /// tombstone carries no decision).
    Applied(Option<Box<Decision>>),
    /// The processor refused it; the dead-letter topic says why.
    Refused {
        /// Dead-letter reason (`refused_command`, `clock_skew`, …).
        reason: String,
        /// The processor's explanation.
        message: String,
    },
    /// Sent; not waited for (`--no-wait`).
    Sent,
    /// Nothing came back in time: is a processor running for these topics?
    TimedOut,
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32, OperateError> {
    super::admin::partition_count(consumer.client(), topic, Duration::from_secs(10))
        .map_err(|e| match e {
            super::admin::AdminError::Kafka(k) => OperateError::Kafka(k),
            _ => OperateError::UnknownTopic(topic.to_owned()),
        })?
        .ok_or_else(|| OperateError::UnknownTopic(topic.to_owned()))
}

/// End offsets of `topic`'s partitions, now.
fn ends(consumer: &BaseConsumer, topic: &str, n: i32) -> Result<Vec<i64>, KafkaError> {
    (0..n)
        .map(|p| {
            Ok(consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1)
        })
        .collect()
}

/// Produces `command` to the commands topic (partitioned like the events, murmur2) and, unless
/// `wait` is `None`, waits up to `wait` for the decision it caused or its refusal.
pub fn send_command(
    config: &Config,
    command: &Command,
    wait: Option<Duration>,
) -> Result<CommandOutcome, OperateError> {
    let t = &config.topics;
    let watcher: BaseConsumer = reader_config(
        &config.kafka,
        &format!("{}-operator", config.kafka.group_id),
    )
    .create()?;
    let n = partitions(&watcher, &t.commands)?;
    let p = kafka_partition(command.rollout_id.as_bytes(), n);
    let payload = codec::encode_command(command, t.commands_encoding);
    // Where to look for the outcome: everything published from now on.
    let (decisions_from, dead_from) = match wait {
        Some(_) => {
            let dn = partitions(&watcher, &t.dead_letter)?;
            (
                watcher
                    .fetch_watermarks(&t.decisions, p, Duration::from_secs(10))?
                    .1,
                ends(&watcher, &t.dead_letter, dn)?,
            )
        }
        None => (0, Vec::new()),
    };
    let producer: BaseProducer =
        client_config(&config.kafka, &[("enable.idempotence", "true")]).create()?;
    producer
        .send(
            BaseRecord::to(&t.commands)
                .partition(p)
                .key(command.rollout_id.as_bytes())
                .payload(&payload),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    let Some(wait) = wait else {
        return Ok(CommandOutcome::Sent);
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.decisions, p, Offset::Offset(decisions_from))?;
    for (dp, from) in dead_from.iter().enumerate() {
        tpl.add_partition_offset(&t.dead_letter, dp as i32, Offset::Offset(*from))?;
    }
    watcher.assign(&tpl)?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let Some(Ok(m)) = watcher.poll(Duration::from_millis(100)) else {
            continue;
        };
        if m.topic() == t.decisions {
            // The rollout's own row, or one of its scopes' (`ROLLOUT#...`).
            let Some(key) = m.key().filter(|k| is_row_of(k, &command.rollout_id)) else {
                continue;
            };
            let Some(bytes) = m.payload() else {
                if key != command.rollout_id.as_bytes() {
                    continue;
                }
                // A tombstone for this rollout: our RETIRE (nothing else writes one).
                return Ok(CommandOutcome::Applied(None));
            };
            let decoded: Result<Decision, DecodeError> =
                codec::decode_decision(bytes, t.decisions_encoding)
                    .or_else(|_| codec::decode_decision_any(bytes));
            if let Ok(d) = decoded {
                if d.cause == Cause::Operator
                    && d.rollout_id == command.rollout_id
                    && d.actor == command.actor
                    && d.at == command.timestamp
                {
                    return Ok(CommandOutcome::Applied(Some(Box::new(d))));
                }
            }
        } else if m.payload() == Some(payload.as_slice()) {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            return Ok(CommandOutcome::Refused {
                reason: header("rb.error.reason"),
                message: header("rb.error.message"),
            });
        }
    }
    Ok(CommandOutcome::TimedOut)
}

/// Whether a decisions-topic key is a row of `rollout_id`: its own, or one of its scopes'.
fn is_row_of(key: &[u8], rollout_id: &str) -> bool {
    key.strip_prefix(rollout_id.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"#"))
}

/// The current decision of every rollout and of each of its scopes (or of `only`'s), read
/// from the decisions topic as routers read it; a rollout's own row first, then its scopes'.
pub fn status(config: &Config, only: Option<&str>) -> Result<Vec<Decision>, OperateError> {
    let t = &config.topics;
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-status", config.kafka.group_id)).create()?;
    let n = partitions(&consumer, &t.decisions)?;
    let mut table = LatestDecisions::new();
    for p in 0..n {
        if let Some(id) = only {
            if kafka_partition(id.as_bytes(), n) != p {
                continue;
            }
        }
        let range = consumer.fetch_watermarks(&t.decisions, p, Duration::from_secs(10))?;
        super::read::read_range(
            config,
            "status",
            &t.decisions,
            p,
            range,
            Duration::from_secs(300),
            |m| {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                if only.is_some_and(|id| !is_row_of(key.as_bytes(), id)) {
                    return;
                }
                let value = m.payload().and_then(|b| {
                    codec::decode_decision(b, t.decisions_encoding)
                        .or_else(|_| codec::decode_decision_any(b))
                        .ok()
                });
                table.apply(&key, value);
            },
        )?;
    }
    let sorted: BTreeMap<(String, crate::engine::Scope), Decision> = table
        .into_values()
        .map(|d| ((d.rollout_id.clone(), d.scope.clone()), d))
        .collect();
    Ok(sorted.into_values().collect())
}
