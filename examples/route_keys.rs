//! A Rust router for cross-language checks: routes request keys read from stdin, one per line,
//! and prints `1` (candidate) or `0` (baseline) per key, once its table holds the rollout at
//! sequence `min_sequence` or later (`0`: once the rollout is absent, e.g. after a tombstone).
//!
//! `cargo run --example route_keys -- TOPIC ROLLOUT MIN_SEQUENCE < keys.txt` with
//! `KAFKA_BOOTSTRAP` (default 127.0.0.1:19092). The first output line is
//! `state SEQUENCE PHASE TRAFFIC`. Used by `python/tests/test_kafka.py`.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use rollout_breaker::router::{DecisionTable, RouterConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [topic, rollout, min_sequence] = args.as_slice() else {
        return Err("usage: route_keys TOPIC ROLLOUT MIN_SEQUENCE".into());
    };
    let min_sequence: u64 = min_sequence.parse()?;

    let table = DecisionTable::start(RouterConfig::new(bootstrap, topic.as_str()))?;
    table.wait_ready_blocking(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reached = || match table.entry(rollout) {
        Some(e) => min_sequence > 0 && e.sequence >= min_sequence,
        None => min_sequence == 0,
    };
    while !reached() {
        if Instant::now() > deadline {
            return Err(format!("{rollout} did not reach sequence {min_sequence}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = std::io::stdout().lock();
    match table.entry(rollout) {
        Some(e) => writeln!(
            out,
            "{} {} {} {}",
            table.state(),
            e.sequence,
            e.phase,
            e.traffic
        )?,
        None => writeln!(out, "{} 0 - -", table.state())?,
    }
    for key in std::io::stdin().lock().lines() {
        let key = key?;
        let use_candidate = table.should_use_new_version(rollout, &key);
        writeln!(out, "{}", u8::from(use_candidate))?;
    }
    out.flush()?;
    table.shutdown();
    Ok(())
}
