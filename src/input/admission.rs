//! Admission: one decision per input record, shared by the live loop, the restore and the
//! audit.
//!
//! In order, a record is refused when:
//!
//! | reason            | when | how to fix the producer |
//! |-------------------|------|-------------------------|
//! | `too_large`       | the value exceeds `max_record_bytes` | send smaller records |
//! | `empty_record`    | the value is missing (a tombstone) | input topics take records, not deletions |
//! | `missing_key`     | the record has no key | key = the rollout id, so all of a rollout lands in one partition |
//! | (decode reasons)  | the value does not decode or validate ([`crate::codec::DecodeError::reason`]) | match the topic's encoding and schema |
//! | `key_mismatch`    | the key is not the record's `rollout_id` | key = the rollout id |
//! | `wrong_partition` | the partition is not murmur2(key) mod partitions, as Java clients partition | librdkafka clients: `partitioner=murmur2_random` (their default is CRC32) |
//! | `clock_skew`      | the record's own time (event time, command time) is more than `max_clock_skew_ms` ahead of the record's timestamp | fix the producer's clock; use `message.timestamp.type=LogAppendTime` on the topic |
//!
//! The clock bound keeps one producer from moving a rollout's watermark into the future, which
//! would count every later event as late. It is only as good as the record timestamp: with
//! `LogAppendTime` (how the processor creates its input topics) that is the broker's clock;
//! with `CreateTime` it is the producer's.

use crate::codec::{Encoding, SchemaIds, WireRecord};
use crate::engine::{Command, ExecutionEvent};

/// Which input topic a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputTopic {
    /// Execution events from agents (and commands the processor relayed there).
    Events,
    /// Operator commands.
    Commands,
}

/// A record as the log holds it (no client types, so restore, audit and tests build it alike).
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Source topic.
    pub topic: InputTopic,
    /// Partition the record is in.
    pub partition: i32,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub payload: Option<&'a [u8]>,
    /// Record timestamp (ms since the epoch), when the log has one.
    pub timestamp: Option<i64>,
    /// A command the processor relayed into the events topic (it carries
    /// [`super::RELAYED_COMMAND_HEADER`]): decoded as a command.
    pub relayed_command: bool,
}

/// The rules a record is admitted by.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRules {
    /// Partitions of the input topics (they are co-partitioned).
    pub partitions: i32,
    /// Largest accepted value, in bytes.
    pub max_record_bytes: usize,
    /// How far a record's own time may be ahead of its record timestamp, in ms.
    pub max_clock_skew_ms: u64,
    /// Encoding of the events topic.
    pub events_encoding: Encoding,
    /// Encoding of the commands topic.
    pub commands_encoding: Encoding,
    /// Confluent schema ids accepted besides each topic's own.
    pub schema_ids: SchemaIds,
}

/// An admitted record.
#[derive(Debug, Clone, PartialEq)]
pub enum Admitted {
    /// An execution event.
    Event(ExecutionEvent),
    /// An operator command (boxed: a command carries a whole policy, and events, the hot
    /// path, should not move its size around).
    Command(Box<Command>),
}

