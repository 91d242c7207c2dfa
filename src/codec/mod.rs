//! Wire formats: Avro and JSON encodings of execution events, decisions and rollout commands.
//!
//! The schemas live in `schemas/*.avsc` (namespace `io.rolloutbreaker.v1`) and are compiled in
//! with `include_str!`. Each record type implements [`WireRecord`]; the free functions
//! ([`encode_event`], [`decode_event`], [`decode_event_any`], …) are shorthands for it.
//!
//! # Encodings
//!
//! One [`Encoding`] per topic, chosen in the configuration:
//!
//! | config value (JSON / TOML)                                   | bytes on the wire |
//! |--------------------------------------------------------------|-------------------|
//! | `"json"`                                                     | a UTF-8 JSON object, field names below |
//! | `"avro"` (alias `"avro_single_object"`)                      | `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form (as the Avro specification defines it: logical types reduce to their primitive), the Avro binary body |
//! | `{ "avro_confluent": { "schema_id": 7 } }` / `encoding = { avro_confluent = { schema_id = 7 } }` | `00`, the 4-byte big-endian schema-registry id, the Avro binary body |
//!
//! Encoding with `avro_confluent` writes the topic's `schema_id`; decoding accepts that id and
//! any id listed for the record type in [`SchemaIds`] (e.g. earlier registrations of the same
//! subject). Single-object decoding accepts the fingerprint written and the legacy ones of
//! records written before the standard form was used (see
//! [`RecordKind::accepted_fingerprints`]). [`decode_event_any`] and friends sniff the framing (`{` → JSON, `C3 01` →
//! single-object, `00` → Confluent with any id) for dead-letter and operations tools.
//!
//! # Field names
//!
//! JSON uses exactly the Avro field names (snake_case). Optional fields may be absent or
//! `null`; unknown fields are ignored (so newer producers can add fields); an absent required
//! field is [`DecodeError::MissingField`]. Enum values are the upper-case Avro symbols, matched
//! case-sensitively (`"CANDIDATE"`; `"candidate"` is `invalid_field`).
//!
//! `ExecutionEvent` (`schemas/execution_event.avsc`):
//!
//! | field           | Avro type                      | JSON               | required | domain field / rule |
//! |-----------------|--------------------------------|--------------------|----------|---------------------|
//! | `rollout_id`    | string                         | string             | yes | `rollout_id`; 1..=[`MAX_ROLLOUT_ID_BYTES`] bytes |
//! | `variant`       | enum `BASELINE`, `CANDIDATE`   | string             | yes | `variant` |
//! | `version`       | string                         | string             | yes | `version`; may be empty |
//! | `request_key`   | `["null","string"]` = null     | string or null     | no  | `request_key` |
//! | `success`       | boolean                        | `true`/`false`     | yes | `success` |
//! | `latency_ms`    | double                         | number             | yes | `latency`; finite, `>= 0` |
//! | `timestamp_ms`  | long (timestamp-millis)        | integer            | yes | `timestamp`; in [`MIN_TIMESTAMP_MS`]..[`MAX_TIMESTAMP_MS`] |
//! | `cost`          | `["null","double"]` = null     | number or null     | no  | `cost`; finite |
//! | `segment`       | `["null","string"]` = null     | string or null     | no  | `segment` |
//! | `extra_metrics` | map of double = `{}`           | object of numbers  | no  | `extra`; finite values |
//! | `region`        | `["null","string"]` = null     | string or null     | no  | `region` (v2) |
//!
//! A minimal event, producible by hand with kcat:
//! `{"rollout_id":"checkout-agent","variant":"CANDIDATE","version":"v2","success":true,"latency_ms":1200,"timestamp_ms":1764222000000}`
//!
//! `Decision` (`schemas/decision.avsc`):
//!
//! | field               | Avro type                                   | domain field / rule |
//! |---------------------|---------------------------------------------|---------------------|
//! | `rollout_id`        | string                                      | `rollout_id`; 1..=255 bytes |
//! | `sequence`          | long                                        | `sequence`; `>= 0` |
//! | `action`            | enum `START ADVANCE MAINTAIN ROLLBACK PAUSE RESUME RETIRE WARNING` | `action` |
//! | `from_phase`        | enum `OFF PROBE SMALL MEDIUM FULL`          | `from` |
//! | `to_phase`          | same enum                                   | `to` |
//! | `traffic_percent`   | double                                      | `traffic`; `[0, 100]`, two decimals at most |
//! | `breaker_state`     | enum `OPEN HALF_OPEN CLOSED`                | `breaker` |
//! | `paused`            | boolean                                     | `paused` |
//! | `reason`            | string                                      | `reason` |
//! | `metrics`           | record: `window_start_ms`, `window_end_ms` (long), `baseline`, `candidate` (record `VariantMetrics`: `samples`, `successes` (long, `>= 0`), `completion_rate`, `mean_latency_ms`, `p50_latency_ms`, `p95_latency_ms`, `p99_latency_ms` (double, finite)) | `metrics` |
//! | `decided_at_ms`     | long (timestamp-millis)                     | `at`; in the timestamp range |
//! | `cause`             | enum `AUTOMATIC OPERATOR`                   | `cause` |
//! | `actor`             | string                                      | `actor` |
//! | `candidate_version` | `["null","string"]` = null                  | `candidate_version` |
//! | `baseline_version`  | `["null","string"]` = null                  | `baseline_version` |
//! | `policy_json`       | `["null","string"]` = null                  | `policy_json`; must pass `Policy::from_json` |
//! | `phase_started_ms`  | `["null", long (timestamp-millis)]` = null  | `phase_started_at` (v2) |
//! | `warning`           | `["null", record Warning]` = null: `metric` (string), `statistic`, `threshold` (double, finite), `projected_rollback_ms` (`["null","long"]` = null), `cleared` (boolean) | `warning` (v3); set exactly when `action` is `WARNING` |
//! | `segment`, `region` | `["null","string"]` = null each             | `scope` (v4); null for the default scope; names as [`crate::engine::scope::check_scope_name`] |
//!
//! A decision of a scope other than the default one is keyed `ROLLOUT#segment=S#region=R`
//! (absent parts left out, see [`crate::engine::Scope::key`]); the default scope keeps the
//! rollout id as key. Every row of a rollout is produced to the partition of its rollout id.
//!
//! A WARNING (early warning of the statistical rule, see [`crate::engine::detector`]) changes
//! no phase: its `to_phase`, `traffic_percent` and `breaker_state` are the rollout's current
//! ones, so a reader that folds the topic into a table (highest `sequence` per rollout) stays
//! right without knowing what a warning is.
//!
//! A RETIRE is never written as a record: the processor publishes a tombstone (the rollout id
//! as key, no value), so compaction removes the rollout and routers drop it.
//!
//! Single-object records written with an earlier version of a schema (`schemas/history/`)
//! are read too: every change so far appended optional fields (and enum symbols), so the
//! missing fields take their defaults.
//!
//! `RolloutCommand` (`schemas/rollout_command.avsc`), the domain's `Command`:
//!
//! | field               | Avro type                                        | domain field / rule |
//! |---------------------|--------------------------------------------------|---------------------|
//! | `rollout_id`        | string                                           | `rollout_id`; 1..=255 bytes |
//! | `kind`              | enum `START PAUSE RESUME PROMOTE ABORT RETRY RETIRE` | `kind` |
//! | `actor`             | string                                           | `actor` |
//! | `reason`            | string                                           | `reason` |
//! | `timestamp_ms`      | long (timestamp-millis)                          | `timestamp`; in the timestamp range |
//! | `candidate_version` | `["null","string"]` = null                       | `candidate_version` |
//! | `baseline_version`  | `["null","string"]` = null                       | `baseline_version` |
//! | `policy_json`       | `["null","string"]` = null                       | `policy`, parsed and validated with `Policy::from_json` |
//! | `segment`, `region` | `["null","string"]` = null each                  | `scope` (v2): both null address the whole rollout; one of them, every scope with that part; both, one scope |
//!
//! In JSON, `policy_json` is written as a string (as in Avro) but may also be given as a JSON
//! object, which is easier to type by hand:
//! `{"rollout_id":"checkout-agent","kind":"START","actor":"ana","reason":"v2","timestamp_ms":1764222000000,"candidate_version":"v2","policy_json":{"max_latency_ms":1500}}`.
//!
//! # Robustness
//!
//! Decoders never panic: every failure is a [`DecodeError`] with a stable
//! [`reason`](DecodeError::reason) label. Inputs above [`MAX_RECORD_BYTES`] are refused before
//! parsing, and lengths and counts read from the input are checked against the bytes left, so
//! forged lengths cannot cause large allocations. Avro bodies are read by hand in schema order
//! (faster than apache-avro's `Value` path; the tests check both agree); a record followed by
//! extra bytes is refused ([`DecodeError::TrailingBytes`]).

