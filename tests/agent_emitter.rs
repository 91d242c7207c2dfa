//! The event emitter against a real broker, and against none.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};
use rollout_breaker::agent::{EmitError, EmitterConfig, EventEmitter};
use rollout_breaker::codec::{decode_event, Encoding};
use rollout_breaker::engine::{ExecutionEvent, LatencyMs, Variant};

fn event(i: u64) -> ExecutionEvent {
    let mut e = ExecutionEvent::new(
        format!("rollout-{}", i % 7),
        if i % 3 == 0 {
            Variant::Candidate
        } else {
            Variant::Baseline
        },
        i % 5 != 0,
        LatencyMs::new(100.0 + i as f64).unwrap(),
        1_764_222_000_000 + (i as i64) * 1_000,
    );
    e.version = "v2".into();
    e.request_key = Some(format!("user-{i}").into());
    e
}

/// Java's `Utils.murmur2` (what `murmur2_random` computes for keyed records).
fn murmur2(data: &[u8]) -> u32 {
    let (m, r) = (0x5bd1_e995u32, 24);
    let mut h = 0x9747_b28cu32 ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^ (h >> 15)
}

#[tokio::test(flavor = "multi_thread")]
async fn thousand_events_arrive_keyed_timestamped_and_equal() {
    let kafka = common::kafka().await;
    let topic = common::unique_name("agent-events");
    let partitions = 6;
    for encoding in [Encoding::Json, Encoding::AvroSingleObject] {
        let topic = format!("{topic}-{}", matches!(encoding, Encoding::Json));
        common::create_topic(&kafka.bootstrap, &topic, partitions, &[]).await;
        let emitter = EventEmitter::new(EmitterConfig {
            encoding,
            ..EmitterConfig::new(&kafka.bootstrap, &topic)
        })
        .unwrap();
        let sent: Vec<ExecutionEvent> = (0..1000).map(event).collect();
        let started = Instant::now();
        for e in &sent {
            emitter.emit(e).unwrap();
        }
        let enqueue = started.elapsed();
        tokio::task::block_in_place(|| emitter.flush(Duration::from_secs(30))).unwrap();
        let stats = emitter.stats();
        assert_eq!(
            (stats.enqueued, stats.delivered, stats.failed),
            (1000, 1000, 0)
        );
        eprintln!("{encoding:?}: 1000 emits took {enqueue:?}");

        let consumer: BaseConsumer =
            common::consumer_config(&kafka.bootstrap, &common::unique_name("g"))
                .create()
                .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut received: HashMap<String, ExecutionEvent> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.len() < sent.len() && Instant::now() < deadline {
            let Some(m) = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)))
            else {
                continue;
            };
            let m = m.unwrap();
            let e = decode_event(m.payload().unwrap(), encoding).unwrap();
            assert_eq!(m.key(), Some(e.rollout_id.as_bytes()));
            assert_eq!(m.timestamp(), Timestamp::CreateTime(e.timestamp));
            let expected = (murmur2(e.rollout_id.as_bytes()) & 0x7fff_ffff) % partitions as u32;
            assert_eq!(
                m.partition() as u32,
                expected,
                "{} not on Java's partition",
                e.rollout_id
            );
            received.insert(e.request_key.clone().unwrap().to_string(), e);
        }
        assert_eq!(received.len(), sent.len());
        for e in &sent {
            assert_eq!(&received[e.request_key.as_deref().unwrap()], e);
        }
    }
}

#[test]
fn murmur2_matches_javas_vectors() {
    // Kafka's `UtilsTest.testMurmur2` vectors.
    assert_eq!(murmur2(b"21") as i32, -973932308);
    assert_eq!(murmur2(b"foobar") as i32, -790332482);
    assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
}

#[test]
fn an_unreachable_broker_never_blocks_emit_and_failures_are_counted() {
    let failures = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&failures);
    let emitter = EventEmitter::with_failure_handler(
        EmitterConfig {
            message_timeout_ms: 1_000,
            queue_capacity: 100,
            ..EmitterConfig::new("127.0.0.1:1", "nowhere")
        },
        move |f| {
            assert!(f.rollout_id.starts_with("rollout-"));
            seen.fetch_add(1, Ordering::Relaxed);
        },
    )
    .unwrap();
    let started = Instant::now();
    let mut dropped = 0;
    for i in 0..150 {
        match emitter.emit(&event(i)) {
            Ok(()) => {}
            Err(EmitError::QueueFull) => dropped += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let took = started.elapsed();
    // Not a benchmark: a blocking emit would take the message timeout (1 s) or more.
    assert!(took < Duration::from_millis(500), "150 emits took {took:?}");
    assert_eq!(dropped, 50);
    let deadline = Instant::now() + Duration::from_secs(15);
    while emitter.stats().failed < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = emitter.stats();
    assert_eq!(
        (stats.enqueued, stats.failed, stats.dropped, stats.delivered),
        (100, 100, 50, 0)
    );
    assert_eq!(failures.load(Ordering::Relaxed), 100);
    eprintln!(
        "150 emits to an unreachable broker took {took:?}; failures counted after {:?}",
        started.elapsed()
    );
}
