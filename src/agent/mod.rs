//! The agent side of a rollout: report executions and pick versions per request.
//!
//! - [`emitter`]: [`EventEmitter`], an asynchronous, batching producer of execution events
//!   (key = rollout id, record timestamp = event time, Java-compatible partitioning); `emit`
//!   never blocks the caller.
//! - [`guarded`]: [`GuardedAgent`], which routes each request to the baseline or the candidate
//!   through a [`Router`](crate::router::Router) (usually a
//!   [`DecisionTable`](crate::router::DecisionTable)), times the call and reports it.

pub mod emitter;
pub mod guarded;

pub use emitter::{
    DeliveryFailure, EmitError, EmitterConfig, EmitterError, EmitterStats, EventEmitter, EventSink,
};
pub use guarded::{Guarded, GuardedAgent};

/// Execution events by `outcome` (`delivered`, `failed`, `dropped`, `rejected`).
pub const EVENTS: &str = "rollout_breaker_agent_events_total";
