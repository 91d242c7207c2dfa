//! Decision-quality simulator behind `rollout-breaker bench quality`: how often each decision
//! rule rolls back good candidates, misses bad ones, and how many bad requests a bad candidate
//! serves before it is rolled back.
//!
//! Every simulated rollout is fed, event by event, through the real [`Engine`] (its buckets,
//! watermark and allowed lateness, per-phase windows and resets), in a closed loop: each
//! request goes to the candidate with the probability of the phase the engine last published,
//! as a router would. Traffic is Poisson at the given rate (piecewise-constant bursts in the
//! noisy scenario), outcomes are Bernoulli, latencies log-normal (σ = 0.5, so 10 % of requests
//! at a 1200 ms mean exceed the 2000 ms SLO); in the guardrail scenario agents also report a
//! `guardrail_triggers` metric, and policies gate on it. Seeded and reproducible: rollout `i`
//! of a scenario draws from its own generator, the same under every rule and every thread
//! count.
//!
//! Not part of the library's API (hidden from its docs): it serves the binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::engine::stats::{MetricGate, Rule};
use crate::engine::{
    Action, Decision, Engine, EngineOptions, ExecutionEvent, LatencyMs, Phase, Policy, Variant,
};

/// Event time of every simulated rollout's first request (a bucket boundary).
const T0: i64 = 1_764_201_600_000;
/// Latency spread: log-normal σ.
const LATENCY_SIGMA: f64 = 0.5;
/// The agent metric of the guardrail scenario.
const GUARDRAILS: &str = "guardrail_triggers";

/// How one version behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Behaviour {
    /// Probability that a request completes its task.
    pub success: f64,
    /// Mean latency in ms.
    pub latency_ms: f64,
}

const fn b(success: f64, latency_ms: f64) -> Behaviour {
    Behaviour {
        success,
        latency_ms,
    }
}

/// When the candidate behaves badly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Onset {
    /// Never: a good candidate.
    Never,
    /// From its first request.
    FromStart,
    /// From the moment the rollout enters this phase.
    AtPhase(Phase),
    /// Alternating: good for `period_ms`, bad for `period_ms`, and so on.
    Flapping {
        /// Length of each half period, ms.
        period_ms: i64,
    },
    /// From `delay_ms` after the rollout enters this phase (a degradation late in a phase;
    /// if the rollout has left the phase by then, it is bad from then on anyway).
    AfterPhase {
        /// The phase.
        phase: Phase,
        /// Delay after entering it, ms.
        delay_ms: i64,
    },
    /// A slow drift from the first request: the candidate's success probability moves linearly
    /// from the good to the bad behaviour's over `over_ms`, then stays there.
    Drift {
        /// Duration of the drift, ms.
        over_ms: i64,
    },
}

/// One simulated situation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Short name shown in the table.
    pub name: &'static str,
    /// The baseline's behaviour.
    pub baseline: Behaviour,
    /// The candidate's behaviour while good.
    pub candidate: Behaviour,
    /// The candidate's behaviour while bad (see `onset`).
    pub bad: Behaviour,
    /// When the candidate is bad.
    pub onset: Onset,
    /// A shared outage: `(from_ms, to_ms, success)` after the start, both versions' success
    /// probability replaced by `success`.
    pub outage: Option<(i64, i64, f64)>,
    /// Noisy, bursty traffic: every 30 s the rate is multiplied by a factor in [0.2, 2.5] and
    /// both versions' success probability drops by a shared amount in [0, 0.08].
    pub noisy: bool,
    /// Agents report `guardrail_triggers` (0 or 1): `(probability normally, probability while
    /// the candidate is bad)`. Policies then gate on it (`guardrail_triggers > 0`).
    pub guardrails: Option<(f64, f64)>,
}

impl Scenario {
    /// Whether the candidate is ever bad (a degradation to catch).
    pub fn is_bad(&self) -> bool {
        self.onset != Onset::Never
    }
}

