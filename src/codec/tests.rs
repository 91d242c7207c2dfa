//! One test per [`DecodeError`] kind, plus the configuration syntax and the hand-typed JSON.

use super::*;
use crate::engine::{CommandKind, Variant};

const CONFLUENT: Encoding = Encoding::AvroConfluent { schema_id: 7 };

fn event() -> ExecutionEvent {
    let mut e = ExecutionEvent::new(
        "checkout-agent",
        Variant::Candidate,
        true,
        LatencyMs::new(1200.0).unwrap(),
        1_764_222_000_000,
    );
    e.version = "v2".into();
    e.extra.insert("tokens".into(), 512.0);
    e
}

fn reason_of<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> &'static str {
    r.unwrap_err().reason()
}

fn json_event(patch: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&encode_event(&event(), Encoding::Json)).unwrap();
    patch(v.as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn hand_typed_kcat_json_decodes() {
    let text = br#"{"rollout_id":"checkout-agent","variant":"CANDIDATE","version":"v2","success":true,"latency_ms":1200,"timestamp_ms":1764222000000}"#;
    let mut want = event();
    want.extra.clear();
    assert_eq!(decode_event(text, Encoding::Json).unwrap(), want);
    assert_eq!(decode_event_any(text).unwrap(), want);
    // Explicit nulls, unknown fields and surrounding whitespace are fine.
    let text = br#"  {"rollout_id":"checkout-agent","variant":"CANDIDATE","version":"v2","success":true,"latency_ms":1200,"timestamp_ms":1764222000000,"cost":null,"segment":null,"request_key":null,"extra_metrics":null,"new_field":[1]}"#;
    assert_eq!(decode_event_any(text).unwrap(), want);
}

#[test]
fn command_policy_may_be_a_string_or_an_object() {
    let obj = br#"{"rollout_id":"r","kind":"START","actor":"ana","reason":"go","timestamp_ms":1764222000000,"policy_json":{"max_latency_ms":1500}}"#;
    let c = decode_command(obj, Encoding::Json).unwrap();
    assert_eq!(c.kind, CommandKind::Start);
    assert_eq!(c.policy.unwrap().max_latency_ms, 1500.0);
    let s = br#"{"rollout_id":"r","kind":"START","actor":"ana","reason":"go","timestamp_ms":1764222000000,"policy_json":"{\"max_latency_ms\":1500}"}"#;
    assert_eq!(
        decode_command(s, Encoding::Json)
            .unwrap()
            .policy
            .unwrap()
            .max_latency_ms,
        1500.0
    );
}

#[test]
fn truncated() {
    for enc in [Encoding::AvroSingleObject, CONFLUENT, Encoding::Json] {
        let bytes = encode_event(&event(), enc);
        assert_eq!(
            reason_of(decode_event(&bytes[..bytes.len() - 3], enc)),
            "truncated",
            "{enc:?}"
        );
        assert_eq!(
            reason_of(decode_event(&bytes[..1], enc)),
            "truncated",
            "{enc:?}"
        );
    }
    assert_eq!(reason_of(decode_event_any(b"")), "truncated");
}

#[test]
fn bad_magic() {
    let mut so = encode_event(&event(), Encoding::AvroSingleObject);
    so[1] = 0x02;
    assert_eq!(
        reason_of(decode_event(&so, Encoding::AvroSingleObject)),
        "bad_magic"
    );
    let mut cf = encode_event(&event(), CONFLUENT);
    cf[0] = 0x01;
    assert_eq!(reason_of(decode_event(&cf, CONFLUENT)), "bad_magic");
    // JSON handed to an Avro topic, and garbage to the sniffer.
    let js = encode_event(&event(), Encoding::Json);
    assert_eq!(
        reason_of(decode_event(&js, Encoding::AvroSingleObject)),
        "bad_magic"
    );
    assert_eq!(reason_of(decode_event_any(b"hello")), "bad_magic");
}

#[test]
fn unknown_fingerprint() {
    // A decision's header on an event topic.
    let d = encode_command(
        &Command::new("r", CommandKind::Pause, "ana", "why", 1_764_222_000_000),
        Encoding::AvroSingleObject,
    );
    let e = decode_event(&d, Encoding::AvroSingleObject).unwrap_err();
    assert_eq!(
        e,
        DecodeError::UnknownFingerprint {
            fingerprint: RecordKind::RolloutCommand.fingerprint()
        }
    );
    assert_eq!(e.reason(), "unknown_fingerprint");
}

#[test]
fn unknown_schema_id() {
    let bytes = encode_event(&event(), Encoding::AvroConfluent { schema_id: 8 });
    assert_eq!(
        reason_of(decode_event(&bytes, CONFLUENT)),
        "unknown_schema_id"
    );
    let ids = SchemaIds {
        execution_event: vec![8],
        ..SchemaIds::default()
    };
    assert_eq!(
        ExecutionEvent::decode_with(&bytes, CONFLUENT, &ids).unwrap(),
        event()
    );
    // Registered for another record type only: still refused.
    let ids = SchemaIds {
        decision: vec![8],
        ..SchemaIds::default()
    };
    assert_eq!(
        reason_of(ExecutionEvent::decode_with(&bytes, CONFLUENT, &ids)),
        "unknown_schema_id"
    );
    // The sniffer accepts any id.
    assert_eq!(decode_event_any(&bytes).unwrap(), event());
}

#[test]
fn invalid_json() {
    assert_eq!(
        reason_of(decode_event(b"{nope}", Encoding::Json)),
        "invalid_json"
    );
    let wrong_type = json_event(|m| {
        m.insert("success".into(), "yes".into());
    });
    assert_eq!(
        reason_of(decode_event(&wrong_type, Encoding::Json)),
        "invalid_json"
    );
    assert_eq!(
        reason_of(decode_event(b"[1,2]", Encoding::Json)),
        "invalid_json"
    );
}

#[test]
fn missing_field() {
    for field in [
        "rollout_id",
        "variant",
        "version",
        "success",
        "latency_ms",
        "timestamp_ms",
    ] {
        let bytes = json_event(|m| {
            m.remove(field);
        });
        assert_eq!(
            decode_event(&bytes, Encoding::Json).unwrap_err(),
            DecodeError::MissingField { field }
        );
    }
}

#[test]
fn invalid_latency() {
    let bytes = json_event(|m| {
        m.insert("latency_ms".into(), (-1.0).into());
    });
    assert_eq!(
        reason_of(decode_event(&bytes, Encoding::Json)),
        "invalid_latency"
    );
    // NaN cannot be written in JSON but can in Avro.
    let mut nan = event();
    nan.latency = LatencyMs::new(0.0).unwrap();
    let mut bytes = encode_event(&nan, Encoding::AvroSingleObject);
    let at = bytes
        .windows(8)
        .position(|w| w == 0.0f64.to_le_bytes())
        .unwrap();
    bytes[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    assert_eq!(
        reason_of(decode_event(&bytes, Encoding::AvroSingleObject)),
        "invalid_latency"
    );
}

#[test]
fn invalid_timestamp() {
    for ts in [
        1_764_222_000i64,
        1_764_222_000_000_000,
        -1,
        MAX_TIMESTAMP_MS,
    ] {
        let mut e = event();
        e.timestamp = ts;
        for enc in [Encoding::Json, Encoding::AvroSingleObject, CONFLUENT] {
            assert_eq!(
                decode_event(&encode_event(&e, enc), enc).unwrap_err(),
                DecodeError::InvalidTimestamp {
                    field: "timestamp_ms",
                    value: ts
                }
            );
        }
    }
    let mut e = event();
    e.timestamp = MIN_TIMESTAMP_MS;
    assert!(decode_event(&encode_event(&e, Encoding::Json), Encoding::Json).is_ok());
}

#[test]
fn invalid_field() {
    for id in [String::new(), "x".repeat(MAX_ROLLOUT_ID_BYTES + 1)] {
        let mut e = event();
        e.rollout_id = id.into();
        for enc in [Encoding::Json, Encoding::AvroSingleObject] {
            assert_eq!(
                reason_of(decode_event(&encode_event(&e, enc), enc)),
                "invalid_field"
            );
        }
    }
    let mut e = event();
    e.rollout_id = "x".repeat(MAX_ROLLOUT_ID_BYTES).into();
    assert!(decode_event(&encode_event(&e, Encoding::Json), Encoding::Json).is_ok());
    for variant in ["", "candidate", "CANARY"] {
        let bytes = json_event(|m| {
            m.insert("variant".into(), variant.into());
        });
        let err = decode_event(&bytes, Encoding::Json).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::InvalidField {
                    field: "variant",
                    ..
                }
            ),
            "{err}"
        );
    }
    // Avro: enum index out of range (the byte after rollout_id's 14 bytes and its length).
    let mut bytes = encode_event(&event(), Encoding::AvroSingleObject);
    bytes[10 + 1 + 14] = 4; // zig-zag 2
    let err = decode_event(&bytes, Encoding::AvroSingleObject).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::InvalidField {
                field: "variant",
                ..
            }
        ),
        "{err}"
    );
    // Avro: invalid UTF-8 in rollout_id.
    let mut bytes = encode_event(&event(), Encoding::AvroSingleObject);
    bytes[11] = 0xff;
    assert_eq!(
        reason_of(decode_event(&bytes, Encoding::AvroSingleObject)),
        "invalid_field"
    );
    // Non-finite extra metric.
    let mut e = event();
    e.extra.insert("x".into(), f64::INFINITY);
    assert_eq!(
        reason_of(decode_event(
            &encode_event(&e, Encoding::AvroSingleObject),
            Encoding::AvroSingleObject
        )),
        "invalid_field"
    );
}

