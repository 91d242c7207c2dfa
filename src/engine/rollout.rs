//! One rollout's state machine: its phase, windows and sequence of decisions.
//!
//! Transitions (anything else is refused):
//!
//! | from            | input                      | to               | action   |
//! |-----------------|----------------------------|------------------|----------|
//! | (new)           | first event / START        | initial phase    | START    |
//! | PROBE..MEDIUM   | healthy window             | next phase       | ADVANCE  |
//! | PROBE..FULL     | breached window / ABORT    | OFF              | ROLLBACK |
//! | PROBE..MEDIUM   | PROMOTE                    | next phase       | ADVANCE  |
//! | OFF             | RETRY / START              | initial phase    | START    |
//! | not OFF         | PAUSE / RESUME             | same phase       | PAUSE / RESUME |
//! | auto-started, nothing decided since | START   | START's initial phase | START (START wins) |
//! | OFF or FULL     | RETIRE                     | (forgotten)      | RETIRE (tombstone) |
//! | OFF after an automatic ROLLBACK, policy `auto_retry` | CANDIDATE event with a new version label | initial phase | START |
//! | PROBE..MEDIUM   | early warning raised / cleared (statistical rule) | same phase | WARNING |

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::command::{Command, CommandError, CommandKind};
use super::decision::{Action, Cause, Decision, MetricsSnapshot};
use super::phase::Phase;
use super::policy::Policy;
use super::scope::Scope;
use super::types::{EventTime, ExecutionEvent, LatencyMs, Variant};
use super::watchdog;
use super::window::{bucket_start, VariantWindow};

mod scopes;
mod statistical;

/// Actor recorded on automatic decisions.
pub const WATCHDOG: &str = "watchdog";

/// The state of one rollout.
///
/// `repr(C)` keeps the fields every event reads (watermark state, policy, flags, the two
/// windows' headers) together at the front, so an event touches two or three cache lines of
/// the rollout instead of fields scattered over its nine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[repr(C)]
pub struct Rollout {
    /// Start of the earliest bucket at or after `closed_until` holding data, if any (a cache
    /// so the per-event watermark check is one comparison).
    next_open: Option<EventTime>,
    closed_until: EventTime,
    max_event_time: EventTime,
    late_events: u64,
    policy: Arc<Policy>,
    phase: Phase,
    paused: bool,
    /// The last published decision is an automatic ROLLBACK: with `auto_retry`, a candidate
    /// event with a new version label starts the rollout again.
    #[serde(default)]
    retry_armed: bool,
    /// The last published decision is an automatic START (first event of an unknown rollout):
    /// an operator's START still applies, so a START that lost the race with an event wins.
    auto_started: bool,
    custom_policy: bool,
    baseline: VariantWindow,
    candidate: VariantWindow,
    id: String,
    sequence: u64,
    phase_started_at: EventTime,
    candidate_version: Option<String>,
    baseline_version: Option<String>,
    /// The statistical rule's per-phase state (see `rollout/statistical.rs`).
    #[serde(default)]
    stats: super::stats::PhaseStats,
    /// Agent-metric counts of the open buckets (statistical rule with metric gates only).
    #[serde(default)]
    agent: statistical::AgentBuckets,
    /// Policy `auto_retry` only: the newest version label candidate events reported, per
    /// bucket start (evicted with the windows, so a restore rebuilds it exactly).
    #[serde(default)]
    candidate_labels: std::collections::BTreeMap<EventTime, String>,
    /// Which part of the rollout's traffic this state machine judges (the default scope for
    /// the rollout itself; see [`crate::engine::scope`]).
    #[serde(default, skip_serializing_if = "Scope::is_default")]
    scope: Scope,
    /// A scope registered but not started: waiting for its wave, its lead, or excluded. OFF
    /// without having been rolled back.
    #[serde(default, skip_serializing_if = "is_false")]
    waiting: bool,
    /// Highest phase an ADVANCE may reach (a trailing segment's cap, set before each
    /// evaluation from its lead's phase); FULL when unconstrained.
    #[serde(skip, default = "full")]
    cap: Phase,
    /// The rollout's other scopes (only on the default scope's state machine, which stands for
    /// the rollout).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    scopes: std::collections::BTreeMap<Scope, Rollout>,
    /// Events that fell out of every scope (excluded segment, unlisted region).
    #[serde(default)]
    out_of_scope_events: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn full() -> Phase {
    Phase::Full
}

/// First bucket boundary at or after `t`.
fn ceil_to_bucket(t: EventTime, width: u64) -> EventTime {
    let floor = bucket_start(t, width);
    if floor == t {
        t
    } else {
        floor + width as i64
    }
}

impl Rollout {
    /// A rollout that has not started (phase OFF, sequence 0).
    pub fn new(id: impl Into<String>, policy: Arc<Policy>, custom_policy: bool) -> Self {
        Self {
            id: id.into(),
            policy,
            custom_policy,
            phase: Phase::Off,
            paused: false,
            auto_started: false,
            sequence: 0,
            phase_started_at: EventTime::MIN,
            candidate_version: None,
            baseline_version: None,
            max_event_time: EventTime::MIN,
            closed_until: EventTime::MIN,
            next_open: None,
            late_events: 0,
            baseline: VariantWindow::default(),
            candidate: VariantWindow::default(),
            stats: super::stats::PhaseStats::default(),
            agent: statistical::AgentBuckets::default(),
            candidate_labels: std::collections::BTreeMap::new(),
            retry_armed: false,
            scope: Scope::DEFAULT,
            waiting: false,
            cap: Phase::Full,
            scopes: std::collections::BTreeMap::new(),
            out_of_scope_events: 0,
        }
    }

