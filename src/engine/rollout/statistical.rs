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

use super::super::decision::{Action, Cause, Decision, MetricsSnapshot, Warning};
use super::super::detector::{Change, Levels};
use super::super::stats::{comparative_ln_e, Counts, MetricCounts, PhaseStats, Rule, Thresholds};
use super::super::types::{EventTime, ExecutionEvent, Variant};
use super::super::watchdog::Verdict;
use super::super::window::bucket_start;
use super::{Rollout, WATCHDOG};

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
        let mut gate_counts = metric_counts.unwrap_or_default();
        if gates > 0 {
            gate_counts.resize(gates, MetricCounts::default());
            self.stats.update_metrics(&gate_counts);
        }
        // The early warning's detectors see the same per-bucket counts as the tests.
        let mut counts = vec![(n_c, fail_c, n_b, fail_b), (n_c, slow_c, n_b, slow_b)];
        let mut ln_e = vec![self.stats.ln_e_fail(), self.stats.ln_e_slow()];
        for (m, c) in self.stats.metrics.iter().zip(&gate_counts) {
            counts.push((c.n_c, c.bad_c, c.n_b, c.bad_b));
            ln_e.push(comparative_ln_e(&m.l));
        }
        let levels = self.warning_levels();
        self.stats.warning.update(end, &counts, &ln_e, &levels);
    }

    /// The early warning's levels under this rollout's policy.
    fn warning_levels(&self) -> Levels {
        let p = &self.policy.statistical;
        let k = 2 + self.policy.metrics.len();
        let bucket = self.policy.evaluation_interval_ms;
        Levels {
            warn: Levels::level(p.warning_arl_hours, k, bucket),
            rollback: Levels::level(p.warning_rollback_arl_hours, k, bucket),
            test: (3.0 * k as f64 / p.alpha).ln(),
        }
    }

    /// Name of metric `i` of the early warning: `failures`, `slow`, then the gates' names.
    fn warning_metric(&self, i: usize) -> (String, String) {
        match i {
            0 => ("failures".to_owned(), "failures".to_owned()),
            1 => (
                "slow".to_owned(),
                format!("executions over {} ms", self.policy.max_latency_ms),
            ),
            _ => {
                let g = &self.policy.metrics[i - 2];
                (g.name.clone(), g.describe())
            }
        }
    }

    /// Publishes a WARNING for every warning raised or cleared at the bucket ending at `end`
    /// (statistical rule only; none at OFF).
    pub(super) fn publish_warnings(&mut self, end: EventTime, out: &mut Vec<Decision>) {
        if self.policy.rule != Rule::Statistical
            || self.phase == super::Phase::Off
            || self.stats.warning.changes.is_empty()
        {
            return;
        }
        let levels = self.warning_levels();
        for a in self.stats.warning.alerts(&levels) {
            let (metric, what) = self.warning_metric(a.metric);
            let phase = self.phase;
            let reason = match a.change {
                Change::Raised => {
                    let trend = match a.projected_ms {
                        Some(0) => "the rollback threshold is reached".to_owned(),
                        Some(ms) if ms < 120_000 => format!(
                            "at the current trend the rollback threshold is {} s away",
                            ms / 1_000
                        ),
                        Some(ms) => format!(
                            "at the current trend the rollback threshold is {:.1} min away",
                            ms as f64 / 60_000.0
                        ),
                        None => "not rising towards the rollback threshold".to_owned(),
                    };
                    format!(
                        "{phase}: early warning: candidate's {what} changed for the worse: \
                         detector {:.3} >= {:.3} (ARL >= {} h of buckets); rollback test \
                         ln E {:.3} of {:.3}, {trend}; holding",
                        a.statistic,
                        a.threshold,
                        self.policy.statistical.warning_arl_hours,
                        a.ln_e,
                        levels.test
                    )
                }
                Change::Cleared => format!(
                    "{phase}: early warning on {what} cleared: detector {:.3} < {:.3}",
                    a.statistic,
                    a.threshold / 2.0
                ),
            };
            let metrics = self.snapshot(end);
            let mut d = self.transition(
                Action::Warning,
                phase,
                reason,
                metrics,
                end,
                Cause::Automatic,
                WATCHDOG,
            );
            d.warning = Some(Warning {
                metric,
                statistic: a.statistic,
                threshold: a.threshold,
                projected_rollback_ms: a.projected_ms,
                cleared: a.change == Change::Cleared,
            });
            out.push(d);
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
        if v.action == Action::Rollback {
            return Verdict {
                action: v.action,
                reason: v.reason,
            };
        }
        let levels = self.warning_levels();
        if let Some((i, stat)) = self.stats.warning.rollback(&levels) {
            let (_, what) = self.warning_metric(i);
            return Verdict {
                action: Action::Rollback,
                reason: format!(
                    "{}: candidate's {what} changed for the worse: change detector {stat:.3} \
                     >= rollback level {:.3} (ARL >= {} h of buckets)",
                    self.phase,
                    levels.rollback.unwrap_or_default(),
                    self.policy.statistical.warning_rollback_arl_hours
                ),
            };
        }
        if v.action == Action::Advance && self.stats.warning.any_active() {
            let names: Vec<String> = (0..self.stats.warning.detectors.len())
                .filter(|&i| self.stats.warning.detectors[i].active)
                .map(|i| self.warning_metric(i).1)
                .collect();
            return Verdict {
                action: Action::Maintain,
                reason: format!(
                    "{}: early warning on {} holds the advance ({})",
                    self.phase,
                    names.join(", "),
                    v.reason
                ),
            };
        }
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
