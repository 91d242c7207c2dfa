//! The processor: consume events and commands, run them through one engine per partition,
//! and publish decisions, dead letters and input offsets in one Kafka transaction.
//!
//! ```text
//!  events ─┐                          ┌─▶ decisions (compacted, same partition as the input)
//!          ├─▶ poll batch ─▶ engine[p] ┤
//! commands ┘   (≤ max_batch_ms)        └─▶ dead-letter
//!                 └── offsets ──▶ send_offsets_to_transaction ─▶ commit_transaction
//! ```
//!
//! - **Exactly once.** Each batch is one transaction: its decisions, its dead letters and the
//!   next input offsets commit together or not at all; readers use `read_committed`. The
//!   transactional id is stable per instance, so a restarted instance fences its zombie and
//!   aborts its open transaction at once.
//! - **Blocking calls stay off the async executor.** The whole loop runs on a blocking thread
//!   (`spawn_blocking`) with librdkafka's synchronous consumer and producer; the async side
//!   only serves HTTP and waits for signals.
//! - **Pipelined commit.** A batch's commit (delivery, offsets, end of transaction) runs on a
//!   thread of its own while the loop polls and decodes the next batch; the next transaction
//!   begins only when that commit has ended.
//! - **Rebalance.** A revocation waits in the rebalance callback for the commit in flight, so
//!   partitions are never revoked with a transaction open. Revoked partitions' engines are parked; if the partition
//!   comes back and the group's committed offsets are still the ones this instance committed,
//!   the parked state is reused, otherwise it is restored ([`super::restore`]). The `range`
//!   assignor is the default because it keeps events-p and commands-p on the same instance.
//! - **Bad input.** A record that is too large, fails to decode or validate, or is a refused
//!   command goes to the dead-letter topic with headers naming its source and the error;
//!   processing goes on. If the share of dead letters among the last `dead_letter_window`
//!   records exceeds `max_dead_letter_ratio`, the processor stops: that is a wrong topic or
//!   encoding, not a few bad agents.
//! - **Failure.** A transaction that fails is aborted and the processor returns an error; run
//!   it under a supervisor (systemd, Kubernetes) — the restart restores state exactly.
//!
//! # Layout
//!
//! - [`error`]: [`ProcessorError`] and whether a restart may help.
//! - `context`: the clients' contexts (rebalance notifications, lag from statistics, whether
//!   the cluster can be reached).
//! - `worker`: the [`Processor`] and its polling loop.
//! - `rebalance`: parking, reuse and parallel restore of assigned partitions.
//! - `transaction`: one batch in one Kafka transaction.
//! - `dead_letter`: refused records and the flood check.
//! - `service`: [`run`] and [`ensure_topics`]: HTTP, topic checks (retried while the cluster
//!   cannot be reached), signals, the blocking thread.

mod context;
mod dead_letter;
pub mod error;
mod rebalance;
mod service;
mod transaction;
mod worker;

pub use error::ProcessorError;
pub use service::{ensure_topics, restore_look_back_ms, run};
pub use worker::Processor;
