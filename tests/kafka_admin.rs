//! Topic admin and a produce/consume round trip against a real broker.
//!
//! Run with `scripts/test kafka_admin` (starts a single-node Kafka) or with
//! `KAFKA_BOOTSTRAP` pointing at a broker.

mod common;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use rollout_breaker::kafka::admin::{
    ensure_topics, partition_count, topic_config, TopicOutcome, TopicSpec,
};

use common::{admin_client, consumer_config, kafka, producer_config, unique_name, ADMIN_TIMEOUT};

/// Metadata requests block: keep them off the async executor.
async fn partitions_of(bootstrap: &str, topic: &str) -> Option<i32> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = common::client_config(&bootstrap)
            .create()
            .expect("metadata client");
        partition_count(client.client(), &topic, ADMIN_TIMEOUT).expect("metadata request")
    })
    .await
    .expect("metadata task")
}

#[tokio::test]
async fn kafka_ensure_topics_creates_compacted_topic_with_its_config() {
    let broker = kafka().await;
    let admin = admin_client(&broker.bootstrap);
    let name = unique_name("admin-compact");
    let spec = TopicSpec::new(&name, 2).with_config("cleanup.policy", "compact");

    let statuses = ensure_topics(&admin, &[spec], ADMIN_TIMEOUT).await.unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].name, name);
    assert_eq!(statuses[0].outcome, TopicOutcome::Created);

    let config = topic_config(&admin, &name, ADMIN_TIMEOUT).await.unwrap();
    assert_eq!(
        config.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
}

#[tokio::test]
async fn kafka_ensure_topics_is_idempotent() {
    let broker = kafka().await;
    let admin = admin_client(&broker.bootstrap);
    let name = unique_name("admin-idempotent");
    let specs = [TopicSpec::new(&name, 3)];

    let first = ensure_topics(&admin, &specs, ADMIN_TIMEOUT).await.unwrap();
    assert_eq!(first[0].outcome, TopicOutcome::Created);
    assert_eq!(partitions_of(&broker.bootstrap, &name).await, Some(3));

    // A second run, as at every processor start, must be a no-op, even with a spec that
    // asks for a different count: existing topics are never altered.
    let second = ensure_topics(&admin, &specs, ADMIN_TIMEOUT).await.unwrap();
    assert_eq!(second[0].outcome, TopicOutcome::AlreadyExisted);
    let third = ensure_topics(&admin, &[TopicSpec::new(&name, 5)], ADMIN_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(third[0].outcome, TopicOutcome::AlreadyExisted);
    assert_eq!(partitions_of(&broker.bootstrap, &name).await, Some(3));
}

#[tokio::test]
async fn kafka_partition_count_of_a_missing_topic_is_none() {
    let broker = kafka().await;
    let name = unique_name("admin-missing");
    assert_eq!(partitions_of(&broker.bootstrap, &name).await, None);
}

#[tokio::test]
async fn kafka_produced_records_are_consumed_back() {
    const RECORDS: usize = 100;
    let broker = kafka().await;
    let topic = unique_name("roundtrip");
    common::create_topic(&broker.bootstrap, &topic, 1, &[]).await;

    let producer: FutureProducer = producer_config(&broker.bootstrap).create().unwrap();
    let sent: Vec<(String, String)> = (0..RECORDS)
        .map(|i| (format!("key-{i}"), format!("payload-{i}")))
        .collect();
    for (key, payload) in &sent {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("record acknowledged");
    }

    let consumer: StreamConsumer = consumer_config(&broker.bootstrap, &unique_name("group"))
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received = Vec::with_capacity(RECORDS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < RECORDS {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {RECORDS} records arrived", received.len()))
            .expect("consume");
        let key = String::from_utf8(message.key().expect("key").to_vec()).unwrap();
        let payload = message
            .payload_view::<str>()
            .expect("payload")
            .unwrap()
            .to_owned();
        received.push((key, payload));
    }
    // One partition: the order is the produce order.
    assert_eq!(received, sent);
}
