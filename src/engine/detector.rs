//! Early warning (statistical rule): a sequential change detector per metric over the closed
//! buckets of the current phase, so a candidate drifting towards the rollback threshold is
//! flagged before it gets there, and a degradation that starts late in a phase is not slowed
//! down by the healthy evidence the phase accumulated before it.
//!
//! # The detector
//!
//! For each metric the rollback rule tests (failures, executions over the latency SLO, and each
//! `[[policy.metrics]]` gate) and each odds ratio `ρ_j` of [`RHO_GRID`], the bucket's
//! comparative log-likelihood-ratio increment `ΔL_j` (exactly the one the phase's e-value adds,
//! see [`comparative_update`]) feeds Page's CUSUM (Page 1954):
//!
//! `S_j ← max(0, S_j + ΔL_j)`,
//!
//! and the detector's statistic is the log of the grid's equal-weight average,
//! `D = ln( (1/8) Σ_j exp(S_j) )` (0 when every `S_j` is 0). `exp(S_j)` is the e-CUSUM of
//! Shin, Ramdas & Rinaldo (2022): `max` over every start `k` of the product of the bucket
//! factors `exp(ΔL_j)` since `k`. Under the rule's null hypothesis (in every bucket, no candidate
//! request is more likely to be bad than a baseline request of the same bucket) each factor has
//! conditional mean at most 1 (DECISION-RULE.md §1.5), so `exp(S_j)` is dominated by the
//! Shiryaev–Roberts sum `R_t = exp(ΔL_t)·(R_{t−1} + 1)`, for which `R_t − t` is a supermartingale:
//! `E[exp(S_j)(τ)] ≤ E[τ]` at any stopping time `τ` counted in closed buckets (an e-detector).
//! Averages of e-detectors are e-detectors, over the grid and over the `K = 2 + m` metrics.
//!
//! # The average-run-length bound
//!
//! A warning is raised when one metric's `D ≥ h = ln(K · c)`, with
//! `c = warning_arl_hours · 3 600 000 / evaluation_interval_ms` buckets. Then the average of
//! the `K` detectors is at least `c` at the alarm, and the e-detector property gives, under the
//! null hypothesis, **E[closed buckets until the first warning] ≥ c**: at least
//! `warning_arl_hours` of buckets between false warnings on average, per rollout, whatever the
//! rates do (a shared outage or noisy traffic moves both versions and gives no evidence). Only
//! buckets of a trial phase holding data count, so wall-clock time is at least as long. The
//! bound is conservative: the CUSUM of a candidate no worse than its baseline drifts down, and
//! the simulator measures the actual rate (README, "Early warning").
//!
//! # Raising, clearing, projecting
//!
//! A metric's warning is raised when its `D` reaches `h`, and cleared when `D` falls below `h/2`
//! (hysteresis, so one noisy bucket does not toggle it). Clearing restarts that metric's
//! detector from zero, so successive false warnings obey the same bound. While any warning is
//! active the rollout is not advanced. Each raise and each clear is published as a WARNING
//! decision (see [`crate::engine::Action::Warning`]).
//!
//! The projected time to the rollback threshold is a straight line through the rollback test's
//! `ln E` over the last [`TREND_POINTS`] closed buckets of the phase (its first and last point):
//! `(threshold − ln E) / slope`, in ms of event time; none when `ln E` is not rising. With the
//! detector's own rollback level enabled (`warning_rollback_arl_hours`), the earlier of the two
//! crossings is projected.
//!
//! # Restore
//!
//! The state (the `S_j`, the active flags, the trend points) is a pure function of the phase's
//! closed buckets, updated in the judging and in the silent rebuild path alike, and reset with
//! the rest of the phase statistics; a restarted processor that replays the phase rebuilds it
//! exactly. Raises and clears found during a silent rebuild were published before the restart.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::stats::{comparative_update, logsumexp, RHO_GRID};

/// Grid points the detector mixes over: the first of [`RHO_GRID`] (odds ratios up to 3).
pub const DETECTOR_POINTS: usize = 4;
use super::types::EventTime;

