//! Audit replay: re-run the engine over the events and commands topics from the beginning and
//! check every decision in the decisions topic against what the replay decides.
//!
//! The engine is pure and works in event time, so the replay must reproduce each published
//! decision byte for byte. Records are replayed per partition in offset order; commands are
//! merged with events by timestamp (the processor applied them in arrival order, so an
//! operator command issued while events of the same instant were in flight may be placed
//! differently — the report names such decisions as mismatches, never hides them). The
//! decisions topic is compacted, so older decisions may be gone: the audit verifies those
//! present.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::info;

use super::client::reader_config;
use crate::codec;
use crate::config::Config;
use crate::engine::{Command, Decision, Engine, EngineOptions, ExecutionEvent};

/// Outcome of an audit.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    /// Event records replayed.
    pub events: u64,
    /// Command records replayed.
    pub commands: u64,
    /// Records that did not decode (they were dead-lettered by the processor).
    pub undecodable: u64,
    /// Decisions found in the decisions topic.
    pub published: u64,
    /// Published decisions the replay reproduced exactly.
    pub verified: u64,
    /// Published decisions the replay decided differently: (published, replayed).
    pub mismatched: Vec<(Decision, Option<Decision>)>,
    /// Decisions the replay made that are absent from the topic and newer than every decision
    /// of their rollout there (not explained by compaction).
    pub unpublished: Vec<Decision>,
}

impl AuditReport {
    /// Whether every published decision was reproduced and nothing is missing.
    pub fn is_clean(&self) -> bool {
        self.mismatched.is_empty() && self.unpublished.is_empty()
    }
}

enum Record {
    Event(ExecutionEvent),
    Command(Command),
}

/// Reads one partition of `topic` up to the end offset captured now.
fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    mut f: impl FnMut(&[u8], Option<i64>),
) -> Result<(), KafkaError> {
    let timeout = Duration::from_secs(30);
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    if low >= high {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let pos = consumer
            .position()?
            .find_partition(topic, partition)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(low);
        if pos >= high {
            return Ok(());
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            info!(topic, partition, offset = pos, end = high, "Audit reading…");
        }
        if started.elapsed() > Duration::from_secs(3_600) {
            return Err(KafkaError::Global(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if m.topic() == topic && m.partition() == partition && m.offset() < high {
                f(m.payload().unwrap_or_default(), m.timestamp().to_millis());
            }
        }
    }
}

/// Replays every partition and compares with the decisions topic.
pub fn audit(config: &Config) -> Result<AuditReport, KafkaError> {
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-audit", config.kafka.group_id)).create()?;
    let t = &config.topics;
    let partitions =
        super::admin::partition_count(consumer.client(), &t.events, Duration::from_secs(30))
            .map_err(|e| match e {
                super::admin::AdminError::Kafka(k) => k,
                _ => KafkaError::Global(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition),
            })?
            .ok_or(KafkaError::Global(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ))?;
    let mut report = AuditReport::default();
    for p in 0..partitions {
        let mut published: HashMap<(String, u64), Decision> = HashMap::new();
        read_partition(&consumer, &t.decisions, p, |bytes, _| {
            if let Ok(d) = codec::decode_decision_any(bytes) {
                published.insert((d.rollout_id.clone(), d.sequence), d);
            }
        })?;
        report.published += published.len() as u64;
        let mut records: Vec<(i64, u8, usize, Record)> = Vec::new();
        let mut n = 0usize;
        read_partition(
            &consumer,
            &t.events,
            p,
            |bytes, _| match codec::decode_event(bytes, t.events_encoding) {
                Ok(e) => {
                    records.push((i64::MIN, 1, n, Record::Event(e)));
                    n += 1;
                }
                Err(_) => report.undecodable += 1,
            },
        )?;
        // Commands take the position of the first event at or after their timestamp.
        let mut commands = Vec::new();
        read_partition(
            &consumer,
            &t.commands,
            p,
            |bytes, _| match codec::decode_command(bytes, t.commands_encoding) {
                Ok(c) => commands.push(c),
                Err(_) => report.undecodable += 1,
            },
        )?;
        let event_times: Vec<i64> = records
            .iter()
            .map(|r| match &r.3 {
                Record::Event(e) => e.timestamp,
                Record::Command(c) => c.timestamp,
            })
            .collect();
        let mut running_max = i64::MIN;
        let maxes: Vec<i64> = event_times
            .iter()
            .map(|t| {
                running_max = running_max.max(*t);
                running_max
            })
            .collect();
        for (i, r) in records.iter_mut().enumerate() {
            r.0 = i as i64;
        }
        for c in commands {
            let pos = maxes.partition_point(|m| *m < c.timestamp) as i64;
            records.push((pos, 0, 0, Record::Command(c)));
        }
        records.sort_by_key(|r| (r.0, r.1, r.2));
        let mut engine = Engine::new(
            config.policy.clone(),
            EngineOptions {
                auto_start: config.processing.auto_start,
            },
        );
        let mut replayed: HashMap<(String, u64), Decision> = HashMap::new();
        let mut out = Vec::new();
        for (_, _, _, r) in &records {
            out.clear();
            match r {
                Record::Event(e) => {
                    report.events += 1;
                    engine.apply_event(e, &mut out);
                }
                Record::Command(c) => {
                    report.commands += 1;
                    if let Ok(d) = engine.apply_command(c) {
                        out.push(d);
                    }
                }
            }
            for d in out.drain(..).filter(Decision::is_published) {
                replayed.insert((d.rollout_id.clone(), d.sequence), d);
            }
        }
        let mut newest_published: HashMap<&str, u64> = HashMap::new();
        for ((r, s), d) in &published {
            let e = newest_published.entry(r.as_str()).or_default();
            *e = (*e).max(*s);
            match replayed.get(&(r.clone(), *s)) {
                Some(x) if x == d => report.verified += 1,
                other => report.mismatched.push((d.clone(), other.cloned())),
            }
        }
        for ((r, s), d) in &replayed {
            if !published.contains_key(&(r.clone(), *s))
                && newest_published.get(r.as_str()).is_none_or(|n| s > n)
            {
                report.unpublished.push(d.clone());
            }
        }
        info!(
            partition = p,
            published = published.len(),
            replayed = replayed.len(),
            "Audited partition."
        );
    }
    Ok(report)
}
