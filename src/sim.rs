//! Deterministic traffic simulation: a fleet of agents serving requests, each routed by the
//! splitter, each producing an execution event whose success and latency follow a per-variant
//! profile. Used by the tests, the golden files, the benchmarks, `simulate` and `demo`.
//!
//! Seeded (`SmallRng`), so the same scenario always yields the same events.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::{
    splitter, EventTime, ExecutionEvent, LatencyMs, Phase, TrafficPercent, Variant,
};

/// How one variant behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Probability that an execution completes its task, in `[0, 1]`.
    pub success_rate: f64,
    /// Mean latency in ms.
    pub latency_ms: f64,
    /// Latency is uniform in `latency_ms ± jitter_ms` (clamped at 0).
    #[serde(default)]
    pub jitter_ms: f64,
}

impl Profile {
    /// A profile.
    pub const fn new(success_rate: f64, latency_ms: f64, jitter_ms: f64) -> Self {
        Self {
            success_rate,
            latency_ms,
            jitter_ms,
        }
    }
}

/// When a change in the candidate's behaviour begins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// After this many ms of simulated time.
    AfterMs(i64),
    /// Once the rollout has reached this phase (e.g. degrade at SMALL).
    AtPhase(Phase),
}

/// A change of the candidate's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// When it starts.
    pub when: Trigger,
    /// How the candidate behaves from then on.
    pub candidate: Profile,
}

/// A traffic scenario for one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// Rollout id of the events.
    pub rollout_id: String,
    /// Requests per second of simulated time, all variants together.
    pub requests_per_sec: u32,
    /// Simulated duration in ms.
    pub duration_ms: i64,
    /// Event time of the first request.
    pub start_ms: EventTime,
    /// The baseline's behaviour.
    pub baseline: Profile,
    /// The candidate's behaviour at the start.
    pub candidate: Profile,
    /// Later changes of the candidate's behaviour, in order.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Seed of the random source.
    #[serde(default)]
    pub seed: u64,
    /// The user segment of every request (and event), routed by its scope's row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The region of every request (and event), routed by its scope's row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Event time used by the built-in scenarios: 2025-11-27T00:00:00Z.
pub const SCENARIO_EPOCH_MS: EventTime = 1_764_201_600_000;

impl Scenario {
    /// The seed's scenario 1: a good candidate (100 % completion, 1200 ms) that reaches FULL.
    pub fn successful_rollout(rollout_id: &str) -> Self {
        Self {
            name: "scenario 1: successful rollout".into(),
            rollout_id: rollout_id.into(),
            requests_per_sec: 200,
            duration_ms: 120_000,
            start_ms: SCENARIO_EPOCH_MS,
            baseline: Profile::new(0.97, 1_100.0, 200.0),
            candidate: Profile::new(1.0, 1_200.0, 100.0),
            changes: vec![],
            seed: 1,
            segment: None,
            region: None,
        }
    }

    /// The seed's scenario 2: 98 % / 1200 ms advances, then at SMALL the candidate degrades to
    /// 80 % / 2500 ms and is rolled back.
    pub fn automatic_rollback(rollout_id: &str) -> Self {
        Self {
            name: "scenario 2: automatic rollback".into(),
            rollout_id: rollout_id.into(),
            requests_per_sec: 200,
            duration_ms: 120_000,
            start_ms: SCENARIO_EPOCH_MS,
            baseline: Profile::new(0.97, 1_100.0, 200.0),
            candidate: Profile::new(0.98, 1_200.0, 100.0),
            changes: vec![Change {
                when: Trigger::AtPhase(Phase::Small),
                candidate: Profile::new(0.80, 2_500.0, 100.0),
            }],
            seed: 2,
            segment: None,
            region: None,
        }
    }

    /// Number of requests the scenario makes.
    pub fn total_requests(&self) -> u64 {
        (self.duration_ms.max(0) as u64) * u64::from(self.requests_per_sec) / 1_000
    }
}

/// Generates the requests of a scenario one at a time.
#[derive(Debug, Clone)]
pub struct TrafficGen {
    scenario: Scenario,
    rng: SmallRng,
    issued: u64,
    active_change: Option<usize>,
}

impl TrafficGen {
    /// A generator at the scenario's start.
    pub fn new(scenario: Scenario) -> Self {
        let rng = SmallRng::seed_from_u64(scenario.seed);
        Self {
            scenario,
            rng,
            issued: 0,
            active_change: None,
        }
    }

