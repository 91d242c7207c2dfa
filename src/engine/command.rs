//! Operator commands: the engine's second kind of input.

use serde::{Deserialize, Serialize};

use super::phase::Phase;
use super::policy::{Policy, PolicyError};
use super::scope::Scope;
use super::types::EventTime;

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandKind {
    /// Begin a rollout (or begin again from OFF) with the given versions and policy.
    Start,
    /// Freeze automatic decisions; traffic stays where it is.
    Pause,
    /// Unfreeze automatic decisions.
    Resume,
    /// Move up one phase now, whatever the metrics say.
    Promote,
    /// Trip the breaker now: back to OFF.
    Abort,
    /// Leave OFF for the policy's initial phase with the same versions and policy.
    Retry,
    /// Forget a finished rollout (at OFF, or at FULL once the candidate has become the
    /// baseline): its state is freed and a tombstone removes it from the decisions topic and
    /// from every router, which then serve the baseline for it.
    Retire,
}

impl CommandKind {
    /// Every kind, in the order of the Avro enum's symbols.
    pub const ALL: [CommandKind; 7] = [
        CommandKind::Start,
        CommandKind::Pause,
        CommandKind::Resume,
        CommandKind::Promote,
        CommandKind::Abort,
        CommandKind::Retry,
        CommandKind::Retire,
    ];
}

/// An operator command for one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The rollout addressed; also the Kafka record key.
    pub rollout_id: String,
    /// What to do.
    pub kind: CommandKind,
    /// Who asks (recorded in the decision).
    pub actor: String,
    /// Why (recorded in the decision).
    pub reason: String,
    /// When it was issued (event time, ms since the epoch).
    pub timestamp: EventTime,
    /// For START: the candidate's version label.
    pub candidate_version: Option<String>,
    /// For START: the baseline's version label.
    pub baseline_version: Option<String>,
    /// For START: the rollout's own policy; `None` uses the engine's default.
    pub policy: Option<Policy>,
    /// The scope addressed: the default scope addresses the whole rollout; a segment and/or
    /// region addresses that scope only (PAUSE, RESUME, PROMOTE, ABORT, RETRY).
    #[serde(default, skip_serializing_if = "Scope::is_default")]
    pub scope: Scope,
}

impl Command {
    /// A command with no START fields.
    pub fn new(
        rollout_id: impl Into<String>,
        kind: CommandKind,
        actor: impl Into<String>,
        reason: impl Into<String>,
        timestamp: EventTime,
    ) -> Self {
        Self {
            rollout_id: rollout_id.into(),
            kind,
            actor: actor.into(),
            reason: reason.into(),
            timestamp,
            candidate_version: None,
            baseline_version: None,
            policy: None,
            scope: Scope::DEFAULT,
        }
    }

    /// The same command addressed to one scope.
    pub fn for_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
}

/// A command the engine refused. The rollout is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command addresses a rollout the engine does not know (only START creates one).
    #[error("rollout `{0}` is unknown; only START creates a rollout")]
    UnknownRollout(String),
    /// The command makes no sense in the rollout's current phase or state.
    #[error("{kind:?} is not allowed for rollout `{rollout_id}` in phase {phase}{paused}", paused = if *.paused { " (paused)" } else { "" })]
    NotAllowed {
        /// The rollout addressed.
        rollout_id: String,
        /// The refused command.
        kind: CommandKind,
        /// The rollout's phase.
        phase: Phase,
        /// Whether it was paused.
        paused: bool,
    },
    /// The command addresses a scope the rollout's policy does not declare (or the rollout has
    /// not registered yet).
    #[error("rollout `{rollout_id}` has no {scope}")]
    UnknownScope {
        /// The rollout addressed.
        rollout_id: String,
        /// The scope addressed.
        scope: Scope,
    },
    /// START and RETIRE address the whole rollout, never one scope.
    #[error("{kind:?} addresses the whole rollout `{rollout_id}`, not one scope ({scope})")]
    WholeRolloutOnly {
        /// The rollout addressed.
        rollout_id: String,
        /// The refused command.
        kind: CommandKind,
        /// The scope addressed.
        scope: Scope,
    },
    /// START carried a policy that fails validation.
    #[error(transparent)]
    InvalidPolicy(#[from] PolicyError),
}
