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
//! in the topic. A RETIRE is a tombstone in the topic. The re-run and the comparison are
//! [`crate::replay`]'s, which `rollout-breaker replay` also uses.

use tracing::info;

use crate::config::Config;
use crate::engine::Decision;
use crate::replay::compare::compare;
use crate::replay::{run_partition, KafkaSource, NoObserver, ReplayError, RunSettings, Source};

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

/// Replays every partition and compares with the decisions topic.
pub fn audit(config: &Config) -> Result<AuditReport, ReplayError> {
    let mut source = KafkaSource::new(config, "audit")?;
    let partitions = source.partitions()?;
    let rules = config.admission_rules(partitions);
    let settings = RunSettings {
        rules: &rules,
        policy: &config.policy,
        auto_start: config.processing.auto_start,
    };
    let mut report = AuditReport::default();
    for p in 0..partitions {
        let run = run_partition(&mut source, &settings, p, &mut NoObserver, &mut |_| {})?;
        let found = compare(&run, &|_| true);
        info!(
            partition = p,
            published = run.published.len(),
            replayed = run.replayed.len(),
            "Audited partition."
        );
        report.events += run.events;
        report.commands += run.commands;
        report.refused += run.refused;
        report.published += run.published_records;
        report.verified += found.verified;
        report.mismatched.extend(found.mismatched);
        report.unpublished.extend(found.unpublished);
    }
    Ok(report)
}
