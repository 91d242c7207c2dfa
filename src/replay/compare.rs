//! Recorded against replayed decisions (pure).
//!
//! The decisions topic is compacted, so older decisions may be gone: every recorded decision
//! present is checked, and a replayed decision counts as unpublished only when it is newer
//! than every recorded decision of its rollout. A RETIRE is a tombstone in the topic. Later
//! incarnations of a retired id overwrite earlier ones, on both sides.

use std::collections::{BTreeMap, HashMap};

use super::PartitionRun;
use crate::engine::Decision;

/// What the comparison of one or more partitions found.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Recorded decisions the re-run reproduced exactly (tombstones included).
    pub verified: u64,
    /// Recorded decisions the re-run decided differently: (recorded, replayed).
    pub mismatched: Vec<(Decision, Option<Decision>)>,
    /// Decisions the re-run made that are absent from the topic and newer than every recorded
    /// decision of their rollout (not explained by compaction).
    pub unpublished: Vec<Decision>,
}

impl Comparison {
    /// Whether every recorded decision was reproduced and nothing is missing.
    pub fn is_clean(&self) -> bool {
        self.mismatched.is_empty() && self.unpublished.is_empty()
    }

    /// Adds another partition's findings.
    pub fn extend(&mut self, other: Comparison) {
        self.verified += other.verified;
        self.mismatched.extend(other.mismatched);
        self.unpublished.extend(other.unpublished);
    }

    /// The first divergence of each rollout that has one (lowest sequence; a mismatch before
    /// an unpublished decision of the same sequence): (recorded, replayed).
    pub fn first_divergences(&self) -> BTreeMap<String, Divergence> {
        let mut out: BTreeMap<String, Divergence> = BTreeMap::new();
        let candidates = self
            .mismatched
            .iter()
            .map(|(r, p)| Divergence {
                recorded: Some(r.clone()),
                replayed: p.clone(),
            })
            .chain(self.unpublished.iter().map(|d| Divergence {
                recorded: None,
                replayed: Some(d.clone()),
            }));
        for d in candidates {
            let id = d.rollout_id().to_owned();
            match out.get(&id) {
                Some(old) if old.sequence() <= d.sequence() => {}
                _ => {
                    out.insert(id, d);
                }
            }
        }
        out
    }
}

/// Where a rollout's recorded and replayed decisions first differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The recorded decision (`None`: the re-run decided something the topic lacks).
    pub recorded: Option<Decision>,
    /// The replayed decision with the same sequence (`None`: the re-run did not decide it).
    pub replayed: Option<Decision>,
}

impl Divergence {
    fn any(&self) -> &Decision {
        self.recorded
            .as_ref()
            .or(self.replayed.as_ref())
            .expect("a divergence has a side")
    }
    /// The rollout.
    pub fn rollout_id(&self) -> &str {
        &self.any().rollout_id
    }
    /// The sequence number both sides disagree on.
    pub fn sequence(&self) -> u64 {
        self.any().sequence
    }
}

/// Compares one partition's recorded and replayed decisions, limited to decisions `selected`
/// accepts (a recorded one by itself, a replayed-only one by itself).
pub fn compare(run: &PartitionRun, selected: &dyn Fn(&Decision) -> bool) -> Comparison {
    let mut report = Comparison::default();
    // Rows of the compacted topic: a rollout's default scope is keyed by its id, its other
    // scopes by `Decision::key`.
    let mut by_key: HashMap<(String, u64), &Decision> = HashMap::new();
    let mut retired_last: HashMap<String, bool> = HashMap::new();
    for d in &run.replayed {
        retired_last.insert(d.key(), d.is_tombstone());
        by_key.insert((d.key(), d.sequence), d);
    }
    let mut newest_published: HashMap<&str, u64> = HashMap::new();
    for ((r, s), d) in &run.published {
        let e = newest_published.entry(r.as_str()).or_default();
        *e = (*e).max(*s);
        if !selected(d) {
            continue;
        }
        match by_key.get(&(r.clone(), *s)) {
            Some(x) if *x == d => report.verified += 1,
            other => report
                .mismatched
                .push((d.clone(), other.map(|x| (*x).clone()))),
        }
    }
    for ((r, s), d) in &by_key {
        if run.published.contains_key(&(r.clone(), *s)) || !selected(d) {
            continue;
        }
        let newer = newest_published.get(r.as_str()).is_none_or(|n| s > n);
        if d.is_tombstone() {
            // Confirmed by a tombstone; once compaction removed it, nothing older remains.
            if run.tombstones.contains_key(r) {
                report.verified += 1;
            } else if newer && newest_published.contains_key(r.as_str()) {
                report.unpublished.push((*d).clone());
            }
        } else if newer && !retired_last.get(r).copied().unwrap_or(false) {
            report.unpublished.push((*d).clone());
        }
    }
    report.mismatched.sort_by_key(|a| (a.0.key(), a.0.sequence));
    report.unpublished.sort_by_key(|a| (a.key(), a.sequence));
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, BreakerState, Cause, MetricsSnapshot, Phase, TrafficPercent};

    fn d(id: &str, sequence: u64, action: Action, reason: &str) -> Decision {
        Decision {
            rollout_id: id.into(),
            sequence,
            action,
            from: Phase::Off,
            to: Phase::Probe,
            traffic: TrafficPercent::ZERO,
            breaker: BreakerState::HalfOpen,
            paused: false,
            reason: reason.into(),
            metrics: MetricsSnapshot::default(),
            at: sequence as i64 * 1_000,
            cause: Cause::Automatic,
            actor: "watchdog".into(),
            candidate_version: None,
            baseline_version: None,
            policy_json: None,
            phase_started_at: None,
            warning: None,
            scope: crate::engine::Scope::DEFAULT,
        }
    }

    fn run(published: &[Decision], replayed: &[Decision]) -> PartitionRun {
        PartitionRun {
            published: published
                .iter()
                .map(|x| ((x.rollout_id.clone(), x.sequence), x.clone()))
                .collect(),
            replayed: replayed.to_vec(),
            ..PartitionRun::default()
        }
    }

    #[test]
    fn agreement_mismatch_and_unpublished_give_the_first_divergence_per_rollout() {
        let a = [
            d("a", 1, Action::Start, "s"),
            d("a", 2, Action::Advance, "x"),
            d("a", 3, Action::Rollback, "y"),
        ];
        let b = [
            d("b", 1, Action::Start, "s"),
            d("b", 2, Action::Advance, "x"),
        ];
        let recorded: Vec<Decision> = a.iter().chain(&b[..1]).cloned().collect();
        let mut replayed = vec![
            a[0].clone(),
            d("a", 2, Action::Advance, "other"),
            a[2].clone(),
        ];
        replayed.extend(b.iter().cloned());
        let found = compare(&run(&recorded, &replayed), &|_| true);
        assert_eq!(found.verified, 3);
        assert_eq!(found.mismatched.len(), 1);
        assert_eq!(found.unpublished, vec![b[1].clone()]);
        let first = found.first_divergences();
        assert_eq!(first["a"].sequence(), 2);
        assert_eq!(first["a"].recorded.as_ref(), Some(&a[1]));
        assert_eq!(first["b"].recorded, None);
        assert_eq!(first["b"].replayed.as_ref(), Some(&b[1]));
        // A span that leaves out the differing decisions agrees.
        let early = compare(&run(&recorded, &replayed), &|x| x.at < 2_000);
        assert!(early.is_clean() && early.verified == 2, "{early:?}");
    }
}