    /// A scope of a rollout, registered and waiting (phase OFF, sequence 0).
    pub fn new_scoped(
        id: impl Into<String>,
        policy: Arc<Policy>,
        custom_policy: bool,
        scope: Scope,
    ) -> Self {
        let mut r = Self::new(id, policy, custom_policy);
        r.scope = scope;
        r.waiting = !r.scope.is_default();
        r
    }

    /// The scope this state machine judges.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// Whether this scope is registered but not started (waiting for its wave or lead, or
    /// excluded).
    pub fn waiting(&self) -> bool {
        self.waiting
    }
    /// The rollout's other scopes (empty unless its policy names segments or regions), in
    /// order.
    pub fn scopes(&self) -> impl Iterator<Item = &Rollout> {
        self.scopes.values()
    }
    /// One of the rollout's other scopes.
    pub fn scoped(&self, scope: &Scope) -> Option<&Rollout> {
        if scope.is_default() {
            Some(self)
        } else {
            self.scopes.get(scope)
        }
    }
    /// This state machine and those of the rollout's other scopes.
    pub fn with_scopes(&self) -> impl Iterator<Item = &Rollout> {
        std::iter::once(self).chain(self.scopes.values())
    }
    /// Whether this scope's segment is excluded by the policy.
    fn excluded(&self) -> bool {
        self.policy
            .segment_of(&self.scope)
            .is_some_and(|s| s.excluded)
    }

    /// The rollout id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// Whether automatic decisions are frozen.
    pub fn paused(&self) -> bool {
        self.paused
    }
    /// Sequence number of the last published decision (0 before the first).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The policy governing this rollout.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// Events that arrived after their window had closed (counted, not aggregated).
    pub fn late_events(&self) -> u64 {
        self.late_events
    }
    /// The newest event time recorded: the watermark is this minus the allowed lateness.
    pub fn newest_event_time(&self) -> EventTime {
        self.max_event_time
    }
    /// Event time from which samples count for the current phase.
    pub fn phase_started_at(&self) -> EventTime {
        self.phase_started_at
    }
    /// Sub-buckets held in memory, both variants.
    pub fn buckets_held(&self) -> usize {
        self.baseline.len() + self.candidate.len()
    }

    fn width(&self) -> u64 {
        self.policy.evaluation_interval_ms
    }

