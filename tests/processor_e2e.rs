//! End to end on a real broker: agents' events in, the processor, phase changes out.

mod common;

use std::time::Duration;

use common::processor::*;
use rollout_breaker::codec::Encoding;
use rollout_breaker::engine::{Action, BreakerState, Phase, Policy};
use rollout_breaker::sim::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenarios_through_kafka_yield_exactly_the_expected_phase_changes() {
    let kafka = common::kafka().await;
    let config = config(&kafka.bootstrap, 3);
    let policy = Policy::threshold();
    let mut events = scenario_events(Scenario::successful_rollout("scenario-1"), &policy);
    events.extend(scenario_events(
        Scenario::automatic_rollback("scenario-2"),
        &policy,
    ));
    events.sort_by_key(|e| e.timestamp);
    let expected = expected_decisions(&events, &policy);
    assert_eq!(
        expected["scenario-1"]
            .iter()
            .map(|d| (d.action, d.to))
            .collect::<Vec<_>>(),
        vec![
            (Action::Start, Phase::Probe),
            (Action::Advance, Phase::Small),
            (Action::Advance, Phase::Medium),
            (Action::Advance, Phase::Full)
        ]
    );

    let processor = start(&config);
    // The processor creates the topics; wait until it has, then produce as a separate agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let producer = producer(&kafka.bootstrap);
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;

    let want = count(&expected);
    let got = await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(60)).await;
    // Give a duplicate, if any, the chance to show up before comparing.
    processor.stop().await;
    let got_all = await_decisions(
        &kafka.bootstrap,
        &config,
        usize::MAX,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(count(&got), want);
    assert_eq!(
        got_all, expected,
        "the decisions topic must equal the in-memory engine's decisions"
    );
    // An operator's audit replay reproduces every published decision.
    let report = audit(&config).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.verified as usize, want);
    assert_eq!(report.events as usize, events.len());
    let last2 = got_all["scenario-2"].last().unwrap();
    assert_eq!(
        (last2.action, last2.to, last2.breaker),
        (Action::Rollback, Phase::Off, BreakerState::Open)
    );
    let last1 = got_all["scenario-1"].last().unwrap();
    assert_eq!(
        (last1.to, last1.breaker),
        (Phase::Full, BreakerState::Closed)
    );
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_endpoints_report_the_run() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    config.http.listen = Some(addr);
    let policy = Policy::threshold();
    let events = scenario_events(Scenario::automatic_rollback("observed"), &policy);
    let expected = expected_decisions(&events, &policy);
    let processor = start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let producer = producer(&kafka.bootstrap);
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;
    let want = count(&expected);
    let got = await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(60)).await;
    assert_eq!(got, expected);
    let (metrics, health, ready) = tokio::task::spawn_blocking(move || {
        (
            http_get(addr, "/metrics"),
            http_get(addr, "/healthz"),
            http_get(addr, "/readyz"),
        )
    })
    .await
    .unwrap();
    assert_eq!(health.0, 200, "{}", health.1);
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(ready.1.contains("assigned 2, restored 2"), "{}", ready.1);
    assert_eq!(metrics.0, 200);
    for needle in [
        "rollout_breaker_decisions_total{action=\"ROLLBACK\"}",
        "rollout_breaker_records_in_total{topic=\"events\"}",
        "rollout_breaker_transactions_total",
        // A process-wide gauge: another test's processor in this process may have set it last.
        "rollout_breaker_partitions_restored ",
    ] {
        assert!(
            metrics.1.contains(needle),
            "missing {needle} in:\n{}",
            metrics.1
        );
    }
    processor.stop().await;
}
