//! The rollout policy (the seed's `CircuitBreakerConfig`): thresholds, sample requirements,
//! windows and the phase schedule.
//!
//! # How each threshold is applied (`rule = "threshold"`)
//!
//! At every evaluation the watchdog looks at the candidate's metrics over the rolling window
//! (the last `monitoring_window_ms` of event time, restricted to the current phase) and applies,
//! in this order:
//!
//! 0. in PROBE, SMALL or MEDIUM, the candidate's share of the window's executions is
//!    significantly below `traffic_shortfall_ratio` × the phase's traffic share → **ROLLBACK**
//!    (fail-safe on silence; see [`Policy::traffic_shortfall_ratio`]);
//! 1. fewer than `min_samples_per_phase` candidate samples → **MAINTAIN** (no verdict yet);
//! 2. mean latency `> max_latency_ms` → **ROLLBACK** (latency SLO breached);
//! 3. completion rate `< rollback_threshold` → **ROLLBACK** (the breaker trips);
//! 4. completion rate `< min_task_completion_rate` → **MAINTAIN**, flagged as below SLO: the
//!    rollout is held where it is and never advanced while under the SLO;
//! 5. completion rate `>= advancement_threshold` (and latency within SLO) → **ADVANCE**, except at
//!    FULL where there is nothing above;
//! 6. otherwise → **MAINTAIN** (healthy, not yet convincing).
//!
//! So the three completion thresholds partition the rate axis:
//! `[0, rollback) trip · [rollback, slo) hold, below SLO · [slo, advancement) hold · [advancement, 1] advance`,
//! and validation enforces `rollback_threshold <= min_task_completion_rate <= advancement_threshold`.
//! The seed's example "80 % / 2500 ms → ROLLBACK" trips on rule 2 (latency); a candidate at
//! exactly 0.80 completion with good latency is held, not tripped (the comparison is strict).
//!
//! That is the seed's rule, `rule = "threshold"`. The default, `rule = "statistical"`,
//! instead compares the candidate with its baseline using anytime-valid tests over the buckets
//! closed since the phase began (see [`crate::engine::stats`] for the method and
//! [`StatisticalParams`] for its parameters): ROLLBACK when the candidate fails, or exceeds
//! `max_latency_ms`, significantly more often than the baseline, or its failure rate is shown
//! above `1 − rollback_threshold` while the baseline is healthy; ADVANCE when both rates are
//! shown within the phase's non-inferiority margin of the baseline's, and the baseline's window
//! completion is at least `min_task_completion_rate`. `min_samples_per_phase` and
//! `advancement_threshold` do not apply to it: the tests need no minimum sample count.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::phase::Phase;
use super::scope::{check_scope_name, RollbackScope, Scope, SegmentPolicy, MAX_SCOPES};
use super::stats::{MetricGate, Rule, StatisticalParams};
use super::types::{Rate, TrafficPercent};

/// A policy field failed validation. The message names the field and the allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid policy: `{field}` {message}")]
#[non_exhaustive]
pub struct PolicyError {
    /// The offending field, as spelled in the configuration file.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Candidate traffic of the three trial phases. OFF is always 0 % and FULL always 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Traffic share in PROBE (default 1 %).
    pub probe: TrafficPercent,
    /// Traffic share in SMALL (default 5 %).
    pub small: TrafficPercent,
    /// Traffic share in MEDIUM (default 20 %).
    pub medium: TrafficPercent,
}

impl Default for Schedule {
    /// The brief's schedule: 1 %, 5 %, 20 %, then 100 %.
    fn default() -> Self {
        Self {
            probe: bp(100),
            small: bp(500),
            medium: bp(2_000),
        }
    }
}

const fn bp(v: u16) -> TrafficPercent {
    match TrafficPercent::from_basis_points(v) {
        Some(p) => p,
        None => panic!("basis points above 10000"),
    }
}

impl Schedule {
    /// Candidate traffic in `phase`.
    pub const fn percent(&self, phase: Phase) -> TrafficPercent {
        match phase {
            Phase::Off => TrafficPercent::ZERO,
            Phase::Probe => self.probe,
            Phase::Small => self.small,
            Phase::Medium => self.medium,
            Phase::Full => TrafficPercent::FULL,
        }
    }
}

