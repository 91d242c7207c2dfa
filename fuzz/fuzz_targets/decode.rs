//! Every decoder on arbitrary bytes: must return a typed error or a record that survives a
//! round trip, never panic. Run with `cargo +nightly fuzz run decode` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_breaker::codec::{DecodeError, Encoding, WireRecord};
use rollout_breaker::engine::{Command, Decision, ExecutionEvent};

const ENCODINGS: [Encoding; 3] = [
    Encoding::Json,
    Encoding::AvroSingleObject,
    Encoding::AvroConfluent { schema_id: 42 },
];

fn check<T: WireRecord + PartialEq + std::fmt::Debug>(data: &[u8]) {
    for enc in ENCODINGS {
        match T::decode(data, enc) {
            Ok(record) => assert_eq!(T::decode(&record.encode(enc), enc).as_ref(), Ok(&record)),
            Err(e) => assert!(DecodeError::REASONS.contains(&e.reason())),
        }
    }
    let _ = T::decode_any(data);
}

fuzz_target!(|data: &[u8]| {
    check::<ExecutionEvent>(data);
    check::<Decision>(data);
    check::<Command>(data);
});
