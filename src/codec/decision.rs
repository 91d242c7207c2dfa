//! `Decision` ⇄ `schemas/decision.avsc` and JSON.

use serde::{Deserialize, Serialize};

use super::avro::{self, Reader};
use super::json::{self, req, Str};
use super::{
    check_finite, check_policy, check_rollout_id, check_scope_part, check_timestamp, position,
    symbol, symbol_named, DecodeError, RecordKind, WireRecord,
};
use crate::engine::{
    Action, BreakerState, Cause, Decision, MetricsSnapshot, Phase, Scope, TrafficPercent,
    VariantMetrics, Warning,
};

const ACTIONS: [Action; 8] = [
    Action::Start,
    Action::Advance,
    Action::Maintain,
    Action::Rollback,
    Action::Pause,
    Action::Resume,
    Action::Retire,
    Action::Warning,
];
const ACTION_NAMES: [&str; 8] = [
    "START", "ADVANCE", "MAINTAIN", "ROLLBACK", "PAUSE", "RESUME", "RETIRE", "WARNING",
];
const PHASE_NAMES: [&str; 5] = ["OFF", "PROBE", "SMALL", "MEDIUM", "FULL"];
const BREAKERS: [BreakerState; 3] = [
    BreakerState::Open,
    BreakerState::HalfOpen,
    BreakerState::Closed,
];
const BREAKER_NAMES: [&str; 3] = ["OPEN", "HALF_OPEN", "CLOSED"];
const CAUSES: [Cause; 2] = [Cause::Automatic, Cause::Operator];
const CAUSE_NAMES: [&str; 2] = ["AUTOMATIC", "OPERATOR"];

/// Schema field names of one side's metrics, for error messages.
struct Side {
    samples: &'static str,
    successes: &'static str,
    completion_rate: &'static str,
    mean: &'static str,
    p50: &'static str,
    p95: &'static str,
    p99: &'static str,
}

const BASELINE: Side = Side {
    samples: "metrics.baseline.samples",
    successes: "metrics.baseline.successes",
    completion_rate: "metrics.baseline.completion_rate",
    mean: "metrics.baseline.mean_latency_ms",
    p50: "metrics.baseline.p50_latency_ms",
    p95: "metrics.baseline.p95_latency_ms",
    p99: "metrics.baseline.p99_latency_ms",
};
const CANDIDATE: Side = Side {
    samples: "metrics.candidate.samples",
    successes: "metrics.candidate.successes",
    completion_rate: "metrics.candidate.completion_rate",
    mean: "metrics.candidate.mean_latency_ms",
    p50: "metrics.candidate.p50_latency_ms",
    p95: "metrics.candidate.p95_latency_ms",
    p99: "metrics.candidate.p99_latency_ms",
};

fn traffic(value: f64) -> Result<TrafficPercent, DecodeError> {
    TrafficPercent::new(value).map_err(|e| DecodeError::invalid("traffic_percent", e.to_string()))
}

fn count(field: &'static str, value: i64) -> Result<u64, DecodeError> {
    u64::try_from(value).map_err(|_| DecodeError::invalid(field, format!("negative count {value}")))
}

fn put_metrics(out: &mut Vec<u8>, m: &VariantMetrics) {
    avro::put_count(out, m.samples);
    avro::put_count(out, m.successes);
    avro::put_double(out, m.completion_rate);
    avro::put_double(out, m.mean_latency_ms);
    avro::put_double(out, m.p50_latency_ms);
    avro::put_double(out, m.p95_latency_ms);
    avro::put_double(out, m.p99_latency_ms);
}

fn read_metrics(r: &mut Reader<'_>, s: &Side) -> Result<VariantMetrics, DecodeError> {
    Ok(VariantMetrics {
        samples: r.count(s.samples)?,
        successes: r.count(s.successes)?,
        completion_rate: check_finite(s.completion_rate, r.double(s.completion_rate)?)?,
        mean_latency_ms: check_finite(s.mean, r.double(s.mean)?)?,
        p50_latency_ms: check_finite(s.p50, r.double(s.p50)?)?,
        p95_latency_ms: check_finite(s.p95, r.double(s.p95)?)?,
        p99_latency_ms: check_finite(s.p99, r.double(s.p99)?)?,
    })
}

/// A WARNING carries a warning and nothing else does (v3).
fn check_warning(action: Action, warning: Option<Warning>) -> Result<Option<Warning>, DecodeError> {
    match (&warning, action == Action::Warning) {
        (None, true) => Err(DecodeError::invalid(
            "warning",
            "a WARNING decision must carry its warning",
        )),
        (Some(_), false) => Err(DecodeError::invalid(
            "warning",
            "only a WARNING decision carries a warning",
        )),
        _ => Ok(warning),
    }
}

