//! The statistical rule's hooks into the rollout state machine: per-phase state updated at the
//! close of every bucket of the phase, judged at evaluation. Kept apart from the state machine
//! so the threshold rule's path reads as before.
//!
//! Exactness across restarts: the state is a pure function of the buckets of the current phase
//! closed so far (it is reset on every phase change and on restore, and updated in both the
//! judging and the silent rebuild path of [`Rollout::close_buckets_silently`]), so replaying
//! the phase's events after a restart reproduces it bit for bit.

use super::super::decision::MetricsSnapshot;
use super::super::stats::{Counts, PhaseStats, Rule, Thresholds};
use super::super::types::EventTime;
use super::super::watchdog::Verdict;
use super::Rollout;

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

    /// Adds the bucket `[start, end)` to the phase's statistics when the statistical rule is in
    /// force and the bucket belongs to the current phase.
    pub(super) fn update_phase_stats(&mut self, start: EventTime, end: EventTime) {
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
    }

    /// The statistical rule's verdict on the current phase; `metrics` is the rolling window
    /// ending at the bucket just closed (its baseline completion gates the guard and the
    /// incident hold).
    pub(super) fn judge_statistically(&self, metrics: &MetricsSnapshot) -> Verdict {
        let base = baseline_completion(metrics.baseline.samples, metrics.baseline.successes);
        let v = self.stats.judge(self.phase, base, &self.stats_thresholds());
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
