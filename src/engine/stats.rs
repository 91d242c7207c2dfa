//! The statistical watchdog: the candidate judged against its own baseline with tests that stay
//! valid however often they are checked (anytime-valid), as designed in `DECISION-RULE.md`.
//!
//! Per rollout and phase the engine keeps a [`PhaseStats`]: log-likelihood ratios of three
//! e-value tests and six counts, all reset on every phase change and updated at the close of
//! every bucket of the phase (in the judging path and in the silent rebuild path alike), so the
//! state is a pure function of the phase's closed buckets and a replay reproduces it exactly.
//!
//! - **Comparative tests** (failures, and executions over the latency SLO, "slow"). Within a
//!   bucket with `n_c` candidate and `n_b` baseline executions and `a + b` bad ones, under H0
//!   ("no candidate request is worse than a baseline request of the same bucket") `a` is at most
//!   hypergeometric, and each grid alternative `ρ_j` (the candidate's odds of a bad event are
//!   `ρ_j` times the baseline's) adds
//!   `a·ln ρ_j + (a+b)·ln(N / (ρ_j·n_c + n_b))` to its log-likelihood ratio. The average
//!   `E = mean_j exp(L_j)` is a non-negative supermartingale under H0, so by Ville's inequality
//!   `P(sup E ≥ 6/α) ≤ α/6` per test per phase; rates may move arbitrarily between buckets
//!   (outages both versions share, diurnal traffic), only the *relative* rate is tested.
//! - **Absolute-floor guard**: a one-sample e-value that the candidate's failure rate exceeds
//!   `q0 = 1 − rollback_threshold`, taking evidence only from buckets whose rolling baseline
//!   completion is at least `rollback_threshold` (so a shared outage is not blamed on the
//!   candidate). Threshold `ln(3/α_guard)`.
//! - **Promotion**: non-inferiority via Robbins' Beta(1,1) mixture confidence sequences:
//!   advance when, for failures and slow executions both, the candidate's upper bound minus the
//!   baseline's lower bound is at most the phase's margin; each of the 4 bounds at level
//!   `α_promotion / 4`.
//! - **Agent metrics** (`[[policy.metrics]]`, optional): each [`MetricGate`] turns a per-execution
//!   metric (the event's `cost`, or a named `extra_metrics` value such as a quality score, tool
//!   calls or guardrail triggers) into a bad event, "value above `bad_above`" or "below
//!   `bad_below`", and gets its own comparative test and non-inferiority bound, exactly as the
//!   slow test. A mean (cost per task) is thus tested through the rate at which it exceeds a
//!   budget, not as a mean: the same anytime-valid guarantee, no distributional assumption.
//!   With `m` gates, the budgets are split over `2 + m` tests: threshold `ln(3(2+m)/α)` and
//!   bounds at `α_promotion / (4 + 2m)`. Executions that do not report a gated metric do not
//!   count for it; a gate never reported by the candidate blocks promotion (its upper bound
//!   stays 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decision::Action;
use super::phase::Phase;

/// Grid of odds ratios the comparative tests mix over (equal weights).
pub const RHO_GRID: [f64; 8] = [1.25, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0];
/// Grid of failure rates the guard mixes over (equal weights over the points above `q0`).
pub const GUARD_GRID: [f64; 6] = [0.25, 0.30, 0.40, 0.50, 0.70, 0.90];

/// Which decision rule the watchdog applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The seed's absolute thresholds on the rolling window (`min_samples_per_phase`,
    /// `max_latency_ms` on the mean, `rollback_threshold`, `advancement_threshold`).
    Threshold,
    /// Anytime-valid comparison of the candidate with its baseline (this module). The default
    /// since the decision-quality simulator showed it meets the targets (README, "Decision
    /// quality").
    #[default]
    Statistical,
}

/// Default false-rollback budget of the comparative tests over a whole rollout: 1 %
/// (DECISION-RULE.md §1.3; split over 3 trial phases × 2 tests).
const fn default_alpha() -> f64 {
    0.01
}
/// Default budget of the absolute-floor guard: 0.1 % over 3 phases (DECISION-RULE.md §1.3).
const fn default_alpha_guard() -> f64 {
    0.001
}
/// Default per-phase probability of promoting a candidate worse than its baseline by more than
/// the margin: 5 % (DECISION-RULE.md §1.3).
const fn default_alpha_promotion() -> f64 {
    0.05
}
/// Default non-inferiority margin at PROBE: 15 points (little traffic, little exposure).
const fn default_margin_probe() -> f64 {
    0.15
}
/// Default non-inferiority margin at SMALL: 10 points.
const fn default_margin_small() -> f64 {
    0.10
}
/// Default non-inferiority margin at MEDIUM (the gate to FULL): 5 points.
const fn default_margin_medium() -> f64 {
    0.05
}
/// Default average-run-length bound of the early warning: at least two hours of closed buckets
/// between false warnings on average, per rollout (a proven lower bound; the simulator measures
/// far fewer, see README "Early warning").
const fn default_warning_arl_hours() -> f64 {
    2.0
}
/// Default for the detector's own rollback level: off (the detector warns, the phase tests
/// roll back).
const fn default_warning_rollback_arl_hours() -> f64 {
    0.0
}