fn read_warning(r: &mut Reader<'_>) -> Result<Option<Warning>, DecodeError> {
    if r.index("warning", 2)? == 0 {
        return Ok(None);
    }
    Ok(Some(Warning {
        metric: r.str("warning.metric")?.to_owned(),
        statistic: check_finite("warning.statistic", r.double("warning.statistic")?)?,
        threshold: check_finite("warning.threshold", r.double("warning.threshold")?)?,
        projected_rollback_ms: r.opt_long("warning.projected_rollback_ms")?,
        cleared: r.boolean("warning.cleared")?,
    }))
}

impl WireRecord for Decision {
    const KIND: RecordKind = RecordKind::Decision;
}

impl super::private::Body for Decision {
    fn write_avro(&self, out: &mut Vec<u8>) {
        avro::put_str(out, &self.rollout_id);
        avro::put_count(out, self.sequence);
        avro::put_index(out, position(&ACTIONS, &self.action));
        avro::put_index(out, position(&Phase::ALL, &self.from));
        avro::put_index(out, position(&Phase::ALL, &self.to));
        avro::put_double(out, self.traffic.percent());
        avro::put_index(out, position(&BREAKERS, &self.breaker));
        avro::put_bool(out, self.paused);
        avro::put_str(out, &self.reason);
        avro::put_long(out, self.metrics.window_start);
        avro::put_long(out, self.metrics.window_end);
        put_metrics(out, &self.metrics.baseline);
        put_metrics(out, &self.metrics.candidate);
        avro::put_long(out, self.at);
        avro::put_index(out, position(&CAUSES, &self.cause));
        avro::put_str(out, &self.actor);
        avro::put_opt_str(out, self.candidate_version.as_deref());
        avro::put_opt_str(out, self.baseline_version.as_deref());
        avro::put_opt_str(out, self.policy_json.as_deref());
        avro::put_opt_long(out, self.phase_started_at);
        match &self.warning {
            None => avro::put_index(out, 0),
            Some(w) => {
                avro::put_index(out, 1);
                avro::put_str(out, &w.metric);
                avro::put_double(out, w.statistic);
                avro::put_double(out, w.threshold);
                avro::put_opt_long(out, w.projected_rollback_ms);
                avro::put_bool(out, w.cleared);
            }
        }
        avro::put_opt_str(out, self.scope.segment.as_deref());
        avro::put_opt_str(out, self.scope.region.as_deref());
    }

    fn read_avro(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let rollout_id = check_rollout_id(r.str("rollout_id")?)?;
        let sequence = r.count("sequence")?;
        let action = symbol(&ACTIONS, r.index("action", ACTIONS.len())?);
        let from = symbol(&Phase::ALL, r.index("from_phase", Phase::ALL.len())?);
        let to = symbol(&Phase::ALL, r.index("to_phase", Phase::ALL.len())?);
        let traffic = traffic(r.double("traffic_percent")?)?;
        let breaker = symbol(&BREAKERS, r.index("breaker_state", BREAKERS.len())?);
        let paused = r.boolean("paused")?;
        let reason = r.str("reason")?.to_owned();
        let window_start = r.long("metrics.window_start_ms")?;
        let window_end = r.long("metrics.window_end_ms")?;
        let baseline = read_metrics(r, &BASELINE)?;
        let candidate = read_metrics(r, &CANDIDATE)?;
        let at = check_timestamp("decided_at_ms", r.long("decided_at_ms")?)?;
        let cause = symbol(&CAUSES, r.index("cause", CAUSES.len())?);
        let actor = r.str("actor")?.to_owned();
        let candidate_version = r.opt_str("candidate_version")?.map(str::to_owned);
        let baseline_version = r.opt_str("baseline_version")?.map(str::to_owned);
        let policy_json = r.opt_str("policy_json")?;
        if let Some(p) = policy_json {
            check_policy(p)?;
        }
        // v1 records end here, v2 records after `phase_started_ms` (see `schemas/history/`).
        let phase_started_at = if r.is_empty() {
            None
        } else {
            r.opt_long("phase_started_ms")?
                .map(|t| check_timestamp("phase_started_ms", t))
                .transpose()?
        };
        let warning = if r.is_empty() { None } else { read_warning(r)? };
        let warning = check_warning(action, warning)?;
        // v3 records end here.
        let scope = if r.is_empty() {
            Scope::DEFAULT
        } else {
            Scope {
                segment: check_scope_part("segment", r.opt_str("segment")?)?,
                region: check_scope_part("region", r.opt_str("region")?)?,
            }
        };
        Ok(Decision {
            rollout_id,
            sequence,
            action,
            from,
            to,
            traffic,
            breaker,
            paused,
            reason,
            metrics: MetricsSnapshot {
                window_start,
                window_end,
                baseline,
                candidate,
            },
            at,
            cause,
            actor,
            candidate_version,
            baseline_version,
            policy_json: policy_json.map(str::to_owned),
            phase_started_at,
            warning,
            scope,
        })
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let side = |m: &VariantMetrics| MetricsOut {
            samples: i64::try_from(m.samples).unwrap_or(i64::MAX),
            successes: i64::try_from(m.successes).unwrap_or(i64::MAX),
            completion_rate: m.completion_rate,
            mean_latency_ms: m.mean_latency_ms,
            p50_latency_ms: m.p50_latency_ms,
            p95_latency_ms: m.p95_latency_ms,
            p99_latency_ms: m.p99_latency_ms,
        };
        json::write(
            &DecisionOut {
                rollout_id: &self.rollout_id,
                sequence: i64::try_from(self.sequence).unwrap_or(i64::MAX),
                action: ACTION_NAMES[position(&ACTIONS, &self.action)],
                from_phase: self.from.name(),
                to_phase: self.to.name(),
                traffic_percent: self.traffic.percent(),
                breaker_state: self.breaker.name(),
                paused: self.paused,
                reason: &self.reason,
                metrics: SnapshotOut {
                    window_start_ms: self.metrics.window_start,
                    window_end_ms: self.metrics.window_end,
                    baseline: side(&self.metrics.baseline),
                    candidate: side(&self.metrics.candidate),
                },
                decided_at_ms: self.at,
                cause: CAUSE_NAMES[position(&CAUSES, &self.cause)],
                actor: &self.actor,
                candidate_version: self.candidate_version.as_deref(),
                baseline_version: self.baseline_version.as_deref(),
                policy_json: self.policy_json.as_deref(),
                phase_started_ms: self.phase_started_at,
                warning: self.warning.as_ref().map(|w| WarningOut {
                    metric: &w.metric,
                    statistic: w.statistic,
                    threshold: w.threshold,
                    projected_rollback_ms: w.projected_rollback_ms,
                    cleared: w.cleared,
                }),
                segment: self.scope.segment.as_deref(),
                region: self.scope.region.as_deref(),
            },
            out,
        );
    }

