//! Heap held per live rollout once every rollout's window is full (issue: < 16 KiB).
//!
//! Run: `cargo bench --bench memory`. Events round-robin, every rollout an event per 100 ms,
//! run through `monitoring_window_ms` + one bucket of event time at the default policy (5 min
//! of 10-s buckets); the bytes the engine allocated and has not freed are divided by the
//! rollouts. Three cases, each in a fresh engine: the engine bench's workload (10 000
//! rollouts, each seeing one variant only, so one window each), and 10 000 and 100 000
//! rollouts seeing baseline and candidate alternately (both windows full: the honest figure).
//! A bench of its own because the counting allocator would slow `cargo bench --bench engine`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rollout_breaker::engine::{Engine, EngineOptions, Policy};

#[path = "support/workload.rs"]
mod workload;
use workload::{both_variants, events, ROLLOUTS};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap the engine holds after `rounds` seconds of event time of `events` (one second of
/// event time per round, shifted by `shift_ms` each round): (rollouts, buckets, bytes).
fn held_after(
    mut events: Vec<rollout_breaker::engine::ExecutionEvent>,
    shift_ms: i64,
    rounds: u64,
) -> (usize, usize, usize) {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut engine = Engine::new(Policy::default(), EngineOptions::default());
    let mut out = Vec::new();
    for _ in 0..rounds {
        for e in &events {
            out.clear();
            engine.apply_event(e, &mut out);
        }
        for e in events.iter_mut() {
            e.timestamp += shift_ms;
        }
    }
    drop(out);
    let held = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
    let buckets: usize = engine.rollouts().map(|r| r.buckets_held()).sum();
    (engine.len(), buckets, held)
}

fn main() {
    let policy = Policy::default();
    // `cargo test` runs benches once as tests: one round there, the full window under
    // `cargo bench`.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full {
        (policy.monitoring_window_ms + policy.evaluation_interval_ms) / 1_000 + 1
    } else {
        1
    };
    // (what, rollouts, both variants per rollout)
    let cases = [
        (
            "one variant per rollout (the engine bench's workload)",
            ROLLOUTS,
            false,
        ),
        ("baseline and candidate", ROLLOUTS, true),
        ("baseline and candidate", 100_000, true),
    ];
    for (what, rollouts, both) in cases {
        let events = if both {
            both_variants(rollouts)
        } else {
            events()
        };
        let (n, buckets, held) = held_after(events, 1_000, rounds);
        assert_eq!(n, rollouts);
        println!(
            "memory: {n} rollouts, {what}: {:.1} buckets held each ({rounds} s of event time, \
             default policy): {held} bytes held by the engine, {:.0} bytes per rollout \
             (target < 16 KiB)",
            buckets as f64 / n as f64,
            held as f64 / n as f64
        );
    }
}