/// The scenarios of issue 9.
pub fn scenarios() -> Vec<Scenario> {
    let good = |name, p| Scenario {
        name,
        baseline: b(p, 1200.0),
        candidate: b(p, 1200.0),
        bad: b(p, 1200.0),
        onset: Onset::Never,
        outage: None,
        noisy: false,
        guardrails: None,
    };
    let degrading = |name, bad, onset| Scenario {
        bad,
        onset,
        ..good(name, 0.95)
    };
    vec![
        good("good 0.99", 0.99),
        good("good 0.95", 0.95),
        good("good 0.92", 0.92),
        good("good 0.90", 0.90),
        Scenario {
            outage: Some((20_000, 620_000, 0.60)),
            ..good("shared outage 10 min", 0.95)
        },
        Scenario {
            noisy: true,
            ..good("noisy bursty", 0.95)
        },
        degrading("bad from start", b(0.75, 1200.0), Onset::FromStart),
        degrading(
            "bad at SMALL",
            b(0.75, 1200.0),
            Onset::AtPhase(Phase::Small),
        ),
        degrading("latency 1200->2300", b(0.95, 2300.0), Onset::FromStart),
        degrading(
            "flapping",
            b(0.60, 1200.0),
            Onset::Flapping { period_ms: 60_000 },
        ),
        Scenario {
            guardrails: Some((0.05, 0.20)),
            ..degrading("guardrails 5%->20%", b(0.95, 1200.0), Onset::FromStart)
        },
    ]
}

/// The early-warning scenarios of issue 15 (`bench quality --warnings`): a slow drift, and
/// the degradation of "bad at SMALL" starting 60 s into SMALL instead of as it begins (good
/// candidates spend 80 s / 120 s / 180 s in SMALL at 50 requests/s, p10 / p50 / p90, so the
/// onset nearly always falls in SMALL there).
pub fn warning_scenarios() -> Vec<Scenario> {
    let s = &scenarios()[7]; // bad at SMALL
    vec![
        Scenario {
            name: "drift 0.95->0.70 in 20 min",
            bad: b(0.70, 1200.0),
            onset: Onset::Drift { over_ms: 1_200_000 },
            ..s.clone()
        },
        Scenario {
            name: "bad 60 s into SMALL",
            onset: Onset::AfterPhase {
                phase: Phase::Small,
                delay_ms: 60_000,
            },
            ..s.clone()
        },
    ]
}

/// What happened to one simulated rollout (times in ms after its first request).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Outcome {
    /// When it was rolled back, if it was.
    pub rolled_back_at: Option<i64>,
    /// When it reached FULL, if it did.
    pub full_at: Option<i64>,
    /// When the candidate first behaved badly, if it did.
    pub onset_at: Option<i64>,
    /// Bad requests (failed, over the latency SLO, or with a guardrail triggered) the candidate
    /// served from the onset until the rollback (or the end of the simulation).
    pub exposure: u64,
    /// WARNING decisions that raised a warning (clears not counted).
    pub warnings: u32,
    /// When the first warning at or after the onset was raised (any first warning in good
    /// scenarios).
    pub warned_at: Option<i64>,
    /// `exposure` when that warning was raised.
    pub exposure_at_warning: Option<u64>,
    /// Simulated ms until the rollback, FULL or the horizon, whichever came first (the time a
    /// good candidate spends in trial phases: the denominator of the false-warning rate).
    pub ended_at: i64,
}

/// A decision rule as simulated: the rule, and for the threshold rule its sample minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleSetting {
    /// The rule.
    pub rule: Rule,
    /// `min_samples_per_phase` (only the threshold rule reads it).
    pub min_samples: u32,
    /// Statistical rule: the early warning's detector also rolls back, at the level of this
    /// average run length in hours (`statistical.warning_rollback_arl_hours`); 0: it only warns.
    #[serde(default)]
    pub detector_rollback_h: u32,
}

