//! Properties of the pure decision table's split (no Kafka): the candidate's share of keys
//! matches the phase's percentage, and answers depend only on the rollout and the key.

use proptest::prelude::*;
use rollout_breaker::engine::splitter;
use rollout_breaker::engine::{Action, Cause, Decision, MetricsSnapshot, Phase, TrafficPercent};
use rollout_breaker::router::Table;

const KEYS: usize = 100_000;

fn decision(id: &str, seq: u64, traffic: TrafficPercent) -> Decision {
    Decision {
        rollout_id: id.into(),
        sequence: seq,
        action: Action::Advance,
        from: Phase::Probe,
        to: Phase::Small,
        traffic,
        breaker: Phase::Small.breaker(),
        paused: false,
        reason: String::new(),
        metrics: MetricsSnapshot::default(),
        at: 1_764_222_000_000,
        cause: Cause::Automatic,
        actor: "watchdog".into(),
        candidate_version: None,
        baseline_version: None,
        policy_json: None,
        phase_started_at: None,
        warning: None,
        scope: rollout_breaker::engine::Scope::DEFAULT,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Over 100k keys the candidate share is the phase percentage within 5 standard deviations
    /// of a binomial draw: ±0.16 points at 1 %, ±0.34 at 5 %, ±0.63 at 20 % (a fair hash fails
    /// this about once in two million cases). And a second table, built independently with
    /// other rollouts and an older decision first, gives every key the same answer.
    #[test]
    fn share_matches_percent_and_answers_are_reproducible(
        rollout in "[a-z][a-z0-9-]{0,31}",
        bp in prop_oneof![Just(100u16), Just(500), Just(2_000), 1u16..=2_000],
        prefix in "[a-z]{1,8}",
    ) {
        let traffic = TrafficPercent::from_basis_points(bp).unwrap();
        let mut a = Table::new();
        a.apply(&decision(&rollout, 3, traffic));
        let mut b = Table::new();
        for i in 0..50 {
            b.apply(&decision(&format!("other-{i}"), 1, TrafficPercent::FULL));
        }
        b.apply(&decision(&rollout, 1, TrafficPercent::FULL));
        b.apply(&decision(&rollout, 3, traffic));

        let mut served = 0usize;
        for i in 0..KEYS {
            let key = format!("{prefix}-{i}");
            let x = a.serves_candidate(&rollout, &key).unwrap();
            prop_assert_eq!(Some(x), b.serves_candidate(&rollout, &key));
            prop_assert_eq!(x, splitter::serves_candidate(&rollout, &key, traffic));
            served += usize::from(x);
        }
        let p = f64::from(bp) / 10_000.0;
        let share = served as f64 / KEYS as f64;
        let tolerance = 5.0 * (p * (1.0 - p) / KEYS as f64).sqrt();
        prop_assert!(
            (share - p).abs() <= tolerance,
            "share {:.4} % at {} % (tolerance ±{:.3} points)", share * 100.0, p * 100.0, tolerance * 100.0
        );
    }
}