mod avro;
mod canonical;
mod command;
mod decision;
mod error;
mod event;
mod json;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

pub use canonical::{crc64_avro, parsing_canonical_form, schema_fingerprint, CanonicalFormError};
pub use error::DecodeError;

use crate::engine::{Command, Decision, ExecutionEvent, LatencyMs};

/// Earliest accepted timestamp: 2000-01-01T00:00:00Z in ms since the epoch. Earlier values are
/// almost always seconds sent where milliseconds were expected, or a zeroed clock.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// First refused timestamp: 2200-01-01T00:00:00Z in ms since the epoch. Later values are almost
/// always microseconds or nanoseconds sent where milliseconds were expected.
pub const MAX_TIMESTAMP_MS: i64 = 7_258_118_400_000;
/// Longest accepted `rollout_id`, in bytes of UTF-8 (it is also the Kafka key and a metric label).
pub const MAX_ROLLOUT_ID_BYTES: usize = 255;
/// Largest accepted encoded record: 1 MiB, Kafka's default `message.max.bytes`.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// How a topic's records are encoded. Deserializes from `"json"`, `"avro"` (or
/// `"avro_single_object"`) and `{ "avro_confluent": { "schema_id": 7 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Encoding {
    /// A JSON object with the Avro field names.
    Json,
    /// Avro single-object encoding: `C3 01`, 8-byte little-endian schema fingerprint, body.
    #[serde(rename = "avro", alias = "avro_single_object")]
    AvroSingleObject,
    /// Confluent schema-registry framing: `00`, 4-byte big-endian schema id, body.
    AvroConfluent {
        /// The id written when encoding, and accepted when decoding.
        schema_id: u32,
    },
}

