//! The statistical rule inside the engine: the seed's two scenarios, and exactness of its
//! per-phase state across a restart (restore from the last published decision, rebuild the
//! windows by replaying events silently, continue).

use rollout_breaker::engine::stats::{MetricGate, Rule};
use rollout_breaker::engine::{
    Action, Decision, Engine, EngineOptions, ExecutionEvent, Phase, Policy, Variant,
};
use rollout_breaker::sim::{closed_loop, Profile, Scenario};

fn statistical() -> Policy {
    Policy {
        rule: Rule::Statistical,
        ..Policy::default()
    }
}

fn actions(ds: &[(usize, Decision)]) -> Vec<(Action, Phase, Phase)> {
    ds.iter().map(|(_, d)| (d.action, d.from, d.to)).collect()
}

#[test]
fn seed_scenarios_promote_and_roll_back_under_the_statistical_rule() {
    let good = closed_loop(Scenario::successful_rollout("good"), &statistical());
    assert_eq!(
        actions(&good.published),
        vec![
            (Action::Start, Phase::Off, Phase::Probe),
            (Action::Advance, Phase::Probe, Phase::Small),
            (Action::Advance, Phase::Small, Phase::Medium),
            (Action::Advance, Phase::Medium, Phase::Full),
        ]
    );
    let reason = &good.published[1].1.reason;
    assert!(
        reason.contains("not worse than baseline by more than 0.15"),
        "{reason}"
    );
    let bad = closed_loop(Scenario::automatic_rollback("bad"), &statistical());
    assert_eq!(
        actions(&bad.published),
        vec![
            (Action::Start, Phase::Off, Phase::Probe),
            (Action::Advance, Phase::Probe, Phase::Small),
            // The early warning's change detector flags the slow executions first.
            (Action::Warning, Phase::Small, Phase::Small),
            (Action::Rollback, Phase::Small, Phase::Off),
        ]
    );
    let w = &bad.published[2].1;
    let warning = w.warning.as_ref().unwrap();
    assert!(!warning.cleared && warning.statistic >= warning.threshold);
    assert_eq!((w.traffic, w.sequence), (bad.published[1].1.traffic, 3));
    let reason = &bad.published[3].1.reason;
    assert!(
        reason.contains("more often than baseline: ln E") && reason.contains(">= 6.397"),
        "{reason}"
    );
}

/// A long run with slow requests on both sides (latency 1200 ± 1000 ms, 20 % over 2000 ms),
/// so every test of the rule carries evidence.
fn long_run() -> Scenario {
    let mut s = Scenario::successful_rollout("restart-me");
    s.requests_per_sec = 40;
    s.duration_ms = 600_000;
    s.baseline = Profile::new(0.95, 1_200.0, 1_000.0);
    s.candidate = Profile::new(0.95, 1_200.0, 1_000.0);
    s.seed = 9;
    s
}

#[test]
fn phase_state_is_rebuilt_exactly_by_replaying_the_phase_after_a_restart() {
    let policy = statistical();
    let run = closed_loop(long_run(), &policy);
    assert!(run.published.len() >= 3, "{:?}", actions(&run.published));
    check_restarts(&policy, &run.events);
}

#[test]
fn agent_metric_state_is_rebuilt_exactly_too() {
    let policy = with_gates(statistical());
    let mut events = closed_loop(long_run(), &policy).events;
    decorate(&mut events, 0.1, 0.1);
    check_restarts(&policy, &events);
}

