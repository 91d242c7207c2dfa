//! `apply(event)` throughput of the pure engine with 10 000 live rollouts, two workloads.
//!
//! Run: `cargo bench --bench engine`. Prints events/s per core (criterion's "thrpt"): the
//! timed loops are measured in the CPU time of the bench thread, not wall time, so time the
//! thread spent waiting for a core on a shared machine does not count (the loop does no IO, so
//! on an idle machine the two agree).
//!
//! - `apply_event/10k_rollouts`: the worst case for the window path (each rollout sees one
//!   variant, an event every 100 ms; after the untimed warm-up every rollout is at MAINTAIN or
//!   OFF, so nothing is published while timed), one `apply_event` per event.
//! - `apply_events/10k_rollouts`: the same events through `Engine::apply_events`, the batch
//!   path that prefetches the state of the events a few places ahead (as the processor does).
//! - `apply_event/10k_rollouts_churn`: both variants, default policy with `auto_retry`; each
//!   rollout's candidate is healthy for 120 s, then fails for 60 s, then comes back with a new
//!   version label, staggered over the rollouts, so while timed rollouts advance (merging
//!   their windows' histograms for the published decision), roll back and start again. The
//!   decisions published in the timed loops are counted and printed. `apply_events/…_churn`:
//!   the same through the batch path.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rollout_breaker::engine::{Action, Decision, Engine, EngineOptions, ExecutionEvent, Policy};

#[path = "support/workload.rs"]
mod workload;
use workload::{events, Churn, BATCH, CYCLE_S, ROLLOUTS};

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

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
    for batched in [false, true] {
        group.bench_function(bench_name(batched, "10k_rollouts"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Shift the log forward in event time so every round is new data (untimed).
                    for e in events.iter_mut() {
                        e.timestamp += (BATCH / 100) as i64;
                    }
                    round += 1;
                    total += timed_apply(&mut engine, &events, batched, &mut out, |_| {});
                }
                total
            });
        });
    }
    let held: usize = engine.rollouts().map(|r| r.buckets_held()).sum();
    println!(
        "engine after {round} rounds: {} rollouts, {held} buckets held ({:.1} per rollout)",
        engine.len(),
        held as f64 / engine.len() as f64
    );

    // Churn: warm up one full cycle (untimed), so every rollout is somewhere in its cycle
    // (one round when `cargo test` runs the bench once as a test).
    let warm_up = if std::env::args().any(|a| a == "--bench") {
        CYCLE_S
    } else {
        1
    };
    let mut churn = Churn::new();
    let mut engine = Engine::new(Churn::policy(), EngineOptions::default());
    let mut round = 0i64;
    while round < warm_up {
        churn.set_round(round);
        for e in &churn.events {
            out.clear();
            engine.apply_event(e, &mut out);
        }
        round += 1;
    }
    let timed_from = round;
    let mut published = [0u64; 4]; // START, ADVANCE, ROLLBACK, other published
    for batched in [false, true] {
        group.bench_function(bench_name(batched, "10k_rollouts_churn"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    churn.set_round(round); // untimed
                    round += 1;
                    total += timed_apply(&mut engine, &churn.events, batched, &mut out, |d| {
                        count(d, &mut published)
                    });
                }
                total
            });
        });
    }
    group.finish();
    println!(
        "churn: {} s of event time timed ({} events): {} START, {} ADVANCE, {} ROLLBACK, {} other \
         published decisions",
        round - timed_from,
        (round - timed_from) as usize * churn.events.len(),
        published[0],
        published[1],
        published[2],
        published[3],
    );
}

/// `apply_event/<workload>` (one call per event) or `apply_events/<workload>` (the batch path).
fn bench_name(batched: bool, workload: &str) -> String {
    let path = if batched {
        "apply_events"
    } else {
        "apply_event"
    };
    format!("{path}/{workload}")
}

/// Applies `events` to `engine`, with one `apply_event` each or one `apply_events`, handing
/// each call's decisions to `seen` (timed with them); returns the thread's CPU time it took.
fn timed_apply(
    engine: &mut Engine,
    events: &[ExecutionEvent],
    batched: bool,
    out: &mut Vec<Decision>,
    mut seen: impl FnMut(&[Decision]),
) -> Duration {
    out.clear();
    let start = thread_cpu_time();
    if batched {
        engine.apply_events(std::hint::black_box(events), out);
        seen(out);
    } else {
        for e in events {
            out.clear();
            engine.apply_event(std::hint::black_box(e), out);
            seen(out);
        }
    }
    thread_cpu_time() - start
}

/// Counts the published decisions in `out` by action: START, ADVANCE, ROLLBACK, other.
fn count(out: &[Decision], published: &mut [u64; 4]) {
    for d in out {
        match d.action {
            Action::Start => published[0] += 1,
            Action::Advance => published[1] += 1,
            Action::Rollback => published[2] += 1,
            Action::Maintain => {}
            _ => published[3] += 1,
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
