//! Audit replay: re-run the engine over the events and commands topics from the beginning and
//! check every decision in the decisions topic against what the replay decides.
//!
//! The replay takes the input exactly as the live processor does: the events topic, where the
//! processor relays every admitted command (see [`crate::input`]), so commands and events come
//! in the one order they were applied in, and the same admission ([`crate::input::admit`]:
//! refused records do not count). The engine is pure and works in event time, so
//! the replay must reproduce each published decision byte for byte. The decisions topic is
//! compacted, so older decisions may be gone: the audit verifies those present, and reports a
//! replayed decision as unpublished only when it is newer than every decision of its rollout
//! in the topic. A RETIRE is a tombstone in the topic.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;
use tracing::info;

use super::client::reader_config;
use super::read::{read_range, record_view};
use crate::codec;
use crate::config::Config;
use crate::engine::{Decision, Engine, EngineOptions};
use crate::input::{admit, Admitted, InputTopic};

/// Outcome of an audit.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    /// Event records replayed (admitted).
    pub events: u64,
    /// Relayed command records replayed (admitted).
    pub commands: u64,
    /// Events-topic records the processor refused (dead letters), by the same admission rules.
    pub refused: u64,
    /// Decisions (and tombstones) found in the decisions topic.
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

const READ_TIMEOUT: Duration = Duration::from_secs(3_600);

/// Replays every partition and compares with the decisions topic.
pub fn audit(config: &Config) -> Result<AuditReport, KafkaError> {
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-audit", config.kafka.group_id)).create()?;
    let t = &config.topics;
    let timeout = Duration::from_secs(30);
    let partitions = super::admin::partition_count(consumer.client(), &t.events, timeout)
        .map_err(|e| match e {
            super::admin::AdminError::Kafka(k) => k,
            _ => KafkaError::Global(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition),
        })?
        .ok_or(KafkaError::Global(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ))?;
    let rules = config.admission_rules(partitions);
    let mut report = AuditReport::default();
    for p in 0..partitions {
        // The topic as it stands: decisions by (rollout, sequence), and tombstones per rollout.
        let mut published: HashMap<(String, u64), Decision> = HashMap::new();
        let mut tombstones: HashMap<String, u64> = HashMap::new();
        let range = consumer.fetch_watermarks(&t.decisions, p, timeout)?;
        read_range(config, "audit", &t.decisions, p, range, READ_TIMEOUT, |m| {
            report.published += 1;
            match m.payload() {
                None => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    *tombstones.entry(key).or_default() += 1;
                }
                Some(bytes) => {
                    if let Ok(d) = codec::decode_decision_any(bytes) {
                        published.insert((d.rollout_id.clone(), d.sequence), d);
                    }
                }
            }
        })?;

        // The events partition, admitted as the processor admits it: events and the commands
        // it relayed there, in the one order they were applied in.
        let mut engine = Engine::new(
            config.policy.clone(),
            EngineOptions {
                auto_start: config.processing.auto_start,
            },
        );
        let mut replayed: Vec<Decision> = Vec::new();
        let mut out = Vec::new();
        let range = consumer.fetch_watermarks(&t.events, p, timeout)?;
        read_range(
            config,
            "audit",
            &t.events,
            p,
            range,
            READ_TIMEOUT,
            |m| match admit(&rules, &record_view(m, InputTopic::Events)) {
                Ok(Admitted::Event(e)) => {
                    report.events += 1;
                    out.clear();
                    engine.apply_event(&e, &mut out);
                    replayed.extend(out.drain(..).filter(Decision::is_published));
                }
                Ok(Admitted::Command(c)) => {
                    report.commands += 1;
                    if let Ok(d) = engine.apply_command(&c) {
                        replayed.push(d);
                    }
                }
                Err(_) => report.refused += 1,
            },
        )?;

        // Compare. Later incarnations of a retired id overwrite earlier ones, on both sides.
        let mut by_key: HashMap<(String, u64), Decision> = HashMap::new();
        let mut retired_last: HashMap<String, bool> = HashMap::new();
        for d in replayed {
            retired_last.insert(d.rollout_id.clone(), d.is_tombstone());
            by_key.insert((d.rollout_id.clone(), d.sequence), d);
        }
        let mut newest_published: HashMap<&str, u64> = HashMap::new();
        for ((r, s), d) in &published {
            let e = newest_published.entry(r.as_str()).or_default();
            *e = (*e).max(*s);
            match by_key.get(&(r.clone(), *s)) {
                Some(x) if x == d => report.verified += 1,
                other => report.mismatched.push((d.clone(), other.cloned())),
            }
        }
        for ((r, s), d) in &by_key {
            if published.contains_key(&(r.clone(), *s)) {
                continue;
            }
            let newer = newest_published.get(r.as_str()).is_none_or(|n| s > n);
            if d.is_tombstone() {
                // Confirmed by a tombstone; once compaction removed it, nothing older remains.
                if tombstones.contains_key(r) {
                    report.verified += 1;
                } else if newer && newest_published.contains_key(r.as_str()) {
                    report.unpublished.push(d.clone());
                }
            } else if newer && !retired_last.get(r).copied().unwrap_or(false) {
                report.unpublished.push(d.clone());
            }
        }
        info!(
            partition = p,
            published = published.len(),
            replayed = by_key.len(),
            "Audited partition."
        );
    }
    Ok(report)
}
