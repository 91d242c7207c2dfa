//! Helpers for processor tests: configs with fresh topics, producing events, reading the
//! decisions topic as a read_committed consumer.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::config::Config;
use rollout_breaker::engine::{Command, Decision, Engine, EngineOptions, ExecutionEvent, Policy};
use rollout_breaker::sim::{Scenario, SCENARIO_EPOCH_MS};

use super::{consumer_config, producer_config, unique_name};

/// A processor config on fresh topics with `partitions` partitions, HTTP off, short batches.
pub fn config(bootstrap: &str, partitions: i32) -> Config {
    let mut c = Config::default();
    let prefix = unique_name("rb");
    c.kafka.bootstrap_servers = bootstrap.to_owned();
    c.kafka.group_id = format!("{prefix}-group");
    c.kafka.instance_id = "i1".into();
    c.kafka
        .options
        .insert("session.timeout.ms".into(), "6000".into());
    c.kafka
        .options
        .insert("heartbeat.interval.ms".into(), "500".into());
    c.topics.events = format!("{prefix}-events");
    c.topics.decisions = format!("{prefix}-decisions");
    c.topics.commands = format!("{prefix}-commands");
    c.topics.dead_letter = format!("{prefix}-dlq");
    c.topics.partitions = partitions;
    c.http.listen = None;
    c.processing.max_batch_ms = 20;
    // The parallel decode path (off by default) runs here whenever a batch is large enough:
    // these tests compare the decisions with the in-memory engine's.
    c.processing.decode_threads = 0;
    // These tests check the processor's mechanics against the seed's scenarios, whose expected
    // phase paths are the threshold rule's; tests/processor_statistical.rs and the chaos suite
    // run the default (statistical) rule.
    c.policy = Policy::threshold();
    c
}

/// The current time floored to a minute: Kafka tests play scenarios in the present, because a
/// broker deletes records whose timestamps are older than its retention (7 days by default) —
/// a scenario set in the past would lose its events to the retention checker mid-test.
pub fn now_epoch_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now % 60_000
}

/// Events of a scenario generated in a closed loop against an in-memory engine (the router
/// follows the engine's decisions), as agents would have produced them. The scenario is moved
/// from [`SCENARIO_EPOCH_MS`] to the recent past, so that it ends before the present (see
/// [`now_epoch_ms`]): the processor refuses events dated more than `max_clock_skew_ms` ahead of
/// their record timestamp, which on topics it creates is the broker's append time.
pub fn scenario_events(mut scenario: Scenario, policy: &Policy) -> Vec<ExecutionEvent> {
    let end = scenario.duration_ms + 60_000;
    scenario.start_ms = now_epoch_ms() - end + (scenario.start_ms - SCENARIO_EPOCH_MS);
    rollout_breaker::sim::closed_loop(scenario, policy).events
}

/// What an uninterrupted in-memory engine publishes for `events` (per rollout, in order).
pub fn expected_decisions(
    events: &[ExecutionEvent],
    policy: &Policy,
) -> BTreeMap<String, Vec<Decision>> {
    let mut engine = Engine::new(policy.clone(), EngineOptions::default());
    let mut out: BTreeMap<String, Vec<Decision>> = BTreeMap::new();
    for e in events {
        for d in engine.apply(e).into_iter().filter(Decision::is_published) {
            out.entry(d.rollout_id.clone()).or_default().push(d);
        }
    }
    out
}

