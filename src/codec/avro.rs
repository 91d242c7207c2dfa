//! Avro binary primitives for the three fixed schemas, and the schemas themselves.
//!
//! The bodies are read and written by hand, field by field in schema order, instead of through
//! apache-avro's `Value` tree: on the event hot path that is several times faster (see
//! `benches/codec.rs`). apache-avro stays the reference: the tests check that it reads what we
//! write and that we read what it writes.

use std::sync::LazyLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;

use super::canonical;
use super::error::DecodeError;

/// The parsed schemas, their canonical-form fingerprints, parsed once.
pub(crate) struct Parsed {
    pub(crate) schema: Schema,
    /// The specification's Parsing Canonical Form (see [`super::canonical`]).
    pub(crate) canonical_form: String,
    /// CRC-64-AVRO of [`Self::canonical_form`]: what single-object headers carry when written.
    pub(crate) fingerprint: u64,
    /// Other fingerprints whose records this version reads, accepted on decode only:
    /// - the legacy fingerprint of this version: apache-avro's canonical form, which keeps
    ///   `{"type":"long"}` for logical types, was written before the standard one;
    /// - the standard and legacy fingerprints of earlier versions (`schemas/history/`): every
    ///   change so far appended optional fields, so an earlier record is a prefix of the
    ///   current layout and the missing fields take their defaults.
    pub(crate) earlier: Vec<u64>,
}

/// The standard and the legacy (apache-avro `canonical_form()`) fingerprints of a schema text.
fn fingerprints(text: &str) -> (Schema, String, u64, u64) {
    // The schemas are compiled into the binary and covered by tests: a parse failure is a
    // build defect, not an input error.
    let schema = Schema::parse_str(text).expect("schemas/*.avsc must parse");
    let canonical = canonical::parsing_canonical_form(text).expect("schemas/*.avsc must parse");
    let standard = canonical::crc64_avro(canonical.as_bytes());
    let fp = schema.fingerprint::<Rabin>().bytes;
    let mut le = [0u8; 8];
    le.copy_from_slice(&fp[..8]);
    (schema, canonical, standard, u64::from_le_bytes(le))
}

fn parse(text: &str, history: &[&str]) -> Parsed {
    let (schema, canonical_form, fingerprint, legacy) = fingerprints(text);
    let mut earlier = vec![legacy];
    for h in history {
        let (_, _, standard, legacy) = fingerprints(h);
        earlier.extend([standard, legacy]);
    }
    earlier.retain(|&fp| fp != fingerprint);
    earlier.dedup();
    Parsed {
        schema,
        canonical_form,
        fingerprint,
        earlier,
    }
}

pub(crate) const EVENT_AVSC: &str = include_str!("../../schemas/execution_event.avsc");
pub(crate) const DECISION_AVSC: &str = include_str!("../../schemas/decision.avsc");
pub(crate) const COMMAND_AVSC: &str = include_str!("../../schemas/rollout_command.avsc");

const DECISION_V1_AVSC: &str = include_str!("../../schemas/history/decision.v1.avsc");
const DECISION_V2_AVSC: &str = include_str!("../../schemas/history/decision.v2.avsc");
const DECISION_V3_AVSC: &str = include_str!("../../schemas/history/decision.v3.avsc");
const COMMAND_V1_AVSC: &str = include_str!("../../schemas/history/rollout_command.v1.avsc");
const COMMAND_V2_AVSC: &str = include_str!("../../schemas/history/rollout_command.v2.avsc");
const EVENT_V1_AVSC: &str = include_str!("../../schemas/history/execution_event.v1.avsc");

pub(crate) static EVENT: LazyLock<Parsed> = LazyLock::new(|| parse(EVENT_AVSC, &[EVENT_V1_AVSC]));
pub(crate) static DECISION: LazyLock<Parsed> = LazyLock::new(|| {
    parse(
        DECISION_AVSC,
        &[DECISION_V1_AVSC, DECISION_V2_AVSC, DECISION_V3_AVSC],
    )
});
pub(crate) static COMMAND: LazyLock<Parsed> =
    LazyLock::new(|| parse(COMMAND_AVSC, &[COMMAND_V1_AVSC, COMMAND_V2_AVSC]));