impl RuleSetting {
    /// The policy this setting is simulated with: the defaults, with the rule and minimum.
    pub fn policy(&self) -> Policy {
        let mut p = Policy {
            rule: self.rule,
            min_samples_per_phase: self.min_samples,
            ..Policy::default()
        };
        p.statistical.warning_rollback_arl_hours = f64::from(self.detector_rollback_h);
        p
    }

    /// Name in the table: `statistical`, `threshold` (default minimum) or `threshold min N`.
    pub fn label(&self) -> String {
        match self.rule {
            Rule::Statistical if self.detector_rollback_h > 0 => format!(
                "statistical + detector rollback (ARL {} h)",
                self.detector_rollback_h
            ),
            Rule::Statistical => "statistical".to_owned(),
            Rule::Threshold if self.min_samples == Policy::default().min_samples_per_phase => {
                "threshold".to_owned()
            }
            Rule::Threshold => format!("threshold min {}", self.min_samples),
        }
    }
}

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rollouts per scenario and rule.
    pub rollouts: usize,
    /// Requests per second, both versions together.
    pub rate: f64,
    /// Rules to compare.
    pub rules: Vec<RuleSetting>,
    /// Seed of every generator.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Simulated time after which a rollout that neither reached FULL nor rolled back stops.
    pub horizon_ms: i64,
    /// Only the scenarios whose name contains one of these (all when empty).
    pub only: Vec<String>,
    /// Print progress on stderr.
    pub progress: bool,
    /// Also simulate the early-warning scenarios ([`warning_scenarios`]).
    pub warnings: bool,
    /// `statistical.warning_arl_hours` of the statistical policies (`None`: the default).
    pub warning_arl_hours: Option<f64>,
}

/// Standard normal draw (Box–Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How long a bad candidate that reached FULL is still watched for a rollback (a rollback
/// from FULL counts as caught, with everything it served until then as exposure).
pub const FULL_WATCH_MS: i64 = 10 * 60 * 1000;

