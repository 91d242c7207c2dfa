//! A tombstone (null payload) on the decisions topic retires a rollout: routers drop it, live
//! and on a fresh load of the topic.

mod common;

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rollout_breaker::codec::encode_decision;
use rollout_breaker::engine::{Command, CommandKind, Engine, EngineOptions, Policy};
use rollout_breaker::router::{DecisionTable, RouteReason, RouterConfig};

async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: Option<&[u8]>) {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("delivered");
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_removes_the_rollout_from_every_router() {
    let kafka = common::kafka().await;
    let topic = common::unique_name("decisions");
    common::create_topic(
        &kafka.bootstrap,
        &topic,
        1,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let producer: FutureProducer = common::producer_config(&kafka.bootstrap).create().unwrap();
    let config = RouterConfig::new(&kafka.bootstrap, &topic);
    let mut engine = Engine::new(Policy::threshold(), EngineOptions::default());
    for id in ["retired", "kept"] {
        let d = engine
            .apply_command(&Command::new(
                id,
                CommandKind::Start,
                "test",
                "start",
                1_764_222_000_000,
            ))
            .unwrap();
        let bytes = encode_decision(&d, config.encoding);
        produce(&producer, &topic, id, Some(&bytes)).await;
    }
    let live = DecisionTable::start(config.clone()).unwrap();
    live.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(live.entry("retired").is_some() && live.entry("kept").is_some());

    produce(&producer, &topic, "retired", None).await;
    let dropped = tokio::task::spawn_blocking({
        let live = std::sync::Arc::new(live);
        move || {
            let ok = wait_until(Duration::from_secs(5), || live.entry("retired").is_none());
            (ok, live)
        }
    })
    .await
    .unwrap();
    let (ok, live) = dropped;
    assert!(ok, "the live router still holds the retired rollout");
    assert!(live.entry("kept").is_some());
    assert_eq!(
        live.route("retired", "user-1").reason,
        RouteReason::UnknownRollout
    );

    // A router loading the topic from the beginning never serves it either.
    let fresh = DecisionTable::start(config).unwrap();
    fresh.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(fresh.entry("retired").is_none());
    assert!(fresh.entry("kept").is_some());
    tokio::task::spawn_blocking(move || {
        live.shutdown();
        fresh.shutdown();
    })
    .await
    .unwrap();
}