    fn read_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let d: DecisionIn<'_> = json::parse(bytes)?;
        let rollout_id = check_rollout_id(&req(d.rollout_id, "rollout_id")?.0)?;
        let sequence = count("sequence", req(d.sequence, "sequence")?)?;
        let action = symbol_named(
            "action",
            &ACTION_NAMES,
            &ACTIONS,
            &req(d.action, "action")?.0,
        )?;
        let from = symbol_named(
            "from_phase",
            &PHASE_NAMES,
            &Phase::ALL,
            &req(d.from_phase, "from_phase")?.0,
        )?;
        let to = symbol_named(
            "to_phase",
            &PHASE_NAMES,
            &Phase::ALL,
            &req(d.to_phase, "to_phase")?.0,
        )?;
        let traffic = traffic(req(d.traffic_percent, "traffic_percent")?)?;
        let breaker = symbol_named(
            "breaker_state",
            &BREAKER_NAMES,
            &BREAKERS,
            &req(d.breaker_state, "breaker_state")?.0,
        )?;
        let paused = req(d.paused, "paused")?;
        let reason = req(d.reason, "reason")?.0.into_owned();
        let m = req(d.metrics, "metrics")?;
        let metrics = MetricsSnapshot {
            window_start: req(m.window_start_ms, "metrics.window_start_ms")?,
            window_end: req(m.window_end_ms, "metrics.window_end_ms")?,
            baseline: req(m.baseline, "metrics.baseline")?.check(&BASELINE)?,
            candidate: req(m.candidate, "metrics.candidate")?.check(&CANDIDATE)?,
        };
        let at = check_timestamp("decided_at_ms", req(d.decided_at_ms, "decided_at_ms")?)?;
        let cause = symbol_named("cause", &CAUSE_NAMES, &CAUSES, &req(d.cause, "cause")?.0)?;
        let actor = req(d.actor, "actor")?.0.into_owned();
        if let Some(p) = &d.policy_json {
            check_policy(p)?;
        }
        Ok(Decision {
            rollout_id,
            sequence,
            action,
            from,
            to,
            traffic,
            breaker,
            paused,
            reason,
            metrics,
            at,
            cause,
            actor,
            candidate_version: d.candidate_version.map(|s| s.0.into_owned()),
            baseline_version: d.baseline_version.map(|s| s.0.into_owned()),
            policy_json: d.policy_json,
            phase_started_at: d
                .phase_started_ms
                .map(|t| check_timestamp("phase_started_ms", t))
                .transpose()?,
            warning: check_warning(action, d.warning.map(WarningIn::check).transpose()?)?,
            scope: Scope {
                segment: check_scope_part("segment", d.segment.as_ref().map(|s| &*s.0))?,
                region: check_scope_part("region", d.region.as_ref().map(|s| &*s.0))?,
            },
        })
    }
}