/// Plays one rollout of `scenario` under `policy`.
pub fn simulate(
    scenario: &Scenario,
    policy: &Policy,
    rate: f64,
    seed: u64,
    horizon_ms: i64,
) -> Outcome {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut engine = Engine::new(policy.clone(), EngineOptions { auto_start: true });
    let mut event = ExecutionEvent::new(
        "quality",
        Variant::Baseline,
        true,
        LatencyMs::new(0.0).unwrap_or_else(|_| unreachable!()),
        T0,
    );
    let mut out: Vec<Decision> = Vec::new();
    let mut outcome = Outcome::default();
    let mut phase = Phase::Off;
    let mut share = 0.0;
    let mut t = 0.0f64; // ms after T0
    let (mut segment, mut rate_factor, mut shared_drop) = (-1i64, 1.0, 0.0);
    let mut entered_bad_phase: Option<i64> = None;
    loop {
        if scenario.noisy && (t / 30_000.0) as i64 != segment {
            segment = (t / 30_000.0) as i64;
            rate_factor = rng.random_range(0.2..2.5);
            shared_drop = rng.random_range(0.0..0.08);
        }
        t += -(1.0 - rng.random::<f64>()).ln() * 1000.0 / (rate * rate_factor);
        let now = t as i64;
        if now > horizon_ms {
            break;
        }
        let candidate = phase != Phase::Off && rng.random::<f64>() < share;
        let bad_now = candidate
            && match scenario.onset {
                Onset::Never => false,
                Onset::FromStart => true,
                Onset::AtPhase(_) => entered_bad_phase.is_some(),
                Onset::Flapping { period_ms } => (now / period_ms) % 2 == 1,
                Onset::AfterPhase { delay_ms, .. } => {
                    entered_bad_phase.is_some_and(|t| now >= t + delay_ms)
                }
                Onset::Drift { .. } => true,
            };
        if bad_now && outcome.onset_at.is_none() {
            outcome.onset_at = Some(now);
        }
        let mut behaviour = match (candidate, bad_now) {
            (false, _) => scenario.baseline,
            (true, false) => scenario.candidate,
            (true, true) => scenario.bad,
        };
        if let (true, Onset::Drift { over_ms }) = (candidate, scenario.onset) {
            let f = (now as f64 / over_ms as f64).min(1.0);
            behaviour.success = scenario.candidate.success
                + f * (scenario.bad.success - scenario.candidate.success);
        }
        if let Some((from, to, success)) = scenario.outage {
            if (from..to).contains(&now) {
                behaviour.success = success;
            }
        }
        behaviour.success -= shared_drop;
        let success = rng.random::<f64>() < behaviour.success;
        let latency = behaviour.latency_ms
            * (LATENCY_SIGMA * normal(&mut rng) - LATENCY_SIGMA * LATENCY_SIGMA / 2.0).exp();
        let mut triggered = false;
        if let Some((normal_p, bad_p)) = scenario.guardrails {
            triggered = rng.random::<f64>() < if bad_now { bad_p } else { normal_p };
            let v = f64::from(u8::from(triggered));
            match event.extra.get_mut(GUARDRAILS) {
                Some(x) => *x = v,
                None => {
                    event.extra.insert(GUARDRAILS.to_owned(), v);
                }
            }
        }
        if bad_now && (!success || latency > policy.max_latency_ms || triggered) {
            outcome.exposure += 1;
        }
        event.variant = if candidate {
            Variant::Candidate
        } else {
            Variant::Baseline
        };
        event.success = success;
        event.latency = LatencyMs::new(latency).unwrap_or_else(|_| unreachable!());
        event.timestamp = T0 + now;
        out.clear();
        engine.apply_event(&event, &mut out);
        for d in out.iter().filter(|d| d.is_published()) {
            phase = d.to;
            share = policy.schedule.percent(phase).percent() / 100.0;
            if let Onset::AtPhase(p) | Onset::AfterPhase { phase: p, .. } = scenario.onset {
                if phase == p && entered_bad_phase.is_none() {
                    entered_bad_phase = Some(now);
                }
            }
            match d.action {
                Action::Warning if d.warning.as_ref().is_some_and(|w| !w.cleared) => {
                    outcome.warnings += 1;
                    let after_onset = !scenario.is_bad() || outcome.onset_at.is_some();
                    if outcome.warned_at.is_none() && after_onset {
                        outcome.warned_at = Some(now);
                        outcome.exposure_at_warning = Some(outcome.exposure);
                    }
                }
                Action::Rollback => outcome.rolled_back_at = Some(now),
                Action::Advance if phase == Phase::Full => outcome.full_at = Some(now),
                _ => {}
            }
        }
        // A good candidate's simulation ends at FULL. A bad one's goes on at FULL (where the
        // breaker can still trip) until it is rolled back, for at most `FULL_WATCH_MS`.
        let watched_out = outcome
            .full_at
            .is_some_and(|full| !scenario.is_bad() || now - full > FULL_WATCH_MS);
        if outcome.rolled_back_at.is_some() || watched_out {
            break;
        }
    }
    outcome.ended_at = outcome
        .rolled_back_at
        .or(outcome.full_at)
        .unwrap_or(horizon_ms);
    outcome
}