/// The three record types on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// [`ExecutionEvent`], `schemas/execution_event.avsc`.
    ExecutionEvent,
    /// [`Decision`], `schemas/decision.avsc`.
    Decision,
    /// [`Command`], `schemas/rollout_command.avsc`.
    RolloutCommand,
}

impl RecordKind {
    fn parsed(self) -> &'static avro::Parsed {
        match self {
            RecordKind::ExecutionEvent => &avro::EVENT,
            RecordKind::Decision => &avro::DECISION,
            RecordKind::RolloutCommand => &avro::COMMAND,
        }
    }

    /// The Avro schema's source text (what a schema registry is given).
    pub const fn schema_text(self) -> &'static str {
        match self {
            RecordKind::ExecutionEvent => avro::EVENT_AVSC,
            RecordKind::Decision => avro::DECISION_AVSC,
            RecordKind::RolloutCommand => avro::COMMAND_AVSC,
        }
    }

    /// The parsed Avro schema.
    pub fn schema(self) -> &'static Schema {
        &self.parsed().schema
    }

    /// CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form as the Avro
    /// specification defines it, as the single-object header carries it (little-endian).
    /// Decoding also accepts [`accepted_fingerprints`](Self::accepted_fingerprints).
    pub fn fingerprint(self) -> u64 {
        self.parsed().fingerprint
    }

    /// The schema's Parsing Canonical Form (see [`parsing_canonical_form`]).
    pub fn canonical_form(self) -> &'static str {
        &self.parsed().canonical_form
    }

    /// Every single-object fingerprint a decode accepts: [`fingerprint`](Self::fingerprint),
    /// then the legacy ones (the `apache-avro` crate's canonical form, written by earlier
    /// releases) and those of earlier schema versions (`schemas/history/`).
    pub fn accepted_fingerprints(self) -> impl Iterator<Item = u64> {
        let p = self.parsed();
        std::iter::once(p.fingerprint).chain(p.earlier.iter().copied())
    }
}

/// Confluent schema-registry ids accepted on decode besides the topic's own `schema_id`, per
/// record type. Configuration, e.g. TOML `[schema_ids]` / `execution_event = [7, 12]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaIds {
    /// Ids whose bodies are execution events.
    pub execution_event: Vec<u32>,
    /// Ids whose bodies are decisions.
    pub decision: Vec<u32>,
    /// Ids whose bodies are rollout commands.
    pub rollout_command: Vec<u32>,
}

impl SchemaIds {
    /// No extra ids: only the topic's own id is accepted.
    pub const EMPTY: SchemaIds = SchemaIds {
        execution_event: Vec::new(),
        decision: Vec::new(),
        rollout_command: Vec::new(),
    };

    /// Whether `id` is registered for `kind`.
    pub fn accepts(&self, kind: RecordKind, id: u32) -> bool {
        match kind {
            RecordKind::ExecutionEvent => &self.execution_event,
            RecordKind::Decision => &self.decision,
            RecordKind::RolloutCommand => &self.rollout_command,
        }
        .contains(&id)
    }
}

