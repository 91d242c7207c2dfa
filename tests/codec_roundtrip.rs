//! Round trips of every record in every encoding, agreement with apache-avro, and golden bytes.
//!
//! Regenerate the golden files after an intended format change with
//! `UPDATE_GOLDEN=1 cargo test --test codec_roundtrip`, and say why in the commit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use rollout_breaker::codec::{
    decode_command, decode_decision, decode_event, encode_command, encode_decision, encode_event,
    Encoding, RecordKind, WireRecord,
};
use rollout_breaker::engine::{
    Action, BreakerState, Cause, Command, CommandKind, Decision, ExecutionEvent, LatencyMs,
    MetricsSnapshot, Phase, Policy, Scope, TrafficPercent, Variant, VariantMetrics, Warning,
};

const ENCODINGS: [Encoding; 3] = [
    Encoding::Json,
    Encoding::AvroSingleObject,
    Encoding::AvroConfluent { schema_id: 42 },
];
const TS: std::ops::Range<i64> = 946_684_800_000..7_258_118_400_000;

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        -1e6..1e6f64,
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

fn rollout_id() -> impl Strategy<Value = String> {
    // 1..=60 chars of up to 4 bytes each stays within the 255-byte limit.
    "\\PC{1,60}"
}

fn event() -> impl Strategy<Value = ExecutionEvent> {
    (
        (
            rollout_id(),
            any::<bool>(),
            any::<String>(),
            any::<Option<String>>(),
        ),
        (
            any::<bool>(),
            prop_oneof![0.0..1e5f64, prop::num::f64::POSITIVE],
            TS,
        ),
        (
            prop::option::of(finite()),
            prop::option::of("\\PC{0,20}"),
            prop::collection::btree_map("\\PC{0,12}", finite(), 0..5),
        ),
    )
        .prop_map(
            |(
                (rollout_id, cand, version, request_key),
                (success, latency, timestamp),
                (cost, segment, extra),
            )| {
                ExecutionEvent {
                    rollout_id: rollout_id.into(),
                    variant: if cand {
                        Variant::Candidate
                    } else {
                        Variant::Baseline
                    },
                    version: version.into(),
                    request_key: request_key.map(Into::into),
                    success,
                    latency: LatencyMs::new(latency).unwrap(),
                    timestamp,
                    cost,
                    segment,
                    region: None,
                    extra,
                }
            },
        )
        .prop_flat_map(|e| {
            prop::option::of("\\PC{0,20}").prop_map(move |region| ExecutionEvent {
                region,
                ..e.clone()
            })
        })
}

/// A scope as decisions and commands carry it (names as `check_scope_name` allows).
fn scope() -> impl Strategy<Value = Scope> {
    (
        prop::option::of("[A-Za-z0-9._-]{1,12}"),
        prop::option::of("[A-Za-z0-9._-]{1,12}"),
    )
        .prop_map(|(segment, region)| Scope { segment, region })
}

