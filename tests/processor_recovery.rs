//! Crash recovery, scale-out and bad input, on a real broker.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::processor::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::config::Config;
use rollout_breaker::engine::{Decision, ExecutionEvent, Policy};
use rollout_breaker::sim::{Change, Profile, Scenario, Trigger, SCENARIO_EPOCH_MS};

/// `n` rollouts of 20 req/s for `secs` seconds; every third one degrades after a while.
fn fleet(n: usize, secs: i64, policy: &Policy) -> Vec<ExecutionEvent> {
    let mut events = Vec::new();
    for i in 0..n {
        let mut s = Scenario::successful_rollout(&format!("rollout-{i:03}"));
        s.requests_per_sec = 20;
        s.duration_ms = secs * 1_000;
        s.start_ms = SCENARIO_EPOCH_MS + (i as i64 * 137) % 5_000;
        s.seed = i as u64;
        if i % 3 == 0 {
            s.changes.push(Change {
                when: Trigger::AfterMs(20_000 + (i as i64 % 7) * 5_000),
                candidate: Profile::new(0.7, 2_600.0, 200.0),
            });
        }
        events.extend(scenario_events(s, policy));
    }
    events.sort_by_key(|e| e.timestamp);
    events
}

/// Sum of the decisions topic's end offsets: grows with every committed transaction.
fn decision_end_offsets(watcher: &BaseConsumer, config: &Config) -> i64 {
    (0..config.topics.partitions)
        .map(|p| {
            watcher
                .fetch_watermarks(&config.topics.decisions, p, Duration::from_secs(10))
                .map_or(0, |w| w.1)
        })
        .sum()
}

fn spawn_processor(config_path: &std::path::Path, instance: &str) -> Child {
    Proc::new(env!("CARGO_BIN_EXE_rollout-breaker"))
        .args(["run", "--config"])
        .arg(config_path)
        .args(["--instance-id", instance, "--http-listen", "off"])
        .env("RUST_LOG", "warn,rollout_breaker::kafka::restore=info")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn processor")
}