mod private {
    use super::avro::Reader;
    use super::DecodeError;

    /// The per-record body codecs behind [`super::WireRecord`]; sealed so the framing stays
    /// in one place.
    pub trait Body: Sized {
        fn write_avro(&self, out: &mut Vec<u8>);
        fn read_avro(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
        fn write_json(&self, out: &mut Vec<u8>);
        fn read_json(bytes: &[u8]) -> Result<Self, DecodeError>;
    }
}

/// A record with a wire format: [`ExecutionEvent`], [`Decision`] and [`Command`].
pub trait WireRecord: private::Body {
    /// Which schema the record uses.
    const KIND: RecordKind;

    /// Appends the encoded record to `out` (reuse `out` to avoid an allocation per record).
    fn encode_into(&self, encoding: Encoding, out: &mut Vec<u8>) {
        match encoding {
            Encoding::Json => self.write_json(out),
            Encoding::AvroSingleObject => {
                out.extend_from_slice(&[0xC3, 0x01]);
                out.extend_from_slice(&Self::KIND.fingerprint().to_le_bytes());
                self.write_avro(out);
            }
            Encoding::AvroConfluent { schema_id } => {
                out.push(0);
                out.extend_from_slice(&schema_id.to_be_bytes());
                self.write_avro(out);
            }
        }
    }

    /// The encoded record.
    fn encode(&self, encoding: Encoding) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(encoding, &mut out);
        out
    }

    /// Decodes a record; Confluent framing must carry the encoding's own `schema_id`.
    fn decode(bytes: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, encoding, &SchemaIds::EMPTY)
    }

    /// Decodes a record; Confluent framing may also carry any id `ids` registers for this
    /// record type.
    fn decode_with(bytes: &[u8], encoding: Encoding, ids: &SchemaIds) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let body = match encoding {
            Encoding::Json => return Self::read_json(bytes),
            Encoding::AvroSingleObject => {
                let (magic, rest) = split_header::<2>(bytes)?;
                if magic[0] != 0xC3 || magic[1] != 0x01 {
                    let found = if magic[0] != 0xC3 { magic[0] } else { magic[1] };
                    return Err(DecodeError::BadMagic {
                        expected: "C3 01",
                        found,
                    });
                }
                let (fp, body) = split_header::<8>(rest)?;
                let fingerprint = u64::from_le_bytes(*fp);
                if fingerprint != Self::KIND.fingerprint()
                    && !Self::KIND.parsed().earlier.contains(&fingerprint)
                {
                    return Err(DecodeError::UnknownFingerprint { fingerprint });
                }
                body
            }
            Encoding::AvroConfluent { schema_id } => {
                let (magic, rest) = split_header::<1>(bytes)?;
                if magic[0] != 0 {
                    return Err(DecodeError::BadMagic {
                        expected: "00",
                        found: magic[0],
                    });
                }
                let (id, body) = split_header::<4>(rest)?;
                let id = u32::from_be_bytes(*id);
                if id != schema_id && !ids.accepts(Self::KIND, id) {
                    return Err(DecodeError::UnknownSchemaId { schema_id: id });
                }
                body
            }
        };
        let mut reader = avro::Reader::new(body);
        let record = Self::read_avro(&mut reader)?;
        reader.finish()?;
        Ok(record)
    }

    /// Decodes a record whose encoding is sniffed with [`sniff_encoding`]; Confluent framing is
    /// accepted with any schema id. For tools, not for the processor's topics.
    fn decode_any(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes, sniff_encoding(bytes)?)
    }
}

fn split_header<const N: usize>(bytes: &[u8]) -> Result<(&[u8; N], &[u8]), DecodeError> {
    bytes
        .split_first_chunk::<N>()
        .ok_or(DecodeError::Truncated { field: "header" })
}

/// Guesses the encoding from the first bytes: `{` (after ASCII whitespace) → JSON, `C3` →
/// single-object Avro, `00` → Confluent Avro with the id found in the header.
pub fn sniff_encoding(bytes: &[u8]) -> Result<Encoding, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Truncated { field: "header" }),
        Some(0xC3) => Ok(Encoding::AvroSingleObject),
        Some(0x00) => {
            let (_, rest) = split_header::<1>(bytes)?;
            let (id, _) = split_header::<4>(rest)?;
            Ok(Encoding::AvroConfluent {
                schema_id: u32::from_be_bytes(*id),
            })
        }
        Some(_) => match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Encoding::Json),
            Some(&found) => Err(DecodeError::BadMagic {
                expected: "`{`, C3 01 or 00",
                found,
            }),
            None => Err(DecodeError::Truncated { field: "header" }),
        },
    }
}

