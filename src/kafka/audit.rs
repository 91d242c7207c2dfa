//! Audit replay: re-run the engine over the events and commands topics from the beginning and
//! check every decision in the decisions topic against what the replay decides.
//!
//! The replay takes the input exactly as the live processor does: the same admission
//! ([`crate::input::admit`]: refused records do not count) and the same place for each command
//! among the events ([`crate::input::order`]). The engine is pure and works in event time, so
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
use super::read::read_range;
use crate::codec;
use crate::config::Config;
use crate::engine::{Decision, Engine, EngineOptions, ExecutionEvent};
use crate::input::{admit, Admitted, CommandGate, InputTopic, RecordView};

/// Outcome of an audit.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    /// Event records replayed (admitted).
    pub events: u64,
    /// Command records replayed (admitted).
    pub commands: u64,
    /// Input records the processor refused (dead letters), by the same admission rules.
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

        // The input, admitted as the processor admits it.
        let mut events: Vec<(i64, ExecutionEvent)> = Vec::new();
        let mut gate = CommandGate::new();
        for (topic, name) in [
            (InputTopic::Events, &t.events),
            (InputTopic::Commands, &t.commands),
        ] {
            let range = consumer.fetch_watermarks(name, p, timeout)?;
            read_range(config, "audit", name, p, range, READ_TIMEOUT, |m| {
                let record = RecordView {
                    topic,
                    partition: p,
                    key: m.key(),
                    payload: m.payload(),
                    timestamp: m.timestamp().to_millis(),
                };
                let ts = record.timestamp.unwrap_or(i64::MIN);
                match admit(&rules, &record) {
                    Ok(Admitted::Event(e)) => events.push((ts, e)),
                    Ok(Admitted::Command(c)) => gate.hold(c, ts, m.offset(), Vec::new()),
                    Err(_) => report.refused += 1,
                }
            })?;
        }

        let mut engine = Engine::new(
            config.policy.clone(),
            EngineOptions {
                auto_start: config.processing.auto_start,
            },
        );
        let mut replayed: Vec<Decision> = Vec::new();
        let mut out = Vec::new();
        let mut apply_commands = |engine: &mut Engine, held: Vec<_>, replayed: &mut Vec<_>| {
            for h in held {
                let h: crate::input::order::HeldCommand = h;
                report.commands += 1;
                if let Ok(d) = engine.apply_command(&h.command) {
                    replayed.push(d);
                }
            }
        };
        for (ts, e) in &events {
            let due: Vec<_> = gate.release_before(*ts).collect();
            apply_commands(&mut engine, due, &mut replayed);
            out.clear();
            engine.apply_event(e, &mut out);
            replayed.extend(out.drain(..).filter(Decision::is_published));
        }
        let rest: Vec<_> = gate.release_all().collect();
        apply_commands(&mut engine, rest, &mut replayed);
        report.events += events.len() as u64;

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
