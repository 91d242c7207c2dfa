//! Helpers shared by the JSON bodies.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use super::DecodeError;

/// A required JSON field.
pub(crate) fn req<T>(value: Option<T>, field: &'static str) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::MissingField { field })
}

/// Parses a JSON body into its wire struct.
pub(crate) fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::json(&e))
}

/// Appends a wire struct as JSON.
pub(crate) fn write<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Our wire structs hold strings, numbers, bools and string-keyed maps: serializing them into
    // a Vec cannot fail.
    serde_json::to_writer(out, value).expect("wire structs serialize to JSON");
}

/// A string that borrows from the input unless it contained escapes.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// `policy_json` as given in JSON: a string holding JSON (as in Avro), or the policy object
/// itself (easier by hand). `null` and absent both mean "no policy".
pub(crate) fn policy_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v.to_string())),
        Some(other) => Err(D::Error::custom(format!(
            "policy_json must be a string or an object, got {other}"
        ))),
    }
}