fn metrics() -> impl Strategy<Value = VariantMetrics> {
    (
        0..=i64::MAX as u64,
        0..=i64::MAX as u64,
        [finite(), finite(), finite(), finite(), finite()],
    )
        .prop_map(
            |(samples, successes, [c, m, p50, p95, p99])| VariantMetrics {
                samples,
                successes,
                completion_rate: c,
                mean_latency_ms: m,
                p50_latency_ms: p50,
                p95_latency_ms: p95,
                p99_latency_ms: p99,
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        0.001..1e6f64,
        1u32..1000,
        prop::sample::select(vec![Phase::Probe, Phase::Small, Phase::Medium]),
    )
        .prop_map(
            |(max_latency_ms, min_samples_per_phase, initial_phase)| Policy {
                max_latency_ms,
                min_samples_per_phase,
                initial_phase,
                ..Policy::default()
            },
        )
}

fn decision() -> impl Strategy<Value = Decision> {
    let actions = vec![
        Action::Start,
        Action::Advance,
        Action::Maintain,
        Action::Rollback,
        Action::Pause,
        Action::Resume,
        Action::Warning,
    ];
    (
        (
            rollout_id(),
            0..=i64::MAX as u64,
            prop::sample::select(actions),
        ),
        (
            prop::sample::select(Phase::ALL.to_vec()),
            prop::sample::select(Phase::ALL.to_vec()),
            0u16..=10_000,
            prop::sample::select(vec![
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed,
            ]),
            any::<bool>(),
            any::<String>(),
        ),
        (any::<i64>(), any::<i64>(), metrics(), metrics()),
        (TS, any::<bool>(), any::<String>()),
        (
            any::<Option<String>>(),
            any::<Option<String>>(),
            prop::option::of(policy()),
            prop::option::of(TS),
        ),
        (
            any::<String>(),
            finite(),
            finite(),
            any::<Option<i64>>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (rollout_id, sequence, action),
                (from, to, bp, breaker, paused, reason),
                (window_start, window_end, baseline, candidate),
                (at, operator, actor),
                (candidate_version, baseline_version, policy, phase_started_at),
                (metric, statistic, threshold, projected_rollback_ms, cleared),
            )| Decision {
                rollout_id,
                sequence,
                action,
                from,
                to,
                traffic: TrafficPercent::from_basis_points(bp).unwrap(),
                breaker,
                paused,
                reason,
                metrics: MetricsSnapshot {
                    window_start,
                    window_end,
                    baseline,
                    candidate,
                },
                at,
                cause: if operator {
                    Cause::Operator
                } else {
                    Cause::Automatic
                },
                actor,
                candidate_version,
                baseline_version,
                policy_json: policy.map(|p| serde_json::to_string(&p).unwrap()),
                phase_started_at,
                // Exactly the WARNING decisions carry a warning.
                warning: (action == Action::Warning).then_some(Warning {
                    metric,
                    statistic,
                    threshold,
                    projected_rollback_ms,
                    cleared,
                }),
                scope: Scope::DEFAULT,
            },
        )
        .prop_flat_map(|d| scope().prop_map(move |scope| Decision { scope, ..d.clone() }))
}

fn command() -> impl Strategy<Value = Command> {
    let kinds = vec![
        CommandKind::Start,
        CommandKind::Pause,
        CommandKind::Resume,
        CommandKind::Promote,
        CommandKind::Abort,
        CommandKind::Retry,
    ];
    (
        (
            rollout_id(),
            prop::sample::select(kinds),
            any::<String>(),
            any::<String>(),
            TS,
        ),
        (
            any::<Option<String>>(),
            any::<Option<String>>(),
            prop::option::of(policy()),
        ),
    )
        .prop_map(
            |(
                (rollout_id, kind, actor, reason, timestamp),
                (candidate_version, baseline_version, policy),
            )| {
                Command {
                    rollout_id,
                    kind,
                    actor,
                    reason,
                    timestamp,
                    candidate_version,
                    baseline_version,
                    policy,
                    scope: Scope::DEFAULT,
                }
            },
        )
        .prop_flat_map(|c| scope().prop_map(move |scope| Command { scope, ..c.clone() }))
}

/// The Avro body after the framing header.
fn body(bytes: &[u8], encoding: Encoding) -> &[u8] {
    match encoding {
        Encoding::AvroSingleObject => &bytes[10..],
        Encoding::AvroConfluent { .. } => &bytes[5..],
        Encoding::Json => bytes,
    }
}

/// apache-avro reads our body completely, writes it back, and we read its bytes as the same
/// record.
fn agrees_with_apache_avro<T: WireRecord + PartialEq + std::fmt::Debug>(record: &T) {
    let encoding = Encoding::AvroConfluent { schema_id: 42 };
    let ours = record.encode(encoding);
    let schema = T::KIND.schema();
    let mut rest = body(&ours, encoding);
    let value =
        apache_avro::from_avro_datum(schema, &mut rest, None).expect("apache-avro reads our body");
    assert!(rest.is_empty(), "apache-avro left {} bytes", rest.len());
    let theirs = apache_avro::to_avro_datum(schema, value).expect("apache-avro writes the value");
    let mut framed = ours[..5].to_vec();
    framed.extend_from_slice(&theirs);
    assert_eq!(
        &T::decode(&framed, encoding).expect("we read apache-avro's body"),
        record
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn events_round_trip(e in event()) {
        for enc in ENCODINGS {
            prop_assert_eq!(&decode_event(&encode_event(&e, enc), enc).unwrap(), &e, "{:?}", enc);
        }
        agrees_with_apache_avro(&e);
    }

    #[test]
    fn decisions_round_trip(d in decision()) {
        for enc in ENCODINGS {
            prop_assert_eq!(&decode_decision(&encode_decision(&d, enc), enc).unwrap(), &d, "{:?}", enc);
        }
        agrees_with_apache_avro(&d);
    }

    #[test]
    fn commands_round_trip(c in command()) {
        for enc in ENCODINGS {
            prop_assert_eq!(&decode_command(&encode_command(&c, enc), enc).unwrap(), &c, "{:?}", enc);
        }
        agrees_with_apache_avro(&c);
    }
}

// Golden bytes: one fixed record of each type in each encoding.

fn golden_event() -> ExecutionEvent {
    ExecutionEvent {
        rollout_id: "checkout-agent".into(),
        variant: Variant::Candidate,
        version: "v2".into(),
        request_key: Some("user-1234".into()),
        success: true,
        latency: LatencyMs::new(1234.5).unwrap(),
        timestamp: 1_764_222_000_000,
        cost: Some(0.0125),
        segment: Some("eu-pro".into()),
        region: None,
        extra: BTreeMap::from([("tokens".into(), 512.0), ("tool_calls".into(), 3.0)]),
    }
}

fn golden_decision() -> Decision {
    let m = |samples: u64, successes: u64, mean: f64| VariantMetrics {
        samples,
        successes,
        completion_rate: successes as f64 / samples as f64,
        mean_latency_ms: mean,
        p50_latency_ms: mean * 0.9,
        p95_latency_ms: mean * 1.8,
        p99_latency_ms: mean * 2.5,
    };
    Decision {
        rollout_id: "checkout-agent".into(),
        sequence: 3,
        action: Action::Rollback,
        from: Phase::Small,
        to: Phase::Off,
        traffic: TrafficPercent::ZERO,
        breaker: BreakerState::Open,
        paused: false,
        reason: "mean latency 2500 ms > max_latency_ms 2000 ms".into(),
        metrics: MetricsSnapshot {
            window_start: 1_764_221_700_000,
            window_end: 1_764_222_000_000,
            baseline: m(400, 384, 900.0),
            candidate: m(25, 20, 2500.0),
        },
        at: 1_764_222_000_000,
        cause: Cause::Automatic,
        actor: "watchdog".into(),
        candidate_version: Some("v2".into()),
        baseline_version: Some("v1".into()),
        policy_json: Some(r#"{"max_latency_ms":2000.0}"#.into()),
        phase_started_at: Some(1_764_221_880_000),
        warning: None,
        scope: rollout_breaker::engine::Scope::DEFAULT,
    }
}

/// A WARNING (schema v3): same phase and traffic before and after, the warning's numbers.
fn golden_warning() -> Decision {
    Decision {
        sequence: 4,
        action: Action::Warning,
        from: Phase::Small,
        to: Phase::Small,
        traffic: TrafficPercent::new(5.0).unwrap(),
        breaker: BreakerState::HalfOpen,
        reason: "SMALL: early warning: candidate's failures changed for the worse".into(),
        warning: Some(Warning {
            metric: "failures".into(),
            statistic: 7.25,
            threshold: 7.272_398_6,
            projected_rollback_ms: Some(95_000),
            cleared: false,
        }),
        ..golden_decision()
    }
}

fn golden_command() -> Command {
    Command {
        rollout_id: "checkout-agent".into(),
        kind: CommandKind::Start,
        actor: "ana".into(),
        reason: "ship v2".into(),
        timestamp: 1_764_221_000_000,
        candidate_version: Some("v2".into()),
        baseline_version: Some("v1".into()),
        policy: Some(Policy {
            max_latency_ms: 1500.0,
            ..Policy::default()
        }),
        scope: Scope::DEFAULT,
    }
}

fn check_golden<T: WireRecord + PartialEq + std::fmt::Debug>(name: &str, record: &T) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    for (suffix, enc) in [
        ("json", Encoding::Json),
        ("avro", Encoding::AvroSingleObject),
        ("confluent.avro", Encoding::AvroConfluent { schema_id: 42 }),
    ] {
        let path = dir.join(format!("{name}.{suffix}"));
        let bytes = record.encode(enc);
        if update {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let golden = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
                path.display()
            )
        });
        assert!(
            bytes == golden,
            "{} changed: the wire format is not what it was; if that is intended, run with \
             UPDATE_GOLDEN=1 and make sure the schema change is backward compatible",
            path.display()
        );
        assert_eq!(
            &T::decode(&golden, enc).unwrap(),
            record,
            "{}",
            path.display()
        );
    }
}