#[derive(Serialize)]
struct MetricsOut {
    samples: i64,
    successes: i64,
    completion_rate: f64,
    mean_latency_ms: f64,
    p50_latency_ms: f64,
    p95_latency_ms: f64,
    p99_latency_ms: f64,
}

#[derive(Serialize)]
struct SnapshotOut {
    window_start_ms: i64,
    window_end_ms: i64,
    baseline: MetricsOut,
    candidate: MetricsOut,
}

#[derive(Serialize)]
struct DecisionOut<'a> {
    rollout_id: &'a str,
    sequence: i64,
    action: &'static str,
    from_phase: &'static str,
    to_phase: &'static str,
    traffic_percent: f64,
    breaker_state: &'static str,
    paused: bool,
    reason: &'a str,
    metrics: SnapshotOut,
    decided_at_ms: i64,
    cause: &'static str,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase_started_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<WarningOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
}

#[derive(Serialize)]
struct WarningOut<'a> {
    metric: &'a str,
    statistic: f64,
    threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    projected_rollback_ms: Option<i64>,
    cleared: bool,
}

#[derive(Deserialize)]
struct WarningIn<'a> {
    #[serde(borrow)]
    metric: Option<Str<'a>>,
    statistic: Option<f64>,
    threshold: Option<f64>,
    projected_rollback_ms: Option<i64>,
    cleared: Option<bool>,
}

impl WarningIn<'_> {
    fn check(self) -> Result<Warning, DecodeError> {
        let f = |v: Option<f64>, field| check_finite(field, req(v, field)?);
        Ok(Warning {
            metric: req(self.metric, "warning.metric")?.0.into_owned(),
            statistic: f(self.statistic, "warning.statistic")?,
            threshold: f(self.threshold, "warning.threshold")?,
            projected_rollback_ms: self.projected_rollback_ms,
            cleared: req(self.cleared, "warning.cleared")?,
        })
    }
}

#[derive(Deserialize)]
struct MetricsIn {
    samples: Option<i64>,
    successes: Option<i64>,
    completion_rate: Option<f64>,
    mean_latency_ms: Option<f64>,
    p50_latency_ms: Option<f64>,
    p95_latency_ms: Option<f64>,
    p99_latency_ms: Option<f64>,
}

impl MetricsIn {
    fn check(self, s: &Side) -> Result<VariantMetrics, DecodeError> {
        let f = |v: Option<f64>, field| check_finite(field, req(v, field)?);
        Ok(VariantMetrics {
            samples: count(s.samples, req(self.samples, s.samples)?)?,
            successes: count(s.successes, req(self.successes, s.successes)?)?,
            completion_rate: f(self.completion_rate, s.completion_rate)?,
            mean_latency_ms: f(self.mean_latency_ms, s.mean)?,
            p50_latency_ms: f(self.p50_latency_ms, s.p50)?,
            p95_latency_ms: f(self.p95_latency_ms, s.p95)?,
            p99_latency_ms: f(self.p99_latency_ms, s.p99)?,
        })
    }
}

#[derive(Deserialize)]
struct SnapshotIn {
    window_start_ms: Option<i64>,
    window_end_ms: Option<i64>,
    baseline: Option<MetricsIn>,
    candidate: Option<MetricsIn>,
}

#[derive(Deserialize)]
struct DecisionIn<'a> {
    #[serde(borrow)]
    rollout_id: Option<Str<'a>>,
    sequence: Option<i64>,
    #[serde(borrow)]
    action: Option<Str<'a>>,
    #[serde(borrow)]
    from_phase: Option<Str<'a>>,
    #[serde(borrow)]
    to_phase: Option<Str<'a>>,
    traffic_percent: Option<f64>,
    #[serde(borrow)]
    breaker_state: Option<Str<'a>>,
    paused: Option<bool>,
    #[serde(borrow)]
    reason: Option<Str<'a>>,
    metrics: Option<SnapshotIn>,
    decided_at_ms: Option<i64>,
    #[serde(borrow)]
    cause: Option<Str<'a>>,
    #[serde(borrow)]
    actor: Option<Str<'a>>,
    #[serde(borrow)]
    candidate_version: Option<Str<'a>>,
    #[serde(borrow)]
    baseline_version: Option<Str<'a>>,
    #[serde(default, deserialize_with = "json::policy_text")]
    policy_json: Option<String>,
    phase_started_ms: Option<i64>,
    #[serde(borrow)]
    warning: Option<WarningIn<'a>>,
    #[serde(borrow)]
    segment: Option<Str<'a>>,
    #[serde(borrow)]
    region: Option<Str<'a>>,
}
