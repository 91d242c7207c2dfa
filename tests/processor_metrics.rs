//! The metrics `/metrics` shows match the README's Operations list, in both directions.
//! A file of its own: the Prometheus recorder is process-wide, so processors of other tests in
//! the same process would mix their gauges into this one's.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::{free_addr, wait_for};
use common::processor::*;
use rdkafka::producer::FutureRecord;
use rollout_breaker::codec::Encoding;
use rollout_breaker::engine::Variant;
use rollout_breaker::kafka::processor::ensure_topics;
use rollout_breaker::sim::Scenario;

/// The metric names the README's Operations section lists under **Endpoints**.
fn readme_metrics() -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let start = readme.find("- **Endpoints**").expect("Endpoints bullet");
    let rest = &readme[start + 3..];
    let end = rest.find("\n- **").unwrap_or(rest.len());
    let mut names = BTreeSet::new();
    let bytes = &rest.as_bytes()[..end];
    let text = &rest[..end];
    let mut i = 0;
    while let Some(pos) = text[i..].find("rollout_breaker_") {
        let s = i + pos;
        let mut e = s;
        while e < bytes.len() && (bytes[e].is_ascii_lowercase() || bytes[e] == b'_') {
            e += 1;
        }
        names.insert(text[s..e].to_owned());
        i = e;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_readme_list_in_both_directions() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    let addr = free_addr();
    config.http.listen = Some(addr);
    ensure_topics(&config).await.unwrap();
    let producer = producer(&kafka.bootstrap);
    let events = scenario_events(
        Scenario::successful_rollout("metrics-agent"),
        &config.policy,
    );
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;
    producer
        .send(
            FutureRecord::to(&config.topics.events)
                .key("metrics-agent")
                .payload(b"{not json"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let running = start(&config);
    let expected = expected_decisions(&events, &config.policy);
    await_decisions(
        &kafka.bootstrap,
        &config,
        count(&expected),
        Duration::from_secs(60),
    )
    .await;
    // Lag comes from librdkafka statistics (every 5 s).
    let scraped = wait_for(addr, "/metrics", Duration::from_secs(20), |_, body| {
        body.contains("rollout_breaker_consumer_lag{")
    })
    .await
    .expect("metrics");
    running.stop().await;
    let body = scraped.1;
    let shown: BTreeSet<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with("rollout_breaker_"))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let listed = readme_metrics();
    let missing: Vec<_> = listed.difference(&shown).collect();
    let unlisted: Vec<_> = shown.difference(&listed).collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "README lists but /metrics lacks {missing:?}; /metrics shows but README lacks {unlisted:?}\n{body}"
    );
    let rollouts = body
        .lines()
        .find_map(|l| l.strip_prefix("rollout_breaker_rollouts "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(rollouts, Some(1.0), "rollouts gauge: {body}");
    let value = |series: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} missing: {body}"))
    };
    assert_eq!(
        value(r#"rollout_breaker_rollouts_by_phase{phase="FULL"}"#),
        1.0,
        "the rollout was promoted: {body}"
    );
    assert_eq!(
        value(r#"rollout_breaker_rollouts_by_phase{phase="OFF"}"#),
        0.0
    );
    // Every event of the scenario is counted once, by variant and outcome, with its latency.
    for variant in [Variant::Baseline, Variant::Candidate] {
        let of = |success: bool| {
            events
                .iter()
                .filter(|e| e.variant == variant && e.success == success)
                .count() as f64
        };
        let label = variant.to_string();
        assert_eq!(
            value(&format!(
                r#"rollout_breaker_executions_total{{variant="{label}",outcome="success"}}"#
            )),
            of(true),
            "{body}"
        );
        assert_eq!(
            value(&format!(
                r#"rollout_breaker_executions_total{{variant="{label}",outcome="failure"}}"#
            )),
            of(false),
            "{body}"
        );
        let latency: f64 = events
            .iter()
            .filter(|e| e.variant == variant)
            .map(|e| e.latency.get())
            .sum();
        let shown = value(&format!(
            r#"rollout_breaker_execution_latency_ms_total{{variant="{label}"}}"#
        ));
        // Rounded to whole ms once per batch.
        assert!(
            (shown - latency).abs() <= 1.0 + latency * 1e-4,
            "{shown} vs {latency}"
        );
    }
    assert!(
        value("rollout_breaker_restore_duration_seconds") > 0.0,
        "{body}"
    );
}
