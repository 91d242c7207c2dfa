//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO fingerprint.
//!
//! Single-object encoding names the writer's schema by the CRC-64-AVRO fingerprint of its
//! Parsing Canonical Form, so a reader in another language (fastavro, Java's
//! `SchemaNormalization`) finds the schema only if both sides compute the form the same way.
//! The `apache-avro` crate's `canonical_form()` keeps `{"type":"long"}` where a logical type
//! was stripped, while the specification reduces it to `"long"` (apache/avro-rs issue 61,
//! AVRO-4004); this module follows the specification. The fingerprints are checked against
//! fastavro's in `tests/codec_fingerprints.rs` (fixture made by
//! `scripts/gen_avro_fingerprints.py`).

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The primitive type names; they are never namespace-qualified.
const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Why a schema text has no canonical form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalFormError {
    /// The text is not JSON.
    #[error("schema is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not an Avro schema (the message names what is wrong).
    #[error("not an Avro schema: {0}")]
    Schema(String),
}

/// The Parsing Canonical Form of an Avro schema given as JSON text: full names, only the
/// attributes that matter for parsing (`name`, `type`, `fields`, `symbols`, `items`,
/// `values`, `size`, in that order), primitives in their simple form — so
/// `{"type":"long","logicalType":"timestamp-millis"}` becomes `"long"` — and no whitespace.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, CanonicalFormError> {
    let schema: Value = serde_json::from_str(schema_json)?;
    let mut out = String::with_capacity(schema_json.len() / 2);
    Canonicalizer::default().write(&schema, "", &mut out)?;
    Ok(out)
}

/// CRC-64-AVRO (the specification's "Rabin" fingerprint) of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

