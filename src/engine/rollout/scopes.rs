//! A rollout's scopes (segments and regions, see [`crate::engine::scope`]): routing events to
//! their scope, one event-time watermark for all scopes, region waves and trailing segments
//! (the gates), the blast radius of a rollback, and commands addressed to the whole rollout or
//! to one scope.
//!
//! The rollout's own state machine is the default scope; the others live in its `scopes` map,
//! ordered, so every pass over them is deterministic. Nothing here keeps state of its own: a
//! gate is a function of the scopes' phases, phase starts and the watermark, all of which a
//! restore rebuilds (phases from the decisions topic, windows and watermark from the events),
//! so a restarted processor opens the same gates at the same events.

use std::sync::Arc;

use super::{Rollout, WATCHDOG};
use crate::engine::command::{Command, CommandError, CommandKind};
use crate::engine::decision::{Action, Cause, Decision, MetricsSnapshot};
use crate::engine::phase::Phase;
use crate::engine::policy::Policy;
use crate::engine::scope::{RollbackScope, Scope};
use crate::engine::types::{EventTime, ExecutionEvent};
use crate::engine::window::bucket_start;

impl Rollout {
    /// Events out of scope (an excluded segment, an unlisted region, a scope not registered).
    pub fn out_of_scope_events(&self) -> u64 {
        self.out_of_scope_events
    }

    /// Starts the rollout (its default scope) and registers its other scopes: those whose gate
    /// is open start with it, the others get a waiting row (START to OFF) so routers know them.
    pub(crate) fn start_rollout(
        &mut self,
        at: EventTime,
        cause: Cause,
        actor: &str,
        reason: String,
        out: &mut Vec<Decision>,
    ) {
        let d = self.start(at, cause, actor, reason);
        out.push(d);
        self.register_scopes(at, cause, actor, out);
    }

