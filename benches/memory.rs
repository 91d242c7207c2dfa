//! Heap held per live rollout once every rollout's window is full (issue: < 16 KiB).
//!
//! Run: `cargo bench --bench memory`. The engine benches' workload (10 000 rollouts, events
//! round-robin, every rollout an event per 100 ms) runs through `monitoring_window_ms` + one
//! bucket of event time at the default policy (5 min of 10-s buckets), and the bytes the
//! engine allocated and has not freed are divided by the rollouts. A bench of its own because
//! the counting allocator would slow `cargo bench --bench engine`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rollout_breaker::engine::{Engine, EngineOptions, Policy};

#[path = "support/workload.rs"]
mod workload;
use workload::{events, BATCH};

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

fn main() {
    let policy = Policy::default();
    // `cargo test` runs benches once as tests: one round there, the full window under
    // `cargo bench` (30 M events).
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full {
        (policy.monitoring_window_ms + policy.evaluation_interval_ms) / 1_000 + 1
    } else {
        1
    };
    let mut events = events();
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut engine = Engine::new(policy, EngineOptions::default());
    let mut out = Vec::new();
    for _ in 0..rounds {
        for e in &events {
            out.clear();
            engine.apply_event(e, &mut out);
        }
        for e in events.iter_mut() {
            e.timestamp += (BATCH / 100) as i64;
        }
    }
    drop(out);
    let held = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
    let buckets: usize = engine.rollouts().map(|r| r.buckets_held()).sum();
    println!(
        "memory: {} rollouts, {:.1} buckets held each ({} s of event time, default policy): \
         {} bytes held by the engine, {:.0} bytes per rollout (target < 16 KiB)",
        engine.len(),
        buckets as f64 / engine.len() as f64,
        rounds,
        held,
        held as f64 / engine.len() as f64
    );
}