/// Closed buckets the projection's trend line spans (about a minute with 10-s buckets).
pub const TREND_POINTS: usize = 7;

/// `ln mean exp(s)`, exactly 0 when every point is 0.
fn mixture(s: &[f64]) -> f64 {
    if s.iter().all(|v| *v == 0.0) {
        return 0.0;
    }
    logsumexp(s) - (s.len() as f64).ln()
}

/// One metric's change detector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChangeDetector {
    /// Page's CUSUM per [`RHO_GRID`] point.
    pub s: [f64; 8],
    /// Whether this metric's warning is raised.
    pub active: bool,
    /// `(bucket end, ln E of the rollback test, warning statistic, rollback statistic)` at the
    /// last [`TREND_POINTS`] closed buckets, oldest first.
    pub trend: VecDeque<(EventTime, f64, f64, f64)>,
}

impl ChangeDetector {
    /// Adds one bucket: `a` of `n_c` candidate and `b` of `n_b` baseline executions were bad.
    pub fn update(&mut self, n_c: u64, a: u64, n_b: u64, b: u64) {
        let mut step = [0.0; RHO_GRID.len()];
        comparative_update(&mut step, n_c, a, n_b, b);
        for (s, d) in self.s.iter_mut().zip(step) {
            *s = (*s + d).max(0.0);
        }
    }

    /// The warning statistic `D = ln mean_j exp(S_j)` over the first [`DETECTOR_POINTS`] grid
    /// points.
    pub fn statistic(&self) -> f64 {
        mixture(&self.s[..DETECTOR_POINTS])
    }

    /// The rollback statistic: the same over the whole grid (large degradations weigh in).
    pub fn rollback_statistic(&self) -> f64 {
        mixture(&self.s)
    }

    /// Event time (ms after the last trend point) at which the line through the trend points
    /// reaches `target` on the chosen coordinate (`ln E` or `D`): 0 when it is already there,
    /// `None` when it is not rising (or there is one point only).
    fn projected(
        &self,
        target: f64,
        pick: impl Fn(&(EventTime, f64, f64, f64)) -> f64,
    ) -> Option<i64> {
        let (first, last) = (self.trend.front()?, self.trend.back()?);
        let left = target - pick(last);
        if left <= 0.0 {
            return Some(0);
        }
        let (dt, dv) = ((last.0 - first.0) as f64, pick(last) - pick(first));
        if dt <= 0.0 || dv <= 0.0 {
            return None;
        }
        Some((left * dt / dv).round() as i64)
    }
}

/// A warning raised or cleared at the last closed bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The metric's detector reached the warning level.
    Raised,
    /// It fell back below half of it; the detector restarts.
    Cleared,
}

/// The levels the detector is compared with, derived from the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Warning level `h = ln(K·c)`; `None`: warnings disabled.
    pub warn: Option<f64>,
    /// The detector's own rollback level (same form); `None`: it never rolls back.
    pub rollback: Option<f64>,
    /// Threshold of the phase's rollback tests on `ln E` (for the projection).
    pub test: f64,
}

impl Levels {
    /// `ln(K · c)` for an average run length of `hours`, `K` detectors and buckets of
    /// `bucket_ms`; `None` when `hours` is 0 (disabled).
    pub fn level(hours: f64, detectors: usize, bucket_ms: u64) -> Option<f64> {
        (hours > 0.0).then(|| (detectors as f64 * hours * 3_600_000.0 / bucket_ms as f64).ln())
    }
}

/// Early-warning state of one rollout's phase: one detector per metric (failures, slow, then
/// one per gate), and the changes of the last closed bucket.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EarlyWarning {
    /// Index 0 failures, 1 slow, then the policy's gates in order.
    pub detectors: Vec<ChangeDetector>,
    /// Raises and clears at the last closed bucket: `(metric index, change)`.
    pub changes: Vec<(usize, Change)>,
}