#[test]
fn golden_event_bytes() {
    check_golden("event", &golden_event());
}

#[test]
fn golden_decision_bytes() {
    check_golden("decision", &golden_decision());
}

#[test]
fn golden_warning_bytes() {
    check_golden("warning", &golden_warning());
}

/// Only a WARNING carries a warning, and a WARNING must carry one, in every encoding.
#[test]
fn warning_and_action_must_agree() {
    let mut bare = golden_warning();
    bare.warning = None;
    let mut stray = golden_decision();
    stray.warning = golden_warning().warning;
    for enc in [
        Encoding::Json,
        Encoding::AvroSingleObject,
        Encoding::AvroConfluent { schema_id: 42 },
    ] {
        for bad in [&bare, &stray] {
            let e = Decision::decode(&bad.encode(enc), enc).unwrap_err();
            assert!(e.to_string().contains("warning"), "{e}");
        }
    }
}

#[test]
fn golden_command_bytes() {
    check_golden("command", &golden_command());
}

#[test]
fn single_object_header_carries_the_schema_fingerprint() {
    for (bytes, kind) in [
        (
            encode_event(&golden_event(), Encoding::AvroSingleObject),
            RecordKind::ExecutionEvent,
        ),
        (
            encode_decision(&golden_decision(), Encoding::AvroSingleObject),
            RecordKind::Decision,
        ),
        (
            encode_command(&golden_command(), Encoding::AvroSingleObject),
            RecordKind::RolloutCommand,
        ),
    ] {
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        // The specification's canonical form (checked against fastavro in
        // tests/codec_fingerprints.rs), not apache-avro's.
        let fp = rollout_breaker::codec::schema_fingerprint(kind.schema_text()).unwrap();
        assert_eq!(&bytes[2..10], &fp.to_le_bytes()[..]);
    }
}

