//! What the processor, the restore and the audit take from the input topics — decided once.
//!
//! Three readers see the events and commands topics: the live processor, the restore that
//! rebuilds windows after a restart, and the audit that replays everything. If they disagreed
//! about a single record (whether it counts, or where a command falls among events), a restart
//! or an audit would decide differently from the live run. So both questions are answered here,
//! by pure functions of the record as the log holds it (key, partition, record timestamp,
//! bytes), with no clock and no IO:
//!
//! - [`admission`]: is this record admitted, and as what? (size, key, partition, decoding,
//!   clock bound). A refused record is dead-lettered with a reason that says how to fix its
//!   producer.
//! - [`order`]: where does an operator command fall among the events of its partition? Commands
//!   and events live in two topics, so their interleaving must not depend on polling: a command
//!   applies before the first event whose record timestamp is later than its own.

pub mod admission;
pub mod order;

pub use admission::{admit, AdmissionRules, Admitted, InputTopic, RecordView, Refusal};
pub use order::CommandGate;
