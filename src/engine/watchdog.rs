//! The watchdog: a pure function from (phase, window metrics, policy) to a verdict.
//!
//! The order in which thresholds are applied is documented on [`crate::engine::policy`].

use super::decision::Action;
use super::phase::Phase;
use super::policy::Policy;
use super::window::VariantMetrics;

/// The watchdog's answer: what to do and why, with the numbers quoted.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// ADVANCE, MAINTAIN or ROLLBACK.
    pub action: Action,
    /// Why, quoting measured values and thresholds.
    pub reason: String,
}

fn quote(m: &VariantMetrics) -> String {
    format!(
        "completion {:.3}, mean latency {:.1} ms over {} samples",
        m.completion_rate, m.mean_latency_ms, m.samples
    )
}

/// Judges the candidate of a rollout in `phase` (not OFF). `baseline` is quoted for context
/// only; the verdict depends on the candidate's numbers and the policy.
pub fn judge(
    policy: &Policy,
    phase: Phase,
    candidate: &VariantMetrics,
    baseline: &VariantMetrics,
) -> Verdict {
    let verdict = |action, reason: String| Verdict { action, reason };
    let context = || {
        if baseline.samples == 0 {
            "baseline: no samples".to_owned()
        } else {
            format!("baseline: {}", quote(baseline))
        }
    };
    let needed = u64::from(policy.min_samples_per_phase);
    if candidate.samples < needed {
        return verdict(
            Action::Maintain,
            format!(
                "{phase}: {} candidate samples in this phase, {needed} needed before a verdict",
                candidate.samples
            ),
        );
    }
    let c = candidate.completion_rate;
    let lat = candidate.mean_latency_ms;
    if lat > policy.max_latency_ms {
        return verdict(
            Action::Rollback,
            format!(
                "{phase}: candidate mean latency {lat:.1} ms > max {} ms ({}; {})",
                policy.max_latency_ms,
                quote(candidate),
                context()
            ),
        );
    }
    if c < policy.rollback_threshold.get() {
        return verdict(
            Action::Rollback,
            format!(
                "{phase}: candidate completion {c:.3} < rollback threshold {} ({}; {})",
                policy.rollback_threshold,
                quote(candidate),
                context()
            ),
        );
    }
    if c < policy.min_task_completion_rate.get() {
        return verdict(
            Action::Maintain,
            format!(
                "{phase}: candidate completion {c:.3} below SLO {} (trips below {}); holding ({}; {})",
                policy.min_task_completion_rate,
                policy.rollback_threshold,
                quote(candidate),
                context()
            ),
        );
    }
    if c >= policy.advancement_threshold.get() {
        if let Some(next) = phase.next() {
            return verdict(
                Action::Advance,
                format!(
                    "{phase} -> {next}: candidate completion {c:.3} >= {} and mean latency {lat:.1} ms <= {} ms ({}; {})",
                    policy.advancement_threshold,
                    policy.max_latency_ms,
                    quote(candidate),
                    context()
                ),
            );
        }
        return verdict(
            Action::Maintain,
            format!(
                "{phase}: candidate healthy, nothing above ({}; {})",
                quote(candidate),
                context()
            ),
        );
    }
    verdict(
        Action::Maintain,
        format!(
            "{phase}: candidate completion {c:.3} within SLO {} but below advancement threshold {}; holding ({}; {})",
            policy.min_task_completion_rate,
            policy.advancement_threshold,
            quote(candidate),
            context()
        ),
    )
}

/// Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p), in nats (`0 ln 0 = 0`).
fn bernoulli_kl(q: f64, p: f64) -> f64 {
    let term = |a: f64, b: f64| if a == 0.0 { 0.0 } else { a * (a / b).ln() };
    term(q, p) + term(1.0 - q, 1.0 - p)
}