#[test]
fn invalid_policy() {
    let text = br#"{"rollout_id":"r","kind":"START","actor":"ana","reason":"go","timestamp_ms":1764222000000,"policy_json":{"max_latency_ms":-1}}"#;
    assert_eq!(
        reason_of(decode_command(text, Encoding::Json)),
        "invalid_policy"
    );
    let text = br#"{"rollout_id":"r","kind":"START","actor":"ana","reason":"go","timestamp_ms":1764222000000,"policy_json":"not json"}"#;
    assert_eq!(
        reason_of(decode_command(text, Encoding::Json)),
        "invalid_policy"
    );
}

#[test]
fn trailing_bytes() {
    let mut bytes = encode_event(&event(), CONFLUENT);
    bytes.push(0);
    assert_eq!(
        decode_event(&bytes, CONFLUENT).unwrap_err(),
        DecodeError::TrailingBytes { count: 1 }
    );
}

#[test]
fn too_large() {
    let bytes = vec![b' '; MAX_RECORD_BYTES + 1];
    for enc in [Encoding::Json, Encoding::AvroSingleObject, CONFLUENT] {
        assert_eq!(reason_of(decode_event(&bytes, enc)), "too_large");
    }
}

#[test]
fn every_reason_is_listed() {
    let samples = [
        DecodeError::Truncated { field: "x" },
        DecodeError::BadMagic {
            expected: "00",
            found: 1,
        },
        DecodeError::UnknownFingerprint { fingerprint: 0 },
        DecodeError::UnknownSchemaId { schema_id: 0 },
        DecodeError::InvalidJson {
            message: String::new(),
        },
        DecodeError::MissingField { field: "x" },
        DecodeError::InvalidLatency { value: -1.0 },
        DecodeError::InvalidTimestamp {
            field: "x",
            value: 0,
        },
        DecodeError::invalid("x", "y"),
        DecodeError::InvalidPolicy(crate::engine::Policy::from_json("[").unwrap_err()),
        DecodeError::TrailingBytes { count: 1 },
        DecodeError::TooLarge { len: 2, max: 1 },
    ];
    let reasons: Vec<_> = samples.iter().map(DecodeError::reason).collect();
    assert_eq!(reasons, DecodeError::REASONS);
}

