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