/// What a published WARNING says about one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alert {
    /// Metric index (0 failures, 1 slow, then gates).
    pub metric: usize,
    /// The detector's statistic `D`.
    pub statistic: f64,
    /// The warning level `h`.
    pub threshold: f64,
    /// The rollback test's `ln E` now.
    pub ln_e: f64,
    /// Projected ms until the rollback threshold at the current trend.
    pub projected_ms: Option<i64>,
    /// Raised or cleared.
    pub change: Change,
}

impl EarlyWarning {
    /// Adds one closed bucket ending at `end`: `counts[i] = (n_c, a, n_b, b)` and `ln_e[i]` (the
    /// rollback test's `ln E` after this bucket) per metric.
    pub fn update(
        &mut self,
        end: EventTime,
        counts: &[(u64, u64, u64, u64)],
        ln_e: &[f64],
        levels: &Levels,
    ) {
        self.changes.clear();
        if self.detectors.len() < counts.len() {
            self.detectors
                .resize(counts.len(), ChangeDetector::default());
        }
        for (i, ((d, &(n_c, a, n_b, b)), &e)) in
            self.detectors.iter_mut().zip(counts).zip(ln_e).enumerate()
        {
            d.update(n_c, a, n_b, b);
            let stat = d.statistic();
            if d.trend.len() == TREND_POINTS {
                d.trend.pop_front();
            }
            d.trend.push_back((end, e, stat, d.rollback_statistic()));
            let Some(h) = levels.warn else { continue };
            if !d.active && stat >= h {
                d.active = true;
                self.changes.push((i, Change::Raised));
            } else if d.active && stat < h / 2.0 {
                d.active = false;
                d.s = [0.0; 8];
                self.changes.push((i, Change::Cleared));
            }
        }
    }

    /// Whether any metric's warning is raised.
    pub fn any_active(&self) -> bool {
        self.detectors.iter().any(|d| d.active)
    }

