//! Codec throughput for execution events (the processor decodes every one on the hot path).
//!
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`
//!
//! `decode_event/apache_avro_value` is the reference point for the choice of a hand-written
//! Avro reader: apache-avro's `from_avro_datum` into a `Value` tree, without even mapping it to
//! the domain type.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rollout_breaker::codec::{decode_event, encode_event, Encoding, RecordKind, WireRecord};
use rollout_breaker::engine::{ExecutionEvent, LatencyMs, Variant};

const ENCODINGS: [(&str, Encoding); 3] = [
    ("json", Encoding::Json),
    ("avro_single_object", Encoding::AvroSingleObject),
    ("avro_confluent", Encoding::AvroConfluent { schema_id: 42 }),
];

/// A typical event: all fields an agent SDK would fill, two extra metrics.
fn event() -> ExecutionEvent {
    ExecutionEvent {
        rollout_id: "checkout-agent".into(),
        variant: Variant::Candidate,
        version: "checkout-agent-v2.3.1".into(),
        request_key: Some("user-8f14e45fceea167a".into()),
        success: true,
        latency: LatencyMs::new(1234.5).unwrap(),
        timestamp: 1_764_222_000_000,
        cost: Some(0.0125),
        segment: Some("eu-pro".into()),
        region: None,
        extra: BTreeMap::from([("tokens".into(), 512.0), ("tool_calls".into(), 3.0)]),
    }
}

fn decode(c: &mut Criterion) {
    let e = event();
    let mut g = c.benchmark_group("decode_event");
    g.throughput(Throughput::Elements(1));
    for (name, enc) in ENCODINGS {
        let bytes = encode_event(&e, enc);
        g.bench_function(name, |b| {
            b.iter(|| decode_event(black_box(&bytes), enc).unwrap())
        });
    }
    let bytes = encode_event(&e, Encoding::AvroSingleObject);
    let schema = RecordKind::ExecutionEvent.schema();
    g.bench_function("apache_avro_value", |b| {
        b.iter(|| apache_avro::from_avro_datum(schema, &mut black_box(&bytes[10..]), None).unwrap())
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let e = event();
    let mut g = c.benchmark_group("encode_event");
    g.throughput(Throughput::Elements(1));
    for (name, enc) in ENCODINGS {
        let mut out = Vec::with_capacity(256);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(&e).encode_into(enc, &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
