//! Why a record could not be decoded.

use crate::engine::PolicyError;

/// Why bytes could not be decoded into a record. A bad input record is not an error of the
/// process: the caller counts it under [`DecodeError::reason`], logs it once and routes the
/// bytes to the dead-letter topic. Never retryable: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended in the middle of the framing header or of a field.
    #[error("input truncated while reading `{field}`")]
    Truncated {
        /// The header part or field being read when the input ran out.
        field: &'static str,
    },
    /// The first bytes are not the framing the encoding expects (`C3 01` for single-object
    /// Avro, `00` for Confluent, `{` for JSON when sniffing).
    #[error("bad magic byte(s): expected {expected}, found 0x{found:02x}")]
    BadMagic {
        /// What the decoder expected, e.g. `"C3 01"`.
        expected: &'static str,
        /// The first byte that did not match.
        found: u8,
    },
    /// Single-object Avro written with a schema whose fingerprint this build does not know.
    #[error("unknown schema fingerprint 0x{fingerprint:016x}")]
    UnknownFingerprint {
        /// The CRC-64-AVRO (Rabin) fingerprint from the header, read little-endian.
        fingerprint: u64,
    },
    /// Confluent-framed Avro carrying a schema id that is neither the topic's nor registered
    /// in [`SchemaIds`](super::SchemaIds) for this record type.
    #[error("unknown Confluent schema id {schema_id}")]
    UnknownSchemaId {
        /// The id from the header.
        schema_id: u32,
    },
    /// Not well-formed JSON, or a JSON value of the wrong type.
    #[error("invalid JSON: {message}")]
    InvalidJson {
        /// The parser's message, with line and column.
        message: String,
    },
    /// A required field is absent from a JSON record.
    #[error("missing field `{field}`")]
    MissingField {
        /// The missing field, as named in the schema (nested fields as `a.b.c`).
        field: &'static str,
    },
    /// `latency_ms` is negative, infinite or not a number.
    #[error("invalid latency_ms {value}: must be a finite number >= 0")]
    InvalidLatency {
        /// The value read.
        value: f64,
    },
    /// A timestamp lies outside [`MIN_TIMESTAMP_MS`](super::MIN_TIMESTAMP_MS) ..
    /// [`MAX_TIMESTAMP_MS`](super::MAX_TIMESTAMP_MS) (years 2000 to 2199).
    #[error(
        "invalid `{field}` {value}: must be in [{}, {}) ms since the epoch (years 2000..2200)",
        super::MIN_TIMESTAMP_MS,
        super::MAX_TIMESTAMP_MS
    )]
    InvalidTimestamp {
        /// The timestamp field.
        field: &'static str,
        /// The value read.
        value: i64,
    },
    /// A field has a value its type or the domain does not allow: an empty or too long
    /// `rollout_id`, an unknown enum symbol, a bad union branch, invalid UTF-8, a negative
    /// count, an over-long varint, a traffic percent out of range.
    #[error("invalid `{field}`: {message}")]
    InvalidField {
        /// The offending field, as named in the schema.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// `policy_json` is not a valid policy (see `Policy::from_json`).
    #[error("invalid `policy_json`: {0}")]
    InvalidPolicy(#[source] PolicyError),
    /// Bytes left over after a complete Avro record: the writer used another schema.
    #[error("{count} trailing byte(s) after the record")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// The input is longer than [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES).
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl DecodeError {
    /// A short, stable, low-cardinality label for metrics and dead-letter headers.
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::UnknownFingerprint { .. } => "unknown_fingerprint",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema_id",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::InvalidLatency { .. } => "invalid_latency",
            DecodeError::InvalidTimestamp { .. } => "invalid_timestamp",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::InvalidPolicy(_) => "invalid_policy",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::TooLarge { .. } => "too_large",
        }
    }

    /// Every label [`reason`](Self::reason) can return, e.g. to pre-register metric series.
    pub const REASONS: [&'static str; 12] = [
        "truncated",
        "bad_magic",
        "unknown_fingerprint",
        "unknown_schema_id",
        "invalid_json",
        "missing_field",
        "invalid_latency",
        "invalid_timestamp",
        "invalid_field",
        "invalid_policy",
        "trailing_bytes",
        "too_large",
    ];

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DecodeError::InvalidField {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn json(e: &serde_json::Error) -> Self {
        if e.is_eof() {
            DecodeError::Truncated { field: "json" }
        } else {
            DecodeError::InvalidJson {
                message: e.to_string(),
            }
        }
    }
}
