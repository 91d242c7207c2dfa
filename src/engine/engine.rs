//! The engine: every rollout of one processor, fed events and commands, returning decisions.

use std::sync::Arc;

// FxHash: rollout ids are not attacker-chosen keys of an exposed service, and the lookup is on
// the per-event hot path (SipHash was 10 % of the engine's instructions).
use compact_str::CompactString;
use rustc_hash::FxHashMap as HashMap;

use super::command::{Command, CommandError, CommandKind};
use super::decision::{Cause, Decision};
use super::policy::Policy;
use super::rollout::{Rollout, WATCHDOG};
use super::types::ExecutionEvent;

/// How the engine treats rollouts it has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Start an unknown rollout at the default policy's initial phase on its first event.
    /// When `false`, events of unknown rollouts are ignored (counted) until a START command.
    pub auto_start: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { auto_start: true }
    }
}

/// One input to the engine.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An agent's execution event.
    Event(&'a ExecutionEvent),
    /// An operator's command.
    Command(&'a Command),
}

impl<'a> From<&'a ExecutionEvent> for Input<'a> {
    fn from(e: &'a ExecutionEvent) -> Self {
        Input::Event(e)
    }
}

impl<'a> From<&'a Command> for Input<'a> {
    fn from(c: &'a Command) -> Self {
        Input::Command(c)
    }
}

/// Counters the engine keeps about inputs it did not turn into window samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Events for rollouts that do not exist while auto-start is off.
    pub unknown_rollout_events: u64,
    /// Commands refused (see [`CommandError`]).
    pub refused_commands: u64,
    /// Events that arrived after their window had closed (counted, not aggregated).
    pub late_events: u64,
    /// Events of a rollout with scopes that fall in none (an excluded segment, a region no
    /// wave lists): not judged, and routers serve their requests the baseline.
    pub out_of_scope_events: u64,
}

/// How far ahead [`Engine::apply_events`] prefetches a rollout's state (and half as far its
/// bucket): enough events to cover a cache miss, few enough that the lines stay in L1.
pub const PREFETCH_AHEAD: usize = 8;

/// What [`Engine::prefetch`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// The rollout's state (its first cache lines: event-time marks, policy, windows).
    Rollout,
    /// The window bucket the event falls in (needs the rollout's state: prefetch that first).
    Bucket,
}

/// All rollouts of one processor (or of the partitions it owns). Pure: no IO, no clock.
#[derive(Debug, Clone)]
pub struct Engine {
    default_policy: Arc<Policy>,
    options: EngineOptions,
    // Inline keys (up to 24 bytes): comparing a key touches no other cache line. Boxed
    // values keep the table small (32 bytes a slot), so a lookup stays in cache and
    // [`Engine::prefetch`] can start loading a rollout's state before it is applied.
    rollouts: HashMap<CompactString, Box<Rollout>>,
    counters: EngineCounters,
}

impl Engine {
    /// An engine whose new rollouts use `default_policy` (validated by the caller's config).
    pub fn new(default_policy: Policy, options: EngineOptions) -> Self {
        Self {
            default_policy: Arc::new(default_policy),
            options,
            rollouts: HashMap::default(),
            counters: EngineCounters::default(),
        }
    }

