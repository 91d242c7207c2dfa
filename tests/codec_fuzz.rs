//! Arbitrary and mutated bytes into every decoder: no panic, every failure a typed error, and
//! anything accepted survives a round trip.

use proptest::prelude::*;
use rollout_breaker::codec::{DecodeError, Encoding, RecordKind, WireRecord};
use rollout_breaker::engine::{Command, Decision, ExecutionEvent};

const ENCODINGS: [Encoding; 3] = [
    Encoding::Json,
    Encoding::AvroSingleObject,
    Encoding::AvroConfluent { schema_id: 42 },
];

fn check<T: WireRecord + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    let results = ENCODINGS
        .iter()
        .map(|&enc| (enc, T::decode(bytes, enc)))
        .chain(std::iter::once((Encoding::Json, T::decode_any(bytes))));
    for (enc, result) in results {
        match result {
            Ok(record) => {
                // What we accept, we can write and read back unchanged.
                let again = T::decode(&record.encode(enc), enc).expect("re-encoded record decodes");
                assert_eq!(again, record);
            }
            Err(e) => assert!(DecodeError::REASONS.contains(&e.reason()), "{e:?}"),
        }
    }
}

fn check_all(bytes: &[u8]) {
    check::<ExecutionEvent>(bytes);
    check::<Decision>(bytes);
    check::<Command>(bytes);
}

/// Valid headers in front of arbitrary bytes, so the fuzzing reaches the Avro bodies.
fn framed(kind: RecordKind, body: &[u8], confluent: bool) -> Vec<u8> {
    let mut out = if confluent {
        vec![0, 0, 0, 0, 42]
    } else {
        let mut h = vec![0xC3, 0x01];
        h.extend_from_slice(&kind.fingerprint().to_le_bytes());
        h
    };
    out.extend_from_slice(body);
    out
}

fn valid_samples() -> Vec<Vec<u8>> {
    use rollout_breaker::engine::*;
    let mut e = ExecutionEvent::new(
        "checkout-agent",
        Variant::Candidate,
        true,
        LatencyMs::new(12.5).unwrap(),
        1_764_222_000_000,
    );
    e.request_key = Some("k".into());
    e.cost = Some(0.5);
    e.segment = Some("eu".into());
    e.extra.insert("tokens".into(), 512.0);
    let d = Decision {
        rollout_id: "r".into(),
        sequence: 1,
        action: Action::Start,
        from: Phase::Off,
        to: Phase::Probe,
        traffic: TrafficPercent::new(1.0).unwrap(),
        breaker: BreakerState::HalfOpen,
        paused: false,
        reason: "operator start".into(),
        metrics: MetricsSnapshot::default(),
        at: 1_764_222_000_000,
        cause: Cause::Operator,
        actor: "ana".into(),
        candidate_version: Some("v2".into()),
        baseline_version: None,
        policy_json: Some("{}".into()),
        phase_started_at: None,
        warning: None,
        scope: rollout_breaker::engine::Scope::DEFAULT,
    };
    let mut c = Command::new("r", CommandKind::Start, "ana", "go", 1_764_222_000_000);
    c.policy = Some(Policy::default());
    let mut out = Vec::new();
    for enc in ENCODINGS {
        out.push(e.encode(enc));
        out.push(d.encode(enc));
        out.push(c.encode(enc));
    }
    out
}

#[test]
fn every_truncation_of_valid_records_is_a_typed_error() {
    for sample in valid_samples() {
        for len in 0..sample.len() {
            check_all(&sample[..len]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_all(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_valid_headers(body in prop::collection::vec(any::<u8>(), 0..300), confluent in any::<bool>()) {
        for kind in [RecordKind::ExecutionEvent, RecordKind::Decision, RecordKind::RolloutCommand] {
            check_all(&framed(kind, &body, confluent));
        }
    }

    #[test]
    fn mutated_valid_records(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let samples = valid_samples();
        let mut bytes = pick.get(&samples).clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] ^= byte.max(1),
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        check_all(&bytes);
    }

    #[test]
    fn arbitrary_json_objects(
        fields in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "rollout_id", "variant", "version", "request_key", "success", "latency_ms",
                    "timestamp_ms", "cost", "segment", "extra_metrics", "sequence", "action",
                    "kind", "actor", "reason", "policy_json", "metrics", "decided_at_ms",
                ]),
                prop_oneof![
                    Just("null".to_string()),
                    Just("\"CANDIDATE\"".to_string()),
                    Just("\"START\"".to_string()),
                    Just("{}".to_string()),
                    any::<bool>().prop_map(|b| b.to_string()),
                    any::<i64>().prop_map(|n| n.to_string()),
                    any::<f64>().prop_map(|n| format!("{n:?}")),
                    "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                ],
            ),
            0..12,
        )
    ) {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        check_all(format!("{{{}}}", body.join(",")).as_bytes());
    }
}