/// Records written before scopes (decision v3, event v1, command v2) still decode, in every
/// encoding, to the same record in the default scope; the current body is the old one plus
/// the new unions' null branches.
#[test]
fn records_before_scopes_still_decode() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let encodings = [
        ("json", Encoding::Json),
        ("avro", Encoding::AvroSingleObject),
        ("confluent.avro", Encoding::AvroConfluent { schema_id: 42 }),
    ];
    for (suffix, enc) in encodings {
        let read = |dir: &str, name: &str| {
            std::fs::read(golden.join(dir).join(format!("{name}.{suffix}"))).unwrap()
        };
        assert_eq!(
            Decision::decode(&read("v3", "decision"), enc).unwrap(),
            golden_decision(),
            "{suffix}"
        );
        assert_eq!(
            Decision::decode(&read("v3", "warning"), enc).unwrap(),
            golden_warning(),
            "{suffix}"
        );
        assert_eq!(
            ExecutionEvent::decode(&read("event_v1", "event"), enc).unwrap(),
            golden_event(),
            "{suffix}"
        );
        assert_eq!(
            Command::decode(&read("command_v2", "command"), enc).unwrap(),
            golden_command(),
            "{suffix}"
        );
    }
    for (dir, name, current, nulls) in [
        (
            "v3",
            "decision",
            golden_decision().encode(Encoding::AvroSingleObject),
            2,
        ),
        (
            "event_v1",
            "event",
            golden_event().encode(Encoding::AvroSingleObject),
            1,
        ),
        (
            "command_v2",
            "command",
            golden_command().encode(Encoding::AvroSingleObject),
            2,
        ),
    ] {
        let old = std::fs::read(golden.join(dir).join(format!("{name}.avro"))).unwrap();
        assert_ne!(
            old[2..10],
            current[2..10],
            "{name}: fingerprint should differ"
        );
        assert_eq!(&current[10..current.len() - nulls], &old[10..], "{name}");
        assert!(
            current[current.len() - nulls..].iter().all(|&b| b == 0),
            "{name}"
        );
    }
}