    /// Records an execution into its tumbling bucket. Returns `false` (and counts it) when the
    /// bucket has already closed.
    pub fn record(
        &mut self,
        variant: Variant,
        success: bool,
        latency: LatencyMs,
        at: EventTime,
    ) -> bool {
        if at < self.closed_until {
            self.late_events += 1;
            return false;
        }
        let start = bucket_start(at, self.width());
        self.next_open = Some(self.next_open.map_or(start, |n| n.min(start)));
        let slow = latency.get() > self.policy.max_latency_ms;
        match variant {
            Variant::Baseline => self.baseline.record(start, success, latency, slow),
            Variant::Candidate => self.candidate.record(start, success, latency, slow),
        }
        self.max_event_time = self.max_event_time.max(at);
        true
    }

    /// Starts loading the fields [`Rollout::record`] reads first (see [`Engine::prefetch`]).
    ///
    /// [`Engine::prefetch`]: super::Engine::prefetch
    #[inline]
    pub fn prefetch_state(&self) {
        let first = std::ptr::from_ref(self).cast::<u8>();
        // The hot fields come first (`repr(C)`) and end with the candidate window.
        let hot_end =
            std::mem::offset_of!(Rollout, candidate) + std::mem::size_of::<VariantWindow>();
        let mut offset = 0;
        while offset < hot_end {
            super::window::prefetch(first.wrapping_add(offset));
            offset += 64;
        }
        super::window::prefetch(first.wrapping_add(hot_end - 1));
    }

    /// Starts loading the newest bucket of `event`'s window, where it nearly always lands,
    /// when the rollout has no scopes (see [`Engine::prefetch`]). Reads the rollout's state: prefetch
    /// that first.
    ///
    /// [`Engine::prefetch`]: super::Engine::prefetch
    #[inline]
    pub fn prefetch_bucket(&self, event: &ExecutionEvent) {
        if self.policy.has_scopes() {
            return;
        }
        match event.variant {
            Variant::Baseline => self.baseline.prefetch(event.latency),
            Variant::Candidate => self.candidate.prefetch(event.latency),
        }
    }

    /// The metrics of the current phase over the rolling window ending at `end`, quantiles
    /// included.
    pub fn snapshot(&self, end: EventTime) -> MetricsSnapshot {
        self.snapshot_with(end, true)
    }

    fn snapshot_with(&self, end: EventTime, quantiles: bool) -> MetricsSnapshot {
        let window_start =
            (end - self.policy.monitoring_window_ms as i64).max(self.phase_started_at);
        let metrics = |w: &VariantWindow| {
            if quantiles {
                w.aggregate(window_start, end).metrics()
            } else {
                w.aggregate_counts(window_start, end)
            }
        };
        MetricsSnapshot {
            window_start,
            window_end: end,
            baseline: metrics(&self.baseline),
            candidate: metrics(&self.candidate),
        }
    }

    /// The fail-safe on silence over the window ending at `end`, less the phase's grace period
    /// (see [`watchdog::traffic_shortfall`]).
    fn traffic_shortfall(&self, end: EventTime) -> Option<watchdog::Verdict> {
        let start = (end - self.policy.monitoring_window_ms as i64)
            .max(self.phase_started_at + self.policy.traffic_shortfall_grace_ms as i64);
        if start >= end {
            return None;
        }
        watchdog::traffic_shortfall(
            &self.policy,
            self.policy.schedule_of(&self.scope),
            self.phase,
            &self.candidate.aggregate_counts(start, end),
            &self.baseline.aggregate_counts(start, end),
        )
    }

    /// Judges the window ending at `end` and applies the verdict. Returns `None` at OFF.
    /// MAINTAIN decisions from here carry counts and means but no quantiles (merging histograms at
    /// every tick of every rollout is the engine's most expensive step, and MAINTAIN is never
    /// published); published decisions always carry quantiles.
    pub fn evaluate(&mut self, end: EventTime) -> Option<Decision> {
        self.evaluate_window(end, end, false)
    }

    /// Embedded use (no watermark): judges the window that includes the bucket holding `at`,
    /// records the decision as made at `at`, and evicts buckets the window no longer covers.
    pub fn evaluate_now(&mut self, at: EventTime) -> Option<Decision> {
        let width = self.width() as i64;
        let end = bucket_start(at, self.width()) + width;
        let d = self.evaluate_window(end, at, true);
        let cutoff = end - self.policy.monitoring_window_ms as i64;
        self.baseline.evict_before(cutoff);
        self.candidate.evict_before(cutoff);
        d
    }

