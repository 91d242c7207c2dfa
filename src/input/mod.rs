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
//! - Where a command falls among the events: commands and events arrive in two topics, so the
//!   order in which a consumer sees them depends on fetch timing, and a crash (or an audit)
//!   could place a command elsewhere and decide differently. The processor therefore **relays**
//!   each admitted command into its rollout's events partition (same key, same bytes, header
//!   [`RELAYED_COMMAND_HEADER`]), in the same transaction that commits the command's offset,
//!   and applies it only when it reads it back there. The events partition is then the one
//!   ordered log of everything that changes a rollout: the live loop, the restore and the
//!   audit all see the same sequence.

pub mod admission;

pub use admission::{admit, AdmissionRules, Admitted, InputTopic, RecordView, Refusal};

/// Header marking a command the processor relayed into the events topic (value: the source
/// offset in the commands topic). Anyone who may write the events topic may therefore issue
/// commands: grant write access to it as carefully as to the commands topic.
pub const RELAYED_COMMAND_HEADER: &str = "rb.relayed.command";