/// Parameters of the statistical rule (`[policy.statistical]`). Used only when
/// `rule = "statistical"`; thresholds shared with the threshold rule come from the policy:
/// `max_latency_ms` defines "slow" (one execution over it), `rollback_threshold` sets the
/// guard's floor `q0 = 1 − rollback_threshold` and its baseline gate, `min_task_completion_rate`
/// the incident hold (no advance while the baseline's window completion is below it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticalParams {
    /// Probability, over the whole rollout, that the comparative tests roll back a candidate no
    /// worse than its baseline; the threshold is `ln(6 / alpha)`. In `(0, 1)`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Same for the absolute-floor guard; threshold `ln(3 / alpha_guard)`. In `(0, 1)`.
    #[serde(default = "default_alpha_guard")]
    pub alpha_guard: f64,
    /// Per phase, probability of advancing a candidate worse than its baseline by more than the
    /// margin. In `(0, 1)`.
    #[serde(default = "default_alpha_promotion")]
    pub alpha_promotion: f64,
    /// Non-inferiority margin (absolute rate difference) to leave PROBE. In `[0, 1]`.
    #[serde(default = "default_margin_probe")]
    pub margin_probe: f64,
    /// Margin to leave SMALL. In `[0, 1]`.
    #[serde(default = "default_margin_small")]
    pub margin_small: f64,
    /// Margin to leave MEDIUM. In `[0, 1]`.
    #[serde(default = "default_margin_medium")]
    pub margin_medium: f64,
    /// Early warning (see [`crate::engine::detector`]): average-run-length bound, in hours of
    /// closed buckets, between false warnings of a rollout whose candidate is no worse than its
    /// baseline; the warning level is `ln(K · c)` with `c` this many hours of buckets and `K`
    /// the number of metrics tested. `0` disables warnings. In `[0, 100000]`.
    #[serde(default = "default_warning_arl_hours")]
    pub warning_arl_hours: f64,
    /// The change detector also rolls back, at the level of this average run length (same
    /// form; at least `warning_arl_hours`). `0` (default): it only warns. In `[0, 100000]`.
    #[serde(default = "default_warning_rollback_arl_hours")]
    pub warning_rollback_arl_hours: f64,
}

impl Default for StatisticalParams {
    fn default() -> Self {
        Self {
            alpha: default_alpha(),
            alpha_guard: default_alpha_guard(),
            alpha_promotion: default_alpha_promotion(),
            margin_probe: default_margin_probe(),
            margin_small: default_margin_small(),
            margin_medium: default_margin_medium(),
            warning_arl_hours: default_warning_arl_hours(),
            warning_rollback_arl_hours: default_warning_rollback_arl_hours(),
        }
    }
}

impl StatisticalParams {
    /// Whether every parameter has its default (for `skip_serializing_if`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks ranges; the error names the field (`statistical.<name>`) and its range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, v) in [
            ("statistical.alpha", self.alpha),
            ("statistical.alpha_guard", self.alpha_guard),
            ("statistical.alpha_promotion", self.alpha_promotion),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err((field, format!("must be in (0, 1), got {v}")));
            }
        }
        for (field, v) in [
            ("statistical.margin_probe", self.margin_probe),
            ("statistical.margin_small", self.margin_small),
            ("statistical.margin_medium", self.margin_medium),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err((field, format!("must be in [0, 1], got {v}")));
            }
        }
        for (field, v) in [
            ("statistical.warning_arl_hours", self.warning_arl_hours),
            (
                "statistical.warning_rollback_arl_hours",
                self.warning_rollback_arl_hours,
            ),
        ] {
            if !(0.0..=100_000.0).contains(&v) {
                return Err((field, format!("must be in [0, 100000], got {v}")));
            }
        }
        let (w, r) = (self.warning_arl_hours, self.warning_rollback_arl_hours);
        if r > 0.0 && r < w {
            return Err((
                "statistical.warning_rollback_arl_hours",
                format!("must be 0 or in [warning_arl_hours = {w}, 100000], got {r}"),
            ));
        }
        Ok(())
    }

    /// Threshold of the comparative tests on `ln E`: `ln(6 / alpha)`.
    pub fn threshold(&self) -> f64 {
        (6.0 / self.alpha).ln()
    }
    /// Threshold of the guard on `ln E`: `ln(3 / alpha_guard)`.
    pub fn guard_threshold(&self) -> f64 {
        (3.0 / self.alpha_guard).ln()
    }
    /// `ln(1/α')` of each of the 4 confidence bounds of the promotion gate: `ln(4 / alpha_promotion)`.
    pub fn ln_inv_alpha_bound(&self) -> f64 {
        (4.0 / self.alpha_promotion).ln()
    }
    /// Non-inferiority margin to leave `phase` (`None` at OFF and FULL).
    pub fn margin(&self, phase: Phase) -> Option<f64> {
        match phase {
            Phase::Probe => Some(self.margin_probe),
            Phase::Small => Some(self.margin_small),
            Phase::Medium => Some(self.margin_medium),
            Phase::Off | Phase::Full => None,
        }
    }
}

