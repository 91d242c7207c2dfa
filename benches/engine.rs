//! `apply(event)` throughput of the pure engine with 10 000 live rollouts.
//!
//! Run: `cargo bench --bench engine`. Prints events/s (criterion's "thrpt").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rollout_breaker::engine::{Engine, EngineOptions, Policy};

#[path = "support/workload.rs"]
mod workload;
use workload::{events, BATCH, ROLLOUTS};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let mut events = events();
    let mut engine = Engine::new(Policy::default(), EngineOptions::default());
    for e in &events {
        engine.apply(e);
    }
    assert_eq!(engine.len(), ROLLOUTS);
    let mut round = 1i64;
    let mut out = Vec::new();
    group.bench_function("apply_event/10k_rollouts", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                // Shift the log forward in event time so every round is new data (untimed).
                for e in events.iter_mut() {
                    e.timestamp += (BATCH / 100) as i64;
                }
                round += 1;
                let start = std::time::Instant::now();
                for e in &events {
                    out.clear();
                    engine.apply_event(std::hint::black_box(e), &mut out);
                }
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
    let held: usize = engine.rollouts().map(|r| r.buckets_held()).sum();
    println!(
        "engine after {round} rounds: {} rollouts, {held} buckets held ({:.1} per rollout)",
        engine.len(),
        held as f64 / engine.len() as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
