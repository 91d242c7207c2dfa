//! The pure rollout engine (sans-IO): policy, event-time windows, watchdog, rollout state
//! machine and traffic splitter.
//!
//! Nothing in this module touches a socket, a file, a clock or an unseeded random source. Time
//! comes in with each input (the event's own timestamp), decisions come out as values, so a live
//! run, a run interrupted by crashes and an audit replay of the same log decide the same.
//!
//! - [`types`]: range-checked values (rates, percents, latencies) and the execution event.
//! - [`phase`]: OFF → PROBE → SMALL → MEDIUM → FULL and the breaker state of each.
//! - [`policy`]: thresholds, windows and schedule, and exactly how each threshold is applied.
//! - [`window`]: tumbling event-time buckets and the rolling window built from them;
//!   [`histogram`]: their fixed-size latency histogram.
//! - [`watchdog`]: metrics + policy → ADVANCE / MAINTAIN / ROLLBACK with a reason.
//! - [`stats`]: the statistical rule's anytime-valid tests and per-phase state.
//! - [`detector`]: its early warning, a change detector per metric (WARNING decisions).
//! - [`rollout`]: one rollout's state machine; [`engine`]: all rollouts, fed events and commands.
//! - [`command`], [`decision`]: operator inputs and the engine's outputs.
//! - [`log`]: the decisions log read as a table (latest decision per rollout, tombstones).
//! - [`scope`]: segments and regions: a rollout's scopes, each with its own breaker.
//! - [`splitter`]: the sticky, monotone hash split routers use.

pub mod command;
pub mod decision;
pub mod detector;
#[allow(clippy::module_inception)]
pub mod engine;
pub mod histogram;
pub mod log;
pub mod phase;
pub mod policy;
pub mod rollout;
pub mod scope;
pub mod splitter;
pub mod stats;
pub mod types;
pub mod watchdog;
pub mod window;

pub use command::{Command, CommandError, CommandKind};
pub use decision::{Action, Cause, Decision, MetricsSnapshot, Warning};
pub use engine::{Engine, EngineCounters, EngineOptions, Input, Prefetch, PREFETCH_AHEAD};
pub use log::LatestDecisions;
pub use phase::{BreakerState, Phase};
pub use policy::{Policy, PolicyError, Schedule};
pub use rollout::Rollout;
pub use scope::{RollbackScope, Scope, SegmentPolicy};
pub use types::{EventTime, ExecutionEvent, LatencyMs, RangeError, Rate, TrafficPercent, Variant};
pub use window::VariantMetrics;