/// Most agent-metric gates per policy.
pub const MAX_METRIC_GATES: usize = 8;

/// An agent metric compared with the baseline (see the module docs). Exactly one of
/// `bad_above` and `bad_below` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricGate {
    /// `"cost"` for the event's cost; any other name is a key of the event's `extra_metrics`.
    pub name: String,
    /// An execution is bad when its value is above this (lower is better: cost, tool calls,
    /// guardrail triggers, escalations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_above: Option<f64>,
    /// An execution is bad when its value is below this (higher is better: a quality score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_below: Option<f64>,
}

impl MetricGate {
    /// The execution's value of this metric, if it reported one.
    pub fn value(&self, cost: Option<f64>, extra: &BTreeMap<String, f64>) -> Option<f64> {
        if self.name == "cost" {
            cost
        } else {
            extra.get(&self.name).copied()
        }
    }

    /// Whether `value` is a bad outcome.
    pub fn is_bad(&self, value: f64) -> bool {
        match (self.bad_above, self.bad_below) {
            (Some(a), _) => value > a,
            (None, Some(b)) => value < b,
            (None, None) => false,
        }
    }

    /// `"cost > 0.05"`, `"quality < 0.7"`.
    pub fn describe(&self) -> String {
        match (self.bad_above, self.bad_below) {
            (Some(a), _) => format!("{} > {a}", self.name),
            (None, Some(b)) => format!("{} < {b}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// Checks the gates of a policy; the error names the field and what is allowed.
pub fn validate_gates(gates: &[MetricGate]) -> Result<(), (&'static str, String)> {
    if gates.len() > MAX_METRIC_GATES {
        return Err((
            "metrics",
            format!("at most {MAX_METRIC_GATES} gates, got {}", gates.len()),
        ));
    }
    for (i, g) in gates.iter().enumerate() {
        if g.name.is_empty() {
            return Err(("metrics.name", format!("gate {i}: must not be empty")));
        }
        let bound = match (g.bad_above, g.bad_below) {
            (Some(v), None) | (None, Some(v)) => v,
            _ => {
                return Err((
                    "metrics.bad_above",
                    format!(
                        "gate `{}`: exactly one of bad_above and bad_below must be set",
                        g.name
                    ),
                ))
            }
        };
        if !bound.is_finite() {
            return Err((
                "metrics.bad_above",
                format!("gate `{}`: the bound must be finite, got {bound}", g.name),
            ));
        }
        if gates[..i].iter().any(|o| o.name == g.name) {
            return Err(("metrics.name", format!("gate `{}` appears twice", g.name)));
        }
    }
    Ok(())
}

/// Counts of one agent metric in one closed bucket, or in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetricCounts {
    /// Candidate executions reporting the metric.
    pub n_c: u64,
    /// Of those, bad ones.
    pub bad_c: u64,
    /// Baseline executions reporting the metric.
    pub n_b: u64,
    /// Of those, bad ones.
    pub bad_b: u64,
}

/// The comparative test of one agent metric over the phase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricStats {
    /// Log-likelihood ratios, one per [`RHO_GRID`] point.
    pub l: [f64; 8],
    /// Counts since the phase started.
    pub totals: MetricCounts,
}

/// Counts of one closed bucket, or of a phase (both variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Candidate executions.
    pub n_c: u64,
    /// Candidate failures (executions that did not complete their task).
    pub fail_c: u64,
    /// Candidate executions over the latency SLO.
    pub slow_c: u64,
    /// Baseline executions.
    pub n_b: u64,
    /// Baseline failures.
    pub fail_b: u64,
    /// Baseline executions over the latency SLO.
    pub slow_b: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.n_c += o.n_c;
        self.fail_c += o.fail_c;
        self.slow_c += o.slow_c;
        self.n_b += o.n_b;
        self.fail_b += o.fail_b;
        self.slow_b += o.slow_b;
    }
}

