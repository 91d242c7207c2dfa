//! The processor against a broker's TLS listener (built with `--features tls`).
//!
//! `scripts/kafka.sh start` opens a TLS listener with a self-signed certificate for 127.0.0.1
//! and prints `KAFKA_TLS_BOOTSTRAP` and `KAFKA_TLS_CA`; `scripts/test` exports them and runs
//! this file with the feature. A processor whose only broker address is the TLS listener
//! publishes a START for an event, and a client that does not trust the certificate is refused.
#![cfg(feature = "tls")]

mod common;

use std::time::Duration;

use common::processor::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use rollout_breaker::codec::Encoding;
use rollout_breaker::engine::Action;

/// The TLS listener and the CA file that trusts it.
fn tls_endpoint() -> (String, String) {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                panic!(
                "{name} is not set: run this test through `scripts/test kafka_tls --features tls`, \
                 or start a broker with `scripts/kafka.sh start` and export the \
                 KAFKA_TLS_BOOTSTRAP and KAFKA_TLS_CA it prints"
            )
            })
    };
    (var("KAFKA_TLS_BOOTSTRAP"), var("KAFKA_TLS_CA"))
}

fn metadata_over_tls(bootstrap: &str, ca: Option<&str>) -> Result<usize, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SSL");
    if let Some(ca) = ca {
        c.set("ssl.ca.location", ca);
    }
    let consumer: BaseConsumer = c.create().map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map(|m| m.brokers().len())
        .map_err(|e| e.to_string())
}

#[test]
fn the_certificate_is_checked() {
    let (bootstrap, ca) = tls_endpoint();
    assert_eq!(metadata_over_tls(&bootstrap, Some(&ca)), Ok(1));
    // The system's CAs do not trust the broker's self-signed certificate.
    assert!(
        metadata_over_tls(&bootstrap, None).is_err(),
        "a client that does not trust the certificate got metadata"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_runs_over_tls() {
    let kafka = common::kafka().await;
    let (tls_bootstrap, ca) = tls_endpoint();
    let mut config = config(&kafka.bootstrap, 2);
    // The processor (its consumer, transactional producer, restore readers and admin client)
    // sees only the TLS listener; the test's own clients use the plaintext one.
    config.kafka.bootstrap_servers = tls_bootstrap;
    config
        .kafka
        .options
        .insert("security.protocol".into(), "SSL".into());
    config.kafka.options.insert("ssl.ca.location".into(), ca);
    config
        .validate()
        .expect("a TLS config is valid in a TLS build");
    let processor = start(&config);
    let events = [baseline_event("tls-rollout", now_epoch_ms())];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // The processor creates the topics over TLS; produce once they exist.
    let producer = producer(&kafka.bootstrap);
    loop {
        let topics = metadata_topics(&kafka.bootstrap);
        if topics.contains(&config.topics.events) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no events topic after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;
    let got = await_decisions(&kafka.bootstrap, &config, 1, Duration::from_secs(60)).await;
    processor.stop().await;
    let actions: Vec<Action> = got
        .get("tls-rollout")
        .map(|ds| ds.iter().map(|d| d.action).collect())
        .unwrap_or_default();
    assert_eq!(actions, [Action::Start], "decisions: {got:?}");
}

fn metadata_topics(bootstrap: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("client config");
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map(|m| m.topics().iter().map(|t| t.name().to_owned()).collect())
        .unwrap_or_default()
}