    fn evaluate_window(
        &mut self,
        end: EventTime,
        at: EventTime,
        quantiles: bool,
    ) -> Option<Decision> {
        if self.phase == Phase::Off {
            return None;
        }
        let mut metrics = self.snapshot_with(end, quantiles);
        if self.paused {
            return Some(self.decision(
                Action::Maintain,
                self.phase,
                format!(
                    "{}: paused by operator; automatic decisions frozen",
                    self.phase
                ),
                metrics,
                at,
                Cause::Automatic,
                WATCHDOG,
            ));
        }
        // The fail-safe on silence comes first, whatever the rule.
        let verdict = match self.traffic_shortfall(end) {
            Some(v) => v,
            None => match self.policy.rule {
                super::stats::Rule::Threshold => watchdog::judge(
                    &self.policy,
                    self.phase,
                    &metrics.candidate,
                    &metrics.baseline,
                ),
                super::stats::Rule::Statistical => self.judge_statistically(&metrics),
            },
        };
        let mut verdict = verdict;
        if verdict.action == Action::Advance && self.phase.next().is_some_and(|n| n > self.cap) {
            verdict = watchdog::Verdict {
                action: Action::Maintain,
                reason: format!(
                    "{}: held, trailing its lead scope (cap {}): {}",
                    self.phase, self.cap, verdict.reason
                ),
            };
        }
        let to = match verdict.action {
            Action::Advance => self.phase.next().unwrap_or(self.phase),
            Action::Rollback => Phase::Off,
            _ => self.phase,
        };
        if !quantiles && verdict.action != Action::Maintain {
            metrics = self.snapshot_with(end, true);
        }
        if verdict.action == Action::Rollback && self.policy.auto_retry {
            // The version an auto retry must see replaced: what the candidate reported in
            // the judged window, in the label space later events use.
            if let Some(label) = self.candidate_label_in(metrics.window_start, end) {
                self.candidate_version = Some(label.clone());
            }
        }
        Some(self.transition(
            verdict.action,
            to,
            verdict.reason,
            metrics,
            at,
            Cause::Automatic,
            WATCHDOG,
        ))
    }

    /// Closes every bucket the watermark (newest event time minus the allowed lateness) has
    /// passed, evaluating at the end of each one that holds data.
    pub fn close_buckets(&mut self, out: &mut Vec<Decision>) {
        self.close(Some(out));
    }

    /// Closes buckets like [`Rollout::close_buckets`] but judges nothing: used when windows are
    /// rebuilt from already-processed events after a restore. Skipping the verdicts is exact,
    /// not an approximation: the restored decision is the rollout's last phase change, so no
    /// closure in the replayed range changed its state, and a MAINTAIN changes nothing.
    pub fn close_buckets_silently(&mut self) {
        self.close(None);
    }

    fn close(&mut self, mut out: Option<&mut Vec<Decision>>) {
        let width = self.width() as i64;
        let watermark = self
            .max_event_time
            .saturating_sub(self.policy.allowed_lateness_ms as i64);
        while let Some(next) = self.next_open {
            let end = next + width;
            if end > watermark {
                return;
            }
            self.closed_until = end;
            self.next_open = match (
                self.baseline.first_start_from(end),
                self.candidate.first_start_from(end),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (Some(a), None) | (None, Some(a)) => Some(a),
                (None, None) => None,
            };
            self.update_phase_stats(next, end);
            if let Some(out) = out.as_deref_mut() {
                self.publish_warnings(end, out);
                if let Some(d) = self.evaluate(end) {
                    out.push(d);
                }
            }
            let cutoff = end - self.policy.monitoring_window_ms as i64;
            self.baseline.evict_before(cutoff);
            self.candidate.evict_before(cutoff);
            if !self.candidate_labels.is_empty() {
                self.candidate_labels = self.candidate_labels.split_off(&cutoff);
            }
        }
    }