#[test]
fn encoding_config_syntax() {
    let parse = |s: &str| serde_json::from_str::<Encoding>(s).unwrap();
    assert_eq!(parse(r#""json""#), Encoding::Json);
    assert_eq!(parse(r#""avro""#), Encoding::AvroSingleObject);
    assert_eq!(parse(r#""avro_single_object""#), Encoding::AvroSingleObject);
    assert_eq!(parse(r#"{"avro_confluent":{"schema_id":7}}"#), CONFLUENT);
    assert!(
        serde_json::from_str::<Encoding>(r#"{"avro_confluent":{"schema_id":7,"x":1}}"#).is_err()
    );
    assert!(serde_json::from_str::<Encoding>(r#""protobuf""#).is_err());
    #[derive(serde::Deserialize)]
    struct Topic {
        encoding: Encoding,
        #[serde(default)]
        schema_ids: SchemaIds,
    }
    let t: Topic = toml::from_str(
        "encoding = { avro_confluent = { schema_id = 7 } }\n[schema_ids]\nexecution_event = [3, 5]\n",
    )
    .unwrap();
    assert_eq!(t.encoding, CONFLUENT);
    assert!(t.schema_ids.accepts(RecordKind::ExecutionEvent, 5));
    assert_eq!(
        serde_json::to_string(&Encoding::AvroSingleObject).unwrap(),
        r#""avro""#
    );
}

#[test]
fn sniffing() {
    assert_eq!(sniff_encoding(b" \n{").unwrap(), Encoding::Json);
    assert_eq!(
        sniff_encoding(&[0xC3, 0x01]).unwrap(),
        Encoding::AvroSingleObject
    );
    assert_eq!(
        sniff_encoding(&[0, 0, 0, 0, 9]).unwrap(),
        Encoding::AvroConfluent { schema_id: 9 }
    );
    assert_eq!(sniff_encoding(&[0, 0]).unwrap_err().reason(), "truncated");
    assert_eq!(sniff_encoding(b"   ").unwrap_err().reason(), "truncated");
}