    /// The scenario being played.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Whether every request has been issued.
    pub fn is_done(&self) -> bool {
        self.issued >= self.scenario.total_requests()
    }

    /// Event time of the next request.
    pub fn next_time(&self) -> EventTime {
        self.scenario.start_ms
            + (self.issued * 1_000 / u64::from(self.scenario.requests_per_sec.max(1))) as i64
    }

    /// Serves the next request given the rollout's current phase and traffic share (as a router
    /// would see them) and returns its execution event; `None` when the scenario is over.
    pub fn next_event(&mut self, phase: Phase, traffic: TrafficPercent) -> Option<ExecutionEvent> {
        if self.is_done() {
            return None;
        }
        let at = self.next_time();
        let elapsed = at - self.scenario.start_ms;
        let key = format!("user-{}", self.issued);
        self.issued += 1;
        for (i, c) in self.scenario.changes.iter().enumerate() {
            let due = match c.when {
                Trigger::AfterMs(ms) => elapsed >= ms,
                Trigger::AtPhase(p) => phase == p,
            };
            if due && self.active_change.is_none_or(|a| a < i) {
                self.active_change = Some(i);
            }
        }
        let variant = if splitter::serves_candidate(&self.scenario.rollout_id, &key, traffic) {
            Variant::Candidate
        } else {
            Variant::Baseline
        };
        let profile = match variant {
            Variant::Baseline => self.scenario.baseline,
            Variant::Candidate => self.active_change.map_or(self.scenario.candidate, |i| {
                self.scenario.changes[i].candidate
            }),
        };
        let success = self.rng.random::<f64>() < profile.success_rate;
        let jitter = if profile.jitter_ms > 0.0 {
            self.rng
                .random_range(-profile.jitter_ms..=profile.jitter_ms)
        } else {
            0.0
        };
        let latency = LatencyMs::new((profile.latency_ms + jitter).max(0.0).round())
            .unwrap_or(LatencyMs::new(0.0).expect("0 is a valid latency"));
        let mut event = ExecutionEvent::new(
            self.scenario.rollout_id.clone(),
            variant,
            success,
            latency,
            at,
        );
        event.version = match variant {
            Variant::Baseline => "v1".into(),
            Variant::Candidate => "v2".into(),
        };
        event.request_key = Some(key.into());
        event.segment.clone_from(&self.scenario.segment);
        event.region.clone_from(&self.scenario.region);
        Some(event)
    }
}

/// Scenario files: `[[scenario]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenarios, played concurrently.
    pub scenario: Vec<Scenario>,
}

/// A built-in scenario by name, starting at `start_ms`: `good`, `degrade-at-small`, `sudden`
/// (degrades after a third of the duration), `creep` (latency rises step by step) and
/// `flapping` (alternates good and bad every minute).
pub fn builtin(
    name: &str,
    rollout_id: &str,
    requests_per_sec: u32,
    duration_ms: i64,
    start_ms: EventTime,
    candidate: Profile,
) -> Option<Scenario> {
    let mut s = Scenario::successful_rollout(rollout_id);
    s.name = name.to_owned();
    s.requests_per_sec = requests_per_sec;
    s.duration_ms = duration_ms;
    s.start_ms = start_ms;
    s.candidate = candidate;
    let bad = Profile::new(0.7, 2_600.0, 200.0);
    match name {
        "good" => {}
        "degrade-at-small" => s.changes.push(Change {
            when: Trigger::AtPhase(Phase::Small),
            candidate: bad,
        }),
        "sudden" => s.changes.push(Change {
            when: Trigger::AfterMs(duration_ms / 3),
            candidate: bad,
        }),
        "creep" => {
            for i in 1..=10 {
                s.changes.push(Change {
                    when: Trigger::AfterMs(duration_ms * i / 10),
                    candidate: Profile::new(
                        candidate.success_rate,
                        candidate.latency_ms + 150.0 * i as f64,
                        candidate.jitter_ms,
                    ),
                });
            }
        }
        "flapping" => {
            let mut t = 60_000;
            let mut good = false;
            while t < duration_ms {
                s.changes.push(Change {
                    when: Trigger::AfterMs(t),
                    candidate: if good { candidate } else { bad },
                });
                good = !good;
                t += 60_000;
            }
        }
        _ => return None,
    }
    Some(s)
}