/// The thresholds a verdict needs, derived once from the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Statistical parameters.
    pub params: StatisticalParams,
    /// `rollback_threshold`: guard floor `q0 = 1 − this` and the guard's baseline gate.
    pub rollback_threshold: f64,
    /// `min_task_completion_rate`: no advance while the baseline is below it.
    pub slo: f64,
}

impl Thresholds {
    fn q0(&self) -> f64 {
        1.0 - self.rollback_threshold
    }
}

/// Per-rollout, per-phase state of the statistical rule (224 bytes for the tests, plus the
/// early warning's detectors: per metric 8 CUSUM values and 7 trend points, about 330 bytes).
/// Reset on every phase change; a pure function of the phase's closed buckets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PhaseStats {
    /// Log-likelihood ratios of the failure test, one per [`RHO_GRID`] point.
    pub l_fail: [f64; 8],
    /// Log-likelihood ratios of the slow test, one per [`RHO_GRID`] point.
    pub l_slow: [f64; 8],
    /// Log-likelihood ratios of the guard, one per [`GUARD_GRID`] point (points at or below
    /// `q0` stay 0 and are not mixed).
    pub l_guard: [f64; 6],
    /// Counts since the phase started.
    pub totals: Counts,
    /// Agent-metric tests, one per gate of the policy (empty without gates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricStats>,
    /// Early warning: the change detectors of the phase (see [`crate::engine::detector`]).
    #[serde(default)]
    pub warning: super::detector::EarlyWarning,
}

/// `ln Σ exp(x_i)`, stable for large and very negative terms.
pub fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// One comparative update (DECISION-RULE.md §1.4 step 1): `a` of the candidate's `n_c` and `b`
/// of the baseline's `n_b` executions were bad in this bucket.
pub fn comparative_update(l: &mut [f64; 8], n_c: u64, a: u64, n_b: u64, b: u64) {
    if n_c == 0 || n_b == 0 || a + b == 0 {
        return;
    }
    let (nc, nb, a, ab) = (n_c as f64, n_b as f64, a as f64, (a + b) as f64);
    let n = nc + nb;
    for (lj, rho) in l.iter_mut().zip(RHO_GRID) {
        *lj += a * rho.ln() + ab * (n / (rho * nc + nb)).ln();
    }
}

/// `ln E` of a comparative test: the log of the grid's equal-weight average.
pub fn comparative_ln_e(l: &[f64; 8]) -> f64 {
    logsumexp(l) - (l.len() as f64).ln()
}

/// `ln E` of the guard for floor `q0`: equal-weight average over the grid points above `q0`
/// (0 when there are none).
pub fn guard_ln_e(l: &[f64; 6], q0: f64) -> f64 {
    let used: Vec<f64> = GUARD_GRID
        .iter()
        .zip(l)
        .filter(|(q, _)| **q > q0)
        .map(|(_, v)| *v)
        .collect();
    if used.is_empty() {
        return 0.0;
    }
    logsumexp(&used) - (used.len() as f64).ln()
}

