//! The chaos suite's seeded workload: events, commands and refused records for many rollouts,
//! stamped in the present, produced once to the input topics that both runs read.
//!
//! Everything here is a function of the seed and of `now` (the moment the workload is built):
//! rollout profiles, event times, outcomes, commands and where refused records go. Event times
//! run over the last `span_ms` up to `now`, because a broker deletes records whose timestamps
//! are older than its retention.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::json;

/// Whether the workload contains RETIRE commands (one rollout in 17, after its last event;
/// the engine accepts them at OFF or FULL and refuses them elsewhere). A switch so that a
/// build whose processor predates RETIRE can still be compared.
pub const RETIRE_COMMANDS: bool = true;

/// Records larger than this are refused as `too_large`; the harness's processor config sets
/// `processing.max_record_bytes` to it (the default, 1 MiB, is the broker's own limit).
pub const MAX_RECORD_BYTES: usize = 8 * 1024;

/// Java's `murmur2` as Kafka's default partitioner uses it (librdkafka `murmur2_random`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition a Java client (or librdkafka's `murmur2_random`) picks for `key`.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions as u32) as i32
}

/// How a rollout's candidate behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// Stays healthy: advances to FULL.
    Healthy,
    /// Completion drops to ~60 % at its break time: ROLLBACK.
    Degrading,
    /// Mean latency rises above the policy's maximum at its break time: ROLLBACK.
    LatencyRegression,
}

/// What was put into a rollout besides its plain events, to explain a differing rollout.
#[derive(Debug, Clone, Default)]
pub struct RolloutNotes {
    /// The candidate profile.
    pub profile: Option<Profile>,
    /// Commands addressed to it, by kind name.
    pub commands: Vec<&'static str>,
    /// Refused or unusual records carrying its id, by kind.
    pub oddities: BTreeMap<&'static str, u32>,
}

/// One input record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Record key; `None` for keyless records.
    pub key: Option<String>,
    /// Value bytes.
    pub payload: Vec<u8>,
    /// Record timestamp (CreateTime), ms.
    pub timestamp: i64,
    /// A partition chosen on purpose (wrong-partition records); `None` lets murmur2 choose.
    pub partition: Option<i32>,
    /// What the record is: `event`, `late`, a command kind or a refused kind.
    pub kind: &'static str,
    /// A command written straight into the events topic with the relayed-command header.
    pub relayed_command: bool,
}

/// What the workload should be.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Good events (refused records and commands come on top).
    pub events: usize,
    /// Rollouts.
    pub rollouts: usize,
    /// Partitions of the input topics.
    pub partitions: i32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Event times run over `[now - span_ms, now]`.
    pub span_ms: i64,
    /// The present, ms since the epoch.
    pub now_ms: i64,
    /// Include operator commands.
    pub commands: bool,
    /// Include refused records, late, future-dated and keyless events.
    pub oddities: bool,
    /// Write commands into the events topic with the relayed-command header (otherwise they
    /// stay in [`Workload::commands`], for the commands topic).
    pub commands_in_events: bool,
}

/// The generated input, in production order.
#[derive(Debug, Default)]
pub struct Workload {
    /// Records for the events topic, in event-time order (late records placed where they
    /// arrive, not where they belong).
    pub events: Vec<Record>,
    /// Records for the commands topic (none when commands are written to the events topic).
    pub commands: Vec<Record>,
    /// How many records of each kind were generated (good events, late, future, each refused
    /// kind, each command kind).
    pub counts: BTreeMap<&'static str, u64>,
    /// Per rollout id, what it received besides plain events.
    pub notes: BTreeMap<String, RolloutNotes>,
}

/// Kinds of records the processor refuses, with the dead-letter reason each must get.
pub const REFUSED_KINDS: [(&str, &str); 10] = [
    ("too_large", "too_large"),
    ("invalid_json", "invalid_json"),
    ("missing_field", "missing_field"),
    ("invalid_latency", "invalid_latency"),
    ("invalid_timestamp", "invalid_timestamp"),
    ("key_mismatch", "key_mismatch"),
    ("keyless", "missing_key"),
    ("wrong_partition", "wrong_partition"),
    ("clock_skew_hours", "clock_skew"),
    ("refused_command", "refused_command"),
];

