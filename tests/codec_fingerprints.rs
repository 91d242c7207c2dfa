//! Single-object fingerprints agree with an independent implementation (fastavro, fixture made
//! by `scripts/gen_avro_fingerprints.py`), and records written with the legacy fingerprints
//! (apache-avro's canonical form, used before) still decode.

use std::path::PathBuf;

use rollout_breaker::codec::{
    crc64_avro, parsing_canonical_form, schema_fingerprint, Encoding, RecordKind, WireRecord,
};
use rollout_breaker::engine::{Command, CommandKind, Decision, ExecutionEvent, LatencyMs, Variant};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Value {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/avro_fingerprints.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check(entry: &Value, schema_text: &str) {
    let name = entry["name"].as_str().unwrap();
    let canonical = parsing_canonical_form(schema_text).unwrap();
    assert_eq!(
        canonical,
        entry["canonical_form"].as_str().unwrap(),
        "{name}"
    );
    let fp = schema_fingerprint(schema_text).unwrap();
    assert_eq!(fp, entry["fingerprint"].as_u64().unwrap(), "{name}");
    assert_eq!(crc64_avro(canonical.as_bytes()), fp, "{name}");
    // The header bytes in wire order are fastavro's hex string.
    let hex: String = fp
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, entry["fingerprint_hex"].as_str().unwrap(), "{name}");
}

#[test]
fn schema_files_fingerprint_as_fastavro_says() {
    let fixture = fixture();
    let files = fixture["schema_files"].as_array().unwrap();
    assert_eq!(
        files.len(),
        9,
        "every schema and history file is in the fixture"
    );
    for entry in files {
        let path = root().join(entry["name"].as_str().unwrap());
        check(entry, &std::fs::read_to_string(path).unwrap());
    }
}

#[test]
fn corner_cases_fingerprint_as_fastavro_says() {
    for entry in fixture()["cases"].as_array().unwrap() {
        check(entry, entry["schema"].as_str().unwrap());
    }
}

#[test]
fn record_kinds_write_the_standard_fingerprint() {
    let fixture = fixture();
    let by_file = |file: &str| {
        fixture["schema_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == file)
            .unwrap()["fingerprint"]
            .as_u64()
            .unwrap()
    };
    for (kind, file) in [
        (RecordKind::ExecutionEvent, "schemas/execution_event.avsc"),
        (RecordKind::Decision, "schemas/decision.avsc"),
        (RecordKind::RolloutCommand, "schemas/rollout_command.avsc"),
    ] {
        assert_eq!(kind.fingerprint(), by_file(file), "{kind:?}");
        let canonical = &fixture["schema_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == file)
            .unwrap()["canonical_form"];
        assert_eq!(kind.canonical_form(), canonical.as_str().unwrap());
    }
    // Earlier versions' standard fingerprints are accepted too.
    let accepted: Vec<u64> = RecordKind::Decision.accepted_fingerprints().collect();
    assert!(accepted.contains(&by_file("schemas/history/decision.v1.avsc")));
    assert!(accepted.contains(&by_file("schemas/history/decision.v2.avsc")));
    assert!(accepted.contains(&by_file("schemas/history/decision.v3.avsc")));
    let accepted: Vec<u64> = RecordKind::ExecutionEvent.accepted_fingerprints().collect();
    assert!(accepted.contains(&by_file("schemas/history/execution_event.v1.avsc")));
    let accepted: Vec<u64> = RecordKind::RolloutCommand.accepted_fingerprints().collect();
    assert!(accepted.contains(&by_file("schemas/history/rollout_command.v1.avsc")));
    assert!(accepted.contains(&by_file("schemas/history/rollout_command.v2.avsc")));
}

fn legacy_fingerprint(kind: RecordKind) -> u64 {
    let fp = kind
        .schema()
        .fingerprint::<apache_avro::rabin::Rabin>()
        .bytes;
    u64::from_le_bytes(fp[..8].try_into().unwrap())
}

/// Rewrites the single-object header of `bytes` to carry `fingerprint`.
fn with_header(mut bytes: Vec<u8>, fingerprint: u64) -> Vec<u8> {
    bytes[2..10].copy_from_slice(&fingerprint.to_le_bytes());
    bytes
}

#[test]
fn legacy_fingerprints_still_decode_and_are_never_written() {
    let mut event = ExecutionEvent::new(
        "checkout-agent",
        Variant::Candidate,
        true,
        LatencyMs::new(12.5).unwrap(),
        1_764_222_000_000,
    );
    event.version = "v2".into();
    let bytes = event.encode(Encoding::AvroSingleObject);
    let legacy = legacy_fingerprint(RecordKind::ExecutionEvent);
    assert_ne!(bytes[2..10], legacy.to_le_bytes());
    let old = with_header(bytes, legacy);
    assert_eq!(
        ExecutionEvent::decode(&old, Encoding::AvroSingleObject).unwrap(),
        event
    );

    let command = Command::new("r", CommandKind::Pause, "ana", "why", 1_764_222_000_000);
    let old = with_header(
        command.encode(Encoding::AvroSingleObject),
        legacy_fingerprint(RecordKind::RolloutCommand),
    );
    assert_eq!(
        Command::decode(&old, Encoding::AvroSingleObject).unwrap(),
        command
    );

    // A fingerprint of another record type is still refused.
    let wrong = with_header(
        command.encode(Encoding::AvroSingleObject),
        legacy_fingerprint(RecordKind::Decision),
    );
    let e = Command::decode(&wrong, Encoding::AvroSingleObject).unwrap_err();
    assert_eq!(e.reason(), "unknown_fingerprint");
    assert!(Decision::decode(&wrong, Encoding::AvroSingleObject).is_err());
}

/// The Python package accepts the same legacy fingerprints (it cannot compute apache-avro's
/// canonical form, so it lists them).
#[test]
fn python_package_lists_the_legacy_fingerprints() {
    let py = std::fs::read_to_string(root().join("python/rollout_breaker/codec.py")).unwrap();
    for kind in [
        RecordKind::ExecutionEvent,
        RecordKind::Decision,
        RecordKind::RolloutCommand,
    ] {
        for fp in kind.accepted_fingerprints().skip(1) {
            let hex: String = fp
                .to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let standard_history = fixture()["schema_files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["fingerprint_hex"] == hex.as_str());
            assert!(
                standard_history || py.contains(&format!("\"{hex}\"")),
                "{kind:?}: legacy fingerprint {hex} missing from python/rollout_breaker/codec.py"
            );
        }
    }
}