/// The fail-safe on silence, as A/B platforms check sample-ratio mismatch: in a trial phase the
/// candidate should report its routed share of executions. With `n` executions in the window,
/// `k` of them the candidate's and `p = traffic_shortfall_ratio × share`, it trips when
/// `k/n < p` and the Chernoff bound of `P(X ≤ k | X ~ Binomial(n, p))`, `exp(-n·KL(k/n ‖ p))`,
/// is at most `traffic_shortfall_alpha`. That bound holds for any true share `≥ p`, so a
/// candidate that reports at least `ratio` × its share trips with probability at most alpha per
/// evaluation. The counts cover the decision window less the phase's first
/// `traffic_shortfall_grace_ms` (routers pick a phase change up with some delay, and an
/// auto-started rollout's first interval precedes every router's knowing it). A silent
/// candidate trips once the window holds
/// `ln(1/alpha) / -ln(1 - p)` executions (default policy: about 2 760 at PROBE, 550 at SMALL,
/// 140 at MEDIUM).
pub(crate) fn traffic_shortfall(
    policy: &Policy,
    schedule: &super::policy::Schedule,
    phase: Phase,
    candidate: &VariantMetrics,
    baseline: &VariantMetrics,
) -> Option<Verdict> {
    if matches!(phase, Phase::Off | Phase::Full) {
        return None;
    }
    let share = schedule.percent(phase).percent() / 100.0;
    let p = policy.traffic_shortfall_ratio.get() * share;
    let k = candidate.samples;
    let n = k + baseline.samples;
    if p <= 0.0 || n == 0 {
        return None;
    }
    let observed = k as f64 / n as f64;
    if observed >= p {
        return None;
    }
    let log_bound = -(n as f64) * bernoulli_kl(observed, p);
    let log_alpha = policy.traffic_shortfall_alpha.ln();
    (log_bound <= log_alpha).then(|| Verdict {
        action: Action::Rollback,
        reason: format!(
            "{phase}: candidate reported {k} of {n} executions ({:.2} %) where the phase routes {:.2} %; \
             below {} of its share with tail bound {:.1e} <= alpha {:.0e} \
             (candidate silent, reports lost or calls unreported)",
            observed * 100.0,
            share * 100.0,
            policy.traffic_shortfall_ratio,
            log_bound.exp(),
            policy.traffic_shortfall_alpha,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(samples: u64, rate: f64, latency: f64) -> VariantMetrics {
        VariantMetrics {
            samples,
            successes: (samples as f64 * rate).round() as u64,
            completion_rate: rate,
            mean_latency_ms: latency,
            p50_latency_ms: latency,
            p95_latency_ms: latency,
            p99_latency_ms: latency,
        }
    }

    fn action(samples: u64, rate: f64, latency: f64, phase: Phase) -> Action {
        judge(
            &Policy::default(),
            phase,
            &metrics(samples, rate, latency),
            &VariantMetrics::default(),
        )
        .action
    }

    #[test]
    fn thresholds_partition_the_rate_axis() {
        use Action::*;
        use Phase::*;
        assert_eq!(action(9, 0.0, 9000.0, Probe), Maintain, "too few samples");
        assert_eq!(action(10, 1.0, 1200.0, Probe), Advance);
        assert_eq!(
            action(10, 0.95, 2000.0, Small),
            Advance,
            "boundaries inclusive"
        );
        assert_eq!(action(10, 0.98, 2000.1, Small), Rollback, "latency breach");
        assert_eq!(
            action(10, 0.79, 100.0, Small),
            Rollback,
            "below rollback threshold"
        );
        assert_eq!(
            action(10, 0.80, 100.0, Small),
            Maintain,
            "rollback comparison is strict"
        );
        assert_eq!(action(10, 0.84, 100.0, Small), Maintain, "below SLO: held");
        assert_eq!(
            action(10, 0.90, 100.0, Small),
            Maintain,
            "healthy, not convincing"
        );
        assert_eq!(action(10, 1.0, 100.0, Full), Maintain, "nothing above FULL");
        assert_eq!(action(40, 0.80, 2500.0, Small), Rollback, "seed scenario 2");
    }

    #[test]
    fn a_silent_candidate_trips_the_breaker() {
        let policy = Policy::default();
        let trips = |phase, k: u64, n_baseline: u64| {
            traffic_shortfall(
                &policy,
                &policy.schedule,
                phase,
                &metrics(k, 1.0, 100.0),
                &metrics(n_baseline, 1.0, 100.0),
            )
        };
        // PROBE routes 1 %: the check compares with 0.5 %, and needs about 2 760 executions.
        assert!(trips(Phase::Probe, 0, 2_700).is_none());
        let v = trips(Phase::Probe, 0, 2_800).expect("trips");
        assert_eq!(v.action, Action::Rollback, "{}", v.reason);
        assert!(v.reason.contains("0 of 2800 executions"), "{}", v.reason);
        // Healthy shares never trip, whatever the volume.
        assert!(trips(Phase::Small, 50, 950).is_none());
        assert!(trips(Phase::Medium, 9_000, 41_000).is_none());
        // A clear shortfall does: 0.33 % of the executions at SMALL (5 %).
        assert!(trips(Phase::Small, 10, 2_990).is_some());
        // FULL has no baseline to compare with; OFF routes nothing.
        assert!(trips(Phase::Full, 0, 100_000).is_none());
        assert!(trips(Phase::Off, 0, 100_000).is_none());
        // Disabled by a ratio of 0.
        let off = Policy {
            traffic_shortfall_ratio: crate::engine::Rate::new(0.0).unwrap(),
            ..Policy::default()
        };
        let v = traffic_shortfall(
            &off,
            &off.schedule,
            Phase::Probe,
            &metrics(0, 1.0, 100.0),
            &metrics(100_000, 1.0, 100.0),
        );
        assert!(v.is_none());
    }

    #[test]
    fn shortfall_false_alarm_rate_is_bounded() {
        // A candidate reporting exactly ratio × its share (the worst case the bound covers):
        // over many seeded windows, trips stay far below alpha × runs + a tolerance.
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let policy = Policy {
            traffic_shortfall_alpha: 1e-3,
            ..Policy::default()
        };
        let mut rng = SmallRng::seed_from_u64(7);
        let p = 0.5 * 0.05;
        let runs = 2_000;
        let mut trips = 0;
        for _ in 0..runs {
            let n = 2_000u64;
            let k = (0..n).filter(|_| rng.random::<f64>() < p).count() as u64;
            let v = traffic_shortfall(
                &policy,
                &policy.schedule,
                Phase::Small,
                &metrics(k, 1.0, 100.0),
                &metrics(n - k, 1.0, 100.0),
            );
            trips += u32::from(v.is_some());
        }
        // alpha × runs = 2; allow 3 more for sampling noise.
        assert!(trips <= 5, "{trips} false trips in {runs} runs");
    }

    #[test]
    fn reasons_quote_numbers_and_thresholds() {
        let v = judge(
            &Policy::default(),
            Phase::Small,
            &metrics(40, 0.8, 2500.0),
            &metrics(100, 0.99, 1000.0),
        );
        assert!(v.reason.contains("2500.0 ms > max 2000 ms"), "{}", v.reason);
        assert!(v.reason.contains("completion 0.800"), "{}", v.reason);
        assert!(
            v.reason.contains("baseline: completion 0.990"),
            "{}",
            v.reason
        );
        let v = judge(
            &Policy::default(),
            Phase::Probe,
            &metrics(3, 1.0, 10.0),
            &VariantMetrics::default(),
        );
        assert!(
            v.reason.contains("3 candidate samples") && v.reason.contains("10 needed"),
            "{}",
            v.reason
        );
    }
}
