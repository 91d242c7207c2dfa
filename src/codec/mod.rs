//! Wire formats: Avro and JSON encodings of events, decisions and commands.