fn read_all(
    bootstrap: &str,
    config: &Config,
    want: usize,
    timeout: Duration,
) -> BTreeMap<String, Vec<Decision>> {
    read_decisions(bootstrap, config, timeout, |m| count(m) >= want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_three_points_leaves_the_same_decisions_as_an_uninterrupted_run() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 4);
    config.policy = test_policy();
    let events = fleet(60, 90, &config.policy);
    assert!(events.len() >= 100_000, "{} events", events.len());
    let expected = expected_decisions(&events, &config.policy);
    let want = count(&expected);
    let rollbacks = expected
        .values()
        .flatten()
        .filter(|d| d.action == rollout_breaker::engine::Action::Rollback)
        .count();
    assert!(
        expected.len() == 60 && rollbacks >= 10,
        "{} rollouts, {rollbacks} rollbacks",
        expected.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processor.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    rollout_breaker::kafka::processor::ensure_topics(&config)
        .await
        .unwrap();
    let producer = producer(&kafka.bootstrap);
    let chunks: Vec<&[ExecutionEvent]> = events.chunks(events.len() / 4 + 1).collect();
    let watcher: BaseConsumer =
        common::consumer_config(&kafka.bootstrap, &common::unique_name("watch"))
            .create()
            .unwrap();
    let mut kills = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        produce_events(&producer, &config.topics.events, chunk, Encoding::Json).await;
        let before = decision_end_offsets(&watcher, &config);
        let mut child = spawn_processor(&path, "crashy");
        if i + 1 < chunks.len() {
            // Let it restore and commit its first transaction, then kill it without warning
            // while it is still working through the backlog (the decisions topic's end offsets
            // move with every committed transaction).
            let deadline = Instant::now() + Duration::from_secs(60);
            while decision_end_offsets(&watcher, &config) <= before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
            kills += 1;
        } else {
            let got = tokio::task::spawn_blocking({
                let (b, c) = (kafka.bootstrap.clone(), config.clone());
                move || read_all(&b, &c, want, Duration::from_secs(120))
            })
            .await
            .unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            // Read again after the processor is gone: nothing extra may appear.
            let settled = read_all(
                &kafka.bootstrap,
                &config,
                usize::MAX,
                Duration::from_secs(3),
            );
            assert_eq!(count(&got), want);
            assert_eq!(settled.len(), expected.len());
            let brief = |ds: &[Decision]| {
                ds.iter()
                    .map(|d| {
                        format!(
                            "{}:{}@{} n={} c={:.3}",
                            d.sequence,
                            d.action,
                            d.at,
                            d.metrics.candidate.samples,
                            d.metrics.candidate.completion_rate
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let differing: Vec<String> = expected
                .iter()
                .filter(|(r, ds)| settled.get(*r) != Some(*ds))
                .map(|(r, ds)| {
                    format!(
                        "{r}:\n  got      {:?}\n  expected {:?}",
                        brief(settled.get(r).map_or(&[][..], |v| v)),
                        brief(ds)
                    )
                })
                .collect();
            assert!(
                differing.is_empty(),
                "{} rollouts differ from the uninterrupted run:\n{}",
                differing.len(),
                differing.join("\n")
            );
        }
    }
    assert!(kills >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_two_instances_share_partitions_and_hand_over_without_loss() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 4);
    config.policy = test_policy();
    let events = fleet(20, 90, &config.policy);
    let expected = expected_decisions(&events, &config.policy);
    let want = count(&expected);
    rollout_breaker::kafka::processor::ensure_topics(&config)
        .await
        .unwrap();

    let start_instance = |instance: &str| {
        let mut c = config.clone();
        c.kafka.instance_id = instance.into();
        start(&c)
    };
    let a = start_instance("a");
    let b = start_instance("b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producer = producer(&kafka.bootstrap);
    let half = events.len() / 2;
    produce_events(
        &producer,
        &config.topics.events,
        &events[..half],
        Encoding::Json,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Stop one instance; its partitions move to the other.
    a.stop().await;
    produce_events(
        &producer,
        &config.topics.events,
        &events[half..],
        Encoding::Json,
    )
    .await;
    let got = await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(90)).await;
    b.stop().await;
    assert_eq!(count(&got), want, "no lost or duplicated decision");
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_topic_with_their_reason() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    config.policy = test_policy();
    config.processing.max_record_bytes = 4_096;
    let valid = fleet(6, 60, &config.policy);
    let expected = expected_decisions(&valid, &config.policy);
    rollout_breaker::kafka::processor::ensure_topics(&config)
        .await
        .unwrap();
    let producer = producer(&kafka.bootstrap);
    // Interleave 1200 bad records of varied kinds with the valid ones.
    let good_json = String::from_utf8(codec::encode_event(&valid[0], Encoding::Json)).unwrap();
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        ("invalid_json", b"{not json".to_vec()),
        ("missing_field", br#"{"variant":"CANDIDATE","success":true,"latency_ms":1,"timestamp_ms":1764201600000}"#.to_vec()),
        ("invalid_latency", good_json.replacen("\"latency_ms\":", "\"latency_ms\":-", 1).into_bytes()),
        ("invalid_timestamp", good_json.replacen("\"timestamp_ms\":", "\"timestamp_ms\":9", 1).into_bytes()),
        ("too_large", vec![b' '; 5_000]),
    ];
    let mut bad_sent: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0usize;
    let mut batch = Vec::new();
    for (i, e) in valid.iter().enumerate() {
        batch.push(e.clone());
        if i % 7 == 0 && n < 1_200 {
            produce_events(&producer, &config.topics.events, &batch, Encoding::Json).await;
            batch.clear();
            let (reason, bytes) = &kinds[n % kinds.len()];
            producer
                .send(
                    FutureRecord::to(&config.topics.events)
                        .key(e.rollout_id.as_bytes())
                        .payload(bytes),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            *bad_sent.entry(reason).or_default() += 1;
            n += 1;
        }
    }
    produce_events(&producer, &config.topics.events, &batch, Encoding::Json).await;
    assert!(n >= 1_000);

    let processor = start(&config);
    let want = count(&expected);
    let got = await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(60)).await;
    // Dead letters.
    let dlq: BaseConsumer = common::consumer_config(&kafka.bootstrap, &common::unique_name("dlq"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..config.topics.partitions {
        tpl.add_partition_offset(&config.topics.dead_letter, p, Offset::Beginning)
            .unwrap();
    }
    dlq.assign(&tpl).unwrap();
    let mut bad_seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bad_seen.values().sum::<usize>() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = dlq.poll(Duration::from_millis(100)) {
            let headers = m.headers().expect("dead letters carry headers");
            let get = |k: &str| {
                headers
                    .iter()
                    .find(|h| h.key == k)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            assert_eq!(
                get("rb.source.topic").as_deref(),
                Some(config.topics.events.as_str())
            );
            assert!(get("rb.source.offset").unwrap().parse::<i64>().is_ok());
            assert!(!get("rb.error.message").unwrap().is_empty());
            *bad_seen.entry(get("rb.error.reason").unwrap()).or_default() += 1;
        }
    }
    processor.stop().await;
    let bad_sent: BTreeMap<String, usize> = bad_sent
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(
        bad_seen, bad_sent,
        "every malformed record is dead-lettered with its reason"
    );
    assert_eq!(
        got, expected,
        "every valid event is accounted for in the decisions"
    );
}