/// The built-in `segments-regions` set: one rollout served in two region waves (`eu-west`,
/// then `us-east` and `ap-south`) to unsegmented, `internal` and `enterprise` users, for the
/// policy in `deploy/config/policies/segments-regions.toml`; enterprise users in `us-east`
/// get a degraded candidate once their scope reaches PROBE. `requests_per_sec` is each
/// region's unsegmented traffic; segments get a fraction of it.
pub fn segments_and_regions(
    rollout_id: &str,
    requests_per_sec: u32,
    duration_ms: i64,
    start_ms: EventTime,
    candidate: Profile,
) -> Vec<Scenario> {
    let bad = Profile::new(0.7, 2_600.0, 200.0);
    let part = |segment: Option<&str>, region: &str, share: u32, seed: u64| {
        let mut s = builtin(
            "good",
            rollout_id,
            (requests_per_sec * share / 100).max(1),
            duration_ms,
            start_ms,
            candidate,
        )
        .expect("a built-in name");
        s.name = format!("{} in {region}", segment.unwrap_or("everyone else"));
        s.segment = segment.map(str::to_owned);
        s.region = Some(region.to_owned());
        s.seed = seed;
        s
    };
    let mut enterprise_us = part(Some("enterprise"), "us-east", 50, 5);
    enterprise_us.changes.push(Change {
        when: Trigger::AtPhase(Phase::Probe),
        candidate: bad,
    });
    vec![
        part(None, "eu-west", 100, 1),
        part(Some("internal"), "eu-west", 20, 2),
        part(Some("enterprise"), "eu-west", 50, 3),
        part(None, "us-east", 100, 4),
        enterprise_us,
        part(None, "ap-south", 50, 6),
    ]
}

/// A scenario played against an in-memory engine in a closed loop: every request is routed
/// with the phase the engine last published, as production routers would.
#[derive(Debug, Clone, Default)]
pub struct ClosedLoop {
    /// Every event, in the order served.
    pub events: Vec<ExecutionEvent>,
    /// Every published decision, with the number of events served before it was published.
    pub published: Vec<(usize, crate::engine::Decision)>,
}

/// Plays `scenarios` concurrently (in event-time order) against one fresh engine with
/// `policy`, each request routed by its scope's current phase, as routers reading the scope
/// rows would (see [`crate::engine::scope`]).
pub fn closed_loop_all(scenarios: Vec<Scenario>, policy: &crate::engine::Policy) -> ClosedLoop {
    use crate::engine::{Engine, EngineOptions};
    let mut engine = Engine::new(policy.clone(), EngineOptions::default());
    let mut gens: Vec<TrafficGen> = scenarios.into_iter().map(TrafficGen::new).collect();
    let mut out = ClosedLoop::default();
    while let Some(g) = gens
        .iter_mut()
        .filter(|g| !g.is_done())
        .min_by_key(|g| g.next_time())
    {
        let s = g.scenario();
        let (phase, traffic) = policy
            .place(s.segment.as_deref(), s.region.as_deref())
            .and_then(|scope| {
                let r = engine.rollout(&s.rollout_id)?.scoped(&scope)?;
                Some((r.phase(), r.policy().schedule_of(&scope).percent(r.phase())))
            })
            .unwrap_or((Phase::Off, TrafficPercent::ZERO));
        let Some(ev) = g.next_event(phase, traffic) else {
            continue;
        };
        for d in engine.apply(&ev) {
            if d.is_published() {
                out.published.push((out.events.len() + 1, d));
            }
        }
        out.events.push(ev);
    }
    out
}

/// Plays `scenario` against a fresh engine with `policy` (see [`ClosedLoop`]).
pub fn closed_loop(scenario: Scenario, policy: &crate::engine::Policy) -> ClosedLoop {
    use crate::engine::{Engine, EngineOptions};
    let mut engine = Engine::new(policy.clone(), EngineOptions::default());
    let mut gen = TrafficGen::new(scenario);
    let (mut phase, mut traffic) = (Phase::Off, TrafficPercent::ZERO);
    let mut out = ClosedLoop::default();
    while let Some(ev) = gen.next_event(phase, traffic) {
        for d in engine.apply(&ev) {
            if d.is_published() {
                (phase, traffic) = (d.to, d.traffic);
                out.published.push((out.events.len() + 1, d));
            }
        }
        out.events.push(ev);
    }
    out
}