/// Summary of one scenario under one rule.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Scenario name.
    pub scenario: &'static str,
    /// Rule, as `RuleSetting::label` names it.
    pub rule: String,
    /// Requests per second.
    pub rate: f64,
    /// Rollouts simulated.
    pub rollouts: usize,
    /// Whether the candidate is bad in this scenario.
    pub bad_candidate: bool,
    /// Good scenarios: fraction of rollouts rolled back.
    pub false_rollback_rate: Option<f64>,
    /// Bad scenarios: fraction not rolled back within the horizon, nor within `FULL_WATCH_MS`
    /// of reaching FULL.
    pub missed_rate: Option<f64>,
    /// Bad scenarios: bad requests served from the onset until the rollback, median.
    pub exposure_p50: Option<u64>,
    /// Same, 90th percentile.
    pub exposure_p90: Option<u64>,
    /// Rolled-back rollouts: seconds from the onset (from the start in good scenarios) to the
    /// rollback, median; `None` when fewer than half were rolled back.
    pub rollback_s_p50: Option<f64>,
    /// Same, 90th percentile.
    pub rollback_s_p90: Option<f64>,
    /// Seconds from the start to FULL, median over all rollouts (`None`: fewer than half got
    /// there within the horizon).
    pub full_s_p50: Option<f64>,
    /// Same, 90th percentile.
    pub full_s_p90: Option<f64>,
    /// Good scenarios: warnings raised per simulated hour (all rollouts' time until FULL,
    /// rollback or the horizon).
    pub false_warnings_per_hour: Option<f64>,
    /// Bad scenarios: fraction of rollouts warned at or after the onset and strictly before
    /// the rollback (or never rolled back).
    pub warned_before_rollback: Option<f64>,
    /// Bad scenarios, rolled-back rollouts: seconds from that warning to the rollback (0 when
    /// not warned before it), median.
    pub lead_s_p50: Option<f64>,
    /// Same, 90th percentile.
    pub lead_s_p90: Option<f64>,
    /// Bad scenarios: seconds from the onset to that warning, median (`None`: fewer than half
    /// were warned).
    pub warning_s_p50: Option<f64>,
    /// Same, 90th percentile.
    pub warning_s_p90: Option<f64>,
    /// Bad scenarios: bad requests served until that warning, median (never warned: until the
    /// end).
    pub exposure_at_warning_p50: Option<u64>,
    /// Same, 90th percentile.
    pub exposure_at_warning_p90: Option<u64>,
}