    /// Handles one execution event: record, then close what the watermark passed. With
    /// `auto_retry`, a candidate event with a new version label after the breaker tripped
    /// first starts the rollout again.
    pub fn apply_event(&mut self, event: &ExecutionEvent, out: &mut Vec<Decision>) {
        if self.policy.has_scopes() {
            self.apply_scoped_event(event, out);
        } else {
            self.apply_own_event(event, out);
        }
    }

    /// [`Rollout::apply_event`] for this scope alone.
    fn apply_own_event(&mut self, event: &ExecutionEvent, out: &mut Vec<Decision>) {
        if let Some(reason) = self.retry_reason(event) {
            self.candidate_version = Some(event.version.to_string());
            let at = bucket_start(event.timestamp, self.width());
            out.push(self.start(at, Cause::Automatic, WATCHDOG, reason));
            // Not a first start: an operator's START does not override it (a restore could
            // not tell, as it only treats sequence 1 as an auto-start).
            self.auto_started = false;
        }
        if self.record(event.variant, event.success, event.latency, event.timestamp) {
            self.record_agent_metrics(event);
            self.record_candidate_label(event);
            self.close_buckets(out);
        }
    }

    /// Rebuilds windows from an already-processed event (see
    /// [`Rollout::close_buckets_silently`]).
    pub fn replay_event(&mut self, event: &ExecutionEvent) {
        if self.policy.has_scopes() {
            self.replay_scoped_event(event);
        } else {
            self.replay_own_event(event);
        }
    }

    fn replay_own_event(&mut self, event: &ExecutionEvent) {
        if self.record(event.variant, event.success, event.latency, event.timestamp) {
            self.record_agent_metrics(event);
            self.record_candidate_label(event);
            self.close_buckets_silently();
        }
    }

    /// Why `event` starts the rollout again under `auto_retry`, if it does: the breaker
    /// tripped, and the event is a candidate's with a label other than the rolled-back one.
    fn retry_reason(&self, event: &ExecutionEvent) -> Option<String> {
        if !(self.retry_armed && self.policy.auto_retry && self.phase == Phase::Off)
            || event.variant != Variant::Candidate
            || event.version.is_empty()
        {
            return None;
        }
        let old = self.candidate_version.as_deref()?;
        (event.version != old).then(|| {
            format!(
                "auto retry: candidate reports version `{}` after the rollback of `{old}`; \
                 starting again at {}",
                event.version, self.policy.initial_phase
            )
        })
    }

    fn record_candidate_label(&mut self, event: &ExecutionEvent) {
        if self.policy.auto_retry
            && event.variant == Variant::Candidate
            && !event.version.is_empty()
        {
            let start = bucket_start(event.timestamp, self.width());
            match self.candidate_labels.get_mut(&start) {
                Some(label) if *label == event.version => {}
                Some(label) => {
                    label.clear();
                    label.push_str(&event.version);
                }
                None => {
                    self.candidate_labels
                        .insert(start, event.version.to_string());
                }
            }
        }
    }

    /// The newest label candidate events reported in `[start, end)`.
    fn candidate_label_in(&self, start: EventTime, end: EventTime) -> Option<&String> {
        self.candidate_labels
            .range(start..end)
            .next_back()
            .map(|(_, label)| label)
    }

    /// Starts the rollout at its initial phase (automatic: on its first event).
    pub fn start(&mut self, at: EventTime, cause: Cause, actor: &str, reason: String) -> Decision {
        let to = self.policy.initial_phase_of(&self.scope);
        self.waiting = false;
        let metrics = MetricsSnapshot {
            window_start: at,
            window_end: at,
            ..MetricsSnapshot::default()
        };
        self.paused = false;
        let d = self.transition(Action::Start, to, reason, metrics, at, cause, actor);
        self.auto_started = cause == Cause::Automatic;
        d
    }