/// Default minimum completion rate: the brief's SLO, "completion >= 0.85".
const fn default_min_task_completion_rate() -> Rate {
    Rate::from_const(0.85)
}
/// Default latency SLO: the brief's "latency <= 2000 ms" (applied to the window's mean).
const fn default_max_latency_ms() -> f64 {
    2_000.0
}
/// Default first phase of a new rollout: PROBE, as in the seed.
const fn default_initial_phase() -> Phase {
    Phase::Probe
}
/// Default sample requirement: the seed's "at least 10 samples per phase".
const fn default_min_samples_per_phase() -> u32 {
    10
}
/// Default rolling decision window: the seed's 5 minutes.
const fn default_monitoring_window_ms() -> u64 {
    5 * 60 * 1_000
}
/// Default completion rate needed to advance: the seed's 0.95.
const fn default_advancement_threshold() -> Rate {
    Rate::from_const(0.95)
}
/// Default completion rate under which the breaker trips: the seed's 0.80.
const fn default_rollback_threshold() -> Rate {
    Rate::from_const(0.80)
}
/// Default tumbling-window width, which is also the evaluation tick: 10 s, so the 5-minute
/// rolling window is made of 30 sub-buckets (our choice: fine enough to react within seconds,
/// coarse enough to keep memory per rollout small).
const fn default_evaluation_interval_ms() -> u64 {
    10_000
}
/// Default allowed lateness: events up to 5 s behind the newest one of their rollout still land
/// in the right window (our choice: covers producer batching and agent clock skew).
const fn default_allowed_lateness_ms() -> u64 {
    5_000
}

/// Default traffic-shortfall ratio: the candidate must report at least half the share of
/// executions its phase routes to it (our choice: robust to routers that pick a new phase up a
/// few seconds late and to moderately uneven request keys, while a candidate that stopped
/// reporting falls to zero).
const fn default_traffic_shortfall_ratio() -> Rate {
    Rate::from_const(0.5)
}
/// Default grace period of the shortfall check: the first 30 s of a phase are not counted
/// (routers pick a phase change up within seconds; an auto-started rollout's first interval
/// was served before any router knew the rollout).
const fn default_traffic_shortfall_grace_ms() -> u64 {
    30_000
}
/// Default false-alarm bound of the shortfall check, per evaluation: 1e-6 (one false trip in a
/// million evaluations of a candidate that does get `ratio` × its share; at its full share the
/// bound is far smaller).
const fn default_traffic_shortfall_alpha() -> f64 {
    1e-6
}

/// Default soak of a region wave: 10 minutes of event time at FULL before the next wave starts
/// (our choice: two default monitoring windows, so a wave's FULL phase has been judged on
/// full windows twice before more regions are exposed).
const fn default_wave_soak_ms() -> u64 {
    10 * 60 * 1_000
}

fn is_default_wave_soak(ms: &u64) -> bool {
    *ms == default_wave_soak_ms()
}

/// Longest wave soak: a week.
const MAX_WAVE_SOAK_MS: u64 = 7 * 24 * 60 * 60 * 1_000;

