//! The seed's scenarios, driven through the pure engine in a closed loop: the simulated router
//! splits traffic with the phase the engine last published, as production would.

use rollout_breaker::engine::{
    Action, BreakerState, Command, CommandKind, Decision, Engine, EngineOptions, ExecutionEvent,
    Phase, Policy,
};
use rollout_breaker::sim::Scenario;

/// Plays a scenario against a fresh engine; returns the events served and every published
/// decision, with the number of events served before it was published.
fn play(scenario: Scenario, policy: Policy) -> (Vec<ExecutionEvent>, Vec<Decision>) {
    let (events, ds) = play_indexed(scenario, policy);
    (events, ds.into_iter().map(|(_, d)| d).collect())
}

fn play_indexed(
    scenario: Scenario,
    policy: Policy,
) -> (Vec<ExecutionEvent>, Vec<(usize, Decision)>) {
    let run = rollout_breaker::sim::closed_loop(scenario, &policy);
    (run.events, run.published)
}

fn actions(ds: &[Decision]) -> Vec<(Action, Phase, Phase)> {
    ds.iter().map(|d| (d.action, d.from, d.to)).collect()
}

#[test]
fn scenario_1_successful_rollout_reaches_full_with_breaker_closed() {
    let (events, indexed) = play_indexed(
        Scenario::successful_rollout("checkout"),
        Policy::threshold(),
    );
    let ds: Vec<Decision> = indexed.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(
        actions(&ds),
        vec![
            (Action::Start, Phase::Off, Phase::Probe),
            (Action::Advance, Phase::Probe, Phase::Small),
            (Action::Advance, Phase::Small, Phase::Medium),
            (Action::Advance, Phase::Medium, Phase::Full),
        ]
    );
    let last = ds.last().unwrap();
    assert_eq!(last.breaker, BreakerState::Closed);
    assert_eq!(last.traffic.percent(), 100.0);
    // Each advance quotes numbers that satisfy the policy.
    for d in &ds[1..] {
        let c = d.metrics.candidate;
        assert!(c.samples >= 10, "{d:?}");
        assert!(
            c.completion_rate >= 0.95 && c.mean_latency_ms <= 2000.0,
            "{d:?}"
        );
        assert!(d.reason.contains(">= 0.950"), "{}", d.reason);
    }
    // Sequence numbers are contiguous from 1 and decisions are in event-time order.
    assert!(ds
        .iter()
        .enumerate()
        .all(|(i, d)| d.sequence == i as u64 + 1));
    assert!(ds.windows(2).all(|w| w[0].at <= w[1].at));
    // Traffic followed the phases: once FULL was published, every request went to the
    // candidate.
    let after = &events[indexed.last().unwrap().0..];
    assert!(!after.is_empty());
    assert!(after
        .iter()
        .all(|e| e.variant == rollout_breaker::engine::Variant::Candidate));
}

#[test]
fn scenario_2_degradation_at_small_rolls_back_and_trips_the_breaker() {
    let (events, indexed) =
        play_indexed(Scenario::automatic_rollback("search"), Policy::threshold());
    let ds: Vec<Decision> = indexed.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(
        actions(&ds),
        vec![
            (Action::Start, Phase::Off, Phase::Probe),
            (Action::Advance, Phase::Probe, Phase::Small),
            (Action::Rollback, Phase::Small, Phase::Off),
        ]
    );
    let rb = ds.last().unwrap();
    assert_eq!(rb.breaker, BreakerState::Open);
    assert_eq!(rb.traffic.basis_points(), 0);
    assert!(rb.metrics.candidate.mean_latency_ms > 2000.0);
    assert!(rb.reason.contains("> max 2000 ms"), "{}", rb.reason);
    let adv = &ds[1];
    assert!(adv.metrics.candidate.completion_rate >= 0.95, "{adv:?}");
    // After the trip was published no request reaches the candidate.
    let after = &events[indexed.last().unwrap().0..];
    assert!(!after.is_empty());
    assert!(after
        .iter()
        .all(|e| e.variant == rollout_breaker::engine::Variant::Baseline));
}

#[test]
fn no_decision_before_min_samples_per_phase() {
    let policy = Policy {
        min_samples_per_phase: 1_000_000,
        ..Policy::threshold()
    };
    let (_, ds) = play(Scenario::successful_rollout("slow"), policy);
    assert_eq!(
        actions(&ds),
        vec![(Action::Start, Phase::Off, Phase::Probe)]
    );
}

#[test]
fn operator_commands_follow_the_transition_table() {
    let mut engine = Engine::new(Policy::threshold(), EngineOptions { auto_start: false });
    let cmd = |kind, t| Command::new("r1", kind, "alice", "test", t);
    assert!(
        engine.apply_command(&cmd(CommandKind::Pause, 0)).is_err(),
        "unknown rollout"
    );
    let d = engine
        .apply_command(&cmd(CommandKind::Start, 1_000))
        .unwrap();
    assert_eq!(
        (d.action, d.to, d.sequence),
        (Action::Start, Phase::Probe, 1)
    );
    assert!(
        engine
            .apply_command(&cmd(CommandKind::Start, 1_001))
            .is_err(),
        "already running"
    );
    let d = engine
        .apply_command(&cmd(CommandKind::Pause, 2_000))
        .unwrap();
    assert!(d.paused && d.to == Phase::Probe);
    assert!(
        engine
            .apply_command(&cmd(CommandKind::Pause, 2_001))
            .is_err(),
        "already paused"
    );
    let d = engine
        .apply_command(&cmd(CommandKind::Promote, 3_000))
        .unwrap();
    assert_eq!((d.action, d.to), (Action::Advance, Phase::Small));
    let d = engine
        .apply_command(&cmd(CommandKind::Resume, 4_000))
        .unwrap();
    assert!(!d.paused);
    let d = engine
        .apply_command(&cmd(CommandKind::Abort, 5_000))
        .unwrap();
    assert_eq!(
        (d.action, d.to, d.breaker),
        (Action::Rollback, Phase::Off, BreakerState::Open)
    );
    assert!(
        engine
            .apply_command(&cmd(CommandKind::Abort, 5_001))
            .is_err(),
        "already off"
    );
    assert!(
        engine
            .apply_command(&cmd(CommandKind::Promote, 5_002))
            .is_err(),
        "off never advances"
    );
    let d = engine
        .apply_command(&cmd(CommandKind::Retry, 6_000))
        .unwrap();
    assert_eq!(
        (d.action, d.to, d.sequence),
        (Action::Start, Phase::Probe, 6)
    );
    assert!(d.reason.contains("alice"));
    assert_eq!(engine.counters().refused_commands, 5);
}

#[test]
fn restore_from_last_decision_then_continue_like_an_uninterrupted_run() {
    let scenario = Scenario::successful_rollout("restore-me");
    let (events, uninterrupted) = play(scenario, Policy::threshold());
    // Crash right after the second published decision: restore from it, replay the events
    // from the first one of the new phase (earlier ones never count again), and compare what
    // follows.
    let cut = &uninterrupted[1];
    let mut restored = Engine::new(Policy::threshold(), EngineOptions::default());
    restored.restore(cut).unwrap();
    assert_eq!(restored.rollout("restore-me").unwrap().phase(), cut.to);
    let first = events.iter().position(|e| e.timestamp >= cut.at).unwrap();
    let mut after = Vec::new();
    for e in &events[first..] {
        after.extend(restored.apply(e).into_iter().filter(Decision::is_published));
    }
    assert_eq!(after, uninterrupted[2..].to_vec());
}
