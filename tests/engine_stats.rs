//! The statistical rule (`engine::stats`): the test vectors of DECISION-RULE.md, and a seeded
//! A/A Monte-Carlo check of its false-rollback rate.
//!
//! Vectors: the statistical rule against the test vectors of DECISION-RULE.md
//! (`tests/fixtures/decision_rule_vectors.json`, copied from the design). Each vector is a
//! sequence of closed buckets of one phase; the trace gives the state after each bucket and
//! the decision at its close. The trace ignores phase changes, so it is compared up to and
//! including the first ROLLBACK or ADVANCE.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rollout_breaker::engine::stats::{confidence_interval, Counts, PhaseStats, Thresholds};
use rollout_breaker::engine::{Action, Phase, Policy};
use serde::Deserialize;

#[derive(Deserialize)]
struct Bucket {
    n_c: u64,
    s_c: u64,
    sl_c: u64,
    n_b: u64,
    s_b: u64,
    sl_b: u64,
}

#[derive(Deserialize)]
struct Row {
    #[serde(rename = "logEf")]
    log_ef: f64,
    #[serde(rename = "logEs")]
    log_es: f64,
    #[serde(rename = "logEg")]
    log_eg: f64,
    u_c: f64,
    l_b: f64,
    u_cs: f64,
    l_bs: f64,
    action: String,
}

#[derive(Deserialize)]
struct Vector {
    desc: String,
    phases: Vec<Phase>,
    buckets: Vec<Bucket>,
    trace: Vec<Row>,
}

fn thresholds() -> Thresholds {
    let p = Policy::default();
    Thresholds {
        params: p.statistical,
        rollback_threshold: p.rollback_threshold.get(),
        slo: p.min_task_completion_rate.get(),
    }
}

#[test]
fn every_vector_matches_up_to_its_first_phase_change() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/decision_rule_vectors.json"
    ))
    .unwrap();
    let vectors: Vec<Vector> = serde_json::from_str(&text).unwrap();
    assert_eq!(vectors.len(), 5);
    let t = thresholds();
    let a = t.params.ln_inv_alpha_bound();
    let q0 = 1.0 - t.rollback_threshold;
    let mut compared = 0;
    for v in &vectors {
        let mut stats = PhaseStats::default();
        let (mut sum_sb, mut sum_nb) = (0u64, 0u64);
        for (i, (b, row)) in v.buckets.iter().zip(&v.trace).enumerate() {
            let at = format!("{} bucket {i}", v.desc);
            // Every vector is shorter than the 5-minute window: the rolling baseline is the
            // phase's baseline so far.
            sum_sb += b.s_b;
            sum_nb += b.n_b;
            let base = if sum_nb == 0 {
                1.0
            } else {
                sum_sb as f64 / sum_nb as f64
            };
            let counts = Counts {
                n_c: b.n_c,
                fail_c: b.n_c - b.s_c,
                slow_c: b.sl_c,
                n_b: b.n_b,
                fail_b: b.n_b - b.s_b,
                slow_b: b.sl_b,
            };
            stats.update(&counts, base, &t);
            let tot = stats.totals;
            let close = |got: f64, want: f64, what: &str| {
                assert!((got - want).abs() <= 1e-6, "{at}: {what} {got} != {want}");
            };
            close(stats.ln_e_fail(), row.log_ef, "ln E fail");
            close(stats.ln_e_slow(), row.log_es, "ln E slow");
            close(stats.ln_e_guard(q0), row.log_eg, "ln E guard");
            close(
                confidence_interval(tot.fail_c, tot.n_c, a).1,
                row.u_c,
                "UCB candidate fail",
            );
            close(
                confidence_interval(tot.fail_b, tot.n_b, a).0,
                row.l_b,
                "LCB baseline fail",
            );
            close(
                confidence_interval(tot.slow_c, tot.n_c, a).1,
                row.u_cs,
                "UCB candidate slow",
            );
            close(
                confidence_interval(tot.slow_b, tot.n_b, a).0,
                row.l_bs,
                "LCB baseline slow",
            );
            let verdict = stats.judge(v.phases[i], base, &t);
            assert_eq!(
                verdict.action.name(),
                row.action,
                "{at}: {}",
                verdict.reason
            );
            compared += 1;
            if verdict.action != Action::Maintain {
                break;
            }
        }
    }
    // V1 3 rows, V2 3, V3 2, V4 8, V5 4.
    assert_eq!(compared, 20);
}