/// A producer partitioning like Java clients (murmur2), as agents and operators should.
pub fn producer(bootstrap: &str) -> FutureProducer {
    producer_config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces events keyed by rollout id with the event time as record timestamp.
pub async fn produce_events(
    p: &FutureProducer,
    topic: &str,
    events: &[ExecutionEvent],
    enc: Encoding,
) {
    let mut futures = Vec::with_capacity(events.len());
    for e in events {
        let payload = codec::encode_event(e, enc);
        let record = FutureRecord::to(topic)
            .key(e.rollout_id.as_bytes())
            .payload(&payload)
            .timestamp(e.timestamp);
        futures.push(p.send_result(record).expect("enqueue"));
        if futures.len() >= 10_000 {
            for f in futures.drain(..) {
                f.await.expect("delivery").expect("delivered");
            }
        }
    }
    for f in futures {
        f.await.expect("delivery").expect("delivered");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Produces a command keyed by rollout id.
pub async fn produce_command(p: &FutureProducer, topic: &str, c: &Command) {
    let payload = codec::encode_command(c, Encoding::Json);
    p.send(
        FutureRecord::to(topic)
            .key(c.rollout_id.as_bytes())
            .payload(&payload),
        Duration::from_secs(10),
    )
    .await
    .expect("command delivered");
}

/// Reads the whole decisions topic (read_committed) until `done` says so or `timeout`.
pub fn read_decisions(
    bootstrap: &str,
    config: &Config,
    timeout: Duration,
    mut done: impl FnMut(&BTreeMap<String, Vec<Decision>>) -> bool,
) -> BTreeMap<String, Vec<Decision>> {
    let consumer: BaseConsumer = consumer_config(bootstrap, &unique_name("reader"))
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..config.topics.partitions {
        tpl.add_partition_offset(&config.topics.decisions, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<String, Vec<Decision>> = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done(&out) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            // Tombstones (RETIRE) carry no decision.
            let Some(payload) = m.payload() else { continue };
            let d = codec::decode_decision(payload, config.topics.decisions_encoding)
                .expect("decisions decode");
            out.entry(d.rollout_id.clone()).or_default().push(d);
        }
    }
    out
}

/// Total number of decisions.
pub fn count(m: &BTreeMap<String, Vec<Decision>>) -> usize {
    m.values().map(Vec::len).sum()
}

/// A processor running in-process on the test's runtime.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), rollout_breaker::kafka::processor::ProcessorError>>,
}

/// Starts `rollout_breaker::kafka::processor::run` for `config` on the current runtime.
pub fn start(config: &Config) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(rollout_breaker::kafka::processor::run(
        config.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Running { stop, task }
}

impl Running {
    /// Asks the processor to stop and asserts it stopped without error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().expect("processor stopped cleanly");
    }
}

/// [`read_decisions`] off the async executor, until at least `want` decisions or `timeout`.
pub async fn await_decisions(
    bootstrap: &str,
    config: &Config,
    want: usize,
    timeout: Duration,
) -> BTreeMap<String, Vec<Decision>> {
    let (b, c) = (bootstrap.to_owned(), config.clone());
    tokio::task::spawn_blocking(move || read_decisions(&b, &c, timeout, |m| count(m) >= want))
        .await
        .unwrap()
}

impl Running {
    /// The processor's result if it stops on its own within `timeout` (then the handle is
    /// spent: do not call [`Running::stop`]).
    pub async fn result_within(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<(), rollout_breaker::kafka::processor::ProcessorError>> {
        tokio::time::timeout(timeout, &mut self.task)
            .await
            .ok()
            .map(|r| r.expect("processor task panicked"))
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers as strings.
    pub headers: BTreeMap<String, String>,
}

/// Reads every committed record of `topic` (read_committed) until `want` records or `timeout`.
pub async fn read_records(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
) -> Vec<Record> {
    use rdkafka::message::Headers;
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = consumer_config(&bootstrap, &unique_name("records"))
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < want && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
        out
    })
    .await
    .unwrap()
}

/// Waits until the processor's group has committed the end of every events partition: a
/// read_committed consumer placed at the committed offset finds nothing left to read (the
/// partition may end in transaction markers the processor never sees: relayed commands are
/// written in transactions).
pub async fn await_committed(bootstrap: &str, config: &Config, timeout: Duration) {
    let (bootstrap, config) = (bootstrap.to_owned(), config.clone());
    tokio::task::spawn_blocking(move || {
        let group: BaseConsumer = consumer_config(&bootstrap, &config.kafka.group_id)
            .create()
            .expect("consumer");
        let deadline = Instant::now() + timeout;
        let mut last = (0, 0);
        'retry: loop {
            assert!(
                Instant::now() < deadline,
                "processor did not catch up: committed, end = {last:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
            for p in 0..config.topics.partitions {
                let (_, high) = group
                    .fetch_watermarks(&config.topics.events, p, Duration::from_secs(5))
                    .unwrap();
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&config.topics.events, p);
                let committed = group
                    .committed_offsets(tpl, Duration::from_secs(5))
                    .ok()
                    .and_then(|t| {
                        t.find_partition(&config.topics.events, p)
                            .and_then(|e| e.offset().to_raw())
                    })
                    .unwrap_or(-1);
                last = (committed, high);
                // An empty partition has nothing to commit.
                if committed >= high || high == 0 {
                    continue;
                }
                if committed < 0 || high - committed > 10 {
                    continue 'retry;
                }
                // Only control records may remain between the committed offset and the end.
                let reader: BaseConsumer = consumer_config(&bootstrap, &unique_name("tail"))
                    .set("isolation.level", "read_committed")
                    .create()
                    .expect("consumer");
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&config.topics.events, p, Offset::Offset(committed))
                    .unwrap();
                reader.assign(&tpl).unwrap();
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until {
                    if let Some(Ok(_)) = reader.poll(Duration::from_millis(50)) {
                        continue 'retry;
                    }
                }
            }
            return;
        }
    })
    .await
    .unwrap()
}