    /// (Re)registers every scope the policy declares after the rollout (re)started: scopes at
    /// OFF wait again, scopes no longer declared are retired.
    fn register_scopes(
        &mut self,
        at: EventTime,
        cause: Cause,
        actor: &str,
        out: &mut Vec<Decision>,
    ) {
        if !self.policy.has_scopes() && self.scopes.is_empty() {
            return;
        }
        let declared = self.policy.scopes();
        let gone: Vec<Scope> = self
            .scopes
            .keys()
            .filter(|k| !declared.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut r) = self.scopes.remove(&key) {
                let metrics = r.snapshot(at);
                out.push(r.transition(
                    Action::Retire,
                    r.phase,
                    "retired: the rollout's new policy does not declare this scope".into(),
                    metrics,
                    at,
                    cause,
                    actor,
                ));
            }
        }
        for key in declared {
            let (id, policy, custom) = (&self.id, &self.policy, self.custom_policy);
            let r = self.scopes.entry(key.clone()).or_insert_with(|| {
                Rollout::new_scoped(id.clone(), Arc::clone(policy), custom, key)
            });
            r.policy = Arc::clone(&self.policy);
            r.custom_policy = self.custom_policy;
            if r.phase == Phase::Off {
                r.waiting = true;
            }
        }
        let keys = self.waiting_scopes();
        for key in keys {
            match self.gate(&key, at) {
                Ok(why) => self.start_scope(&key, at, why, out),
                Err(why) => {
                    let r = self.scopes.get_mut(&key).expect("registered above");
                    if r.phase_started_at == EventTime::MIN {
                        // Its OFF "phase" starts now (the record carries a real time).
                        r.phase_started_at = bucket_start(at, r.width());
                    }
                    let metrics = MetricsSnapshot {
                        window_start: at,
                        window_end: at,
                        ..MetricsSnapshot::default()
                    };
                    out.push(r.transition(
                        Action::Start,
                        Phase::Off,
                        format!("registered, waiting: {why}"),
                        metrics,
                        at,
                        cause,
                        actor,
                    ));
                }
            }
        }
    }

    fn waiting_scopes(&self) -> Vec<Scope> {
        self.scopes
            .iter()
            .filter(|(_, r)| r.waiting)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn start_scope(&mut self, key: &Scope, at: EventTime, why: String, out: &mut Vec<Decision>) {
        let r = self.scopes.get_mut(key).expect("a registered scope");
        let to = r.policy.initial_phase_of(key);
        out.push(r.start(
            at,
            Cause::Automatic,
            WATCHDOG,
            format!("{why}; starting at {to}"),
        ));
    }

    /// The phase of the scope `scope` trails or waits for: its region's unsegmented scope.
    fn lead_of(&self, scope: &Scope) -> Option<&Rollout> {
        match &scope.region {
            None => Some(self),
            Some(r) => self.scopes.get(&Scope::new(None, Some(r))),
        }
    }

    /// Highest phase `scope` may advance to: FULL, unless its segment trails its lead by `n`
    /// phases and the lead is not FULL yet (then the lead's phase minus `n`).
    fn cap_for(&self, scope: &Scope) -> Phase {
        let n = self
            .policy
            .segment_of(scope)
            .map_or(0, |s| usize::from(s.trail_phases));
        if n == 0 {
            return Phase::Full;
        }
        let lead = self.lead_of(scope).map_or(Phase::Off, |l| l.phase);
        if lead == Phase::Full {
            Phase::Full
        } else {
            Phase::ALL[(lead as usize).saturating_sub(n)]
        }
    }

    /// Whether the waiting scope `key` may start at `now`: `Ok(why)` or `Err(why not)`.
    fn gate(&self, key: &Scope, now: EventTime) -> Result<String, String> {
        let r = &self.scopes[key];
        let segment = self.policy.segment_of(key);
        if segment.is_some_and(|s| s.excluded) {
            return Err("excluded by policy; routers serve it the baseline".into());
        }
        if r.paused {
            return Err("paused by operator".into());
        }
        if self.phase == Phase::Off {
            return Err("the rollout is OFF".into());
        }
        if let Some(tripped) = self
            .scopes
            .values()
            .find(|s| s.phase == Phase::Off && !s.waiting)
        {
            return Err(format!(
                "halted: {} was rolled back, so waves that have not started stay stopped",
                tripped.scope
            ));
        }
        let mut why = Vec::new();
        if let Some(wave) = key.region.as_deref().and_then(|r| self.policy.wave_of(r)) {
            if wave > 0 {
                let soak = self.policy.wave_soak_ms as i64;
                for region in &self.policy.regions[wave - 1] {
                    let ready = self
                        .scopes
                        .get(&Scope::new(None, Some(region)))
                        .is_some_and(|l| {
                            l.phase == Phase::Full
                                && !l.paused
                                && now >= l.phase_started_at.saturating_add(soak)
                        });
                    if !ready {
                        return Err(format!(
                            "region wave {} starts when every region of wave {} (here `{region}`) \
                             has been FULL for wave_soak_ms = {soak}",
                            wave + 1,
                            wave
                        ));
                    }
                }
                why.push(format!(
                    "every region of wave {wave} has been FULL for wave_soak_ms = {soak}"
                ));
            }
        }
        let n = segment.map_or(0, |s| s.trail_phases);
        if n > 0 {
            let lead = self.lead_of(key).map_or(Phase::Off, |l| l.phase);
            let needed = self.policy.initial_phase_of(key) as usize + usize::from(n);
            let lead_scope = Scope {
                segment: None,
                region: key.region.clone(),
            };
            if lead != Phase::Full && (lead as usize) < needed {
                return Err(format!("trails {lead_scope} (at {lead}) by {n} phase(s)"));
            }
            why.push(format!("{lead_scope} reached {lead}"));
        }
        if why.is_empty() {
            why.push("starting with the rollout".into());
        }
        Ok(why.join("; "))
    }

    /// Newest event time over every scope: the rollout's one watermark.
    fn group_newest(&self) -> EventTime {
        self.with_scopes()
            .map(|r| r.max_event_time)
            .max()
            .unwrap_or(EventTime::MIN)
    }

    /// End of the last bucket closed in any scope.
    fn group_closed(&self) -> EventTime {
        self.with_scopes()
            .map(|r| r.closed_until)
            .max()
            .unwrap_or(EventTime::MIN)
    }

    /// The time gates are judged at and scopes started at: the end of the last closed bucket,
    /// or, before any closed, the start of the newest event's bucket.
    fn group_now(&self) -> EventTime {
        match self.group_closed() {
            EventTime::MIN => match self.group_newest() {
                EventTime::MIN => EventTime::MIN,
                t => bucket_start(t, self.width()),
            },
            closed => closed,
        }
    }

    /// Moves every scope to the rollout's newest event time and closes what it passed
    /// (judging when `out` is given), default scope first, then the others in order.
    fn follow_watermark(&mut self, mut out: Option<&mut Vec<Decision>>) {
        let now = self.group_newest();
        if self.max_event_time < now {
            self.max_event_time = now;
            self.close(out.as_deref_mut());
        }
        let keys: Vec<Scope> = self.scopes.keys().cloned().collect();
        for key in keys {
            let cap = self.cap_for(&key);
            let r = self.scopes.get_mut(&key).expect("listed above");
            r.cap = cap;
            if r.max_event_time < now {
                r.max_event_time = now;
                r.close(out.as_deref_mut());
            }
        }
    }

    /// [`Rollout::apply_event`] for a policy with scopes.
    pub(super) fn apply_scoped_event(&mut self, event: &ExecutionEvent, out: &mut Vec<Decision>) {
        let Some(scope) = self
            .policy
            .place(event.segment.as_deref(), event.region.as_deref())
        else {
            self.out_of_scope_events += 1;
            return;
        };
        let first = out.len();
        if scope.is_default() {
            self.apply_own_event(event, out);
        } else {
            let cap = self.cap_for(&scope);
            let Some(r) = self.scopes.get_mut(&scope) else {
                self.out_of_scope_events += 1;
                return;
            };
            r.cap = cap;
            r.apply_own_event(event, out);
        }
        self.follow_watermark(Some(out));
        self.contain(first, out);
        let now = self.group_now();
        self.open_gates(now, out);
    }

    /// [`Rollout::replay_event`] for a policy with scopes: the same routing and watermark,
    /// judging nothing.
    pub(super) fn replay_scoped_event(&mut self, event: &ExecutionEvent) {
        let Some(scope) = self
            .policy
            .place(event.segment.as_deref(), event.region.as_deref())
        else {
            return;
        };
        if scope.is_default() {
            self.replay_own_event(event);
        } else if let Some(r) = self.scopes.get_mut(&scope) {
            r.replay_own_event(event);
        }
        self.follow_watermark(None);
    }

    /// Starts every waiting scope whose gate is open at `now`.
    fn open_gates(&mut self, now: EventTime, out: &mut Vec<Decision>) {
        if now == EventTime::MIN {
            return;
        }
        for key in self.waiting_scopes() {
            if let Ok(why) = self.gate(&key, now) {
                self.start_scope(&key, now, why, out);
            }
        }
    }

    /// Blast radius: after an automatic ROLLBACK among `out[first..]`, with
    /// `rollback_scope = "rollout"`, every other scope not at OFF rolls back too, the reason
    /// naming the scope that tripped. (With `"scope"`, the gates keep waiting scopes stopped.)
    fn contain(&mut self, first: usize, out: &mut Vec<Decision>) {
        if self.policy.rollback_scope != RollbackScope::Rollout {
            return;
        }
        let Some((scope, reason, at)) = out[first..]
            .iter()
            .find(|d| d.action == Action::Rollback && d.cause == Cause::Automatic)
            .map(|d| (d.scope.clone(), d.reason.clone(), d.at))
        else {
            return;
        };
        let why = format!(
            "rolled back with the rest of the rollout (rollback_scope = \"rollout\"): the {scope} \
             tripped: {reason}"
        );
        let roll = |r: &mut Rollout, out: &mut Vec<Decision>| {
            if r.phase != Phase::Off {
                let metrics = r.snapshot(at);
                out.push(r.transition(
                    Action::Rollback,
                    Phase::Off,
                    why.clone(),
                    metrics,
                    at,
                    Cause::Automatic,
                    WATCHDOG,
                ));
            }
        };
        roll(self, out);
        for r in self.scopes.values_mut() {
            roll(r, out);
        }
    }

    /// Applies a command addressed to the whole rollout (its default scope): the rollout's own
    /// decision first, then its scopes' (START and RETRY register them again, PAUSE, RESUME and
    /// ABORT apply to every scope that allows it, RETIRE retires them all; PROMOTE moves the
    /// default scope only).
    pub(crate) fn apply_rollout_command(
        &mut self,
        cmd: &Command,
        out: &mut Vec<Decision>,
    ) -> Result<(), CommandError> {
        let scoped = self.policy.has_scopes() || !self.scopes.is_empty();
        if scoped
            && matches!(
                cmd.kind,
                CommandKind::Pause | CommandKind::Resume | CommandKind::Abort
            )
        {
            // Every scope that allows it, the rollout's own row included; refused only when
            // no scope allows it (e.g. ABORT after the rollout's own row was rolled back alone
            // still aborts the scopes that carry on).
            let mut first_error = None;
            let mut applied = 0;
            let mut apply = |r: &mut Rollout| match r.apply_command(cmd) {
                Ok(d) => {
                    out.push(d);
                    applied += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            };
            apply(self);
            for r in self.scopes.values_mut() {
                apply(r);
            }
            if applied == 0 {
                return Err(first_error.expect("the rollout's own row was tried"));
            }
            if cmd.kind == CommandKind::Resume {
                let now = self.group_closed().max(cmd.timestamp);
                self.open_gates(now, out);
            }
            return Ok(());
        }
        let d = self.apply_command(cmd)?;
        out.push(d);
        if !scoped {
            return Ok(());
        }
        match cmd.kind {
            CommandKind::Start | CommandKind::Retry => {
                self.register_scopes(cmd.timestamp, Cause::Operator, &cmd.actor, out);
            }
            CommandKind::Pause | CommandKind::Resume | CommandKind::Abort => {}
            CommandKind::Retire => {
                let reason = format!("retired with the rollout by {}", cmd.actor);
                for r in self.scopes.values_mut() {
                    let metrics = r.snapshot(cmd.timestamp);
                    out.push(r.transition(
                        Action::Retire,
                        r.phase,
                        reason.clone(),
                        metrics,
                        cmd.timestamp,
                        Cause::Operator,
                        &cmd.actor,
                    ));
                }
            }
            CommandKind::Promote => {}
        }
        Ok(())
    }

    /// Applies a command addressed to one scope, or to every scope of one region or one
    /// segment (`cmd.scope` is not the default one).
    pub(crate) fn apply_scope_command(
        &mut self,
        cmd: &Command,
        out: &mut Vec<Decision>,
    ) -> Result<(), CommandError> {
        if matches!(cmd.kind, CommandKind::Start | CommandKind::Retire) {
            return Err(CommandError::WholeRolloutOnly {
                rollout_id: self.id.clone(),
                kind: cmd.kind,
                scope: cmd.scope.clone(),
            });
        }
        // `region = R` alone addresses every scope of region R (pause the EU wave), `segment
        // = S` alone every scope of segment S; both, exactly one scope.
        let matches = |k: &Scope| {
            (cmd.scope.segment.is_none() || k.segment == cmd.scope.segment)
                && (cmd.scope.region.is_none() || k.region == cmd.scope.region)
        };
        let mut first_error = None;
        let mut applied = 0;
        for (k, r) in self.scopes.iter_mut() {
            if !matches(k) {
                continue;
            }
            match r.apply_command(cmd) {
                Ok(d) => {
                    out.push(d);
                    applied += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if applied == 0 {
            return Err(first_error.unwrap_or_else(|| CommandError::UnknownScope {
                rollout_id: self.id.clone(),
                scope: cmd.scope.clone(),
            }));
        }
        if matches!(cmd.kind, CommandKind::Resume | CommandKind::Retry) {
            let now = self.group_closed().max(cmd.timestamp);
            self.open_gates(now, out);
        }
        Ok(())
    }

    /// Restores one of the rollout's scopes from its row of the decisions topic.
    pub(crate) fn restore_scope(&mut self, d: &Decision, policy: Arc<Policy>, custom: bool) {
        if d.scope.is_default() {
            self.restore(d, policy, custom);
            return;
        }
        let id = self.id.clone();
        self.scopes
            .entry(d.scope.clone())
            .or_insert_with(|| Rollout::new_scoped(id, policy.clone(), custom, d.scope.clone()))
            .restore(d, policy, custom);
    }
}