/// Nearest-rank percentile of values where `None` counts as +∞.
fn percentile<T: Copy + Ord>(values: &[Option<T>], p: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<Option<T>> = values.to_vec();
    v.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn summarize(scenario: &Scenario, rule: String, rate: f64, outcomes: &[Outcome]) -> Cell {
    let n = outcomes.len();
    let frac = |k: usize| k as f64 / n.max(1) as f64;
    let rolled = outcomes
        .iter()
        .filter(|o| o.rolled_back_at.is_some())
        .count();
    let bad = scenario.is_bad();
    let exposure: Vec<Option<u64>> = outcomes.iter().map(|o| Some(o.exposure)).collect();
    let to_rollback: Vec<Option<i64>> = outcomes
        .iter()
        .map(|o| {
            o.rolled_back_at.map(|r| {
                r - if bad {
                    o.onset_at.unwrap_or(0).min(r)
                } else {
                    0
                }
            })
        })
        .collect();
    let full: Vec<Option<i64>> = outcomes.iter().map(|o| o.full_at).collect();
    let secs = |v: Option<i64>| v.map(|ms| ms as f64 / 1000.0);
    let hours: f64 = outcomes.iter().map(|o| o.ended_at as f64).sum::<f64>() / 3_600_000.0;
    let raised: u64 = outcomes.iter().map(|o| u64::from(o.warnings)).sum();
    let before = |o: &Outcome| match (o.warned_at, o.rolled_back_at) {
        (Some(w), Some(r)) => w < r,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let lead: Vec<Option<i64>> = outcomes
        .iter()
        .filter_map(|o| {
            let r = o.rolled_back_at?;
            Some(Some(o.warned_at.filter(|&w| w < r).map_or(0, |w| r - w)))
        })
        .collect();
    let to_warning: Vec<Option<i64>> = outcomes
        .iter()
        .map(|o| o.warned_at.map(|w| w - o.onset_at.unwrap_or(0).min(w)))
        .collect();
    let exposure_at_warning: Vec<Option<u64>> = outcomes
        .iter()
        .map(|o| Some(o.exposure_at_warning.unwrap_or(o.exposure)))
        .collect();
    Cell {
        scenario: scenario.name,
        rule,
        rate,
        rollouts: n,
        bad_candidate: bad,
        false_rollback_rate: (!bad).then(|| frac(rolled)),
        missed_rate: bad.then(|| frac(n - rolled)),
        exposure_p50: bad.then(|| percentile(&exposure, 0.5)).flatten(),
        exposure_p90: bad.then(|| percentile(&exposure, 0.9)).flatten(),
        rollback_s_p50: secs(percentile(&to_rollback, 0.5)),
        rollback_s_p90: secs(percentile(&to_rollback, 0.9)),
        full_s_p50: secs(percentile(&full, 0.5)),
        full_s_p90: secs(percentile(&full, 0.9)),
        false_warnings_per_hour: (!bad).then(|| raised as f64 / hours.max(1e-9)),
        warned_before_rollback: bad.then(|| frac(outcomes.iter().filter(|o| before(o)).count())),
        lead_s_p50: bad.then(|| secs(percentile(&lead, 0.5))).flatten(),
        lead_s_p90: bad.then(|| secs(percentile(&lead, 0.9))).flatten(),
        warning_s_p50: bad.then(|| secs(percentile(&to_warning, 0.5))).flatten(),
        warning_s_p90: bad.then(|| secs(percentile(&to_warning, 0.9))).flatten(),
        exposure_at_warning_p50: bad.then(|| percentile(&exposure_at_warning, 0.5)).flatten(),
        exposure_at_warning_p90: bad.then(|| percentile(&exposure_at_warning, 0.9)).flatten(),
    }
}

/// The policy `rule` is simulated with by default: the defaults, with the rule chosen.
pub fn policy_for(rule: Rule) -> Policy {
    RuleSetting {
        rule,
        min_samples: Policy::default().min_samples_per_phase,
        detector_rollback_h: 0,
    }
    .policy()
}

/// Runs every (scenario, rule) cell, `options.rollouts` rollouts each, on `options.threads`
/// threads; progress on stderr when asked.
pub fn run(options: &Options) -> Vec<Cell> {
    let extra = if options.warnings {
        warning_scenarios()
    } else {
        Vec::new()
    };
    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .chain(extra)
        .filter(|s| options.only.is_empty() || options.only.iter().any(|o| s.name.contains(o)))
        .collect();
    let cells: Vec<(usize, RuleSetting)> = (0..scenarios.len())
        .flat_map(|s| options.rules.iter().map(move |r| (s, *r)))
        .collect();
    let total = cells.len() * options.rollouts;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Vec<Outcome>>> =
        Mutex::new(vec![
            vec![Outcome::default(); options.rollouts];
            cells.len()
        ]);
    let policies: Vec<Policy> = cells
        .iter()
        .map(|(s, r)| {
            let mut p = r.policy();
            if let Some(h) = options.warning_arl_hours {
                p.statistical.warning_arl_hours = h;
            }
            if scenarios[*s].guardrails.is_some() {
                p.metrics.push(MetricGate {
                    name: GUARDRAILS.to_owned(),
                    bad_above: Some(0.0),
                    bad_below: None,
                });
            }
            p
        })
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let job = next.fetch_add(1, Ordering::Relaxed);
                    if job >= total {
                        break;
                    }
                    let (cell, i) = (job / options.rollouts, job % options.rollouts);
                    let (s, _) = cells[cell];
                    // The same seed for rollout i of a scenario under every rule.
                    let seed = splitmix(options.seed ^ splitmix((s as u64) << 32 | i as u64));
                    let o = simulate(
                        &scenarios[s],
                        &policies[cell],
                        options.rate,
                        seed,
                        options.horizon_ms,
                    );
                    local.push((cell, i, o));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                for (cell, i, o) in local {
                    r[cell][i] = o;
                }
            });
        }
        if options.progress {
            loop {
                let d = done.load(Ordering::Relaxed);
                eprint!(
                    "\rbench quality: {d}/{total} rollouts ({:.0} %)   ",
                    100.0 * d as f64 / total.max(1) as f64
                );
                if d >= total {
                    eprintln!();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    cells
        .iter()
        .zip(&results)
        .map(|((s, rule), outcomes)| {
            summarize(&scenarios[*s], rule.label(), options.rate, outcomes)
        })
        .collect()
}

fn dur(s: Option<f64>) -> String {
    match s {
        None => "never".to_owned(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.1} min", s / 60.0),
    }
}

/// The cells as a Markdown table.
pub fn table(cells: &[Cell]) -> String {
    let mut t = String::from(
        "| scenario | rule | req/s | false rollback | missed | bad requests served p50 / p90 | time to rollback p50 / p90 | time to FULL p50 / p90 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1} %", 100.0 * v));
    for c in cells {
        let exposure = match (c.exposure_p50, c.exposure_p90) {
            (Some(a), Some(b)) => format!("{a} / {b}"),
            _ => "-".to_owned(),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |\n",
            c.scenario,
            c.rule,
            c.rate,
            pct(c.false_rollback_rate),
            pct(c.missed_rate),
            exposure,
            dur(c.rollback_s_p50),
            dur(c.rollback_s_p90),
            dur(c.full_s_p50),
            dur(c.full_s_p90),
        ));
    }
    t
}

