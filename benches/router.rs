//! Lookups per second of the decision table's read path on one core: a Ready table with 10k
//! rollouts, keys and rollouts cycling so the hash map is not always hit in the same slot.
//! Every rollout is at a partial phase (1, 5 or 20 %), so every lookup hashes its key (at 0 %
//! and 100 % the table answers without hashing).
//!
//! `cargo bench --bench router -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rollout_breaker::engine::{Action, Cause, Decision, MetricsSnapshot, Phase, TrafficPercent};
use rollout_breaker::router::{DecisionTable, Table};

const ROLLOUTS: usize = 10_000;
const BATCH: usize = 1_024;

fn table() -> Table {
    let mut t = Table::new();
    for i in 0..ROLLOUTS {
        let (to, percent) = [
            (Phase::Probe, 1.0),
            (Phase::Small, 5.0),
            (Phase::Medium, 20.0),
            (Phase::Full, 100.0),
        ][i % 4];
        t.apply(&Decision {
            rollout_id: format!("rollout-{i}"),
            sequence: 1,
            action: Action::Advance,
            from: Phase::Off,
            to,
            traffic: TrafficPercent::new(percent).unwrap(),
            breaker: to.breaker(),
            paused: false,
            reason: String::new(),
            metrics: MetricsSnapshot::default(),
            at: 1_764_222_000_000,
            cause: Cause::Automatic,
            actor: "watchdog".into(),
            candidate_version: Some("v2".into()),
            baseline_version: Some("v1".into()),
            policy_json: None,
            phase_started_at: None,
            warning: None,
            scope: rollout_breaker::engine::Scope::DEFAULT,
        });
    }
    t
}

fn lookups(c: &mut Criterion) {
    let requests: Vec<(String, String)> = (0..BATCH)
        .map(|i| {
            (
                format!("rollout-{}", (i * 7919) % ROLLOUTS),
                format!("user-{i}"),
            )
        })
        .collect();
    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(BATCH as u64));

    let table = DecisionTable::fixed("bench", table());
    g.bench_function("should_use_new_version", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (r, k) in &requests {
                n += u32::from(table.should_use_new_version(black_box(r), black_box(k)));
            }
            n
        })
    });
    g.bench_function("route", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (r, k) in &requests {
                n += u32::from(table.route(black_box(r), black_box(k)).use_candidate);
            }
            n
        })
    });
    let snapshot = table.snapshot();
    g.bench_function("snapshot_serves_candidate", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (r, k) in &requests {
                n += u32::from(snapshot.serves_candidate(black_box(r), black_box(k)) == Some(true));
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