/// One guard update: `x_c` failures among `n_c` candidate executions against floor `q0`.
pub fn guard_update(l: &mut [f64; 6], q0: f64, n_c: u64, x_c: u64) {
    if n_c == 0 {
        return;
    }
    let (x, ok) = (x_c as f64, (n_c - x_c) as f64);
    for (lj, q) in l.iter_mut().zip(GUARD_GRID) {
        if q > q0 {
            *lj += x * (q / q0).ln() + ok * ((1.0 - q) / (1.0 - q0)).ln();
        }
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error about 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `k ln q + (n−k) ln(1−q)`, with `0 · ln 0 = 0`.
fn log_lik(k: u64, n: u64, q: f64) -> f64 {
    let (k, m) = (k as f64, (n - k) as f64);
    let a = if k == 0.0 { 0.0 } else { k * q.ln() };
    let b = if m == 0.0 { 0.0 } else { m * (1.0 - q).ln() };
    a + b
}

/// The level `c` the log-likelihood must exceed inside the Beta(1,1)-mixture confidence
/// sequence: `−ln(n+1) − lnC(n,k) − ln(1/α')`.
fn cs_level(k: u64, n: u64, ln_inv_alpha: f64) -> f64 {
    let (kf, nf) = (k as f64, n as f64);
    let ln_choose = ln_gamma(nf + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0);
    -(nf + 1.0).ln() - ln_choose - ln_inv_alpha
}

/// Robbins' Beta(1,1) mixture confidence sequence for a Bernoulli rate after `k` events in `n`
/// trials, at level `α'` given as `ln(1/α')`: `(lower, upper)`. Valid simultaneously for every
/// `n` with probability at least `1 − α'`.
pub fn confidence_interval(k: u64, n: u64, ln_inv_alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let c = cs_level(k, n, ln_inv_alpha);
    let p = k as f64 / n as f64;
    let bisect = |mut inside: f64, mut outside: f64| {
        for _ in 0..60 {
            let mid = 0.5 * (inside + outside);
            if log_lik(k, n, mid) > c {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        0.5 * (inside + outside)
    };
    let lower = if k == 0 { 0.0 } else { bisect(p, 0.0) };
    let upper = if k == n { 1.0 } else { bisect(p, 1.0) };
    (lower, upper)
}

/// Whether the upper end of [`confidence_interval`]`(k, n)` is at most `q`: one evaluation of
/// the log-likelihood instead of a bisection.
pub fn upper_at_most(k: u64, n: u64, q: f64, ln_inv_alpha: f64) -> bool {
    if q >= 1.0 {
        return true;
    }
    if n == 0 || q < k as f64 / n as f64 {
        return false;
    }
    log_lik(k, n, q) <= cs_level(k, n, ln_inv_alpha)
}

/// Lower end of [`confidence_interval`].
pub fn lower_bound(k: u64, n: u64, ln_inv_alpha: f64) -> f64 {
    confidence_interval(k, n, ln_inv_alpha).0
}

/// The statistical rule's verdict, with the numbers its reason quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct StatVerdict {
    /// ADVANCE, MAINTAIN or ROLLBACK.
    pub action: Action,
    /// Why, quoting the statistic, the threshold and the counts.
    pub reason: String,
}

impl PhaseStats {
    /// Adds one closed bucket of the phase. `base` is the baseline's completion over the
    /// rolling window ending with this bucket (1.0 without baseline samples).
    pub fn update(&mut self, bucket: &Counts, base: f64, t: &Thresholds) {
        let b = bucket;
        comparative_update(&mut self.l_fail, b.n_c, b.fail_c, b.n_b, b.fail_b);
        comparative_update(&mut self.l_slow, b.n_c, b.slow_c, b.n_b, b.slow_b);
        if base >= t.rollback_threshold {
            guard_update(&mut self.l_guard, t.q0(), b.n_c, b.fail_c);
        }
        self.totals.add(b);
    }

    /// Adds one closed bucket's agent-metric counts, one per gate.
    pub fn update_metrics(&mut self, buckets: &[MetricCounts]) {
        if self.metrics.len() < buckets.len() {
            self.metrics.resize(buckets.len(), MetricStats::default());
        }
        for (m, b) in self.metrics.iter_mut().zip(buckets) {
            comparative_update(&mut m.l, b.n_c, b.bad_c, b.n_b, b.bad_b);
            m.totals.n_c += b.n_c;
            m.totals.bad_c += b.bad_c;
            m.totals.n_b += b.n_b;
            m.totals.bad_b += b.bad_b;
        }
    }

    /// `ln E` of the failure test.
    pub fn ln_e_fail(&self) -> f64 {
        comparative_ln_e(&self.l_fail)
    }
    /// `ln E` of the slow test.
    pub fn ln_e_slow(&self) -> f64 {
        comparative_ln_e(&self.l_slow)
    }
    /// `ln E` of the guard for floor `q0`.
    pub fn ln_e_guard(&self, q0: f64) -> f64 {
        guard_ln_e(&self.l_guard, q0)
    }

    /// Whether the promotion gate is open for `margin`: for failures and slow executions, the
    /// candidate's upper bound minus the baseline's lower bound is at most `margin`.
    pub fn non_inferior(&self, margin: f64, ln_inv_alpha: f64) -> bool {
        let c = &self.totals;
        let ni = |k_c: u64, k_b: u64| {
            let q = lower_bound(k_b, c.n_b, ln_inv_alpha) + margin;
            upper_at_most(k_c, c.n_c, q, ln_inv_alpha)
        };
        ni(c.fail_c, c.fail_b) && ni(c.slow_c, c.slow_b)
    }

    /// Decides (DECISION-RULE.md §1.4 step 4) in `phase` (not OFF); `base` as in
    /// [`PhaseStats::update`].
    pub fn judge(&self, phase: Phase, base: f64, t: &Thresholds) -> StatVerdict {
        self.judge_with_metrics(phase, base, t, &[])
    }

    /// [`PhaseStats::judge`] with agent-metric gates: a gate's test trips like the failure
    /// test, and promotion also needs every gate within the phase's margin.
    pub fn judge_with_metrics(
        &self,
        phase: Phase,
        base: f64,
        t: &Thresholds,
        gates: &[MetricGate],
    ) -> StatVerdict {
        let p = &t.params;
        let c = &self.totals;
        let m = gates.len() as f64;
        // Bonferroni over 3 phases × (2 + m) tests; with no gates, ln(6 / alpha).
        let thr = (3.0 * (2.0 + m) / p.alpha).ln();
        let no_metric = MetricStats::default();
        let metric = |i: usize| self.metrics.get(i).unwrap_or(&no_metric);
        let counts = |what: &str, k_c: u64, k_b: u64| {
            format!(
                "candidate {k_c} {what} in {} executions, baseline {k_b} in {} this phase",
                c.n_c, c.n_b
            )
        };
        let verdict = |action, reason| StatVerdict { action, reason };
        let (ef, es) = (self.ln_e_fail(), self.ln_e_slow());
        if ef >= thr {
            return verdict(
                Action::Rollback,
                format!(
                    "{phase}: candidate fails more often than baseline: ln E {ef:.3} >= {thr:.3} \
                     ({}; alpha {})",
                    counts("failures", c.fail_c, c.fail_b),
                    p.alpha
                ),
            );
        }
        if es >= thr {
            return verdict(
                Action::Rollback,
                format!(
                    "{phase}: candidate is slow more often than baseline: ln E {es:.3} >= {thr:.3} \
                     ({}; alpha {})",
                    counts("over the latency SLO", c.slow_c, c.slow_b),
                    p.alpha
                ),
            );
        }
        for (i, g) in gates.iter().enumerate() {
            let ms = metric(i);
            let e = comparative_ln_e(&ms.l);
            if e >= thr {
                let mt = &ms.totals;
                return verdict(
                    Action::Rollback,
                    format!(
                        "{phase}: candidate has {} more often than baseline: ln E {e:.3} >= \
                         {thr:.3} (candidate {} in {} executions reporting {}, baseline {} in \
                         {} this phase; alpha {})",
                        g.describe(),
                        mt.bad_c,
                        mt.n_c,
                        g.name,
                        mt.bad_b,
                        mt.n_b,
                        p.alpha
                    ),
                );
            }
        }
        let q0 = t.q0();
        let (eg, tg) = (self.ln_e_guard(q0), p.guard_threshold());
        let floor = format!(
            "ln E {eg:.3} >= {tg:.3} that the failure rate exceeds {q0:.3} ({}; baseline window \
             completion {base:.3})",
            counts("failures", c.fail_c, c.fail_b)
        );
        if eg >= tg {
            if base >= t.rollback_threshold {
                return verdict(
                    Action::Rollback,
                    format!("{phase}: candidate below the absolute floor: {floor}"),
                );
            }
            return verdict(
                Action::Maintain,
                format!(
                    "{phase}: below the floor while the baseline is too ({floor} < {}); holding",
                    t.rollback_threshold
                ),
            );
        }
        let mut stats = format!(
            "ln E fail {ef:.3}, slow {es:.3} < {thr:.3}; {}, {} slow, {}",
            counts("failures", c.fail_c, c.fail_b),
            c.slow_c,
            c.slow_b
        );
        for (i, g) in gates.iter().enumerate() {
            let mt = &metric(i).totals;
            stats.push_str(&format!(
                "; {}: candidate {} in {}, baseline {} in {}",
                g.describe(),
                mt.bad_c,
                mt.n_c,
                mt.bad_b,
                mt.n_b
            ));
        }
        if base < t.slo {
            return verdict(
                Action::Maintain,
                format!(
                    "{phase}: baseline window completion {base:.3} below SLO {}: incident, \
                     not advancing ({stats})",
                    t.slo
                ),
            );
        }
        let (Some(next), Some(margin)) = (phase.next(), p.margin(phase)) else {
            return verdict(
                Action::Maintain,
                format!("{phase}: no evidence against the candidate ({stats})"),
            );
        };
        // 4 + 2m bounds share alpha_promotion; with no gates, ln(4 / alpha_promotion).
        let a = ((4.0 + 2.0 * m) / p.alpha_promotion).ln();
        let metrics_ni = (0..gates.len()).all(|i| {
            let mt = &metric(i).totals;
            let q = lower_bound(mt.bad_b, mt.n_b, a) + margin;
            upper_at_most(mt.bad_c, mt.n_c, q, a)
        });
        if self.non_inferior(margin, a) && metrics_ni {
            let bound =
                |k_c, k_b| confidence_interval(k_c, c.n_c, a).1 - lower_bound(k_b, c.n_b, a);
            return verdict(
                Action::Advance,
                format!(
                    "{phase} -> {next}: candidate not worse than baseline by more than {margin}: \
                     upper(candidate) - lower(baseline) = {:.4} for failures, {:.4} for slow \
                     executions at level {:.4} each ({stats})",
                    bound(c.fail_c, c.fail_b),
                    bound(c.slow_c, c.slow_b),
                    p.alpha_promotion / (4.0 + 2.0 * m)
                ),
            );
        }
        verdict(
            Action::Maintain,
            format!("{phase}: not yet shown within {margin} of baseline ({stats}); holding"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn thresholds_match_the_design() {
        let p = StatisticalParams::default();
        assert!(close(p.threshold(), 6.396930, 1e-6));
        assert!(close(p.guard_threshold(), 8.006368, 1e-6));
        assert!(close(p.ln_inv_alpha_bound(), 4.382027, 1e-6));
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 0.0f64;
        for n in 1..60u32 {
            assert!(close(ln_gamma(f64::from(n)), f, 1e-10 * f.max(1.0)), "{n}");
            f += f64::from(n).ln();
        }
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
    }

    #[test]
    fn confidence_sequence_closed_forms() {
        let a = (1.0f64 / 0.0125).ln();
        // k = 0: the Beta(1,1) mixture has U = 1 − (α'/(n+1))^(1/n).
        let (l, u) = confidence_interval(0, 100, a);
        assert_eq!(l, 0.0);
        assert!(close(u, 1.0 - (0.0125f64 / 101.0).powf(0.01), 1e-9), "{u}");
        assert!(close(u, 0.0860427, 1e-7), "{u}");
        let (l, u) = confidence_interval(1, 20, a);
        assert!(
            close(l, 0.0000298, 1e-7) && close(u, 0.3931054, 1e-7),
            "{l} {u}"
        );
        let (l, u) = confidence_interval(50, 1000, a);
        assert!(
            close(l, 0.0265993, 1e-7) && close(u, 0.0834453, 1e-7),
            "{l} {u}"
        );
        assert_eq!(confidence_interval(0, 0, a), (0.0, 1.0));
        assert_eq!(confidence_interval(7, 7, a).1, 1.0);
    }

    #[test]
    fn cheap_upper_check_agrees_with_bisection() {
        let a = 4.382027;
        for (k, n) in [(0, 10), (3, 10), (10, 10), (50, 1000), (1, 20), (0, 0)] {
            let u = confidence_interval(k, n, a).1;
            for q in [0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 0.999, 1.0] {
                if (q - u).abs() > 1e-9 {
                    assert_eq!(upper_at_most(k, n, q, a), u <= q, "k {k} n {n} q {q} u {u}");
                }
            }
        }
    }

    #[test]
    fn one_comparative_bucket() {
        let mut l = [0.0; 8];
        comparative_update(&mut l, 5, 3, 495, 25);
        let want = [
            0.599518, 1.076744, 1.800832, 2.741363, 3.730134, 4.343882, 4.521645, 4.116504,
        ];
        for (g, w) in l.iter().zip(want) {
            assert!(close(*g, w, 1e-6), "{l:?}");
        }
        assert!(close(comparative_ln_e(&l), 3.618795, 1e-6));
    }

    #[test]
    fn empty_or_all_good_buckets_leave_the_comparative_state_unchanged() {
        let mut l = [0.0; 8];
        comparative_update(&mut l, 0, 0, 50, 3);
        comparative_update(&mut l, 5, 0, 0, 0);
        comparative_update(&mut l, 5, 0, 50, 0);
        assert_eq!(l, [0.0; 8]);
    }

    #[test]
    fn policy_selects_the_rule_and_names_bad_parameters() {
        use super::super::policy::Policy;
        let p = Policy::from_toml("rule = \"statistical\"").unwrap();
        assert_eq!(p.rule, Rule::Statistical);
        assert_eq!(p.statistical, StatisticalParams::default());
        let p = Policy::from_toml("[statistical]\nalpha = 0.05\nmargin_medium = 0.02").unwrap();
        assert_eq!(
            (p.statistical.alpha, p.statistical.margin_medium),
            (0.05, 0.02)
        );
        let e = Policy::from_toml("[statistical]\nalpha = 1.5").unwrap_err();
        assert_eq!(e.field, "statistical.alpha");
        let e = Policy::from_toml("[statistical]\nmargin_small = -0.1").unwrap_err();
        assert_eq!(e.field, "statistical.margin_small");
        assert!(Policy::from_toml("[statistical]\nbeta = 1").is_err());
        assert!(Policy::from_toml("rule = \"magic\"").is_err());
        // The rule is always written; a policy file without it gets the default (statistical),
        // a stored policy without it was written when leaving it out meant "threshold".
        let s = Policy::default();
        assert_eq!(s.rule, Rule::Statistical);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"rule\":\"statistical\""), "{json}");
        assert_eq!(Policy::from_json(&json).unwrap(), s);
        assert_eq!(Policy::from_stored_json(&json).unwrap(), s);
        let t = serde_json::to_string(&Policy::threshold()).unwrap();
        assert!(t.contains("\"rule\":\"threshold\""), "{t}");
        assert_eq!(Policy::from_stored_json(&t).unwrap(), Policy::threshold());
        assert_eq!(Policy::from_json("{}").unwrap().rule, Rule::Statistical);
        assert_eq!(Policy::from_toml("").unwrap().rule, Rule::Statistical);
        let old = r#"{"max_latency_ms":1500.0}"#;
        assert_eq!(Policy::from_stored_json(old).unwrap().rule, Rule::Threshold);
        assert_eq!(
            Policy::from_stored_json(old).unwrap().max_latency_ms,
            1500.0
        );
        assert!(Policy::from_stored_json(r#"{"rule":"magic"}"#).is_err());
    }

    #[test]
    fn metric_gates_parse_validate_and_split_the_budget() {
        use super::super::policy::Policy;
        let p = Policy::from_toml(
            "rule = \"statistical\"\n[[metrics]]\nname = \"cost\"\nbad_above = 0.05\n\
             [[metrics]]\nname = \"quality\"\nbad_below = 0.7",
        )
        .unwrap();
        assert_eq!(p.metrics.len(), 2);
        assert_eq!(p.metrics[0].describe(), "cost > 0.05");
        assert_eq!(p.metrics[1].describe(), "quality < 0.7");
        let extra = BTreeMap::from([("quality".to_owned(), 0.5)]);
        assert_eq!(p.metrics[0].value(Some(0.1), &extra), Some(0.1));
        assert_eq!(p.metrics[1].value(None, &extra), Some(0.5));
        assert!(p.metrics[0].is_bad(0.1) && !p.metrics[0].is_bad(0.05));
        assert!(p.metrics[1].is_bad(0.5) && !p.metrics[1].is_bad(0.7));
        for bad in [
            "[[metrics]]\nname = \"cost\"",
            "[[metrics]]\nname = \"cost\"\nbad_above = 1\nbad_below = 0",
            "[[metrics]]\nname = \"\"\nbad_above = 1",
            "[[metrics]]\nname = \"a\"\nbad_above = 1\n[[metrics]]\nname = \"a\"\nbad_above = 2",
            "[[metrics]]\nname = \"a\"\nbad_above = 1\nsurprise = 3",
        ] {
            let e = Policy::from_toml(bad).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains("metrics") || e.contains("surprise"),
                "{bad}: {e}"
            );
        }
        // With gates, a candidate worse on one metric trips at ln(3(2+m)/alpha).
        let t = Thresholds {
            params: StatisticalParams::default(),
            rollback_threshold: 0.8,
            slo: 0.85,
        };
        let mut st = PhaseStats::default();
        let healthy = Counts {
            n_c: 20,
            n_b: 480,
            fail_b: 20,
            slow_b: 40,
            ..Counts::default()
        };
        for _ in 0..6 {
            st.update(&healthy, 0.95, &t);
            st.update_metrics(&[
                MetricCounts {
                    n_c: 20,
                    bad_c: 8,
                    n_b: 480,
                    bad_b: 24,
                },
                MetricCounts::default(),
            ]);
        }
        let v = st.judge_with_metrics(Phase::Small, 0.95, &t, &p.metrics);
        assert_eq!(v.action, Action::Rollback, "{}", v.reason);
        assert!(
            v.reason.contains("cost > 0.05") && v.reason.contains(">= 7.090"),
            "{}",
            v.reason
        );
        // Without the gate, the same state is healthy; the unreported quality gate alone
        // blocks promotion.
        assert_ne!(st.judge(Phase::Small, 0.95, &t).action, Action::Rollback);
        let mut st = PhaseStats::default();
        for _ in 0..30 {
            st.update(&healthy, 0.95, &t);
            st.update_metrics(&[
                MetricCounts {
                    n_c: 20,
                    bad_c: 1,
                    n_b: 480,
                    bad_b: 24,
                },
                MetricCounts::default(),
            ]);
        }
        assert_eq!(
            st.judge_with_metrics(Phase::Small, 0.95, &t, &p.metrics[..1])
                .action,
            Action::Advance
        );
        let v = st.judge_with_metrics(Phase::Small, 0.95, &t, &p.metrics);
        assert_eq!(v.action, Action::Maintain, "{}", v.reason);
        assert!(
            v.reason.contains("quality < 0.7: candidate 0 in 0"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn logsumexp_is_stable() {
        assert!(close(
            logsumexp(&[1000.0, 1000.0]),
            1000.0 + 2f64.ln(),
            1e-9
        ));
        assert!(close(
            logsumexp(&[-1000.0, -1000.0]),
            -1000.0 + 2f64.ln(),
            1e-9
        ));
        assert_eq!(logsumexp(&[]), f64::NEG_INFINITY);
    }
}