/// Produces `command` straight into the events topic, where the processor applies it at its
/// place among the events (as it applies the commands it relays from the commands topic).
pub async fn produce_command_in_events(p: &FutureProducer, config: &Config, c: &Command) {
    use rdkafka::message::{Header, OwnedHeaders};
    let payload = codec::encode_command(c, config.topics.commands_encoding);
    let headers = OwnedHeaders::new().insert(Header {
        key: rollout_breaker::input::RELAYED_COMMAND_HEADER,
        value: Some("direct"),
    });
    p.send(
        FutureRecord::to(&config.topics.events)
            .key(c.rollout_id.as_bytes())
            .headers(headers)
            .payload(&payload)
            .timestamp(c.timestamp),
        Duration::from_secs(10),
    )
    .await
    .expect("command delivered");
}

/// A policy whose trial phases route enough traffic (10 / 25 / 50 %) for short tests to reach
/// verdicts quickly.
pub fn test_policy() -> Policy {
    use rollout_breaker::engine::{Schedule, TrafficPercent};
    Policy {
        schedule: Schedule {
            probe: TrafficPercent::new(10.0).unwrap(),
            small: TrafficPercent::new(25.0).unwrap(),
            medium: TrafficPercent::new(50.0).unwrap(),
        },
        ..Policy::threshold()
    }
}

/// One successful baseline execution of `rollout_id` at `at`.
pub fn baseline_event(rollout_id: &str, at: i64) -> ExecutionEvent {
    use rollout_breaker::engine::{LatencyMs, Variant};
    ExecutionEvent::new(
        rollout_id,
        Variant::Baseline,
        true,
        LatencyMs::new(5.0).unwrap(),
        at,
    )
}

/// `rollout-breaker audit` over the test's topics, as an operator runs it (on a blocking
/// thread: it reads the topics with blocking consumers).
pub async fn audit(config: &Config) -> rollout_breaker::kafka::audit::AuditReport {
    let c = config.clone();
    tokio::task::spawn_blocking(move || rollout_breaker::kafka::audit::audit(&c))
        .await
        .unwrap()
        .expect("audit runs")
}

/// Starts a processor, produces `events` (JSON) once it has created the topics, waits until
/// the decisions topic holds as many decisions as `expected` and checks they are exactly
/// those; returns the processor, still running.
pub async fn start_and_play(
    bootstrap: &str,
    config: &Config,
    events: &[ExecutionEvent],
    expected: &BTreeMap<String, Vec<Decision>>,
) -> Running {
    let running = start(config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce_events(
        &producer(bootstrap),
        &config.topics.events,
        events,
        Encoding::Json,
    )
    .await;
    let got = await_decisions(bootstrap, config, count(expected), Duration::from_secs(60)).await;
    assert_eq!(&got, expected);
    running
}