/// A scoped decision and command (schema v4 / v2) in every encoding.
#[test]
fn golden_scoped_bytes() {
    let d = Decision {
        scope: Scope::new(Some("enterprise"), Some("eu-west")),
        reason: "segment `enterprise`, region `eu-west`: rolled back".into(),
        ..golden_decision()
    };
    check_golden("scoped_decision", &d);
    let c = Command {
        kind: CommandKind::Pause,
        policy: None,
        candidate_version: None,
        baseline_version: None,
        scope: Scope::new(None, Some("eu-west")),
        ..golden_command()
    };
    check_golden("scoped_command", &c);
    let e = ExecutionEvent {
        region: Some("eu-west".into()),
        ..golden_event()
    };
    check_golden("scoped_event", &e);
}

/// Decisions written with schema v2 (before `warning` and the WARNING symbol) still decode,
/// in every encoding, to the same decision without a warning.
#[test]
fn v2_records_still_decode() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/v2");
    for (file, enc) in [
        ("decision.json", Encoding::Json),
        ("decision.avro", Encoding::AvroSingleObject),
        (
            "decision.confluent.avro",
            Encoding::AvroConfluent { schema_id: 42 },
        ),
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(
            Decision::decode(&bytes, enc).unwrap(),
            golden_decision(),
            "{file}"
        );
    }
    let v2 = std::fs::read(dir.join("decision.avro")).unwrap();
    let current = golden_decision().encode(Encoding::AvroSingleObject);
    assert_ne!(v2[2..10], current[2..10], "fingerprint should differ");
    // A v4 body is the v2 body plus the `warning` union's null branch and the scope's two.
    assert_eq!(&current[10..current.len() - 3], &v2[10..]);
    assert_eq!(current[current.len() - 3..], [0, 0, 0]);
}

/// Records written with the first version of the schemas (before `phase_started_ms` and the
/// RETIRE symbols) still decode, in every encoding, to the same record with the new fields at
/// their defaults.
#[test]
fn v1_records_still_decode() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/v1");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut expected = golden_decision();
    expected.phase_started_at = None;
    for (file, enc) in [
        ("decision.json", Encoding::Json),
        ("decision.avro", Encoding::AvroSingleObject),
        (
            "decision.confluent.avro",
            Encoding::AvroConfluent { schema_id: 42 },
        ),
    ] {
        let bytes = read(file);
        assert_eq!(Decision::decode(&bytes, enc).unwrap(), expected, "{file}");
    }
    // The v1 single-object header names the v1 schema, not the current one.
    let v1 = read("decision.avro");
    let current = golden_decision().encode(Encoding::AvroSingleObject);
    assert_ne!(v1[2..10], current[2..10], "fingerprint should differ");
    for (file, enc) in [
        ("command.json", Encoding::Json),
        ("command.avro", Encoding::AvroSingleObject),
        (
            "command.confluent.avro",
            Encoding::AvroConfluent { schema_id: 42 },
        ),
    ] {
        assert_eq!(
            Command::decode(&read(file), enc).unwrap(),
            golden_command(),
            "{file}"
        );
    }
}