/// Reads Avro binary values from a byte slice; every read names the field it is for, so that
/// errors say where the record went wrong.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether the input is consumed: a record written with an earlier schema version ends
    /// before the fields appended since.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails unless the whole input was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        match self.buf.split_first() {
            Some((&b, rest)) => {
                self.buf = rest;
                Ok(b)
            }
            None => Err(DecodeError::Truncated { field }),
        }
    }

    /// A zig-zag varint `long`.
    pub(crate) fn long(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let mut raw: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte(field)?;
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::invalid(field, "varint longer than 10 bytes"));
            }
        }
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A `long` that must be `>= 0` (counts and sequence numbers, `u64` in the domain).
    pub(crate) fn count(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let v = self.long(field)?;
        u64::try_from(v).map_err(|_| DecodeError::invalid(field, format!("negative count {v}")))
    }

    /// An enum symbol index below `symbols` (also used for union branches).
    pub(crate) fn index(
        &mut self,
        field: &'static str,
        symbols: usize,
    ) -> Result<usize, DecodeError> {
        let v = self.long(field)?;
        match usize::try_from(v) {
            Ok(i) if i < symbols => Ok(i),
            _ => Err(DecodeError::invalid(
                field,
                format!("index {v} out of range 0..{symbols}"),
            )),
        }
    }

    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.byte(field)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::invalid(field, format!("boolean byte {b}"))),
        }
    }

    pub(crate) fn double(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        match self.buf.split_first_chunk::<8>() {
            Some((bytes, rest)) => {
                self.buf = rest;
                Ok(f64::from_le_bytes(*bytes))
            }
            None => Err(DecodeError::Truncated { field }),
        }
    }

    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.long(field)?;
        let len = usize::try_from(len)
            .map_err(|_| DecodeError::invalid(field, format!("negative length {len}")))?;
        if len > self.buf.len() {
            return Err(DecodeError::Truncated { field });
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::invalid(field, "invalid UTF-8"))
    }

    /// `["null", "string"]`.
    pub(crate) fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, DecodeError> {
        Ok(match self.index(field, 2)? {
            0 => None,
            _ => Some(self.str(field)?),
        })
    }

    /// `["null", "long"]`.
    pub(crate) fn opt_long(&mut self, field: &'static str) -> Result<Option<i64>, DecodeError> {
        Ok(match self.index(field, 2)? {
            0 => None,
            _ => Some(self.long(field)?),
        })
    }

    /// `["null", "double"]`.
    pub(crate) fn opt_double(&mut self, field: &'static str) -> Result<Option<f64>, DecodeError> {
        Ok(match self.index(field, 2)? {
            0 => None,
            _ => Some(self.double(field)?),
        })
    }

    /// The item count of the next map block, 0 at the end of the map. A negative count is
    /// followed by the block's size in bytes, which we do not need.
    pub(crate) fn block_len(
        &mut self,
        field: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.long(field)?;
        let n = if n < 0 {
            let _size = self.long(field)?;
            n.checked_neg()
                .ok_or_else(|| DecodeError::invalid(field, "block count overflows"))?
        } else {
            n
        };
        // A count the remaining bytes cannot hold is a truncation; checking it first keeps a
        // forged count from driving a long loop.
        let n = n as u64;
        if n > (self.buf.len() / min_item_bytes) as u64 {
            return Err(DecodeError::Truncated { field });
        }
        Ok(n as usize)
    }
}

/// Avro binary writers, appending to a buffer.
pub(crate) fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A `u64` written as a `long`; values above `i64::MAX` (never reached by counts) saturate.
pub(crate) fn put_count(out: &mut Vec<u8>, v: u64) {
    put_long(out, i64::try_from(v).unwrap_or(i64::MAX));
}

pub(crate) fn put_index(out: &mut Vec<u8>, i: usize) {
    put_long(out, i as i64);
}

pub(crate) fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

pub(crate) fn put_double(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(2); // zig-zag 1: the "string" branch
            put_str(out, s);
        }
    }
}

pub(crate) fn put_opt_long(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(2); // zig-zag 1: the "long" branch
            put_long(out, v);
        }
    }
}

pub(crate) fn put_opt_double(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(2);
            put_double(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_round_trip_at_the_edges() {
        for v in [0, 1, -1, 63, -64, 64, 1 << 40, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_long(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.long("x").unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn over_long_varint_is_refused() {
        let bytes = [0xff; 11];
        let e = Reader::new(&bytes).long("x").unwrap_err();
        assert_eq!(e.reason(), "invalid_field");
    }

    #[test]
    fn apache_avro_fingerprints_are_still_read_but_not_written() {
        for p in [&*EVENT, &*DECISION, &*COMMAND] {
            let legacy = u64::from_le_bytes(
                p.schema.fingerprint::<Rabin>().bytes[..8]
                    .try_into()
                    .unwrap(),
            );
            // Every schema has a timestamp-millis field, where the two forms differ.
            assert_ne!(legacy, p.fingerprint);
            assert!(p.earlier.contains(&legacy));
            // Same checksum, different input: the difference is only the canonical form.
            assert_eq!(
                canonical::crc64_avro(p.schema.canonical_form().as_bytes()),
                legacy
            );
        }
        // Current legacy, then standard and legacy of each earlier version: decision v1..v3,
        // command v1..v2, event v1.
        assert_eq!(DECISION.earlier.len(), 7);
        assert_eq!(COMMAND.earlier.len(), 5);
        assert_eq!(EVENT.earlier.len(), 3);
    }
}
