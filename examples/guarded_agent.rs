//! An agent with two versions behind the circuit breaker: each request goes where the decision
//! table says, and each call is reported to the events topic.
//!
//! `cargo run --example guarded_agent -- [rollout]` with `KAFKA_BOOTSTRAP`
//! (default 127.0.0.1:19092) and the default topics `rollout-decisions` / `rollout-events`.

use std::sync::Arc;
use std::time::Duration;

use rollout_breaker::agent::{EmitterConfig, EventEmitter, GuardedAgent};
use rollout_breaker::engine::Variant;
use rollout_breaker::router::{DecisionTable, RouterConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let rollout = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "checkout-agent".into());

    let table = Arc::new(DecisionTable::start(RouterConfig::new(
        &bootstrap,
        "rollout-decisions",
    ))?);
    let _ = table.wait_ready(Duration::from_secs(10)).await; // not ready: baseline for all
    let emitter = Arc::new(EventEmitter::new(EmitterConfig::new(
        &bootstrap,
        "rollout-events",
    ))?);
    let agent = GuardedAgent::new(
        &rollout,
        table.clone(),
        emitter.clone(),
        "doer-v1",
        "doer-v2",
    );

    for i in 0..200 {
        let g = agent
            .call(&format!("user-{i}"), |version| async move {
                // The two versions of the "agent": the candidate is slower and fails more.
                let (ms, fails) = match version {
                    Variant::Baseline => (5, i % 20 == 0),
                    Variant::Candidate => (15, i % 4 == 0),
                };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if fails {
                    Err("task failed")
                } else {
                    Ok("done")
                }
            })
            .await;
        if i % 20 == 0 {
            println!(
                "user-{i}: {} {:?} in {:.1} ms",
                g.version_label, g.result, g.latency_ms
            );
        }
    }
    let flushing = emitter.clone();
    tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(10))).await??;
    println!("table {} | events {:?}", table.state(), emitter.stats());
    Ok(())
}