/// The rollout policy. Every field has a default, so `{}` is a valid policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Completion-rate SLO in `[0, 1]`: below it a candidate is held, never advanced.
    #[serde(default = "default_min_task_completion_rate")]
    pub min_task_completion_rate: Rate,
    /// Latency SLO in ms, applied to the mean latency of the window; above it → ROLLBACK.
    #[serde(default = "default_max_latency_ms")]
    pub max_latency_ms: f64,
    /// Phase a rollout starts in (PROBE, SMALL or MEDIUM).
    #[serde(default = "default_initial_phase")]
    pub initial_phase: Phase,
    /// Candidate samples needed in the current phase before any verdict.
    #[serde(default = "default_min_samples_per_phase")]
    pub min_samples_per_phase: u32,
    /// Length of the rolling decision window, in ms of event time.
    #[serde(default = "default_monitoring_window_ms")]
    pub monitoring_window_ms: u64,
    /// Completion rate at or above which the candidate advances.
    #[serde(default = "default_advancement_threshold")]
    pub advancement_threshold: Rate,
    /// Completion rate below which the breaker trips (ROLLBACK).
    #[serde(default = "default_rollback_threshold")]
    pub rollback_threshold: Rate,
    /// Candidate traffic per trial phase.
    #[serde(default)]
    pub schedule: Schedule,
    /// Width of the tumbling windows, in ms; an evaluation happens when one closes.
    #[serde(default = "default_evaluation_interval_ms")]
    pub evaluation_interval_ms: u64,
    /// How far behind the newest event of a rollout an event may arrive and still be placed in
    /// its window; later events are counted as late.
    #[serde(default = "default_allowed_lateness_ms")]
    pub allowed_lateness_ms: u64,
    /// Fail-safe on silence: in PROBE..MEDIUM the candidate should report the phase's share of
    /// executions. When its share over the window is significantly below
    /// `traffic_shortfall_ratio` × the routed share, the breaker trips (ROLLBACK): the candidate
    /// crashed, its reports are lost, or its calls time out unreported. `0` disables the check.
    #[serde(default = "default_traffic_shortfall_ratio")]
    pub traffic_shortfall_ratio: Rate,
    /// False-alarm bound of the shortfall check per evaluation, in `(0, 0.5]`: it trips when the
    /// Chernoff bound of the one-sided binomial tail, `exp(-n · KL(k/n ‖ p))`, is below it.
    #[serde(default = "default_traffic_shortfall_alpha")]
    pub traffic_shortfall_alpha: f64,
    /// The first ms of each phase the shortfall check does not count (at most a day): routers
    /// need a moment to follow a phase change.
    #[serde(default = "default_traffic_shortfall_grace_ms")]
    pub traffic_shortfall_grace_ms: u64,
    /// Decision rule: `"statistical"` (default; the candidate against its baseline with
    /// anytime-valid tests, see [`crate::engine::stats`]) or `"threshold"` (the seed's absolute
    /// thresholds, listed above). Always serialized; a policy stored by a version that left it
    /// out meant `"threshold"` (see [`Policy::from_stored_json`]).
    #[serde(default)]
    pub rule: Rule,
    /// Parameters of the statistical rule (ignored by the threshold rule).
    #[serde(default, skip_serializing_if = "StatisticalParams::is_default")]
    pub statistical: StatisticalParams,
    /// Automatic retry: after the breaker tripped (an automatic ROLLBACK, not an operator's
    /// ABORT), a CANDIDATE event reporting a version label other than the rolled-back one
    /// starts the rollout again at `initial_phase`, as an operator's RETRY would. The
    /// rolled-back label is the newest one the candidate's events reported in the judged
    /// window (else the START command's `candidate_version`); events with an empty label never
    /// count. Off by default; omitted from serialized policies when off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_retry: bool,
    /// Agent metrics the statistical rule also compares with the baseline (`[[metrics]]`;
    /// none by default; ignored by the threshold rule). See [`MetricGate`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricGate>,
    /// User segments with their own breaker (`[segments.NAME]`; none by default). See
    /// [`crate::engine::scope`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, SegmentPolicy>,
    /// Regions as ordered waves (`regions = [["eu-west"], ["us-east", "ap-south"]]`; none by
    /// default): the regions of a wave start when every region of the previous wave has been
    /// at FULL for `wave_soak_ms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Vec<String>>,
    /// How long every region of a wave stays at FULL (ms of event time, unpaused) before the
    /// next wave starts, at most a week.
    #[serde(
        default = "default_wave_soak_ms",
        skip_serializing_if = "is_default_wave_soak"
    )]
    pub wave_soak_ms: u64,
    /// Blast radius of an automatic rollback in one scope: `"rollout"` (default: every scope
    /// of the rollout rolls back) or `"scope"` (only the scope that tripped).
    #[serde(default, skip_serializing_if = "RollbackScope::is_default")]
    pub rollback_scope: RollbackScope,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_task_completion_rate: default_min_task_completion_rate(),
            max_latency_ms: default_max_latency_ms(),
            initial_phase: default_initial_phase(),
            min_samples_per_phase: default_min_samples_per_phase(),
            monitoring_window_ms: default_monitoring_window_ms(),
            advancement_threshold: default_advancement_threshold(),
            rollback_threshold: default_rollback_threshold(),
            schedule: Schedule::default(),
            evaluation_interval_ms: default_evaluation_interval_ms(),
            allowed_lateness_ms: default_allowed_lateness_ms(),
            traffic_shortfall_ratio: default_traffic_shortfall_ratio(),
            traffic_shortfall_alpha: default_traffic_shortfall_alpha(),
            traffic_shortfall_grace_ms: default_traffic_shortfall_grace_ms(),
            rule: Rule::default(),
            auto_retry: false,
            statistical: StatisticalParams::default(),
            metrics: Vec::new(),
            segments: BTreeMap::new(),
            regions: Vec::new(),
            wave_soak_ms: default_wave_soak_ms(),
            rollback_scope: RollbackScope::Rollout,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Longest window we accept: one day. Longer ones would need more sub-buckets than a
