//! Operability through a real broker: fast restarts (static membership), fencing, readiness
//! during restore, the dead-letter flood check, fresh topics, an unreachable cluster, topic
//! checks at start, and the metrics the README promises.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::http::{free_addr, get, wait_for};
use common::processor::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rollout_breaker::codec;
use rollout_breaker::config::Config;
use rollout_breaker::engine::{Command, CommandKind, Engine, EngineOptions, Policy};
use rollout_breaker::kafka::admin::{AdminError, TopicWarning};
use rollout_breaker::kafka::processor::{ensure_topics, ProcessorError};

fn with_http(config: &mut Config) -> SocketAddr {
    let addr = free_addr();
    config.http.listen = Some(addr);
    addr
}

fn ready_with(partitions: i32) -> impl Fn(u16, &str) -> bool {
    move |status, body| {
        status == 200
            && body.contains(&format!(
                "partitions assigned {partitions}, restored {partitions}"
            ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_gets_its_partitions_back_at_once_after_sigkill() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    // The default session timeout: without static membership a restarted instance would wait
    // this long for its partitions.
    config
        .kafka
        .options
        .insert("session.timeout.ms".into(), "45000".into());
    let addr = with_http(&mut config);
    ensure_topics(&config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processor.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let spawn = || {
        Proc::new(env!("CARGO_BIN_EXE_rollout-breaker"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn processor")
    };
    let mut first = spawn();
    let ready = wait_for(addr, "/readyz", Duration::from_secs(60), ready_with(2)).await;
    assert!(
        ready.as_ref().is_some_and(|(s, _)| *s == 200),
        "first start never ready: {ready:?}"
    );
    first.kill().expect("SIGKILL");
    first.wait().unwrap();

    let restarted_at = Instant::now();
    let mut second = spawn();
    let ready = wait_for(addr, "/readyz", Duration::from_secs(40), ready_with(2)).await;
    let took = restarted_at.elapsed();
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        ready.as_ref().is_some_and(|(s, _)| *s == 200),
        "restarted instance not ready: {ready:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "restarted instance owned its partitions again only after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_id_fences_the_first_which_exits_naming_the_id() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    config.kafka.instance_id = "twin".into();
    ensure_topics(&config).await.unwrap();
    let addr = with_http(&mut config);
    let mut first = start(&config);
    wait_for(addr, "/readyz", Duration::from_secs(60), ready_with(2)).await;
    let mut second_config = config.clone();
    with_http(&mut second_config);
    let second = start(&second_config);
    let result = first
        .result_within(Duration::from_secs(30))
        .await
        .expect("the fenced instance keeps running");
    second.stop().await;
    let err = result.expect_err("fenced instance stops with an error");
    assert!(
        matches!(err, ProcessorError::Fenced { .. }),
        "not a fencing error: {err}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&format!("`{}`", config.transactional_id())),
        "{text}"
    );
    assert!(text.contains("--instance-id"), "{text}");
}

/// Writes `n` START decisions (rollouts `r-0`...) spread over the decisions topic's
/// partitions, so that a restore has something to read.
async fn prefill_decisions(producer: &FutureProducer, config: &Config, n: usize) {
    let mut engine = Engine::new(Policy::threshold(), EngineOptions::default());
    let now = now_epoch_ms();
    let mut futures = Vec::new();
    for i in 0..n {
        let d = engine
            .apply_command(&Command::new(
                format!("r-{i}"),
                CommandKind::Start,
                "test",
                "prefill",
                now,
            ))
            .unwrap();
        let payload = codec::encode_decision(&d, config.topics.decisions_encoding);
        let partition = (i % config.topics.partitions as usize) as i32;
        futures.push(
            producer
                .send_result(
                    FutureRecord::to(&config.topics.decisions)
                        .partition(partition)
                        .key(d.rollout_id.as_bytes())
                        .payload(&payload),
                )
                .expect("enqueue"),
        );
        if futures.len() >= 10_000 {
            for f in futures.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in futures {
        f.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_restore_while_healthz_stays_alive() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    // Shorter than the restore below: the restore must keep liveness fresh.
    config.http.max_poll_gap_ms = 400;
    let addr = with_http(&mut config);
    ensure_topics(&config).await.unwrap();
    prefill_decisions(&producer(&kafka.bootstrap), &config, 150_000).await;
    let running = start(&config);
    let started = Instant::now();
    let mut during_restore = 0;
    let mut healthz_failures = Vec::new();
    let mut premature = Vec::new();
    let mut ready = false;
    while !ready && started.elapsed() < Duration::from_secs(90) {
        let (readyz, healthz) =
            tokio::task::spawn_blocking(move || (get(addr, "/readyz"), get(addr, "/healthz")))
                .await
                .unwrap();
        if let Some((status, body)) = readyz {
            if status == 200 {
                if !body.contains("partitions assigned 2, restored 2") {
                    premature.push(body.clone());
                }
                ready = true;
            } else if body.contains("partitions assigned 2, restored 0") {
                during_restore += 1;
                if let Some((hs, hb)) = healthz {
                    if hs != 200 {
                        healthz_failures.push(hb);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    assert!(ready, "never ready");
    assert!(premature.is_empty(), "ready before restored: {premature:?}");
    assert!(
        during_restore >= 5,
        "the restore was too short to observe ({during_restore} probes)"
    );
    assert!(
        healthz_failures.is_empty(),
        "/healthz failed during the restore: {healthz_failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_flood_aborts_its_batch_instead_of_committing_it() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 1);
    config.processing.dead_letter_window = 10;
    config.processing.max_batch_ms = 2_000;
    ensure_topics(&config).await.unwrap();
    let producer = producer(&kafka.bootstrap);
    for i in 0..500 {
        producer
            .send(
                FutureRecord::to(&config.topics.events)
                    .key(format!("r-{i}").as_bytes())
                    .payload(b"not json at all"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let mut running = start(&config);
    let result = running
        .result_within(Duration::from_secs(60))
        .await
        .expect("the processor stops on a flood");
    assert!(
        matches!(result, Err(ProcessorError::DeadLetterFlood { .. })),
        "{result:?}"
    );
    // Nothing of the batch is visible: no dead letter, no committed input offset.
    let reader: BaseConsumer =
        common::consumer_config(&kafka.bootstrap, &common::unique_name("dlq"))
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&config.topics.dead_letter, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while Instant::now() < deadline {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            seen += 1;
        }
    }
    assert_eq!(seen, 0, "dead letters of the flooding batch were committed");
    let group: BaseConsumer = common::consumer_config(&kafka.bootstrap, &config.kafka.group_id)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&config.topics.events, 0);
    let committed = group
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let offset = committed
        .find_partition(&config.topics.events, 0)
        .unwrap()
        .offset();
    assert!(
        !matches!(offset, Offset::Offset(o) if o > 0),
        "input offsets of the flooding batch were committed: {offset:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_topics_never_crash_the_first_start() {
    let kafka = common::kafka().await;
    for round in 0..6 {
        let mut config = config(&kafka.bootstrap, 6);
        let addr = with_http(&mut config);
        // No ensure_topics beforehand: the processor creates the topics and restores at once.
        let mut running = start(&config);
        let ready = wait_for(addr, "/readyz", Duration::from_secs(60), ready_with(6)).await;
        if let Some(result) = running.result_within(Duration::from_millis(10)).await {
            panic!("round {round}: the processor stopped: {result:?}");
        }
        running.stop().await;
        assert!(
            ready.as_ref().is_some_and(|(s, _)| *s == 200),
            "round {round}: never ready: {ready:?}"
        );
    }
}

#[test]
fn an_unreachable_cluster_is_reported_within_seconds() {
    let closed = free_addr(); // nothing listens there any more
    let http = free_addr();
    let mut child = Proc::new(env!("CARGO_BIN_EXE_rollout-breaker"))
        .args(["run", "--bootstrap-servers"])
        .arg(closed.to_string())
        .args(["--http-listen"])
        .arg(http.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn processor");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut warning = None;
    while warning.is_none() && started.elapsed() < Duration::from_secs(10) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("WARN") && line.contains(&closed.to_string()) {
                warning = Some(line);
            }
        }
    }
    let mut healthz = None;
    while started.elapsed() < Duration::from_secs(10) {
        healthz = get(http, "/healthz");
        if healthz
            .as_ref()
            .is_some_and(|(s, b)| *s == 503 && b.contains(&closed.to_string()))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = get(http, "/metrics");
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(warning.is_some(), "no warning naming {closed} within 10 s");
    let (status, body) = healthz.expect("HTTP endpoints up before the broker answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("broker unreachable") && body.contains(&closed.to_string()),
        "{body}"
    );
    let (_, metrics) = metrics.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.trim() == "rollout_breaker_broker_connected 0"),
        "{metrics}"
    );
    assert!(still_running, "the processor keeps retrying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_decisions_topic_that_is_not_compacted_is_refused_by_name() {
    let kafka = common::kafka().await;
    let config = config(&kafka.bootstrap, 2);
    common::create_topic(
        &kafka.bootstrap,
        &config.topics.decisions,
        2,
        &[("cleanup.policy", "delete")],
    )
    .await;
    let err = ensure_topics(&config).await.unwrap_err();
    assert!(
        matches!(err, ProcessorError::Admin(AdminError::NotCompacted { .. })),
        "{err}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&config.topics.decisions) && text.contains("cleanup.policy=compact"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_topics_use_broker_time_and_existing_ones_are_checked() {
    let kafka = common::kafka().await;
    // Created by the processor: broker timestamps, no warnings.
    let config = config(&kafka.bootstrap, 2);
    let warnings = ensure_topics(&config).await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let admin = common::admin_client(&kafka.bootstrap);
    for topic in [&config.topics.events, &config.topics.commands] {
        let c = rollout_breaker::kafka::admin::topic_config(&admin, topic, common::ADMIN_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            c.get("message.timestamp.type").map(String::as_str),
            Some("LogAppendTime"),
            "{topic}"
        );
    }
    // Created beforehand with producer time and a retention shorter than the look-back.
    let config = common::processor::config(&kafka.bootstrap, 2);
    common::create_topic(
        &kafka.bootstrap,
        &config.topics.events,
        2,
        &[("retention.ms", "60000")],
    )
    .await;
    let warnings = ensure_topics(&config).await.unwrap();
    let look_back = rollout_breaker::kafka::processor::restore_look_back_ms(&config);
    assert!(
        warnings.contains(&TopicWarning::RetentionShorterThanLookBack {
            topic: config.topics.events.clone(),
            retention_ms: 60_000,
            look_back_ms: look_back,
        }),
        "{warnings:?}"
    );
    assert!(
        warnings.contains(&TopicWarning::CreateTime {
            topic: config.topics.events.clone()
        }),
        "{warnings:?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}
