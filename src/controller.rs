//! The seed's embedded API: one rollout in one process, no Kafka.
//!
//! ```
//! use rollout_breaker::controller::Controller;
//! use rollout_breaker::engine::{Action, Policy, Variant};
//!
//! let mut c = Controller::new(Policy::threshold()).unwrap();
//! let t0 = 1_700_000_000_000;
//! for i in 0..20 {
//!     c.record_execution(Variant::Candidate, true, 1_200.0, t0 + i).unwrap();
//! }
//! let d = c.evaluate_and_decide(t0 + 20);
//! assert_eq!(d.action, Action::Advance);
//! assert!(c.should_use_new_version("user-1") == rollout_breaker::engine::splitter::serves_candidate(
//!     "default", "user-1", c.traffic()));
//! ```
//!
//! Samples count per phase: after a phase change, only executions in tumbling windows that start
//! at or after the decision count towards the next verdict.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{
    splitter, BreakerState, Cause, Decision, EventTime, LatencyMs, Phase, Policy, PolicyError,
    RangeError, Rollout, TrafficPercent, Variant,
};

/// Rollout id used by [`Controller::new`].
pub const DEFAULT_ROLLOUT_ID: &str = "default";

/// Errors of the embedded controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The policy failed validation.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A recorded value was out of range (e.g. a negative latency).
    #[error(transparent)]
    Range(#[from] RangeError),
    /// Reading or writing the state file failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("state file {path}: {source}")]
    Format {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
}

/// One rollout, decided in-process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Controller {
    rollout: Rollout,
    history: Vec<Decision>,
}

impl Controller {
    /// A controller for rollout [`DEFAULT_ROLLOUT_ID`], started at the policy's initial phase.
    pub fn new(policy: Policy) -> Result<Self, ControllerError> {
        Self::with_id(DEFAULT_ROLLOUT_ID, policy)
    }

    /// A controller for the named rollout (the id is part of the splitter's hash).
    /// The statistical rule is refused: it judges closed buckets as the watermark passes
    /// them, while the controller judges the window up to any instant it is asked about.
    pub fn with_id(rollout_id: &str, policy: Policy) -> Result<Self, ControllerError> {
        policy.validate()?;
        if policy.rule != crate::engine::stats::Rule::Threshold {
            return Err(PolicyError::new(
                "rule",
                "must be \"threshold\" in the embedded controller (`Policy::threshold()`; the \
                 statistical rule, the default, judges closed buckets: use the engine)",
            )
            .into());
        }
        let mut rollout = Rollout::new(rollout_id, Arc::new(policy), true);
        let start = rollout.start(
            0,
            Cause::Automatic,
            "controller",
            "controller created".into(),
        );
        Ok(Self {
            rollout,
            history: vec![start],
        })
    }

    /// Whether this request goes to the new version (sticky per key).
    pub fn should_use_new_version(&self, request_key: &str) -> bool {
        splitter::serves_candidate(self.rollout.id(), request_key, self.traffic())
    }

    /// Records one execution at event time `at` (ms since the epoch).
    pub fn record_execution(
        &mut self,
        variant: Variant,
        success: bool,
        latency_ms: f64,
        at: EventTime,
    ) -> Result<(), ControllerError> {
        let latency = LatencyMs::new(latency_ms)?;
        self.rollout.record(variant, success, latency, at);
        Ok(())
    }

    /// Judges the rolling window up to `at` and applies the verdict; returns the decision
    /// (action, reason and metrics), MAINTAIN included. At OFF nothing is judged.
    pub fn evaluate_and_decide(&mut self, at: EventTime) -> Decision {
        let decision = self.rollout.evaluate_now(at).unwrap_or_else(|| Decision {
            reason: "OFF: breaker open; waiting for an operator to retry".into(),
            action: crate::engine::Action::Maintain,
            at,
            ..self
                .history
                .last()
                .cloned()
                .expect("history starts with START")
        });
        if decision.is_published() {
            self.history.push(decision.clone());
        }
        decision
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.rollout.phase()
    }
    /// Current candidate traffic.
    pub fn traffic(&self) -> TrafficPercent {
        self.rollout.policy().schedule.percent(self.rollout.phase())
    }
    /// Current breaker state.
    pub fn breaker_state(&self) -> BreakerState {
        self.rollout.phase().breaker()
    }
    /// Every phase change so far, oldest first.
    pub fn history(&self) -> &[Decision] {
        &self.history
    }
    /// The underlying rollout state.
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// Saves state and policy to a JSON file (written to a temporary file, then renamed, so a
    /// crash never leaves a torn file).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ControllerError> {
        let path = path.as_ref();
        let io = |source| ControllerError::Io {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|source| ControllerError::Format {
            path: path.display().to_string(),
            source,
        })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Loads a controller saved with [`Controller::save`]; the policy is validated again.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ControllerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ControllerError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let format = |source| ControllerError::Format {
            path: path.display().to_string(),
            source,
        };
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(format)?;
        // Saved before the rule was always written: it was the threshold rule.
        if let Some(policy) = value.pointer_mut("/rollout/policy") {
            Policy::stored_rule_default(policy);
        }
        let c: Controller = serde_json::from_value(value).map_err(format)?;
        c.rollout.policy().validate()?;
        Ok(c)
    }
}