/// per-rollout budget allows.
const MAX_WINDOW_MS: u64 = 24 * 60 * 60 * 1_000;
/// Most sub-buckets in one rolling window; bounds memory per rollout.
const MAX_BUCKETS_PER_WINDOW: u64 = 1_440;

impl Policy {
    /// Checks every bound and the relations between fields.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.max_latency_ms.is_finite() && self.max_latency_ms > 0.0) {
            return Err(PolicyError::new(
                "max_latency_ms",
                format!("must be a finite number > 0, got {}", self.max_latency_ms),
            ));
        }
        if matches!(self.initial_phase, Phase::Off | Phase::Full) {
            return Err(PolicyError::new(
                "initial_phase",
                format!("must be PROBE, SMALL or MEDIUM, got {}", self.initial_phase),
            ));
        }
        if self.min_samples_per_phase == 0 || self.min_samples_per_phase > 1_000_000 {
            return Err(PolicyError::new(
                "min_samples_per_phase",
                format!(
                    "must be in [1, 1000000], got {}",
                    self.min_samples_per_phase
                ),
            ));
        }
        if self.evaluation_interval_ms < 100 || self.evaluation_interval_ms > MAX_WINDOW_MS {
            return Err(PolicyError::new(
                "evaluation_interval_ms",
                format!(
                    "must be in [100, {MAX_WINDOW_MS}], got {}",
                    self.evaluation_interval_ms
                ),
            ));
        }
        let w = self.monitoring_window_ms;
        let e = self.evaluation_interval_ms;
        if w < e || w > MAX_WINDOW_MS || w % e != 0 || w / e > MAX_BUCKETS_PER_WINDOW {
            return Err(PolicyError::new(
                "monitoring_window_ms",
                format!(
                    "must be a multiple of evaluation_interval_ms ({e}) in [{e}, {MAX_WINDOW_MS}] \
                     and at most {MAX_BUCKETS_PER_WINDOW} intervals long, got {w}"
                ),
            ));
        }
        if self.allowed_lateness_ms > w {
            return Err(PolicyError::new(
                "allowed_lateness_ms",
                format!(
                    "must be in [0, monitoring_window_ms = {w}], got {}",
                    self.allowed_lateness_ms
                ),
            ));
        }
        if !(self.traffic_shortfall_alpha > 0.0 && self.traffic_shortfall_alpha <= 0.5) {
            return Err(PolicyError::new(
                "traffic_shortfall_alpha",
                format!("must be in (0, 0.5], got {}", self.traffic_shortfall_alpha),
            ));
        }
        if self.traffic_shortfall_grace_ms > MAX_WINDOW_MS {
            return Err(PolicyError::new(
                "traffic_shortfall_grace_ms",
                format!(
                    "must be in [0, {MAX_WINDOW_MS}], got {}",
                    self.traffic_shortfall_grace_ms
                ),
            ));
        }
        let (rb, slo, adv) = (
            self.rollback_threshold,
            self.min_task_completion_rate,
            self.advancement_threshold,
        );
        if rb > slo {
            return Err(PolicyError::new(
                "rollback_threshold",
                format!("must be in [0, min_task_completion_rate = {slo}], got {rb}"),
            ));
        }
        if slo > adv {
            return Err(PolicyError::new(
                "min_task_completion_rate",
                format!("must be in [rollback_threshold = {rb}, advancement_threshold = {adv}], got {slo}"),
            ));
        }
        self.statistical
            .validate()
            .and_then(|()| super::stats::validate_gates(&self.metrics))
            .map_err(|(field, message)| PolicyError::new(field, message))?;
        validate_schedule(&self.schedule)
            .map_err(|(field, message)| PolicyError::new(field, message))?;
        self.validate_scopes()
    }

    fn validate_scopes(&self) -> Result<(), PolicyError> {
        for (name, seg) in &self.segments {
            check_scope_name(name).map_err(|m| PolicyError::new("segments", m))?;
            if seg.initial_phase == Some(Phase::Off) {
                return Err(PolicyError::new(
                    "segments",
                    format!(
                        "`{name}`: initial_phase must be PROBE, SMALL, MEDIUM or FULL, got OFF"
                    ),
                ));
            }
            if seg.trail_phases > 3 {
                return Err(PolicyError::new(
                    "segments",
                    format!(
                        "`{name}`: trail_phases must be in [0, 3], got {}",
                        seg.trail_phases
                    ),
                ));
            }
            if let Some(s) = &seg.schedule {
                validate_schedule(s).map_err(|(field, message)| {
                    PolicyError::new("segments", format!("`{name}`: {field} {message}"))
                })?;
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, wave) in self.regions.iter().enumerate() {
            if wave.is_empty() {
                return Err(PolicyError::new(
                    "regions",
                    format!(
                        "wave {} is empty; every wave lists at least one region",
                        i + 1
                    ),
                ));
            }
            for r in wave {
                check_scope_name(r).map_err(|m| PolicyError::new("regions", m))?;
                if !seen.insert(r.as_str()) {
                    return Err(PolicyError::new(
                        "regions",
                        format!("region `{r}` is listed twice; a region belongs to one wave"),
                    ));
                }
            }
        }
        let scopes = (self.segments.len() + 1) * (seen.len() + 1);
        if scopes > MAX_SCOPES {
            return Err(PolicyError::new(
                "segments",
                format!(
                    "(segments + 1) x (regions + 1) must be at most {MAX_SCOPES} scopes, got {scopes}"
                ),
            ));
        }
        if self.wave_soak_ms > MAX_WAVE_SOAK_MS {
            return Err(PolicyError::new(
                "wave_soak_ms",
                format!(
                    "must be in [0, {MAX_WAVE_SOAK_MS}], got {}",
                    self.wave_soak_ms
                ),
            ));
        }
        Ok(())
    }

    /// Parses and validates a policy from TOML.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy =
            toml::from_str(text).map_err(|e| PolicyError::new("policy", e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses and validates a policy from JSON.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy =
            serde_json::from_str(text).map_err(|e| PolicyError::new("policy", e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses a policy stored in a decision record (`policy_json`). Versions before the
    /// statistical rule became the default left `rule` out of the policies they stored when it
    /// was `"threshold"`, so a stored policy without `rule` is read as the threshold rule:
    /// a restart after an upgrade keeps every rollout on the rule it was decided with.
    pub fn from_stored_json(text: &str) -> Result<Self, PolicyError> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PolicyError::new("policy", e.to_string()))?;
        Self::stored_rule_default(&mut value);
        let policy: Policy =
            serde_json::from_value(value).map_err(|e| PolicyError::new("policy", e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// In a policy stored as JSON before the rule was always written, a missing `rule` meant
    /// `"threshold"`: this writes it in (leaves anything but a JSON object alone).
    pub fn stored_rule_default(value: &mut serde_json::Value) {
        if let Some(fields) = value.as_object_mut() {
            fields
                .entry("rule")
                .or_insert_with(|| serde_json::Value::from("threshold"));
        }
    }

    /// The default policy with the seed's threshold rule instead of the statistical one (the
    /// embedded [`crate::controller::Controller`] judges open windows and takes only this rule).
    pub fn threshold() -> Self {
        Self {
            rule: Rule::Threshold,
            ..Self::default()
        }
    }

    /// Whether the policy names segments or regions (else the rollout has only the default
    /// scope and behaves exactly as before scopes existed).
    pub fn has_scopes(&self) -> bool {
        !self.segments.is_empty() || !self.regions.is_empty()
    }

    /// The scope an event with these `segment` and `region` falls in, or `None` when it is out
    /// of scope (an excluded segment, or a region no wave lists). See [`crate::engine::scope`].
    pub fn place(&self, segment: Option<&str>, region: Option<&str>) -> Option<Scope> {
        if !self.has_scopes() {
            return Some(Scope::DEFAULT);
        }
        let segment = match segment.and_then(|s| self.segments.get_key_value(s)) {
            Some((_, seg)) if seg.excluded => return None,
            Some((name, _)) => Some(name.clone()),
            None => None,
        };
        let region = match region {
            Some(r) if !self.regions.is_empty() => {
                self.wave_of(r)?;
                Some(r.to_owned())
            }
            _ => None,
        };
        Some(Scope { segment, region })
    }

    /// Every scope the policy declares besides the default one, excluded segments included,
    /// in order.
    pub fn scopes(&self) -> Vec<Scope> {
        let segments = std::iter::once(None).chain(self.segments.keys().map(Some));
        let regions: Vec<Option<&String>> = std::iter::once(None)
            .chain(self.regions.iter().flatten().map(Some))
            .collect();
        let mut out = Vec::new();
        for s in segments {
            for r in &regions {
                if s.is_some() || r.is_some() {
                    out.push(Scope {
                        segment: s.cloned(),
                        region: r.cloned(),
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// The wave (0-based) `region` belongs to, if listed.
    pub fn wave_of(&self, region: &str) -> Option<usize> {
        self.regions
            .iter()
            .position(|wave| wave.iter().any(|r| r == region))
    }

    /// The settings of `scope`'s segment, if it has a named one.
    pub fn segment_of(&self, scope: &Scope) -> Option<&SegmentPolicy> {
        scope.segment.as_deref().and_then(|s| self.segments.get(s))
    }

    /// The schedule of `scope`: its segment's, else the policy's.
    pub fn schedule_of(&self, scope: &Scope) -> &Schedule {
        self.segment_of(scope)
            .and_then(|s| s.schedule.as_ref())
            .unwrap_or(&self.schedule)
    }

    /// The first phase of `scope`: its segment's, else the policy's `initial_phase`.
    pub fn initial_phase_of(&self, scope: &Scope) -> Phase {
        self.segment_of(scope)
            .and_then(|s| s.initial_phase)
            .unwrap_or(self.initial_phase)
    }

    /// Rolling-window length in sub-buckets.
    pub fn buckets_per_window(&self) -> u64 {
        self.monitoring_window_ms / self.evaluation_interval_ms
    }
}

/// Checks a schedule: `0 < probe < small < medium < 100`.
fn validate_schedule(s: &Schedule) -> Result<(), (&'static str, String)> {
    if s.probe == TrafficPercent::ZERO {
        return Err((
            "schedule.probe",
            format!("must be in (0, 100), got {}", s.probe),
        ));
    }
    if s.small <= s.probe {
        return Err((
            "schedule.small",
            format!(
                "must be in (schedule.probe = {}, 100), got {}",
                s.probe, s.small
            ),
        ));
    }
    if s.medium <= s.small || s.medium >= TrafficPercent::FULL {
        return Err((
            "schedule.medium",
            format!(
                "must be in (schedule.small = {}, 100), got {}",
                s.small, s.medium
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_and_valid() {
        let p = Policy::default();
        p.validate().unwrap();
        assert_eq!(p.min_task_completion_rate.get(), 0.85);
        assert_eq!(p.max_latency_ms, 2000.0);
        assert_eq!(p.min_samples_per_phase, 10);
        assert_eq!(p.monitoring_window_ms, 300_000);
        assert_eq!(p.advancement_threshold.get(), 0.95);
        assert_eq!(p.rollback_threshold.get(), 0.80);
        assert_eq!(p.schedule.percent(Phase::Probe).percent(), 1.0);
        assert_eq!(p.schedule.percent(Phase::Small).percent(), 5.0);
        assert_eq!(p.schedule.percent(Phase::Medium).percent(), 20.0);
        assert_eq!(Policy::from_toml("").unwrap(), p);
        assert_eq!(Policy::from_json("{}").unwrap(), p);
    }

    fn err_of(toml_text: &str) -> PolicyError {
        Policy::from_toml(toml_text).unwrap_err()
    }

    #[test]
    fn scopes_are_validated_and_placed() {
        let e = err_of("regions = [[\"eu\"], [\"us\", \"eu\"]]");
        assert_eq!(e.field, "regions");
        assert!(e.message.contains("`eu` is listed twice"), "{e}");
        assert_eq!(err_of("regions = [[]]").field, "regions");
        assert_eq!(err_of("regions = [[\"e u\"]]").field, "regions");
        let e = err_of("[segments.internal]\ntrail_phases = 4");
        assert!(e.message.contains("`internal`: trail_phases"), "{e}");
        let e = err_of("[segments.a]\nschedule = { probe = 10, small = 5 }");
        assert!(e.message.contains("schedule.small"), "{e}");
        assert_eq!(
            err_of("[segments.a]\ninitial_phase = \"OFF\"").field,
            "segments"
        );
        assert_eq!(err_of("[segments.a]\nsurprise = 1").field, "policy");
        assert_eq!(err_of("wave_soak_ms = 604800001").field, "wave_soak_ms");
        let many: String = (0..8).map(|i| format!("[segments.s{i}]\n")).collect();
        let e = err_of(&format!(
            "regions = [[\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\"]]\n{many}"
        ));
        assert!(e.message.contains("at most 64 scopes"), "{e}");

        let p = Policy::from_toml(
            "regions = [[\"eu\"], [\"us\"]]\n[segments.vip]\n[segments.banned]\nexcluded = true",
        )
        .unwrap();
        assert_eq!(p.place(None, None), Some(Scope::DEFAULT));
        assert_eq!(
            p.place(Some("vip"), Some("us")),
            Some(Scope::new(Some("vip"), Some("us")))
        );
        assert_eq!(
            p.place(Some("free"), Some("eu")),
            Some(Scope::new(None, Some("eu")))
        );
        assert_eq!(p.place(Some("banned"), None), None);
        assert_eq!(p.place(None, Some("mars")), None);
        assert_eq!(p.scopes().len(), 3 * 3 - 1);
        assert_eq!(p.wave_of("us"), Some(1));
        // Without scopes, segment and region are ignored, and nothing new is serialized.
        let plain = Policy::default();
        assert_eq!(plain.place(Some("vip"), Some("mars")), Some(Scope::DEFAULT));
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            !json.contains("segments") && !json.contains("wave_soak_ms"),
            "{json}"
        );
        assert_eq!(
            Policy::from_json(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let e = err_of("min_task_completion_rate = 1.5");
        assert!(e.to_string().contains("min_task_completion_rate"), "{e}");
        assert!(e.to_string().contains("[0, 1]"), "{e}");
        let e = err_of("rollback_threshold = 0.9");
        assert_eq!(e.field, "rollback_threshold");
        let e = err_of("advancement_threshold = 0.5");
        assert_eq!(e.field, "min_task_completion_rate");
        let e = err_of("max_latency_ms = -3");
        assert_eq!(e.field, "max_latency_ms");
        let e = err_of("min_samples_per_phase = 0");
        assert_eq!(e.field, "min_samples_per_phase");
        let e = err_of("monitoring_window_ms = 12345");
        assert_eq!(e.field, "monitoring_window_ms");
        let e = err_of("initial_phase = \"FULL\"");
        assert_eq!(e.field, "initial_phase");
        let e = err_of("[schedule]\nsmall = 0.5");
        assert_eq!(e.field, "schedule.small");
        let e = err_of("[schedule]\nmedium = 100");
        assert_eq!(e.field, "schedule.medium");
        let e = err_of("[schedule]\nprobe = 120");
        assert!(e.to_string().contains("probe"), "{e}");
        let e = err_of("surprise = 1");
        assert!(e.to_string().contains("surprise"), "{e}");
    }
}
