//! The decisions log read as a table: the latest decision of every rollout (of every scope of
//! it: each scope is its own row, keyed by [`Decision::key`]).
//!
//! One fold for every reader of the decisions topic (restore, routers, audit, status), so they
//! cannot disagree about which decision is current: records are taken in offset order, a
//! higher sequence number replaces a lower one, and a tombstone (a RETIRE) forgets the rollout,
//! after which its id may start again from sequence 1.

use std::collections::HashMap;

use super::decision::Decision;
use super::scope::Scope;

/// The latest decision per row (rollout, or scope of a rollout) of one partition (or several)
/// of the decisions topic.
#[derive(Debug, Clone, Default)]
pub struct LatestDecisions {
    latest: HashMap<String, Decision>,
}

impl LatestDecisions {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next record of the log: `Some` decision, or a tombstone (`None`) for `key`.
    /// Returns whether the table changed. A decision's row is its own [`Decision::key`]
    /// (whatever the record's key), so a scope's row never replaces its rollout's.
    pub fn apply(&mut self, key: &str, value: Option<Decision>) -> bool {
        match value {
            None => self.latest.remove(key).is_some(),
            Some(d) => {
                let key = d.key();
                match self.latest.get(&key) {
                    Some(old) if old.sequence >= d.sequence => false,
                    _ => {
                        self.latest.insert(key, d);
                        true
                    }
                }
            }
        }
    }

    /// The current decision of `rollout_id` (its default scope), if any.
    pub fn get(&self, rollout_id: &str) -> Option<&Decision> {
        self.latest.get(rollout_id)
    }

    /// The current decision of one scope of `rollout_id`, if any.
    pub fn get_scoped(&self, rollout_id: &str, scope: &Scope) -> Option<&Decision> {
        self.latest.get(&scope.key(rollout_id))
    }

    /// Number of rows (rollouts and their scopes).
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Every current decision, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &Decision> {
        self.latest.values()
    }

    /// The table's decisions.
    pub fn into_values(self) -> impl Iterator<Item = Decision> {
        self.latest.into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, BreakerState, Cause, MetricsSnapshot, Phase, TrafficPercent};

    fn d(id: &str, sequence: u64) -> Decision {
        Decision {
            rollout_id: id.into(),
            sequence,
            action: Action::Advance,
            from: Phase::Probe,
            to: Phase::Small,
            traffic: TrafficPercent::new(5.0).unwrap(),
            breaker: BreakerState::HalfOpen,
            paused: false,
            reason: String::new(),
            metrics: MetricsSnapshot::default(),
            at: 0,
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

    #[test]
    fn highest_sequence_wins_and_tombstones_forget() {
        let mut t = LatestDecisions::new();
        assert!(t.apply("a", Some(d("a", 2))));
        assert!(!t.apply("a", Some(d("a", 1))), "older sequence ignored");
        assert!(!t.apply("a", Some(d("a", 2))), "duplicate ignored");
        assert_eq!(t.get("a").unwrap().sequence, 2);
        assert!(t.apply("a", None));
        assert!(t.get("a").is_none());
        assert!(!t.apply("a", None), "forgetting twice changes nothing");
        assert!(t.apply("a", Some(d("a", 1))), "a retired id starts again");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn each_scope_is_its_own_row() {
        let mut t = LatestDecisions::new();
        let eu = Scope::new(None, Some("eu"));
        let mut scoped = d("a", 1);
        scoped.scope = eu.clone();
        assert!(t.apply("a", Some(d("a", 3))));
        assert!(
            t.apply("a#region=eu", Some(scoped)),
            "lower sequence, other row"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("a").unwrap().sequence, 3);
        assert_eq!(t.get_scoped("a", &eu).unwrap().sequence, 1);
        assert!(t.apply("a#region=eu", None));
        assert!(t.get_scoped("a", &eu).is_none());
        assert!(t.get("a").is_some(), "the rollout's own row stays");
    }
}