/// The cells' early-warning figures as a Markdown table (`bench quality --warnings`).
pub fn warning_table(cells: &[Cell]) -> String {
    let mut t = String::from(
        "| scenario | rule | req/s | false warnings per hour (per 24 h) | warned before rollback | warning lead time p50 / p90 | onset to warning p50 / p90 | bad requests at warning p50 / p90 | bad requests at rollback p50 / p90 |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let pair = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "-".to_owned(),
    };
    for c in cells {
        let (rate, lead, onset) = if c.bad_candidate {
            (
                "-".to_owned(),
                format!("{} / {}", dur(c.lead_s_p50), dur(c.lead_s_p90)),
                format!("{} / {}", dur(c.warning_s_p50), dur(c.warning_s_p90)),
            )
        } else {
            let h = c.false_warnings_per_hour.unwrap_or(0.0);
            (
                format!("{h:.4} ({:.2})", 24.0 * h),
                "-".to_owned(),
                "-".to_owned(),
            )
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.scenario,
            c.rule,
            c.rate,
            rate,
            c.warned_before_rollback
                .map_or("-".to_owned(), |v| format!("{:.1} %", 100.0 * v)),
            lead,
            onset,
            pair(c.exposure_at_warning_p50, c.exposure_at_warning_p90),
            pair(c.exposure_p50, c.exposure_p90),
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_outcome_and_rules_behave() {
        let s = &scenarios()[6]; // bad from start
        let p = policy_for(Rule::Statistical);
        let a = simulate(s, &p, 50.0, 7, 1_800_000);
        assert_eq!(a, simulate(s, &p, 50.0, 7, 1_800_000));
        assert!(a.rolled_back_at.is_some(), "{a:?}");
        let p = policy_for(Rule::Threshold);
        assert!(simulate(s, &p, 50.0, 7, 1_800_000).rolled_back_at.is_some());
    }

    #[test]
    fn percentile_counts_none_as_infinite() {
        let v = [Some(3), None, Some(1), None, None];
        assert_eq!(percentile(&v, 0.2), Some(1));
        assert_eq!(percentile(&v, 0.4), Some(3));
        assert_eq!(percentile(&v, 0.5), None);
    }
}