/// Binomial(n, p) by summing Bernoulli draws (n is small here).
fn binomial(rng: &mut SmallRng, n: u64, p: f64) -> u64 {
    (0..n).map(|_| u64::from(rng.random::<f64>() < p)).sum()
}

/// A/A: candidate and baseline share every rate, which moves between buckets (quiet periods,
/// outages of a shared dependency), and the candidate's share of traffic varies. The
/// comparative tests are anytime-valid, so checking at every bucket must not inflate errors:
/// (1) with a loose threshold ln(1/a), a = 0.1, the failure test's e-value ever crosses it in at
/// most a of the phases (Ville's inequality) — tolerance 0.02, 3 binomial standard errors at
/// 2000 runs; (2) the full rule with its defaults (alpha = 0.01 over 3 phases × 2 tests, plus the
/// guard) rolls back at most alpha + 0.01 of A/A rollouts.
#[test]
fn equal_rate_streams_trip_at_most_alpha_plus_tolerance() {
    let t = thresholds();
    let mut rng = SmallRng::seed_from_u64(0x5eed_a1a1);
    let runs = 2_000;
    let buckets_per_phase = 30;
    let loose = (1.0f64 / 0.1).ln();
    let (mut loose_trips, mut rollbacks) = (0u32, 0u32);
    for _ in 0..runs {
        let mut loose_tripped = false;
        let mut rolled_back = false;
        for phase in [Phase::Probe, Phase::Small, Phase::Medium] {
            let mut stats = PhaseStats::default();
            let (mut sum_sb, mut sum_nb) = (0u64, 0u64);
            for _ in 0..buckets_per_phase {
                let (fail_p, slow_p) = if rng.random::<f64>() < 0.1 {
                    (0.5, 0.4) // shared outage
                } else {
                    (rng.random_range(0.01..0.12), rng.random_range(0.05..0.15))
                };
                let n_c = rng.random_range(0..12u64);
                let n_b = rng.random_range(20..60u64);
                let c = Counts {
                    n_c,
                    fail_c: binomial(&mut rng, n_c, fail_p),
                    slow_c: binomial(&mut rng, n_c, slow_p),
                    n_b,
                    fail_b: binomial(&mut rng, n_b, fail_p),
                    slow_b: binomial(&mut rng, n_b, slow_p),
                };
                sum_sb += c.n_b - c.fail_b;
                sum_nb += c.n_b;
                let base = sum_sb as f64 / sum_nb as f64;
                stats.update(&c, base, &t);
                loose_tripped |= phase == Phase::Probe && stats.ln_e_fail() >= loose;
                if stats.judge(phase, base, &t).action == Action::Rollback {
                    rolled_back = true;
                }
            }
        }
        loose_trips += u32::from(loose_tripped);
        rollbacks += u32::from(rolled_back);
    }
    let loose_rate = f64::from(loose_trips) / f64::from(runs);
    let rollback_rate = f64::from(rollbacks) / f64::from(runs);
    eprintln!("A/A: loose threshold crossed in {loose_rate}, rolled back {rollback_rate}");
    assert!(
        loose_rate <= 0.1 + 0.02,
        "loose threshold crossed in {loose_rate}"
    );
    assert!(
        rollback_rate <= t.params.alpha + 0.01,
        "A/A rollouts rolled back: {rollback_rate}"
    );
}
