//! The engine benches' workload: `ROLLOUTS` live rollouts, events round-robin.

use rollout_breaker::engine::{ExecutionEvent, LatencyMs, Variant};

pub const ROLLOUTS: usize = 10_000;
pub const BATCH: usize = 100_000;
pub const T0: i64 = 1_764_201_600_000;

/// Events for `ROLLOUTS` rollouts, round-robin, 100 events per ms of event time: each rollout
/// sees an event every 100 ms, 100 per 10-second bucket, so buckets close and evaluations run
/// at the rate they would in production.
pub fn events() -> Vec<ExecutionEvent> {
    (0..BATCH)
        .map(|i| {
            let variant = if i % 10 == 0 {
                Variant::Candidate
            } else {
                Variant::Baseline
            };
            ExecutionEvent::new(
                format!("rollout-{:05}", i % ROLLOUTS),
                variant,
                i % 50 != 0,
                LatencyMs::new(800.0 + (i % 400) as f64).unwrap(),
                T0 + (i / 100) as i64,
            )
        })
        .collect()
}
