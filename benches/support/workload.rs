//! The engine benches' workloads: live rollouts, events round-robin, deterministic.
//!
//! - [`events`]: the worst case of `cargo bench --bench engine` (10 000 rollouts, each sees
//!   one variant only; after the warm-up every rollout sits at MAINTAIN or OFF).
//! - [`both_variants`]: every rollout sees baseline and candidate events alternately, so both
//!   of its windows fill (the memory bench's honest case).
//! - [`Churn`]: rollouts whose candidate turns bad and comes back with a new version label, so
//!   they advance, roll back and start again (policy `auto_retry`) while the bench is timed.
#![allow(dead_code)] // each bench uses part of it

use rollout_breaker::engine::{ExecutionEvent, LatencyMs, Policy, Variant};

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

/// One second of event time for `rollouts` rollouts, round-robin, each rollout an event every
/// 100 ms alternating baseline and candidate (`10 × rollouts` events). Shift every timestamp
/// by 1 000 for the next second.
pub fn both_variants(rollouts: usize) -> Vec<ExecutionEvent> {
    let per_ms = rollouts / 100;
    (0..10 * rollouts)
        .map(|i| {
            let variant = if (i / rollouts) % 2 == 0 {
                Variant::Baseline
            } else {
                Variant::Candidate
            };
            ExecutionEvent::new(
                format!("rollout-{:06}", i % rollouts),
                variant,
                i % 50 != 0,
                LatencyMs::new(800.0 + (i % 400) as f64).unwrap(),
                T0 + (i / per_ms) as i64,
            )
        })
        .collect()
}

/// Seconds of a churn cycle: the candidate is healthy for `HEALTHY_S`, then fails every
/// execution until the cycle ends, and the next cycle's candidate reports a new version label.
pub const CYCLE_S: i64 = 180;
/// Healthy part of a churn cycle, seconds.
pub const HEALTHY_S: i64 = 120;

/// The churn workload: [`both_variants`] for `ROLLOUTS` rollouts, whose cycles are staggered
/// over the rollouts so that advances, rollbacks and starts are spread over every second.
pub struct Churn {
    pub events: Vec<ExecutionEvent>,
}

impl Churn {
    /// The policy: default, with `auto_retry` so a rolled-back rollout starts again when its
    /// candidate reports a new version label.
    pub fn policy() -> Policy {
        Policy {
            auto_retry: true,
            ..Policy::default()
        }
    }

    pub fn new() -> Self {
        Self {
            events: both_variants(ROLLOUTS),
        }
    }

    /// Stamps the events for second `round` (0, 1, ...): timestamps, and the candidate's
    /// success and version label by where its rollout is in its cycle. Deterministic.
    pub fn set_round(&mut self, round: i64) {
        let per_ms = ROLLOUTS / 100;
        for (i, e) in self.events.iter_mut().enumerate() {
            e.timestamp = T0 + round * 1_000 + (i / per_ms) as i64;
            if e.variant != Variant::Candidate {
                continue;
            }
            let r = i % ROLLOUTS;
            let t = round + (r as i64 * CYCLE_S) / ROLLOUTS as i64;
            let (cycle, at) = (t / CYCLE_S, t % CYCLE_S);
            e.success = at < HEALTHY_S && i % 50 != 0;
            let label = if cycle % 2 == 0 { "v1" } else { "v2" };
            if e.version != label {
                e.version.clear();
                e.version.push_str(label);
            }
        }
    }
}