/// Crashes after every 997th event: restore from the last published decision, replay the
/// processed events of the phase silently, compare the statistics, continue and compare every
/// later decision with the uninterrupted run.
fn check_restarts(policy: &Policy, events: &[ExecutionEvent]) {
    let id = "restart-me";
    let mut live = Engine::new(policy.clone(), EngineOptions::default());
    let mut live_published: Vec<(usize, Decision)> = Vec::new();
    let mut checked = 0;
    for cut in 1..events.len() {
        live_published.extend(
            live.apply(&events[cut - 1])
                .into_iter()
                .filter(Decision::is_published)
                .map(|d| (cut, d)),
        );
        if cut % 997 != 0 {
            continue;
        }
        let Some((_, last)) = live_published.last() else {
            continue;
        };
        // Crash here: restore the last published decision, replay the events already
        // processed (silently: the processor's restore), compare the state, then continue.
        let mut restored = Engine::new(policy.clone(), EngineOptions::default());
        restored.restore(last).unwrap();
        let phase_start = restored.rollout(id).unwrap().phase_started_at();
        let from = events[..cut]
            .iter()
            .position(|e| e.timestamp >= phase_start)
            .unwrap_or(cut);
        for e in &events[from..cut] {
            restored.replay_event(e);
        }
        let (l, r) = (live.rollout(id).unwrap(), restored.rollout(id).unwrap());
        assert_eq!(l.phase(), r.phase(), "cut {cut}");
        assert_eq!(l.phase_stats(), r.phase_stats(), "cut {cut}");
        if l.phase() == Phase::Off || l.phase() == Phase::Full {
            continue;
        }
        // What follows is decided the same, decision for decision.
        let mut after = Vec::new();
        for e in &events[cut..] {
            after.extend(restored.apply(e).into_iter().filter(Decision::is_published));
        }
        let mut uninterrupted = live.clone();
        let mut expected = Vec::new();
        for e in &events[cut..] {
            expected.extend(
                uninterrupted
                    .apply(e)
                    .into_iter()
                    .filter(Decision::is_published),
            );
        }
        assert_eq!(after, expected, "cut {cut}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} cuts inside a trial phase");
}

#[test]
fn phase_state_resets_on_every_phase_change() {
    let policy = statistical();
    let run = closed_loop(long_run(), &policy);
    let mut engine = Engine::new(policy, EngineOptions::default());
    for e in &run.events {
        let published: Vec<Decision> = engine
            .apply(e)
            .into_iter()
            .filter(Decision::is_published)
            .collect();
        if !published.is_empty() {
            let stats = engine.rollout("restart-me").unwrap().phase_stats();
            assert_eq!(stats.totals.n_c + stats.totals.n_b, 0, "{published:?}");
        }
    }
}

fn with_gates(policy: Policy) -> Policy {
    Policy {
        metrics: vec![
            MetricGate {
                name: "guardrail_triggers".into(),
                bad_above: Some(0.0),
                bad_below: None,
            },
            MetricGate {
                name: "cost".into(),
                bad_above: Some(0.05),
                bad_below: None,
            },
        ],
        ..policy
    }
}

/// A deterministic pseudo-random number in [0, 1) per event index.
fn unit(i: usize, salt: u64) -> f64 {
    let mut x = (i as u64 ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Adds agent metrics: guardrail triggers with the given probability per variant, a cost on
/// every other event (0.02 or 0.08, half each), so executions without a cost exist too.
fn decorate(events: &mut [ExecutionEvent], triggers_candidate: f64, triggers_baseline: f64) {
    for (i, e) in events.iter_mut().enumerate() {
        let p = match e.variant {
            Variant::Candidate => triggers_candidate,
            Variant::Baseline => triggers_baseline,
        };
        let triggered = f64::from(u8::from(unit(i, 1) < p));
        e.extra.insert("guardrail_triggers".into(), triggered);
        if i % 2 == 0 {
            e.cost = Some(if unit(i, 2) < 0.5 { 0.02 } else { 0.08 });
        }
    }
}

#[test]
fn a_candidate_tripping_guardrails_more_often_is_rolled_back_on_that_metric() {
    let policy = with_gates(statistical());
    let mut events = closed_loop(long_run(), &policy).events;
    decorate(&mut events, 0.4, 0.05);
    let mut engine = Engine::new(policy, EngineOptions::default());
    let published: Vec<Decision> = events
        .iter()
        .flat_map(|e| engine.apply(e))
        .filter(Decision::is_published)
        .collect();
    let rollback = published
        .iter()
        .find(|d| d.action == Action::Rollback)
        .expect("rolled back");
    assert!(
        rollback
            .reason
            .contains("candidate has guardrail_triggers > 0 more often than baseline: ln E"),
        "{}",
        rollback.reason
    );
    assert!(rollback.reason.contains(">= 7.090"), "{}", rollback.reason);
    // The same log without the difference: no rollback, and costs are counted only on the
    // executions that report one.
    let policy = with_gates(statistical());
    let mut events = closed_loop(long_run(), &policy).events;
    decorate(&mut events, 0.05, 0.05);
    let mut engine = Engine::new(policy, EngineOptions::default());
    let mut rolled_back = false;
    for e in &events {
        rolled_back |= engine.apply(e).iter().any(|d| d.action == Action::Rollback);
        let stats = engine.rollout("restart-me").unwrap().phase_stats();
        if let Some(cost) = stats.metrics.get(1) {
            let t = stats.totals;
            assert!(cost.totals.n_c + cost.totals.n_b <= t.n_c + t.n_b);
        }
    }
    assert!(!rolled_back);
}
