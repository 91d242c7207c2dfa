//! Per-rollout, per-bucket numbers of a re-run, for the report's plots (pure).

use std::collections::BTreeMap;

use super::Observer;
use crate::engine::ExecutionEvent;
use crate::engine::Variant;

/// One variant's executions in one bucket.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Executions.
    pub samples: u64,
    /// Executions that completed their task.
    pub successes: u64,
    latencies: Vec<f64>,
}

impl Side {
    /// Completed share, when there were executions.
    pub fn completion(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.successes as f64 / self.samples as f64)
    }

    /// 95th percentile latency in ms (nearest rank), when there were executions.
    pub fn p95(&self) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut l = self.latencies.clone();
        l.sort_by(f64::total_cmp);
        let rank = ((0.95 * l.len() as f64).ceil() as usize).clamp(1, l.len());
        Some(l[rank - 1])
    }
}

/// Both variants in one bucket.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// The candidate's executions.
    pub candidate: Side,
    /// The baseline's executions.
    pub baseline: Side,
}

/// Collects the admitted events of the selected rollouts within a span of event time into
/// tumbling buckets.
#[derive(Debug, Clone)]
pub struct Timeline {
    width_ms: u64,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    rollout: Option<String>,
    /// Buckets per rollout, by bucket start (ms).
    pub rollouts: BTreeMap<String, BTreeMap<i64, Bucket>>,
}

impl Timeline {
    /// Buckets of `width_ms`; events within `[from_ms, to_ms]` (bounds optional) of `rollout`
    /// (or of every rollout).
    pub fn new(
        width_ms: u64,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        rollout: Option<String>,
    ) -> Self {
        Self {
            width_ms: width_ms.max(1),
            from_ms,
            to_ms,
            rollout,
            rollouts: BTreeMap::new(),
        }
    }

    /// Whether `t` is within the span.
    pub fn in_span(&self, t: i64) -> bool {
        self.from_ms.is_none_or(|f| t >= f) && self.to_ms.is_none_or(|to| t <= to)
    }

    /// Whether `id` is selected.
    pub fn selects(&self, id: &str) -> bool {
        self.rollout.as_deref().is_none_or(|r| r == id)
    }

    /// Bucket width in ms.
    pub fn width_ms(&self) -> u64 {
        self.width_ms
    }
}

impl Observer for Timeline {
    fn event(&mut self, e: &ExecutionEvent) {
        if !self.selects(&e.rollout_id) || !self.in_span(e.timestamp) {
            return;
        }
        let w = self.width_ms as i64;
        let start = e.timestamp - e.timestamp.rem_euclid(w);
        let bucket = self
            .rollouts
            .entry(e.rollout_id.to_string())
            .or_default()
            .entry(start)
            .or_default();
        let side = match e.variant {
            Variant::Candidate => &mut bucket.candidate,
            Variant::Baseline => &mut bucket.baseline,
        };
        side.samples += 1;
        side.successes += u64::from(e.success);
        side.latencies.push(e.latency.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LatencyMs;

    #[test]
    fn buckets_hold_completion_and_p95_of_the_selected_rollout() {
        let mut t = Timeline::new(10_000, Some(0), Some(25_000), Some("a".into()));
        for i in 0..100 {
            let mut e = ExecutionEvent::new(
                "a",
                Variant::Candidate,
                i % 4 != 0,
                LatencyMs::new(i as f64).unwrap(),
                i * 100,
            );
            t.event(&e);
            e.rollout_id = "b".into();
            t.event(&e);
        }
        t.event(&ExecutionEvent::new(
            "a",
            Variant::Baseline,
            true,
            LatencyMs::new(1.0).unwrap(),
            30_000,
        ));
        assert_eq!(t.rollouts.len(), 1);
        let b = &t.rollouts["a"][&0];
        assert_eq!((b.candidate.samples, b.candidate.successes), (100, 75));
        assert_eq!(b.candidate.completion(), Some(0.75));
        assert_eq!(b.candidate.p95(), Some(94.0));
        assert_eq!(b.baseline.p95(), None);
    }
}
