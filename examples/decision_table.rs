//! Follows a decisions topic and prints how a few requests are routed, every second.
//!
//! `cargo run --example decision_table -- [topic] [rollout]` with `KAFKA_BOOTSTRAP`
//! (default 127.0.0.1:19092). Publish decisions with `rollout-breaker`, or with kcat.

use std::time::Duration;

use rollout_breaker::router::{DecisionTable, RouterConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "rollout-decisions".into());
    let rollout = args.next().unwrap_or_else(|| "checkout-agent".into());

    let table = DecisionTable::start(RouterConfig::new(bootstrap, topic))?;
    if let Err(e) = table.wait_ready(Duration::from_secs(10)).await {
        eprintln!("{e}; serving the baseline until it is");
    }
    for _ in 0..10 {
        let keys = (0..1_000).map(|i| format!("user-{i}"));
        let candidates = keys
            .filter(|k| table.should_use_new_version(&rollout, k))
            .count();
        let route = table.route(&rollout, "user-42");
        println!(
            "state {} | {rollout}: phase {:?} traffic {} | user-42 -> {} ({:?}) | {candidates}/1000 keys on the candidate",
            table.state(),
            route.phase,
            route.traffic,
            if route.use_candidate { "candidate" } else { "baseline" },
            route.reason,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::task::spawn_blocking(move || table.shutdown()).await?;
    Ok(())
}
