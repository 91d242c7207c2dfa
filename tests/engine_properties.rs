//! Property tests of the engine's invariants.

use proptest::prelude::*;
use rollout_breaker::engine::histogram::{LatencyHistogram, HIGH_US, LOW_US, RELATIVE_ERROR};
use rollout_breaker::engine::window::{bucket_start, Bucket, VariantWindow};
use rollout_breaker::engine::{
    splitter, Decision, Engine, EngineOptions, ExecutionEvent, LatencyMs, Policy, TrafficPercent,
    Variant,
};

const T0: i64 = 1_764_201_600_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn splitter_is_sticky_and_monotone(
        rollout in "[a-z0-9-]{1,20}",
        key in ".{0,40}",
        a in 0u16..=10_000,
        b in 0u16..=10_000,
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        let lo = TrafficPercent::from_basis_points(lo).unwrap();
        let hi = TrafficPercent::from_basis_points(hi).unwrap();
        prop_assert_eq!(splitter::bucket(&rollout, &key), splitter::bucket(&rollout, &key));
        if splitter::serves_candidate(&rollout, &key, lo) {
            prop_assert!(splitter::serves_candidate(&rollout, &key, hi));
        }
    }

    #[test]
    fn rolling_window_equals_recomputation_from_raw_events(
        raw in prop::collection::vec((0i64..600_000, any::<bool>(), 0.0f64..10_000.0), 0..400),
        from in 0i64..600_000,
        len in 0i64..600_000,
    ) {
        let width = 10_000;
        let mut window = VariantWindow::default();
        for &(t, ok, lat) in &raw {
            window.record(
                bucket_start(t, width),
                ok,
                LatencyMs::new(lat).unwrap(),
                lat > 2000.0,
            );
        }
        let (from, to) = (bucket_start(from, width), bucket_start(from, width) + bucket_start(len, width));
        let mut direct = Bucket::default();
        for &(t, ok, lat) in raw.iter().filter(|(t, ..)| (from..to).contains(&bucket_start(*t, width))) {
            let _ = t;
            direct.record(ok, LatencyMs::new(lat).unwrap(), lat > 2000.0);
        }
        prop_assert_eq!(window.aggregate(from, to).metrics(), direct.metrics());
        prop_assert_eq!(window.aggregate(from, to).slow, direct.slow);
    }

    #[test]
    fn histogram_quantiles_are_within_the_stated_error_of_exact_quantiles(
        // Log-uniform latencies over the binned range (2.048 ms to 71.6 min), in µs.
        raw in prop::collection::vec(
            ((LOW_US as f64).ln()..(HIGH_US as f64 - 1.0).ln()).prop_map(f64::exp),
            1..2_000,
        ),
        q in 0.0f64..=1.0,
    ) {
        let mut h = LatencyHistogram::default();
        let mut us: Vec<u64> = raw.iter().map(|&v| v.round() as u64).collect();
        for &v in &us {
            h.record_us(v);
        }
        us.sort_unstable();
        for q in [q, 0.5, 0.95, 0.99] {
            let exact = us[(q * (us.len() - 1) as f64) as usize] as f64 / 1000.0;
            let got = h.quantile(q).unwrap();
            prop_assert!(
                (got - exact).abs() <= RELATIVE_ERROR * exact,
                "q {}: got {} ms, exact {} ms", q, got, exact
            );
        }
    }

    #[test]
    fn histogram_merge_is_the_histogram_of_the_union(
        a in prop::collection::vec(0u64..(HIGH_US * 2), 0..500),
        b in prop::collection::vec(0u64..(HIGH_US * 2), 0..500),
    ) {
        let (mut ha, mut hb, mut union) = Default::default();
        for &v in &a {
            LatencyHistogram::record_us(&mut ha, v);
            LatencyHistogram::record_us(&mut union, v);
        }
        for &v in &b {
            LatencyHistogram::record_us(&mut hb, v);
            LatencyHistogram::record_us(&mut union, v);
        }
        ha.merge(&hb);
        prop_assert_eq!(&ha, &union);
        prop_assert_eq!(ha.total(), (a.len() + b.len()) as u64);
    }

    #[test]
    fn replaying_the_same_log_twice_gives_identical_decisions(events in event_log()) {
        prop_assert_eq!(run(&events), run(&events));
    }

    #[test]
    fn permutations_within_the_allowed_lateness_give_identical_decisions(
        events in event_log(),
        jitter_seed in any::<u64>(),
    ) {
        let lateness = Policy::threshold().allowed_lateness_ms as i64;
        // Arrival order: sorted by event time plus a jitter below the allowed lateness, so no
        // event arrives after the watermark passed its window. The first event (which starts
        // the rollout) stays first.
        let mut keyed: Vec<(i64, usize)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let j = (splitmix(jitter_seed ^ i as u64) % (lateness as u64)) as i64;
                (e.timestamp + j, i)
            })
            .collect();
        keyed[1..].sort();
        let permuted: Vec<ExecutionEvent> = keyed.iter().map(|&(_, i)| events[i].clone()).collect();
        prop_assert_eq!(run(&events), run(&permuted));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `apply_events` (which prefetches ahead) decides exactly what `apply_event` one event
    /// at a time decides, in the same order, whatever the batch boundaries.
    #[test]
    fn applying_in_batches_decides_as_applying_one_by_one(
        events in event_log(),
        cut in 1usize..40,
        statistical in any::<bool>(),
    ) {
        let policy = if statistical { Policy::default() } else { Policy::threshold() };
        let mut one = Engine::new(policy.clone(), EngineOptions::default());
        let mut by_one = Vec::new();
        for e in &events {
            one.apply_event(e, &mut by_one);
        }
        let mut batched = Engine::new(policy, EngineOptions::default());
        let mut in_batches = Vec::new();
        for chunk in events.chunks(cut) {
            batched.apply_events(chunk, &mut in_batches);
        }
        prop_assert_eq!(&by_one, &in_batches);
        for r in one.rollouts() {
            prop_assert_eq!(Some(r.snapshot(i64::MAX / 2)), batched.rollout(r.id()).map(|b| b.snapshot(i64::MAX / 2)));
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A time-ordered log for two rollouts whose candidate quality changes over time.
fn event_log() -> impl Strategy<Value = Vec<ExecutionEvent>> {
    prop::collection::vec(
        (0u8..2, 0u8..2, 1i64..400, 0.0f64..1.0, 100.0f64..3_000.0),
        50..600,
    )
    .prop_map(|steps| {
        let mut t = T0;
        steps
            .into_iter()
            .map(|(r, v, dt, p, lat)| {
                t += dt;
                let variant = if v == 0 {
                    Variant::Baseline
                } else {
                    Variant::Candidate
                };
                // Quality drifts with time so some logs advance and some roll back.
                let phase_of_run = ((t - T0) / 40_000) % 3;
                let success = p < [0.99, 0.9, 0.6][phase_of_run as usize];
                ExecutionEvent::new(
                    format!("rollout-{r}"),
                    variant,
                    success,
                    LatencyMs::new(lat).unwrap(),
                    t,
                )
            })
            .collect()
    })
}

fn run(events: &[ExecutionEvent]) -> Vec<Decision> {
    let mut engine = Engine::new(Policy::threshold(), EngineOptions::default());
    let mut out: Vec<Decision> = events.iter().flat_map(|e| engine.apply(e)).collect();
    // Two rollouts interleave differently under a permutation; compare per rollout.
    out.sort_by(|a, b| a.rollout_id.cmp(&b.rollout_id));
    out
}

#[test]
fn splitter_is_uniform_chi_square_over_100k_keys() {
    // 100 cells of 100 buckets each; chi-square with 99 degrees of freedom has its 0.1 % upper
    // critical value at 148.23.
    for rollout in ["checkout-agent", "doer-v2", "r"] {
        let mut cells = [0u32; 100];
        let n = 100_000u32;
        for k in 0..n {
            cells[(splitter::bucket(rollout, &format!("user-{k}")) / 100) as usize] += 1;
        }
        let expected = f64::from(n) / 100.0;
        let chi2: f64 = cells
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < 148.23,
            "{rollout}: chi-square {chi2:.1} over 100 cells"
        );
        // And the share at 1 % is 1 % within 0.2 points.
        let served = (0..n)
            .filter(|k| {
                splitter::serves_candidate(
                    rollout,
                    &format!("user-{k}"),
                    TrafficPercent::new(1.0).unwrap(),
                )
            })
            .count();
        assert!(
            (800..=1_200).contains(&served),
            "{rollout}: {served} of {n} at 1 %"
        );
    }
}

#[test]
fn splitter_matches_the_published_vectors() {
    #[derive(serde::Deserialize)]
    struct Vector {
        rollout_id: String,
        request_key: String,
        hash: u32,
        bucket: u16,
    }
    #[derive(serde::Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/splitter_vectors.json"
    ))
    .unwrap();
    let file: File = serde_json::from_str(&text).unwrap();
    assert!(file.vectors.len() > 100);
    for v in &file.vectors {
        assert_eq!(
            splitter::hash(&v.rollout_id, &v.request_key),
            v.hash,
            "{}:{}",
            v.rollout_id,
            v.request_key
        );
        assert_eq!(splitter::bucket(&v.rollout_id, &v.request_key), v.bucket);
    }
}

#[test]
fn generated_logs_do_exercise_advances_and_rollbacks() {
    // Guards the two properties above against vacuity: the generator's logs must lead to real
    // phase changes, not only START.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut advances, mut rollbacks) = (0, 0);
    for _ in 0..64 {
        let log = event_log().new_tree(&mut runner).unwrap().current();
        for d in run(&log) {
            match d.action {
                rollout_breaker::engine::Action::Advance => advances += 1,
                rollout_breaker::engine::Action::Rollback => rollbacks += 1,
                _ => {}
            }
        }
    }
    assert!(
        advances > 10 && rollbacks > 10,
        "advances {advances}, rollbacks {rollbacks}"
    );
}