/// The fingerprint a single-object header carries (little-endian) for this schema text:
/// [`crc64_avro`] of [`parsing_canonical_form`].
pub fn schema_fingerprint(schema_json: &str) -> Result<u64, CanonicalFormError> {
    Ok(crc64_avro(parsing_canonical_form(schema_json)?.as_bytes()))
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

static TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// Named types already written: later uses are written as their full name only.
#[derive(Default)]
struct Canonicalizer {
    defined: HashSet<String>,
}

impl Canonicalizer {
    /// Writes `schema`, whose short names resolve in namespace `ns` ("" for none).
    fn write(
        &mut self,
        schema: &Value,
        ns: &str,
        out: &mut String,
    ) -> Result<(), CanonicalFormError> {
        match schema {
            Value::String(name) => {
                push_str(out, &qualify(name, ns));
                Ok(())
            }
            Value::Array(branches) => {
                out.push('[');
                for (i, branch) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write(branch, ns, out)?;
                }
                out.push(']');
                Ok(())
            }
            Value::Object(map) => self.write_object(map, ns, out),
            other => Err(CanonicalFormError::Schema(format!(
                "a schema is a string, an array or an object, not {other}"
            ))),
        }
    }

    fn write_object(
        &mut self,
        map: &Map<String, Value>,
        ns: &str,
        out: &mut String,
    ) -> Result<(), CanonicalFormError> {
        let ty = match map.get("type") {
            Some(Value::String(ty)) => ty.as_str(),
            // `{"type": {...}}` wraps a schema; only the inner one has a form.
            Some(inner @ (Value::Object(_) | Value::Array(_))) => {
                return self.write(inner, ns, out)
            }
            _ => return Err(CanonicalFormError::Schema("object without a `type`".into())),
        };
        match ty {
            // [STRIP] then [PRIMITIVES]: every other attribute (logicalType, precision, …) goes.
            _ if PRIMITIVES.contains(&ty) => push_str(out, ty),
            "array" => {
                out.push_str(r#"{"type":"array","items":"#);
                self.write(required(map, "items")?, ns, out)?;
                out.push('}');
            }
            "map" => {
                out.push_str(r#"{"type":"map","values":"#);
                self.write(required(map, "values")?, ns, out)?;
                out.push('}');
            }
            "record" | "error" | "enum" | "fixed" => {
                let name = match required(map, "name")? {
                    Value::String(name) => name,
                    _ => return Err(CanonicalFormError::Schema("`name` must be a string".into())),
                };
                let own_ns = match map.get("namespace") {
                    Some(Value::String(n)) => n.as_str(),
                    _ => ns,
                };
                let full = qualify(name, own_ns);
                if !self.defined.insert(full.clone()) {
                    push_str(out, &full);
                    return Ok(());
                }
                // Names inside resolve in the namespace of the full name.
                let inner_ns = full.rsplit_once('.').map_or("", |(n, _)| n).to_owned();
                out.push_str(r#"{"name":"#);
                push_str(out, &full);
                out.push_str(r#","type":"#);
                match ty {
                    "record" | "error" => {
                        out.push_str(r#""record","fields":["#);
                        let fields = required(map, "fields")?.as_array().ok_or_else(|| {
                            CanonicalFormError::Schema("`fields` must be an array".into())
                        })?;
                        for (i, field) in fields.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            let field = field.as_object().ok_or_else(|| {
                                CanonicalFormError::Schema("a field must be an object".into())
                            })?;
                            out.push_str(r#"{"name":"#);
                            match required(field, "name")? {
                                Value::String(n) => push_str(out, n),
                                _ => {
                                    return Err(CanonicalFormError::Schema(
                                        "a field's `name` must be a string".into(),
                                    ))
                                }
                            }
                            out.push_str(r#","type":"#);
                            self.write(required(field, "type")?, &inner_ns, out)?;
                            out.push('}');
                        }
                        out.push_str("]}");
                    }
                    "enum" => {
                        out.push_str(r#""enum","symbols":"#);
                        let symbols = required(map, "symbols")?;
                        // Symbols are plain names: serde_json writes them with no whitespace.
                        out.push_str(&symbols.to_string());
                        out.push('}');
                    }
                    _ => {
                        out.push_str(r#""fixed","size":"#);
                        // [INTEGERS]: a size given as "16" or 16 is written 16.
                        let size = match required(map, "size")? {
                            Value::Number(n) => n.as_u64(),
                            Value::String(s) => s.parse::<u64>().ok(),
                            _ => None,
                        }
                        .ok_or_else(|| {
                            CanonicalFormError::Schema("`size` must be an integer".into())
                        })?;
                        out.push_str(&size.to_string());
                        out.push('}');
                    }
                }
            }
            // A reference to a named type written as `{"type": "Name"}`.
            other => push_str(out, &qualify(other, ns)),
        }
        Ok(())
    }
}

fn required<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a Value, CanonicalFormError> {
    map.get(key)
        .ok_or_else(|| CanonicalFormError::Schema(format!("missing `{key}`")))
}

/// [FULLNAMES]: a name with a dot is already full; a primitive is never qualified.
fn qualify(name: &str, ns: &str) -> String {
    if PRIMITIVES.contains(&name) || name.contains('.') || ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}.{name}")
    }
}

/// [STRINGS]: a JSON string with only the escapes JSON requires (non-ASCII stays UTF-8).
fn push_str(out: &mut String, s: &str) {
    out.push_str(&Value::from(s).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcf(s: &str) -> String {
        parsing_canonical_form(s).unwrap()
    }

    #[test]
    fn crc64_avro_matches_the_specification_vectors() {
        // The fingerprint of the empty input is the algorithm's seed; `"null"` and `"int"` are
        // the values Java's SchemaNormalization gives.
        assert_eq!(crc64_avro(b""), EMPTY);
        assert_eq!(crc64_avro(br#""null""#), 0x63dd_24e7_cc25_8f8a);
        assert_eq!(crc64_avro(br#""int""#), 0x7275_d51a_3f39_5c8f);
    }

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        assert_eq!(
            pcf(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
            r#""long""#
        );
        assert_eq!(
            pcf(r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#),
            r#""bytes""#
        );
        assert_eq!(
            pcf(r#"["null",{"type":"long","logicalType":"timestamp-millis"}]"#),
            r#"["null","long"]"#
        );
    }

    #[test]
    fn names_are_qualified_and_attributes_ordered_and_stripped() {
        let text = r#"{
            "doc": "d", "fields": [
                {"type": {"symbols": ["A", "B"], "name": "E", "type": "enum", "default": "A"},
                 "name": "e", "doc": "x", "default": "A"},
                {"name": "again", "type": "E"},
                {"name": "f", "type": {"type": "fixed", "size": "016", "name": "other.F"}},
                {"name": "g", "type": {"type": "map", "values": {"type": "array", "items": "other.F", "x": 1}}}
            ],
            "type": "record", "name": "R", "namespace": "ns", "aliases": ["Q"]
        }"#;
        assert_eq!(
            pcf(text),
            concat!(
                r#"{"name":"ns.R","type":"record","fields":["#,
                r#"{"name":"e","type":{"name":"ns.E","type":"enum","symbols":["A","B"]}},"#,
                r#"{"name":"again","type":"ns.E"},"#,
                r#"{"name":"f","type":{"name":"other.F","type":"fixed","size":16}},"#,
                r#"{"name":"g","type":{"type":"map","values":{"type":"array","items":"other.F"}}}]}"#
            )
        );
    }

    #[test]
    fn not_a_schema_is_an_error() {
        assert!(parsing_canonical_form("{").is_err());
        assert!(parsing_canonical_form("{}").is_err());
        assert!(parsing_canonical_form("1").is_err());
        assert!(parsing_canonical_form(r#"{"type":"record","name":"R"}"#).is_err());
    }
}
