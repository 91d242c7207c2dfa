//! The statistical rule's hooks into the rollout state machine: per-phase state updated at the
//! close of every bucket of the phase, judged at evaluation. Kept apart from the state machine
//! so the threshold rule's path reads as before.
//!
//! Exactness across restarts: the state is a pure function of the buckets of the current phase
//! closed so far (it is reset on every phase change and on restore, and updated in both the
//! judging and the silent rebuild path of [`Rollout::close_buckets_silently`]), so replaying
//! the phase's events after a restart reproduces it bit for bit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::decision::MetricsSnapshot;
use super::super::stats::{Counts, MetricCounts, PhaseStats, Rule, Thresholds};
use super::super::types::{EventTime, ExecutionEvent, Variant};
use super::super::watchdog::Verdict;
use super::super::window::bucket_start;
use super::Rollout;

/// Agent-metric counts per open bucket (one entry per gate), kept only until the bucket
/// closes: the statistics take them at the close, nothing else reads them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct AgentBuckets(BTreeMap<EventTime, Vec<MetricCounts>>);

impl Rollout {
    /// The statistical rule's state for the current phase (all zero under the threshold rule).
    pub fn phase_stats(&self) -> &PhaseStats {
        &self.stats
    }

    fn stats_thresholds(&self) -> Thresholds {
        Thresholds {
            params: self.policy.statistical,
            rollback_threshold: self.policy.rollback_threshold.get(),
            slo: self.policy.min_task_completion_rate.get(),
        }
    }

    /// Counts a recorded event's gated agent metrics into its bucket.
    pub(super) fn record_agent_metrics(&mut self, event: &ExecutionEvent) {
        let gates = &self.policy.metrics;
        if gates.is_empty() || self.policy.rule != Rule::Statistical {
            return;
        }
        let start = bucket_start(event.timestamp, self.policy.evaluation_interval_ms);
        let counts = self.agent.0.entry(start).or_default();
        counts.resize(gates.len(), MetricCounts::default());
        for (g, c) in gates.iter().zip(counts.iter_mut()) {
            let Some(v) = g.value(event.cost, &event.extra) else {
                continue;
            };
            let bad = u64::from(g.is_bad(v));
            match event.variant {
                Variant::Candidate => (c.n_c, c.bad_c) = (c.n_c + 1, c.bad_c + bad),
                Variant::Baseline => (c.n_b, c.bad_b) = (c.n_b + 1, c.bad_b + bad),
            }
        }
    }

    /// Adds the bucket `[start, end)` to the phase's statistics when the statistical rule is in
    /// force and the bucket belongs to the current phase.
    pub(super) fn update_phase_stats(&mut self, start: EventTime, end: EventTime) {
        // The bucket's agent-metric counts (and any older, unused ones) leave memory now.
        let mut metric_counts = None;
        while let Some(entry) = self.agent.0.first_entry() {
            if *entry.key() > start {
                break;
            }
            let (s, c) = entry.remove_entry();
            if s == start {
                metric_counts = Some(c);
            }
        }
        if self.policy.rule != Rule::Statistical
            || self.phase == super::Phase::Off
            || start < self.phase_started_at
        {
            return;
        }
        let (n_c, fail_c, slow_c) = match self.candidate.bucket(start) {
            Some(b) => (b.samples, b.samples - b.successes, b.slow),
            None => (0, 0, 0),
        };
        let (n_b, fail_b, slow_b) = match self.baseline.bucket(start) {
            Some(b) => (b.samples, b.samples - b.successes, b.slow),
            None => (0, 0, 0),
        };
        let bucket = Counts {
            n_c,
            fail_c,
            slow_c,
            n_b,
            fail_b,
            slow_b,
        };
        let window_start =
            (end - self.policy.monitoring_window_ms as i64).max(self.phase_started_at);
        let window = self.baseline.aggregate_counts(window_start, end);
        let base = baseline_completion(window.samples, window.successes);
        let t = self.stats_thresholds();
        self.stats.update(&bucket, base, &t);
        let gates = self.policy.metrics.len();
        if gates > 0 {
            let mut counts = metric_counts.unwrap_or_default();
            counts.resize(gates, MetricCounts::default());
            self.stats.update_metrics(&counts);
        }
    }

    /// The statistical rule's verdict on the current phase; `metrics` is the rolling window
    /// ending at the bucket just closed (its baseline completion gates the guard and the
    /// incident hold).
    pub(super) fn judge_statistically(&self, metrics: &MetricsSnapshot) -> Verdict {
        let base = baseline_completion(metrics.baseline.samples, metrics.baseline.successes);
        let v = self.stats.judge_with_metrics(
            self.phase,
            base,
            &self.stats_thresholds(),
            &self.policy.metrics,
        );
        Verdict {
            action: v.action,
            reason: v.reason,
        }
    }
}

/// Completion of the baseline's window; 1.0 without samples (FULL has no baseline traffic).
fn baseline_completion(samples: u64, successes: u64) -> f64 {
    if samples == 0 {
        1.0
    } else {
        successes as f64 / samples as f64
    }
}