/// Encodes an execution event.
pub fn encode_event(event: &ExecutionEvent, encoding: Encoding) -> Vec<u8> {
    event.encode(encoding)
}

/// Decodes an execution event (the processor's hot path).
pub fn decode_event(bytes: &[u8], encoding: Encoding) -> Result<ExecutionEvent, DecodeError> {
    ExecutionEvent::decode(bytes, encoding)
}

/// Decodes an execution event in whatever encoding it is in (see [`sniff_encoding`]).
pub fn decode_event_any(bytes: &[u8]) -> Result<ExecutionEvent, DecodeError> {
    ExecutionEvent::decode_any(bytes)
}

/// Encodes a decision.
pub fn encode_decision(decision: &Decision, encoding: Encoding) -> Vec<u8> {
    decision.encode(encoding)
}

/// Decodes a decision.
pub fn decode_decision(bytes: &[u8], encoding: Encoding) -> Result<Decision, DecodeError> {
    Decision::decode(bytes, encoding)
}

/// Decodes a decision in whatever encoding it is in (see [`sniff_encoding`]).
pub fn decode_decision_any(bytes: &[u8]) -> Result<Decision, DecodeError> {
    Decision::decode_any(bytes)
}

/// Encodes a rollout command.
pub fn encode_command(command: &Command, encoding: Encoding) -> Vec<u8> {
    command.encode(encoding)
}

/// Decodes a rollout command.
pub fn decode_command(bytes: &[u8], encoding: Encoding) -> Result<Command, DecodeError> {
    Command::decode(bytes, encoding)
}

/// Decodes a rollout command in whatever encoding it is in (see [`sniff_encoding`]).
pub fn decode_command_any(bytes: &[u8]) -> Result<Command, DecodeError> {
    Command::decode_any(bytes)
}

// Domain checks shared by the Avro and JSON decoders.

fn check_rollout_id<T: for<'a> From<&'a str>>(id: &str) -> Result<T, DecodeError> {
    if id.is_empty() {
        Err(DecodeError::invalid("rollout_id", "must not be empty"))
    } else if id.len() > MAX_ROLLOUT_ID_BYTES {
        Err(DecodeError::invalid(
            "rollout_id",
            format!("{} bytes, at most {MAX_ROLLOUT_ID_BYTES} allowed", id.len()),
        ))
    } else {
        Ok(T::from(id))
    }
}

/// A scope's segment or region name (decisions, commands): see
/// [`crate::engine::scope::check_scope_name`].
fn check_scope_part(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<String>, DecodeError> {
    value
        .map(|v| {
            crate::engine::scope::check_scope_name(v)
                .map(|()| v.to_owned())
                .map_err(|m| DecodeError::invalid(field, m))
        })
        .transpose()
}

fn check_timestamp(field: &'static str, value: i64) -> Result<i64, DecodeError> {
    if (MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&value) {
        Ok(value)
    } else {
        Err(DecodeError::InvalidTimestamp { field, value })
    }
}

fn check_latency(value: f64) -> Result<LatencyMs, DecodeError> {
    LatencyMs::new(value).map_err(|_| DecodeError::InvalidLatency { value })
}

fn check_finite(field: &'static str, value: f64) -> Result<f64, DecodeError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DecodeError::invalid(
            field,
            format!("{value} is not finite"),
        ))
    }
}

fn check_policy(text: &str) -> Result<crate::engine::Policy, DecodeError> {
    crate::engine::Policy::from_json(text).map_err(DecodeError::InvalidPolicy)
}

/// `symbols[i]` for an index already checked by the reader; a lookup keeps the enums' order in
/// one table per enum.
fn symbol<T: Copy>(symbols: &[T], i: usize) -> T {
    symbols[i.min(symbols.len() - 1)]
}

/// Index of `value` in `symbols` (schema order).
fn position<T: PartialEq>(symbols: &[T], value: &T) -> usize {
    symbols.iter().position(|s| s == value).unwrap_or(0)
}

/// Looks up an upper-case symbol given in JSON.
fn symbol_named<T: Copy>(
    field: &'static str,
    names: &[&str],
    symbols: &[T],
    name: &str,
) -> Result<T, DecodeError> {
    match names.iter().position(|n| *n == name) {
        Some(i) => Ok(symbols[i]),
        None if name.is_empty() => Err(DecodeError::invalid(field, "must not be empty")),
        None => Err(DecodeError::invalid(
            field,
            format!(
                "unknown symbol `{}`, expected one of {}",
                name.escape_debug(),
                names.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
