//! The decision table for request routers: reads the compacted decisions topic as a table and
//! answers, per request, whether the candidate or the baseline serves it.
//!
//! - [`table`]: the pure core. [`Table`] keeps the highest-sequence decision per rollout and
//!   routes with the sticky splitter ([`crate::engine::splitter`]); [`CatchUp`] and
//!   [`Freshness`] decide Loading / Ready / Stale from positions, end offsets and a clock
//!   reading passed in.
//! - The Kafka shell, one job per file: [`config`] ([`RouterConfig`]), [`error`]
//!   ([`RouterError`]), [`decision_table`] (the public API: [`DecisionTable`] answers lookups
//!   from an immutable snapshot, so they take no lock) and `follower` (the thread that follows
//!   the topic: manual assignment from the beginning, `read_committed`, no group, no commits,
//!   and swaps a snapshot after each applied batch).
//!
//! Fail safe: the baseline serves every request of an unknown rollout (or of an unknown scope
//! of a rollout with segments or regions:
//! [`DecisionTable::should_use_new_version_scoped`]), and every request while the table is
//! loading or stale.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rollout_breaker::router::RouterError> {
//! use std::time::Duration;
//! use rollout_breaker::router::{DecisionTable, RouterConfig};
//!
//! let table = DecisionTable::start(RouterConfig::new("127.0.0.1:19092", "rollout-decisions"))?;
//! table.wait_ready(Duration::from_secs(10)).await?;
//! if table.should_use_new_version("checkout-agent", "user-42") {
//!     // call the candidate
//! }
//! # Ok(()) }
//! ```

pub mod config;
pub mod decision_table;
pub mod error;
mod follower;
pub mod table;

pub use config::{RouterConfig, DEFAULT_STALE_AFTER};
pub use decision_table::{DecisionTable, LookupCounts};
pub use error::RouterError;
pub use table::{Applied, CatchUp, Freshness, Route, RouteEntry, RouteReason, Table, TableState};

/// Lookups answered, by `outcome` (`candidate`, `baseline`, `unknown`, `loading`, `stale`).
pub const LOOKUPS: &str = "rollout_breaker_router_lookups_total";
/// State of a table, by `topic`: 0 loading, 1 ready, 2 stale.
pub const STATE: &str = "rollout_breaker_router_state";
/// Rollouts held, by `topic`.
pub const ROLLOUTS: &str = "rollout_breaker_router_rollouts";
/// Decision records read, by `result` (`applied`, `ignored`, `removed`, `undecodable`).
pub const DECISIONS: &str = "rollout_breaker_router_decisions_total";
/// Seconds since the table was last known to hold every committed decision, by `topic`.
pub const STALENESS: &str = "rollout_breaker_router_staleness_seconds";
/// Errors librdkafka reported to the table's client, by `topic`.
pub const CLIENT_ERRORS: &str = "rollout_breaker_router_client_errors_total";

/// Anything that can answer "candidate or baseline?" per request: [`DecisionTable`], or a fake
/// in tests.
pub trait Router: Send + Sync {
    /// Whether the candidate serves this request of this rollout.
    fn should_use_new_version(&self, rollout_id: &str, request_key: &str) -> bool;

    /// Whether the candidate serves this request of a user `segment` in a `region` (either
    /// `None` when unknown); see [`DecisionTable::should_use_new_version_scoped`]. The default
    /// ignores the scope.
    fn should_use_new_version_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> bool {
        let _ = (segment, region);
        self.should_use_new_version(rollout_id, request_key)
    }
}

impl<R: Router + ?Sized> Router for std::sync::Arc<R> {
    fn should_use_new_version(&self, rollout_id: &str, request_key: &str) -> bool {
        (**self).should_use_new_version(rollout_id, request_key)
    }

    fn should_use_new_version_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> bool {
        (**self).should_use_new_version_scoped(rollout_id, request_key, segment, region)
    }
}