    /// The first metric whose detector reached the detector's rollback level, with its `D`.
    pub fn rollback(&self, levels: &Levels) -> Option<(usize, f64)> {
        let r = levels.rollback?;
        self.detectors
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.rollback_statistic()))
            .find(|(_, s)| *s >= r)
    }

    /// The alerts to publish for the last closed bucket's changes.
    pub fn alerts(&self, levels: &Levels) -> Vec<Alert> {
        let Some(h) = levels.warn else {
            return Vec::new();
        };
        self.changes
            .iter()
            .map(|&(metric, change)| {
                let d = &self.detectors[metric];
                let ln_e = d.trend.back().map_or(0.0, |p| p.1);
                let by_test = d.projected(levels.test, |p| p.1);
                let by_detector = levels.rollback.and_then(|r| d.projected(r, |p| p.3));
                let projected_ms = match (by_test, by_detector) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Alert {
                    metric,
                    statistic: d.trend.back().map_or(0.0, |p| p.2),
                    threshold: h,
                    ln_e,
                    projected_ms: (change == Change::Raised).then_some(projected_ms).flatten(),
                    change,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn cusum_by_hand() {
        // One bucket (n_c, a, n_b, b) = (5, 3, 495, 25): the same increments as the phase test
        // (DECISION-RULE.md §1.5 (ii)), all positive, so S = ΔL:
        // S = [0.599518, 1.076744, 1.800832, 2.741363, 3.730134, 4.343882, 4.521645, 4.116504].
        let mut d = ChangeDetector::default();
        d.update(5, 3, 495, 25);
        assert!(
            close(d.s[0], 0.599518) && close(d.s[7], 4.116504),
            "{:?}",
            d.s
        );
        // Warning statistic over ρ ≤ 3: ln((e^0.599518 + e^1.076744 + e^1.800832 +
        // e^2.741363) / 4) = ln(26.31931 / 4) = 1.884002. Rollback statistic over the whole
        // grid: the phase test's ln E, 3.618795.
        assert!(close(d.statistic(), 1.884002), "{}", d.statistic());
        assert!(close(d.rollback_statistic(), 3.618795));
        // A clean candidate bucket (5, 0, 495, 25): ΔL_j = 25·ln(500/(5ρ_j + 495)), e.g.
        // ρ = 1.25: 25·ln(500/501.25) = −0.062422; ρ = 20: 25·ln(500/595) = −4.348833.
        // S_0 = 0.599518 − 0.062422 = 0.537096; S_7 = max(0, 4.116504 − 4.348833) = 0 (Page's
        // reflection at zero), and D = ln(mean(e^0.537096, e^0.952056, e^1.552074,
        // e^2.246298)) = 1.530177.
        d.update(5, 0, 495, 25);
        assert!(close(d.s[0], 0.537096), "{:?}", d.s);
        assert_eq!(d.s[7], 0.0);
        assert!(close(d.statistic(), 1.530177), "{}", d.statistic());
        // A bucket without bad events leaves everything unchanged.
        let before = d.clone();
        d.update(5, 0, 495, 0);
        assert_eq!(d, before);
        assert_eq!(ChangeDetector::default().statistic(), 0.0);
    }

    #[test]
    fn levels_are_the_stated_bound() {
        // 24 h of 10-s buckets is c = 8640; with K = 2 metrics h = ln(17280) = 9.757305.
        assert!(close(Levels::level(24.0, 2, 10_000).unwrap(), 9.757305));
        // 1 h: c = 360, h = ln(720) = 6.579251.
        assert!(close(Levels::level(1.0, 2, 10_000).unwrap(), 6.579251));
        assert_eq!(Levels::level(0.0, 2, 10_000), None);
    }

    #[test]
    fn raises_clears_and_projects() {
        let levels = Levels {
            warn: Some(1.5),
            rollback: None,
            test: 6.0,
        };
        let mut w = EarlyWarning::default();
        // Bucket 1: D = 1.884002 >= 1.5 on failures (nothing on slow). One trend point: no
        // projection yet.
        w.update(
            10_000,
            &[(5, 3, 495, 25), (5, 0, 495, 0)],
            &[1.0, 0.0],
            &levels,
        );
        assert_eq!(w.changes, vec![(0, Change::Raised)]);
        assert!(w.any_active());
        let a = w.alerts(&levels);
        assert_eq!(a.len(), 1);
        assert!(close(a[0].statistic, 1.884002) && a[0].projected_ms.is_none());
        // A second bad bucket: ln E of the test rose 1.0 → 2.5 in 10 s; 3.5 left at 0.15/s is
        // 23 333 ms. Already raised: no new change.
        w.update(
            20_000,
            &[(5, 3, 495, 25), (5, 0, 495, 0)],
            &[2.5, 0.0],
            &levels,
        );
        assert!(w.changes.is_empty());
        let d = &w.detectors[0];
        assert_eq!(d.projected(6.0, |p| p.1), Some(23_333));
        assert_eq!(d.projected(2.5, |p| p.1), Some(0), "already there");
        assert_eq!(d.projected(6.0, |p| -p.1), None, "falling");
        // Clean buckets pull D below h/2 = 0.75: cleared, detector restarted.
        let mut t = 20_000;
        while w.changes.is_empty() {
            t += 10_000;
            w.update(t, &[(5, 0, 495, 25), (5, 0, 495, 0)], &[0.0, 0.0], &levels);
        }
        assert_eq!(w.changes, vec![(0, Change::Cleared)]);
        assert_eq!(w.detectors[0].s, [0.0; 8]);
        assert!(!w.any_active());
        // With a detector rollback level, it is reached on the whole grid's statistic.
        let levels = Levels {
            rollback: Some(3.5),
            ..levels
        };
        let mut w = EarlyWarning::default();
        w.update(
            10_000,
            &[(5, 3, 495, 25), (5, 0, 495, 0)],
            &[1.0, 0.0],
            &levels,
        );
        let (metric, stat) = w.rollback(&levels).unwrap();
        assert!(metric == 0 && close(stat, 3.618795));
    }
}