    /// Applies an event or a command and returns what was decided (MAINTAIN included; publish
    /// only [`Decision::is_published`] ones). A refused command yields no decision and is
    /// counted; use [`Engine::apply_command`] to see why.
    pub fn apply<'a>(&mut self, input: impl Into<Input<'a>>) -> Vec<Decision> {
        let mut out = Vec::new();
        match input.into() {
            Input::Event(e) => self.apply_event(e, &mut out),
            Input::Command(c) => {
                let _ = self.apply_command_into(c, &mut out);
            }
        }
        out
    }

    /// Applies one event, appending decisions to `out` (no allocation when nothing is decided).
    pub fn apply_event(&mut self, event: &ExecutionEvent, out: &mut Vec<Decision>) {
        if let Some(r) = self.rollouts.get_mut(event.rollout_id.as_str()) {
            let (late, outside) = (r.late_events(), r.out_of_scope_events());
            r.apply_event(event, out);
            self.counters.late_events += r.late_events() - late;
            self.counters.out_of_scope_events += r.out_of_scope_events() - outside;
            return;
        }
        if !self.options.auto_start {
            self.counters.unknown_rollout_events += 1;
            return;
        }
        let mut r = Rollout::new(event.rollout_id.clone(), self.default_policy.clone(), false);
        let start = super::window::bucket_start(event.timestamp, r.policy().evaluation_interval_ms);
        let reason = format!(
            "first execution event of an unknown rollout; starting at {}",
            r.policy().initial_phase
        );
        r.start_rollout(start, Cause::Automatic, WATCHDOG, reason, out);
        r.apply_event(event, out);
        self.counters.out_of_scope_events += r.out_of_scope_events();
        self.rollouts
            .insert(CompactString::from(event.rollout_id.as_str()), Box::new(r));
    }

    /// Applies events in order, appending decisions to `out`: the same as calling
    /// [`Engine::apply_event`] on each, while loading the state of the events a few places
    /// ahead ([`Engine::prefetch`]), so the memory latency of one rollout overlaps the work on
    /// another.
    pub fn apply_events(&mut self, events: &[ExecutionEvent], out: &mut Vec<Decision>) {
        for (i, event) in events.iter().enumerate() {
            if let Some(ahead) = events.get(i + PREFETCH_AHEAD) {
                self.prefetch(ahead, Prefetch::Rollout);
            }
            if let Some(ahead) = events.get(i + PREFETCH_AHEAD / 2) {
                self.prefetch(ahead, Prefetch::Bucket);
            }
            self.apply_event(event, out);
        }
    }

    /// A hint that `event` is applied soon: starts loading what applying it reads, so that
    /// [`Engine::apply_event`] finds it in cache. Decides nothing and changes nothing. Call it
    /// with [`Prefetch::Rollout`] some events ahead and with [`Prefetch::Bucket`] about half as
    /// far ahead (the bucket's address is read from the rollout's state).
    #[inline]
    pub fn prefetch(&self, event: &ExecutionEvent, what: Prefetch) {
        let Some(r) = self.rollouts.get(event.rollout_id.as_str()) else {
            return;
        };
        match what {
            Prefetch::Rollout => r.prefetch_state(),
            Prefetch::Bucket => r.prefetch_bucket(event),
        }
    }

    /// Rebuilds a restored rollout's windows from an event processed before the restart,
    /// judging nothing. Events of rollouts that were not restored are ignored. Returns whether
    /// the event belonged to a restored rollout.
    pub fn replay_event(&mut self, event: &ExecutionEvent) -> bool {
        match self.rollouts.get_mut(event.rollout_id.as_str()) {
            Some(r) => {
                r.replay_event(event);
                true
            }
            None => false,
        }
    }

    /// Applies one command and returns its first decision: the rollout's own, or the
    /// addressed scope's. A command can decide for several scopes of a rollout whose policy
    /// names segments or regions: use [`Engine::apply_command_into`] to get them all.
    pub fn apply_command(&mut self, cmd: &Command) -> Result<Decision, CommandError> {
        let mut out = Vec::new();
        self.apply_command_into(cmd, &mut out)?;
        Ok(out.swap_remove(0))
    }

    /// Applies one command, appending every decision it makes to `out` (the addressed scope's
    /// first, then those of the other scopes it applies to). Only START creates a rollout;
    /// RETIRE forgets one. A command for the default scope addresses the whole rollout; one for
    /// a segment and/or region addresses the matching scopes (see
    /// [`crate::engine::scope`]). On error nothing is appended and nothing changed.
    pub fn apply_command_into(
        &mut self,
        cmd: &Command,
        out: &mut Vec<Decision>,
    ) -> Result<(), CommandError> {
        let first = out.len();
        let result = match self.rollouts.get_mut(cmd.rollout_id.as_str()) {
            Some(r) if !cmd.scope.is_default() => r.apply_scope_command(cmd, out),
            Some(r) => {
                let result = r.apply_rollout_command(cmd, out);
                if result.is_ok() && out[first].is_tombstone() {
                    self.rollouts.remove(cmd.rollout_id.as_str());
                }
                result
            }
            None if cmd.kind == CommandKind::Start && cmd.scope.is_default() => {
                let mut r =
                    Rollout::new(cmd.rollout_id.clone(), self.default_policy.clone(), false);
                let result = r.apply_rollout_command(cmd, out);
                if result.is_ok() {
                    self.rollouts
                        .insert(CompactString::from(cmd.rollout_id.as_str()), Box::new(r));
                }
                result
            }
            None => Err(CommandError::UnknownRollout(cmd.rollout_id.clone())),
        };
        if result.is_err() {
            self.counters.refused_commands += 1;
        }
        result
    }

    /// Forgets a rollout whose tombstone was read from the decisions topic (on restart).
    pub fn forget(&mut self, rollout_id: &str) {
        self.rollouts.remove(rollout_id);
    }

    /// Restores a rollout (or one of its scopes, by [`Decision::scope`]) from its last
    /// published decision (on restart), in any order of scopes. A decision carrying
    /// its own policy restores that policy; one whose policy does not parse falls back to the
    /// default and is reported as an error after restoring.
    pub fn restore(&mut self, decision: &Decision) -> Result<(), super::policy::PolicyError> {
        let (policy, custom, result) = match decision.policy_json.as_deref() {
            None => (self.default_policy.clone(), false, Ok(())),
            Some(json) => match Policy::from_stored_json(json) {
                Ok(p) => (Arc::new(p), true, Ok(())),
                Err(e) => (self.default_policy.clone(), false, Err(e)),
            },
        };
        let r = self
            .rollouts
            .entry(CompactString::from(decision.rollout_id.as_str()))
            .or_insert_with(|| {
                Box::new(Rollout::new(
                    decision.rollout_id.clone(),
                    policy.clone(),
                    custom,
                ))
            });
        r.restore_scope(decision, policy, custom);
        result
    }

    /// The rollout's state, if known.
    pub fn rollout(&self, id: &str) -> Option<&Rollout> {
        self.rollouts.get(id).map(|r| &**r)
    }

    /// Every rollout (its default scope, which lists its other scopes:
    /// [`Rollout::with_scopes`]), in no particular order.
    pub fn rollouts(&self) -> impl Iterator<Item = &Rollout> {
        self.rollouts.values().map(|r| &**r)
    }

    /// Number of rollouts held.
    pub fn len(&self) -> usize {
        self.rollouts.len()
    }

    /// Whether no rollout is held.
    pub fn is_empty(&self) -> bool {
        self.rollouts.is_empty()
    }

    /// Drops the rollouts for which `keep` is false (e.g. those of revoked partitions).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.rollouts.retain(|id, _| keep(id));
    }

    /// Counters of inputs that produced no samples.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// The policy given to rollouts that do not bring their own.
    pub fn default_policy(&self) -> &Policy {
        &self.default_policy
    }
}
