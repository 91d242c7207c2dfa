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
    let policy = Policy::default();
    let mut events = scenario_events(Scenario::successful_rollout("scenario-1"), &policy);
    events.extend(scenario_events(Scenario::automatic_rollback("scenario-2"), &policy));
    events.sort_by_key(|e| e.timestamp);
    let expected = expected_decisions(&events, &policy);
    assert_eq!(
        expected["scenario-1"].iter().map(|d| (d.action, d.to)).collect::<Vec<_>>(),
        vec![(Action::Start, Phase::Probe), (Action::Advance, Phase::Small), (Action::Advance, Phase::Medium), (Action::Advance, Phase::Full)]
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let processor = tokio::spawn(rollout_breaker::kafka::processor::run(config.clone(), async move {
        let _ = stop_rx.await;
    }));
    // The processor creates the topics; wait until it has, then produce as a separate agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let producer = producer(&kafka.bootstrap);
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;

    let want = count(&expected);
    let got = tokio::task::spawn_blocking({
        let (b, c) = (kafka.bootstrap.clone(), config.clone());
        move || read_decisions(&b, &c, Duration::from_secs(60), |m| count(m) >= want)
    })
    .await
    .unwrap();
    // Give a duplicate, if any, the chance to show up before comparing.
    let _ = stop_tx.send(());
    processor.await.unwrap().expect("processor ran cleanly");
    let got_all = tokio::task::spawn_blocking({
        let (b, c) = (kafka.bootstrap.clone(), config.clone());
        move || read_decisions(&b, &c, Duration::from_secs(3), |_| false)
    })
    .await
    .unwrap();
    assert_eq!(count(&got), want);
    assert_eq!(got_all, expected, "the decisions topic must equal the in-memory engine's decisions");
    let last2 = got_all["scenario-2"].last().unwrap();
    assert_eq!((last2.action, last2.to, last2.breaker), (Action::Rollback, Phase::Off, BreakerState::Open));
    let last1 = got_all["scenario-1"].last().unwrap();
    assert_eq!((last1.to, last1.breaker), (Phase::Full, BreakerState::Closed));
}