fn rollout_id(r: usize) -> String {
    format!("agent-{r:05}")
}

fn event_json(id: &str, candidate: bool, success: bool, latency_ms: f64, ts: i64) -> String {
    let (variant, version) = if candidate {
        ("CANDIDATE", "v2")
    } else {
        ("BASELINE", "v1")
    };
    format!(
        r#"{{"rollout_id":"{id}","variant":"{variant}","version":"{version}","success":{success},"latency_ms":{latency_ms:.1},"timestamp_ms":{ts}}}"#
    )
}

fn command_json(
    id: &str,
    kind: &str,
    ts: i64,
    start_policy: Option<&serde_json::Value>,
) -> Vec<u8> {
    let mut v = json!({
        "rollout_id": id,
        "kind": kind,
        "actor": "chaos",
        "reason": format!("chaos suite {kind}"),
        "timestamp_ms": ts,
    });
    if let Some(policy) = start_policy {
        v["candidate_version"] = json!("v2");
        v["baseline_version"] = json!("v1");
        v["policy_json"] = json!(policy.to_string());
    }
    serde_json::to_vec(&v).expect("command JSON")
}

impl Workload {
    /// Builds the workload for `spec`.
    pub fn generate(spec: &WorkloadSpec) -> Self {
        let mut rng = SmallRng::seed_from_u64(spec.seed);
        let mut w = Workload::default();
        let start_of_time = spec.now_ms - spec.span_ms;
        // (time, tie-break, record): sorted once at the end.
        let mut events: Vec<(i64, u64, Record)> = Vec::with_capacity(spec.events + 1024);
        let mut commands: Vec<(i64, u64, Record)> = Vec::new();
        let mut tie = 0u64;
        let mut next_tie = || {
            tie += 1;
            tie
        };
        let per_rollout = (spec.events / spec.rollouts.max(1)).max(1);
        let bump = |w: &mut Workload, kind: &'static str| *w.counts.entry(kind).or_default() += 1;

        for r in 0..spec.rollouts {
            let id = rollout_id(r);
            let profile = match r % 10 {
                0..=4 => Profile::Healthy,
                5..=7 => Profile::Degrading,
                _ => Profile::LatencyRegression,
            };
            let notes = w.notes.entry(id.clone()).or_default();
            notes.profile = Some(profile);
            // Rollouts begin over the first 30 % of the span and run to `now`.
            let begin = start_of_time + rng.random_range(0..spec.span_ms * 3 / 10);
            let life = spec.now_ms - begin;
            let breaks_at = begin + life * rng.random_range(25..70) / 100;
            let candidate_share: f64 = rng.random_range(0.15..0.5);
            // Spread the event budget unevenly: some rollouts are busier than others.
            let n = per_rollout * rng.random_range(60..140) / 100;

            // Commands, at times chosen inside the rollout's life.
            let at = |pct: i64| begin + life * pct / 100;
            let mut cmd = |w: &mut Workload,
                           kind: &'static str,
                           ts: i64,
                           policy: Option<serde_json::Value>| {
                let payload = command_json(&id, kind, ts, policy.as_ref());
                commands.push((
                    ts,
                    next_tie(),
                    Record {
                        key: Some(id.clone()),
                        payload,
                        timestamp: ts,
                        partition: None,
                        kind,
                        relayed_command: true,
                    },
                ));
                w.notes.get_mut(&id).unwrap().commands.push(kind);
                bump(w, kind);
            };
            if spec.commands && r % 3 == 0 {
                // An operator START with its own policy, just before the first event.
                let policy = json!({
                    "min_samples_per_phase": 8,
                    "max_latency_ms": 1800.0,
                    "advancement_threshold": 0.93,
                    "evaluation_interval_ms": 15000,
                });
                cmd(&mut w, "START", begin - 1_000, Some(policy));
            }
            if spec.commands && r % 7 == 1 {
                cmd(&mut w, "PAUSE", at(30), None);
                cmd(&mut w, "RESUME", at(45), None);
            }
            if spec.commands && r % 11 == 2 {
                cmd(&mut w, "ABORT", at(40), None);
                cmd(&mut w, "RETRY", at(55), None);
            }
            if spec.commands && r % 13 == 3 {
                // Refused: RESUME of a rollout that is not paused.
                cmd(&mut w, "RESUME", at(20), None);
            }
            if spec.commands && RETIRE_COMMANDS && r % 17 == 4 {
                // After its last event: retiring writes a tombstone.
                cmd(&mut w, "RETIRE", spec.now_ms + 1_000, None);
            }

            for i in 0..n {
                let slot = life as f64 / n as f64;
                let mut ts = begin + ((i as f64 + rng.random_range(0.0..1.0)) * slot) as i64;
                let placed_at = ts;
                let candidate = rng.random_bool(candidate_share);
                let broken = candidate && ts >= breaks_at;
                let success = match (profile, broken) {
                    (Profile::Degrading, true) => rng.random_bool(0.6),
                    _ => rng.random_bool(0.985),
                };
                let latency = match (profile, broken) {
                    (Profile::LatencyRegression, true) => rng.random_range(2_400.0..3_600.0),
                    _ => rng.random_range(300.0..1_100.0),
                };
                let roll: f64 = if spec.oddities {
                    rng.random_range(0.0..1.0)
                } else {
                    1.0
                };
                let mut record_ts = ts;
                let kind = if roll < 0.002 {
                    // Late: stamped 1-3 minutes before where it is produced.
                    ts -= rng.random_range(60_000..180_000);
                    record_ts = ts;
                    "late"
                } else if roll < 0.0025 {
                    // Future-dated within the skew bound: up to 30 s ahead of its record time.
                    ts += rng.random_range(1_000..30_000);
                    "future_seconds"
                } else {
                    "event"
                };
                bump(&mut w, kind);
                if kind != "event" {
                    *w.notes
                        .get_mut(&id)
                        .unwrap()
                        .oddities
                        .entry(kind)
                        .or_default() += 1;
                }
                events.push((
                    placed_at,
                    next_tie(),
                    Record {
                        key: Some(id.clone()),
                        payload: event_json(&id, candidate, success, latency, ts).into_bytes(),
                        timestamp: record_ts,
                        partition: None,
                        kind,
                        relayed_command: false,
                    },
                ));
            }
        }

        // Refused records: a few of each kind per 10k events, at least 3 of each.
        let per_kind = (spec.events / 4_000).max(3);
        for (kind, _) in REFUSED_KINDS.iter().filter(|_| spec.oddities) {
            let kind = *kind;
            if kind == "refused_command" {
                // Besides the RESUMEs above: PAUSE of a rollout that does not exist.
                for _ in 0..per_kind {
                    let ts = start_of_time + rng.random_range(0..spec.span_ms);
                    let id = format!("ghost-{:05}", rng.random_range(0..100_000));
                    commands.push((
                        ts,
                        next_tie(),
                        Record {
                            key: Some(id.clone()),
                            payload: command_json(&id, "PAUSE", ts, None),
                            timestamp: ts,
                            partition: None,
                            kind: "refused_command",
                            relayed_command: true,
                        },
                    ));
                    bump(&mut w, "refused_command");
                }
                continue;
            }
            for _ in 0..per_kind {
                let r = rng.random_range(0..spec.rollouts);
                let id = rollout_id(r);
                let ts = start_of_time + rng.random_range(spec.span_ms / 5..spec.span_ms);
                // Refused records that still decode carry a slow failure: if anything (live
                // run, restore, audit) counts one, the rollout's window shows it.
                let good = event_json(&id, true, false, 4_000.0, ts);
                let mut rec = Record {
                    key: Some(id.clone()),
                    payload: good.clone().into_bytes(),
                    timestamp: ts,
                    partition: None,
                    kind,
                    relayed_command: false,
                };
                match kind {
                    "too_large" => {
                        let pad = "x".repeat(MAX_RECORD_BYTES + 100);
                        rec.payload = good
                            .replacen('{', &format!(r#"{{"segment":"{pad}","#), 1)
                            .into_bytes();
                    }
                    "invalid_json" => rec.payload = format!("{{rollout_id: {id}}}").into_bytes(),
                    "missing_field" => {
                        rec.payload = format!(
                            r#"{{"rollout_id":"{id}","variant":"CANDIDATE","version":"v2","success":true,"timestamp_ms":{ts}}}"#
                        )
                        .into_bytes();
                    }
                    "invalid_latency" => {
                        rec.payload = good
                            .replace("\"latency_ms\":4000.0", "\"latency_ms\":-5.0")
                            .into_bytes();
                    }
                    "invalid_timestamp" => {
                        rec.payload = event_json(&id, true, true, 500.0, 1_000).into_bytes();
                    }
                    "key_mismatch" => {
                        // Keyed as this rollout, about another one of the same partition: a
                        // reader that skips the key check counts it for that other rollout.
                        let here = partition_for(&id, spec.partitions);
                        let other = (1..spec.rollouts)
                            .map(|d| rollout_id((r + d) % spec.rollouts))
                            .find(|o| partition_for(o, spec.partitions) == here)
                            .unwrap_or_else(|| rollout_id((r + 1) % spec.rollouts));
                        *w.notes
                            .entry(other.clone())
                            .or_default()
                            .oddities
                            .entry("key_mismatch_payload")
                            .or_default() += 1;
                        rec.payload = event_json(&other, true, false, 4_000.0, ts).into_bytes();
                    }
                    "keyless" => rec.key = None,
                    "wrong_partition" => {
                        let right = partition_for(&id, spec.partitions);
                        rec.partition = Some((right + 1) % spec.partitions);
                    }
                    "clock_skew_hours" => {
                        // Event time hours ahead of the record time (the broker refuses record
                        // timestamps more than an hour ahead, so the record time stays sane).
                        let ahead = rng.random_range(2..6) * 3_600_000;
                        rec.payload =
                            event_json(&id, true, false, 4_000.0, ts + ahead).into_bytes();
                    }
                    _ => unreachable!("{kind}"),
                }
                bump(&mut w, kind);
                *w.notes
                    .entry(id)
                    .or_default()
                    .oddities
                    .entry(kind)
                    .or_default() += 1;
                events.push((ts, next_tie(), rec));
            }
        }

        // By default commands go into the events topic, where the processor would relay them
        // from the commands topic (with the relayed-command header): the events partition is
        // the one ordered log of a rollout. Through a shared commands topic, each processor
        // group would relay its own copy into the shared events topic, and the two runs would
        // not read the same input; the harness gives each run its own input topics then.
        if spec.commands_in_events {
            events.extend(commands);
        } else {
            commands.sort_by_key(|(t, tie, _)| (*t, *tie));
            w.commands = commands
                .into_iter()
                .map(|(_, _, mut r)| {
                    r.relayed_command = false;
                    r
                })
                .collect();
        }
        events.sort_by_key(|(t, tie, _)| (*t, *tie));
        w.events = events.into_iter().map(|(_, _, r)| r).collect();
        w
    }
}

/// Counts deliveries and checks that keyed records land where murmur2 says.
struct DeliveryCheck {
    failed: Arc<AtomicU64>,
    misplaced: Arc<AtomicU64>,
}

impl ClientContext for DeliveryCheck {}

impl ProducerContext for DeliveryCheck {
    /// 1 + the partition murmur2 picks for the record's key; 0 when not checked.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, expected: usize) {
        match result {
            Ok(m) => {
                if expected != 0 && expected - 1 != m.partition() as usize {
                    self.misplaced.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Produces `records` to `topic` in order, partitioned like Java clients (murmur2) unless a
/// record names its partition. Panics if any record is not delivered, or if a keyed record
/// landed on another partition than [`partition_for`] computes (the wrong-partition records
/// would then be wrong for the wrong reason).
pub fn produce(bootstrap: &str, topic: &str, partitions: i32, records: &[Record]) {
    let failed = Arc::new(AtomicU64::new(0));
    let misplaced = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<DeliveryCheck> = crate::common::producer_config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(DeliveryCheck {
            failed: failed.clone(),
            misplaced: misplaced.clone(),
        })
        .expect("producer");
    for rec in records {
        let check = match (&rec.key, rec.partition) {
            (Some(k), None) => 1 + partition_for(k, partitions) as usize,
            _ => 0,
        };
        let mut br = BaseRecord::with_opaque_to(topic, check)
            .payload(&rec.payload)
            .timestamp(rec.timestamp);
        if rec.relayed_command {
            br = br.headers(OwnedHeaders::new().insert(Header {
                key: rollout_breaker::input::RELAYED_COMMAND_HEADER,
                value: Some("chaos"),
            }));
        }
        if let Some(k) = &rec.key {
            br = br.key(k.as_bytes());
        }
        if let Some(p) = rec.partition {
            br = br.partition(p);
        }
        let mut br = br;
        loop {
            match producer.send(br) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    br = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "undelivered records to {topic}"
    );
    assert_eq!(
        misplaced.load(Ordering::Relaxed),
        0,
        "records on {topic} landed off their murmur2 partition: the harness's murmur2 is wrong"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_breaker::codec::{self, Encoding};

    #[test]
    fn refused_records_are_refused_for_their_reason() {
        let w = Workload::generate(&WorkloadSpec {
            events: 20_000,
            rollouts: 50,
            partitions: 6,
            seed: 3,
            span_ms: 1_500_000,
            now_ms: 1_800_000_000_000,
            commands: true,
            oddities: true,
            commands_in_events: true,
        });
        let mut seen = BTreeMap::new();
        for r in &w.events {
            *seen.entry(r.kind).or_insert(0) += 1;
            if r.relayed_command {
                assert!(codec::decode_command(&r.payload, Encoding::Json).is_ok());
                continue;
            }
            let decoded = codec::decode_event(&r.payload, Encoding::Json);
            match r.kind {
                "too_large" => assert!(r.payload.len() > MAX_RECORD_BYTES),
                "invalid_json" | "missing_field" | "invalid_latency" | "invalid_timestamp" => {
                    assert_eq!(decoded.map_err(|e| e.reason()).err(), Some(r.kind));
                }
                "key_mismatch" => {
                    let e = decoded.unwrap();
                    let key = r.key.as_deref().unwrap();
                    assert_ne!(e.rollout_id, key);
                    assert_eq!(partition_for(&e.rollout_id, 6), partition_for(key, 6));
                }
                "keyless" => assert!(r.key.is_none() && decoded.is_ok()),
                "wrong_partition" => {
                    let key = r.key.as_deref().unwrap();
                    assert_ne!(r.partition, Some(partition_for(key, 6)));
                }
                "clock_skew_hours" => {
                    assert!(decoded.unwrap().timestamp > r.timestamp + 3_600_000);
                }
                _ => assert!(decoded.is_ok(), "{}: {:?}", r.kind, decoded),
            }
        }
        for (kind, _) in REFUSED_KINDS
            .iter()
            .filter(|(k, _)| *k != "refused_command")
        {
            assert!(
                seen.get(kind).copied().unwrap_or(0) >= 3,
                "{kind}: {seen:?}"
            );
        }
        assert!(w.commands.is_empty());
        assert!(w.events.iter().filter(|r| r.relayed_command).count() > 50);
    }

    #[test]
    fn murmur2_matches_java() {
        // Values from Kafka's Utils.murmur2 (clients/src/test/.../UtilsTest.java).
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }
}