/// Why a record was refused: `reason` is the dead-letter label, `message` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable label (`rb.error.reason` header, metric label).
    pub reason: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The partition Java clients (and librdkafka's `murmur2_random`) choose for `key`.
pub fn kafka_partition(key: &[u8], partitions: i32) -> i32 {
    // Kafka's `Utils.murmur2` is MurmurHash2 with this seed; `toPositive` masks the sign bit.
    const KAFKA_SEED: u32 = 0x9747_b28c;
    let hash = murmur2::murmur2(key, KAFKA_SEED) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

/// Decides whether `record` is admitted under `rules`.
pub fn admit(rules: &AdmissionRules, record: &RecordView<'_>) -> Result<Admitted, Refusal> {
    let Some(payload) = record.payload else {
        return Err(Refusal::new(
            "empty_record",
            "record has no value (a tombstone); input topics take records, not deletions",
        ));
    };
    if payload.len() > rules.max_record_bytes {
        return Err(Refusal::new(
            "too_large",
            format!(
                "record of {} bytes exceeds max_record_bytes {}",
                payload.len(),
                rules.max_record_bytes
            ),
        ));
    }
    let Some(key) = record.key else {
        return Err(Refusal::new(
            "missing_key",
            "record has no key; produce it with the rollout id as key, so every record of a \
             rollout lands in one partition",
        ));
    };
    let is_command = record.topic == InputTopic::Commands || record.relayed_command;
    let admitted = match is_command {
        false => ExecutionEvent::decode_with(payload, rules.events_encoding, &rules.schema_ids)
            .map(Admitted::Event),
        true => Command::decode_with(payload, rules.commands_encoding, &rules.schema_ids)
            .map(|c| Admitted::Command(Box::new(c))),
    }
    .map_err(|e| Refusal::new(e.reason(), e.to_string()))?;
    // Checked against the decoded record in place: the hot path copies no string for them.
    let (rollout_id, own_time) = match &admitted {
        Admitted::Event(e) => (e.rollout_id.as_str(), e.timestamp),
        Admitted::Command(c) => (c.rollout_id.as_str(), c.timestamp),
    };
    if key != rollout_id.as_bytes() {
        return Err(Refusal::new(
            "key_mismatch",
            format!(
                "record key `{}` differs from rollout_id `{rollout_id}`; the key must be the rollout id",
                String::from_utf8_lossy(key)
            ),
        ));
    }
    let expected = kafka_partition(key, rules.partitions);
    if record.partition != expected {
        return Err(Refusal::new(
            "wrong_partition",
            format!(
                "record for `{rollout_id}` is in partition {} but murmur2 (Java clients' \
                 partitioner) puts its key in partition {expected} of {}; librdkafka-based \
                 producers must set partitioner=murmur2_random (their default, CRC32, differs)",
                record.partition, rules.partitions
            ),
        ));
    }
    if let Some(ts) = record.timestamp.filter(|t| *t >= 0) {
        let ahead = own_time.saturating_sub(ts);
        if ahead > rules.max_clock_skew_ms as i64 {
            return Err(Refusal::new(
                "clock_skew",
                format!(
                    "record's own time {own_time} is {ahead} ms ahead of its record timestamp \
                     {ts} (max_clock_skew_ms {}); check the producer's clock",
                    rules.max_clock_skew_ms
                ),
            ));
        }
    }
    Ok(admitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::engine::{CommandKind, LatencyMs, Variant};

    #[test]
    fn partitions_like_java_clients() {
        // Kafka's own `UtilsTest.testMurmur2` vectors (Java ints), masked as `toPositive` does.
        let java: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in java {
            let positive = (hash as u32 & 0x7fff_ffff) as i64;
            for n in [1, 6, 7, 100] {
                assert_eq!(
                    kafka_partition(key, n) as i64,
                    positive % n as i64,
                    "{}",
                    String::from_utf8_lossy(key)
                );
            }
        }
    }

    fn rules() -> AdmissionRules {
        AdmissionRules {
            partitions: 6,
            max_record_bytes: 1_000,
            max_clock_skew_ms: 60_000,
            events_encoding: Encoding::Json,
            commands_encoding: Encoding::Json,
            schema_ids: SchemaIds::default(),
        }
    }

    const T: i64 = 1_764_222_000_000;

    fn event(id: &str, at: i64) -> Vec<u8> {
        let e = ExecutionEvent::new(
            id,
            Variant::Candidate,
            true,
            LatencyMs::new(5.0).unwrap(),
            at,
        );
        codec::encode_event(&e, Encoding::Json)
    }

    fn view<'a>(key: Option<&'a [u8]>, payload: &'a [u8], partition: i32) -> RecordView<'a> {
        RecordView {
            topic: InputTopic::Events,
            partition,
            key,
            payload: Some(payload),
            timestamp: Some(T),
            relayed_command: false,
        }
    }

    fn reason(r: Result<Admitted, Refusal>) -> &'static str {
        r.err().map_or("admitted", |r| r.reason)
    }

    #[test]
    fn refuses_with_a_reason_that_names_the_fix() {
        let rules = rules();
        let id = "checkout-agent";
        let p = kafka_partition(id.as_bytes(), 6);
        let good = event(id, T);
        assert_eq!(
            reason(admit(&rules, &view(Some(id.as_bytes()), &good, p))),
            "admitted"
        );
        assert_eq!(reason(admit(&rules, &view(None, &good, p))), "missing_key");
        assert_eq!(
            reason(admit(&rules, &view(Some(b"other"), &good, p))),
            "key_mismatch"
        );
        let wrong = admit(&rules, &view(Some(id.as_bytes()), &good, (p + 1) % 6)).unwrap_err();
        assert_eq!(wrong.reason, "wrong_partition");
        assert!(
            wrong.message.contains("murmur2_random"),
            "{}",
            wrong.message
        );
        let big = vec![b' '; 2_000];
        assert_eq!(
            reason(admit(&rules, &view(Some(id.as_bytes()), &big, p))),
            "too_large"
        );
        assert_eq!(
            reason(admit(&rules, &view(Some(id.as_bytes()), b"nope", p))),
            "invalid_json"
        );
        let mut tomb = view(Some(id.as_bytes()), &good, p);
        tomb.payload = None;
        assert_eq!(reason(admit(&rules, &tomb)), "empty_record");
    }

    #[test]
    fn no_record_moves_time_beyond_the_skew_bound() {
        let rules = rules();
        let id = "checkout-agent";
        let p = kafka_partition(id.as_bytes(), 6);
        let within = event(id, T + 60_000);
        let ahead = event(id, T + 60_001);
        let behind = event(id, T - 3_600_000);
        assert_eq!(
            reason(admit(&rules, &view(Some(id.as_bytes()), &within, p))),
            "admitted"
        );
        assert_eq!(
            reason(admit(&rules, &view(Some(id.as_bytes()), &ahead, p))),
            "clock_skew"
        );
        assert_eq!(
            reason(admit(&rules, &view(Some(id.as_bytes()), &behind, p))),
            "admitted",
            "late events are the engine's business (counted late), not refused"
        );
        // Commands are bound the same way.
        let c = Command::new(id, CommandKind::Pause, "ana", "", T + 3_600_000);
        let bytes = codec::encode_command(&c, Encoding::Json);
        let mut v = view(Some(id.as_bytes()), &bytes, p);
        v.topic = InputTopic::Commands;
        assert_eq!(reason(admit(&rules, &v)), "clock_skew");
        // A relayed command in the events topic is read as a command.
        let ok = Command::new(id, CommandKind::Pause, "ana", "", T);
        let bytes = codec::encode_command(&ok, Encoding::Json);
        let mut v = view(Some(id.as_bytes()), &bytes, p);
        v.relayed_command = true;
        assert_eq!(admit(&rules, &v), Ok(Admitted::Command(Box::new(ok))));
    }
}