    /// Applies an operator command.
    pub fn apply_command(&mut self, cmd: &Command) -> Result<Decision, CommandError> {
        let refuse = |r: &Rollout| CommandError::NotAllowed {
            rollout_id: r.id.clone(),
            kind: cmd.kind,
            phase: r.phase,
            paused: r.paused,
        };
        let at = cmd.timestamp;
        let reason = |what: &str| {
            if cmd.reason.is_empty() {
                format!("{what} by {}", cmd.actor)
            } else {
                format!("{what} by {}: {}", cmd.actor, cmd.reason)
            }
        };
        // An excluded segment's scopes are inert: no command applies to them.
        if self.excluded() {
            return Err(refuse(self));
        }
        let metrics = self.snapshot(at);
        let d = match cmd.kind {
            CommandKind::Start | CommandKind::Retry => {
                let start_wins = cmd.kind == CommandKind::Start && self.auto_started;
                if (self.phase != Phase::Off && !start_wins) || self.excluded() {
                    return Err(refuse(self));
                }
                if cmd.kind == CommandKind::Start {
                    if let Some(p) = &cmd.policy {
                        p.validate()?;
                        self.policy = Arc::new(p.clone());
                        self.custom_policy = true;
                    }
                    if cmd.candidate_version.is_some() {
                        self.candidate_version.clone_from(&cmd.candidate_version);
                    }
                    if cmd.baseline_version.is_some() {
                        self.baseline_version.clone_from(&cmd.baseline_version);
                    }
                }
                let what = if cmd.kind == CommandKind::Start {
                    "started"
                } else {
                    "retried"
                };
                // START wins over an auto-start: the samples of the auto-started phase were
                // judged under the default policy, so the operator's START begins the phase
                // again (from OFF, as far as the phase bookkeeping is concerned).
                let before = self.phase;
                self.phase = Phase::Off;
                let mut d = self.start(at, Cause::Operator, &cmd.actor, reason(what));
                d.metrics = metrics;
                d.from = before;
                d
            }
            CommandKind::Retire => {
                if !matches!(self.phase, Phase::Off | Phase::Full) {
                    return Err(refuse(self));
                }
                self.transition(
                    Action::Retire,
                    self.phase,
                    reason("retired"),
                    metrics,
                    at,
                    Cause::Operator,
                    &cmd.actor,
                )
            }
            CommandKind::Pause | CommandKind::Resume => {
                let pause = cmd.kind == CommandKind::Pause;
                // A waiting scope may be paused, so it does not start when its wave opens.
                if (self.phase == Phase::Off && !self.waiting) || self.paused == pause {
                    return Err(refuse(self));
                }
                self.paused = pause;
                let (action, what) = if pause {
                    (Action::Pause, "paused")
                } else {
                    (Action::Resume, "resumed")
                };
                self.transition(
                    action,
                    self.phase,
                    reason(what),
                    metrics,
                    at,
                    Cause::Operator,
                    &cmd.actor,
                )
            }
            CommandKind::Promote => {
                let Some(next) = self.phase.next().filter(|_| !self.excluded()) else {
                    return Err(refuse(self));
                };
                self.transition(
                    Action::Advance,
                    next,
                    reason("promoted"),
                    metrics,
                    at,
                    Cause::Operator,
                    &cmd.actor,
                )
            }
            CommandKind::Abort => {
                if self.phase == Phase::Off {
                    return Err(refuse(self));
                }
                self.transition(
                    Action::Rollback,
                    Phase::Off,
                    reason("aborted"),
                    metrics,
                    at,
                    Cause::Operator,
                    &cmd.actor,
                )
            }
        };
        Ok(d)
    }

    /// Restores the state a published decision describes (on restart, from the decisions
    /// topic). Older or equal sequence numbers are ignored, so restoring is idempotent.
    pub fn restore(&mut self, d: &Decision, policy: Arc<Policy>, custom_policy: bool) {
        if d.sequence <= self.sequence {
            return;
        }
        self.policy = policy;
        self.custom_policy = custom_policy;
        self.phase = d.to;
        self.paused = d.paused;
        self.auto_started =
            d.action == Action::Start && d.cause == Cause::Automatic && d.sequence == 1;
        self.retry_armed = d.action == Action::Rollback && d.cause == Cause::Automatic;
        // A scope at OFF that was not rolled back never started (or was registered again).
        self.waiting =
            !self.scope.is_default() && d.to == Phase::Off && d.action != Action::Rollback;
        self.sequence = d.sequence;
        // Records written before `phase_started_at` existed: the best guess is the decision's
        // time rounded up, which is right unless the last decision was a PAUSE or RESUME.
        self.phase_started_at = d
            .phase_started_at
            .unwrap_or_else(|| ceil_to_bucket(d.at, self.width()));
        self.stats = super::stats::PhaseStats::default();
        self.next_open = self
            .baseline
            .first_start_from(self.closed_until)
            .into_iter()
            .chain(self.candidate.first_start_from(self.closed_until))
            .min();
        self.candidate_version.clone_from(&d.candidate_version);
        self.baseline_version.clone_from(&d.baseline_version);
    }

