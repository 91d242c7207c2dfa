//! What the engine says: decisions and the metrics they quote.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::phase::{BreakerState, Phase};
use super::scope::Scope;
use super::types::{EventTime, TrafficPercent};
use super::window::VariantMetrics;

/// What a decision does to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// The rollout began (OFF → initial phase), automatically or by a START/RETRY command.
    Start,
    /// One phase up.
    Advance,
    /// No change; returned to callers, never published.
    Maintain,
    /// Back to OFF: the breaker trips (automatic) or an operator aborted.
    Rollback,
    /// An operator froze automatic decisions; the phase is unchanged.
    Pause,
    /// An operator unfroze automatic decisions; the phase is unchanged.
    Resume,
    /// An operator retired the rollout: the engine forgets it and the processor publishes a
    /// tombstone (a record with no value) for its key, so the compacted decisions topic and
    /// every router drop it. Never encoded as a record of its own.
    Retire,
    /// Early warning (statistical rule): a metric's change detector raised or cleared a
    /// warning ([`Decision::warning`] says which and why). Changes no phase and no traffic (the
    /// record carries the current ones, so a router reading the topic as a table stays right);
    /// while a warning is raised the rollout is not advanced.
    Warning,
}

impl Action {
    /// The upper-case name used on the wire and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Start => "START",
            Action::Advance => "ADVANCE",
            Action::Maintain => "MAINTAIN",
            Action::Rollback => "ROLLBACK",
            Action::Pause => "PAUSE",
            Action::Resume => "RESUME",
            Action::Retire => "RETIRE",
            Action::Warning => "WARNING",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who caused a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
    /// The watchdog, from metrics.
    Automatic,
    /// An operator's command.
    Operator,
}

/// The metrics a decision was based on: both variants over the same span of event time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// First millisecond of the span the metrics cover.
    pub window_start: EventTime,
    /// End of the span (exclusive).
    pub window_end: EventTime,
    /// The version in production before the rollout.
    pub baseline: VariantMetrics,
    /// The version being rolled out.
    pub candidate: VariantMetrics,
}

/// What a WARNING decision says: which metric's change detector raised (or cleared) it, its
/// statistic and level, and where the rollback test is heading (see
/// [`crate::engine::detector`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// `"failures"`, `"slow"` (executions over the latency SLO) or a `[[policy.metrics]]`
    /// gate's name.
    pub metric: String,
    /// The detector's statistic `D` (the log of its e-detector) at the decision.
    pub statistic: f64,
    /// The warning level `h` it is compared with.
    pub threshold: f64,
    /// Projected ms of event time from the decision until the rollback threshold is reached at
    /// the current trend; `None` when the rollback test is not rising, and on a clear.
    pub projected_rollback_ms: Option<i64>,
    /// `false`: the warning is raised; `true`: the evidence went away and it is cleared.
    pub cleared: bool,
}

/// One decision about one rollout. Phase changes (and operator pauses/resumes) are published to
/// the decisions topic; MAINTAIN is only returned to the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rollout decided on.
    pub rollout_id: String,
    /// Per-rollout sequence number of published decisions, from 1. A MAINTAIN carries the number
    /// of the last published decision.
    pub sequence: u64,
    /// What the decision does.
    pub action: Action,
    /// Phase before.
    pub from: Phase,
    /// Phase after.
    pub to: Phase,
    /// Candidate traffic after the decision.
    pub traffic: TrafficPercent,
    /// Breaker state after the decision.
    pub breaker: BreakerState,
    /// Whether automatic decisions are frozen after this decision.
    pub paused: bool,
    /// Human-readable reason quoting the measured numbers and the thresholds.
    pub reason: String,
    /// The metrics the decision was based on.
    pub metrics: MetricsSnapshot,
    /// Event time the decision was made at (ms since the epoch).
    pub at: EventTime,
    /// Automatic or operator.
    pub cause: Cause,
    /// Who made it: `"watchdog"` or the operator's name.
    pub actor: String,
    /// Version label of the candidate, when known.
    pub candidate_version: Option<String>,
    /// Version label of the baseline, when known.
    pub baseline_version: Option<String>,
    /// The rollout's own policy as JSON, when it differs from the processor's default
    /// (so a restart restores it from the compacted topic alone).
    pub policy_json: Option<String>,
    /// Event time from which samples count for the phase after the decision (a bucket
    /// boundary), so a restart restores the window exactly; `None` in records written before
    /// the field existed.
    pub phase_started_at: Option<EventTime>,
    /// The warning of a WARNING decision; `None` for every other action (and in records
    /// written before the field existed). Left out of serde output when `None`, so other
    /// decisions serialize as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Warning>,
    /// The scope decided on (v4); the default scope (no segment, no region) for rollouts whose
    /// policy names none, and in records written before the field existed. Left out of serde
    /// output when default.
    #[serde(default, skip_serializing_if = "Scope::is_default")]
    pub scope: Scope,
}

impl Decision {
    /// Whether this decision is published (everything but MAINTAIN).
    pub fn is_published(&self) -> bool {
        self.action != Action::Maintain
    }

    /// Whether this decision is published as a tombstone (RETIRE) rather than as a record.
    pub fn is_tombstone(&self) -> bool {
        self.action == Action::Retire
    }

    /// The key of this decision's row in the compacted decisions topic (see [`Scope::key`]):
    /// the rollout id for the default scope.
    pub fn key(&self) -> String {
        self.scope.key(&self.rollout_id)
    }
}