    #[allow(clippy::too_many_arguments)]
    fn transition(
        &mut self,
        action: Action,
        to: Phase,
        reason: String,
        metrics: MetricsSnapshot,
        at: EventTime,
        cause: Cause,
        actor: &str,
    ) -> Decision {
        let from = self.phase;
        if action != Action::Maintain {
            self.sequence += 1;
            self.auto_started = false;
            self.retry_armed = action == Action::Rollback && cause == Cause::Automatic;
        }
        if to != from {
            self.phase = to;
            self.stats = super::stats::PhaseStats::default();
            // Samples count per phase: only buckets that start at or after the change are
            // judged in the new phase (automatic changes happen on bucket boundaries; operator
            // ones round up to the next boundary). The first START keeps the bucket it began in.
            // Never a bucket already closed: an operator's command can carry a time older than
            // the watermark, and a phase "started" in a closed bucket would count that bucket
            // on a restore (which replays from the phase start) but not live (it closed under
            // the previous phase).
            let start =
                if action == Action::Start && from == Phase::Off && cause == Cause::Automatic {
                    bucket_start(at, self.width())
                } else {
                    ceil_to_bucket(at, self.width())
                };
            self.phase_started_at = start.max(self.closed_until);
        }
        self.decision(action, from, reason, metrics, at, cause, actor)
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        action: Action,
        from: Phase,
        reason: String,
        metrics: MetricsSnapshot,
        at: EventTime,
        cause: Cause,
        actor: &str,
    ) -> Decision {
        Decision {
            rollout_id: self.id.clone(),
            sequence: self.sequence,
            action,
            from,
            to: self.phase,
            traffic: self.policy.schedule_of(&self.scope).percent(self.phase),
            breaker: self.phase.breaker(),
            paused: self.paused,
            reason: if self.scope.is_default() {
                reason
            } else {
                format!("{}: {reason}", self.scope)
            },
            metrics,
            at,
            cause,
            actor: actor.to_owned(),
            candidate_version: self.candidate_version.clone(),
            baseline_version: self.baseline_version.clone(),
            policy_json: self
                .custom_policy
                .then(|| serde_json::to_string(&*self.policy).unwrap_or_default()),
            phase_started_at: Some(self.phase_started_at),
            warning: None,
            scope: self.scope.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{
        Action, Cause, Command, CommandKind, Decision, Engine, EngineOptions, ExecutionEvent,
        LatencyMs, Phase, Policy, Variant,
    };

    const T0: i64 = 1_764_201_600_000;

    fn event(variant: Variant, version: &str, success: bool, at: i64) -> ExecutionEvent {
        let mut e = ExecutionEvent::new("r", variant, success, LatencyMs::new(100.0).unwrap(), at);
        e.version = version.into();
        e
    }

    fn feed(engine: &mut Engine, events: &[ExecutionEvent]) -> Vec<Decision> {
        let mut out = Vec::new();
        for e in events {
            engine.apply_event(e, &mut out);
        }
        out.retain(Decision::is_published);
        out
    }

    /// 60 s from `from`: a healthy baseline every 100 ms, and every 500 ms a candidate
    /// labelled `candidate` that fails its task.
    fn failing(from: i64, candidate: &str) -> Vec<ExecutionEvent> {
        (0..600)
            .map(|i| {
                let at = from + i * 100;
                if i % 5 == 0 {
                    event(Variant::Candidate, candidate, false, at)
                } else {
                    event(Variant::Baseline, "v1", true, at)
                }
            })
            .collect()
    }

    fn engine(auto_retry: bool) -> Engine {
        let policy = Policy {
            auto_retry,
            ..Policy::default()
        };
        Engine::new(policy, EngineOptions::default())
    }

    /// Tripped by a failing `v2`: returns the engine and the event time after the trip.
    fn tripped(auto_retry: bool) -> (Engine, i64) {
        let mut e = engine(auto_retry);
        let ds = feed(&mut e, &failing(T0, "v2"));
        let rollback = ds.last().unwrap();
        assert_eq!(
            (rollback.action, rollback.cause, rollback.to),
            (Action::Rollback, Cause::Automatic, Phase::Off),
            "{ds:?}"
        );
        let want = auto_retry.then(|| "v2".to_owned());
        assert_eq!(rollback.candidate_version, want);
        (e, T0 + 60_000)
    }

    #[test]
    fn a_new_candidate_version_starts_a_tripped_rollout_again() {
        let (mut e, t) = tripped(true);
        let seq = e.rollout("r").unwrap().sequence();
        // Stragglers of the rolled-back version, unlabelled candidates and baselines with a
        // new label change nothing.
        let quiet = [
            event(Variant::Candidate, "v2", true, t),
            event(Variant::Candidate, "", true, t + 1),
            event(Variant::Baseline, "v3", true, t + 2),
        ];
        assert_eq!(feed(&mut e, &quiet), vec![]);
        let ds = feed(&mut e, &[event(Variant::Candidate, "v3", true, t + 3)]);
        assert_eq!(ds.len(), 1, "{ds:?}");
        let d = &ds[0];
        assert_eq!(
            (
                d.action,
                d.from,
                d.to,
                d.cause,
                d.actor.as_str(),
                d.sequence
            ),
            (
                Action::Start,
                Phase::Off,
                Phase::Probe,
                Cause::Automatic,
                "watchdog",
                seq + 1
            )
        );
        assert_eq!(d.candidate_version.as_deref(), Some("v3"));
        assert!(
            d.reason.contains("`v3`") && d.reason.contains("`v2`"),
            "{}",
            d.reason
        );
        // It is judged afresh: a failing v3 trips again, named v3; then v4 retries.
        let ds = feed(&mut e, &failing(t + 10_000, "v3"));
        let last = ds.last().unwrap();
        assert_eq!((last.action, last.to), (Action::Rollback, Phase::Off));
        assert_eq!(last.candidate_version.as_deref(), Some("v3"));
        let ds = feed(&mut e, &[event(Variant::Candidate, "v4", true, t + 80_000)]);
        assert_eq!(
            ds.iter().map(|d| d.action).collect::<Vec<_>>(),
            [Action::Start]
        );
    }

    #[test]
    fn without_the_option_or_after_an_abort_nothing_restarts() {
        let (mut e, t) = tripped(false);
        assert_eq!(
            feed(&mut e, &[event(Variant::Candidate, "v3", true, t)]),
            vec![]
        );
        // An operator's ABORT is not the breaker tripping: a person restarts with RETRY.
        let mut e = engine(true);
        let mut start = failing(T0, "v2");
        start.truncate(20);
        feed(&mut e, &start);
        e.apply_command(&Command::new(
            "r",
            CommandKind::Abort,
            "ana",
            "no",
            T0 + 2_500,
        ))
        .unwrap();
        assert_eq!(
            feed(&mut e, &[event(Variant::Candidate, "v3", true, T0 + 3_000)]),
            vec![]
        );
    }

    #[test]
    fn a_restored_engine_retries_as_the_uninterrupted_one() {
        let (mut live, t) = tripped(true);
        let rollback = live.rollout("r").unwrap().sequence();
        let mut restored = engine(true);
        let mut published = feed(&mut engine(true), &failing(T0, "v2"));
        assert_eq!(published.len() as u64, rollback);
        restored.restore(&published.pop().unwrap()).unwrap();
        let next = [
            event(Variant::Candidate, "v2", true, t),
            event(Variant::Candidate, "v3", true, t + 1),
        ];
        let again = feed(&mut restored, &next);
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(again, feed(&mut live, &next));
    }
}
