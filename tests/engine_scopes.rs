//! Segments and regions (issue 14) in the pure engine: independent phases per scope, region
//! waves and their soak, trailing and excluded segments, the blast radius of a rollback,
//! commands addressed to a scope, restore exactness, and no change for events without scope.

use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::engine::splitter::serves_candidate;
use rollout_breaker::engine::{
    Action, Cause, Command, CommandError, CommandKind, Decision, Engine, EngineOptions,
    ExecutionEvent, LatencyMs, LatestDecisions, Phase, Policy, Scope, TrafficPercent, Variant,
};

const T0: i64 = 1_764_201_600_000;
const ID: &str = "agent";

/// Fast mechanics: 1 s buckets, 5 s windows, 10 candidate samples per verdict, the threshold
/// rule, and a 10/20/50 % schedule, plus `extra` (top-level keys, then tables).
fn policy(extra: &str) -> Policy {
    Policy::from_toml(&format!(
        r#"
rule = "threshold"
evaluation_interval_ms = 1000
monitoring_window_ms = 5000
allowed_lateness_ms = 0
min_samples_per_phase = 10
traffic_shortfall_grace_ms = 2000
schedule = {{ probe = 10, small = 20, medium = 50 }}
{extra}
"#
    ))
    .unwrap()
}

const WAVES: &str = r#"
wave_soak_ms = 5000
regions = [["eu"], ["us"]]
[segments.internal]
initial_phase = "FULL"
[segments.enterprise]
trail_phases = 1
[segments.banned]
excluded = true
"#;

fn engine(p: Policy) -> Engine {
    Engine::new(p, EngineOptions::default())
}

/// A closed loop over `scopes`: every 10 ms of event time one request per scope, split by the
/// engine's current traffic for that scope (as a router reading its row would), the candidate
/// failing where `fails(scope, t)` says. Returns the published decisions and the events.
struct Loop {
    engine: Engine,
    published: Vec<Decision>,
    events: Vec<ExecutionEvent>,
    n: u64,
}

fn scope(segment: Option<&str>, region: Option<&str>) -> Scope {
    Scope::new(segment, region)
}

impl Loop {
    fn new(p: Policy) -> Self {
        Self {
            engine: engine(p),
            published: Vec::new(),
            events: Vec::new(),
            n: 0,
        }
    }

    fn traffic(&self, s: &Scope) -> TrafficPercent {
        let Some(r) = self.engine.rollout(ID).and_then(|r| r.scoped(s)) else {
            return TrafficPercent::ZERO;
        };
        r.policy().schedule_of(s).percent(r.phase())
    }

    fn run(&mut self, from: i64, to: i64, scopes: &[Scope], fails: impl Fn(&Scope, i64) -> bool) {
        let mut t = from;
        while t < to {
            for s in scopes {
                self.n += 1;
                let key = format!("user-{}", self.n);
                let candidate = serves_candidate(ID, &key, self.traffic(s));
                let variant = if candidate {
                    Variant::Candidate
                } else {
                    Variant::Baseline
                };
                let ok = !(candidate && fails(s, t));
                let mut e = ExecutionEvent::new(ID, variant, ok, LatencyMs::new(100.0).unwrap(), t);
                e.request_key = Some(key.into());
                e.segment = s.segment.clone();
                e.region = s.region.clone();
                self.apply(e);
            }
            t += 10;
        }
    }

    fn apply(&mut self, e: ExecutionEvent) {
        let mut out = Vec::new();
        self.engine.apply_event(&e, &mut out);
        self.published
            .extend(out.into_iter().filter(Decision::is_published));
        self.events.push(e);
    }

    fn command(&mut self, c: &Command) -> Result<(), CommandError> {
        self.engine.apply_command_into(c, &mut self.published)
    }

    fn of(&self, s: &Scope) -> Vec<&Decision> {
        self.published.iter().filter(|d| d.scope == *s).collect()
    }

    fn phase(&self, s: &Scope) -> Phase {
        self.engine.rollout(ID).unwrap().scoped(s).unwrap().phase()
    }
}

fn healthy(_: &Scope, _: i64) -> bool {
    false
}

fn steps(ds: &[&Decision]) -> Vec<(Action, Phase, Phase)> {
    ds.iter().map(|d| (d.action, d.from, d.to)).collect()
}

fn all_scopes() -> Vec<Scope> {
    let mut v = vec![Scope::DEFAULT];
    for seg in [None, Some("internal"), Some("enterprise"), Some("banned")] {
        for region in [None, Some("eu"), Some("us")] {
            if seg.is_some() || region.is_some() {
                v.push(scope(seg, region));
            }
        }
    }
    v
}

#[test]
fn an_event_without_scope_decides_exactly_as_before() {
    // The same traffic, once under a policy without scopes and once under one with segments
    // and waves: the default scope's decisions are identical, field for field.
    let scopes = [Scope::DEFAULT];
    let fails = |_: &Scope, t: i64| t > T0 + 30_000;
    let mut plain = Loop::new(policy(""));
    plain.run(T0, T0 + 40_000, &scopes, fails);
    let mut scoped = Loop::new(policy(WAVES));
    scoped.run(T0, T0 + 40_000, &scopes, fails);
    assert_eq!(plain.events, scoped.events);
    let default_rows: Vec<Decision> = scoped.of(&Scope::DEFAULT).into_iter().cloned().collect();
    assert_eq!(plain.published, default_rows);
    assert!(
        steps(&plain.published.iter().collect::<Vec<_>>()).contains(&(
            Action::Rollback,
            Phase::Full,
            Phase::Off
        )),
        "{:?}",
        plain.published
    );
    // And a policy without scopes ignores `segment` and `region` altogether.
    let mut tagged = Loop::new(policy(""));
    for e in &plain.events {
        let mut e = e.clone();
        e.segment = Some("enterprise".into());
        e.region = Some("eu".into());
        tagged.apply(e);
    }
    assert_eq!(tagged.published, plain.published);
    assert!(tagged.published.iter().all(|d| d.scope.is_default()));
}

#[test]
fn each_scope_has_its_own_phase_and_schedule() {
    let mut l = Loop::new(policy(WAVES));
    let scopes = all_scopes();
    l.run(T0, T0 + 60_000, &scopes, healthy);
    // Every declared scope has a row from the first event on (routers learn which exist).
    let first_at = l.published[0].at;
    for s in &scopes[1..] {
        let first = l.of(s)[0];
        assert_eq!(
            (first.action, first.from, first.at),
            (Action::Start, Phase::Off, first_at),
            "{s}"
        );
    }
    // Internal users start at FULL; the excluded segment never leaves OFF.
    assert_eq!(
        steps(&l.of(&scope(Some("internal"), None))),
        [(Action::Start, Phase::Off, Phase::Full)]
    );
    for region in [None, Some("eu"), Some("us")] {
        let banned = l.of(&scope(Some("banned"), region));
        assert_eq!(steps(&banned), [(Action::Start, Phase::Off, Phase::Off)]);
        assert!(
            banned[0].reason.contains("excluded"),
            "{}",
            banned[0].reason
        );
    }
    // The default scope walks PROBE → FULL on its own data.
    assert_eq!(
        steps(&l.of(&Scope::DEFAULT)),
        [
            (Action::Start, Phase::Off, Phase::Probe),
            (Action::Advance, Phase::Probe, Phase::Small),
            (Action::Advance, Phase::Small, Phase::Medium),
            (Action::Advance, Phase::Medium, Phase::Full),
        ]
    );
    // Enterprise trails the default scope by one phase: it waits until the default scope is
    // at SMALL, and is never more than one phase behind... nor level with it before FULL.
    let enterprise = scope(Some("enterprise"), None);
    let e = l.of(&enterprise);
    assert_eq!(e[0].to, Phase::Off);
    assert!(e[0].reason.contains("trails"), "{}", e[0].reason);
    let default_at = |when: i64| {
        l.of(&Scope::DEFAULT)
            .into_iter()
            .rfind(|d| d.at <= when)
            .map_or(Phase::Off, |d| d.to)
    };
    for d in &e[1..] {
        let lead = default_at(d.at);
        assert!(
            lead == Phase::Full || d.to < lead,
            "enterprise at {} while the default scope is at {lead}: {}",
            d.to,
            d.reason
        );
    }
    assert_eq!(e[1].action, Action::Start);
    assert_eq!(default_at(e[1].at), Phase::Small);
    assert_eq!(l.phase(&enterprise), Phase::Full);
    // Traffic quotes each scope's own schedule.
    assert!(l.published.iter().all(|d| d.traffic
        == l.engine
            .default_policy()
            .schedule_of(&d.scope)
            .percent(d.to)));
    // Scoped decisions name their scope in the reason; the default scope's do not.
    assert!(e
        .iter()
        .all(|d| d.reason.starts_with("segment `enterprise`: ")));
    assert!(l
        .of(&Scope::DEFAULT)
        .iter()
        .all(|d| !d.reason.contains("segment")));
    // Out-of-scope events (an excluded segment, an unlisted region) are counted, not judged.
    let outside = l.engine.counters().out_of_scope_events;
    assert_eq!(
        outside,
        6_000 * 3,
        "banned in three regions for 60 s at 100/s"
    );
    let mut stray = ExecutionEvent::new(
        ID,
        Variant::Candidate,
        false,
        LatencyMs::new(1.0).unwrap(),
        T0 + 60_000,
    );
    stray.region = Some("mars".into());
    l.apply(stray);
    assert_eq!(l.engine.counters().out_of_scope_events, outside + 1);
}

#[test]
fn the_second_wave_starts_only_after_the_first_soaked_at_full() {
    let mut l = Loop::new(policy(WAVES));
    let eu = scope(None, Some("eu"));
    let us = scope(None, Some("us"));
    l.run(
        T0,
        T0 + 80_000,
        &[Scope::DEFAULT, eu.clone(), us.clone()],
        healthy,
    );
    let eu_rows = l.of(&eu);
    assert_eq!(eu_rows[0].action, Action::Start);
    assert_eq!(
        eu_rows[0].to,
        Phase::Probe,
        "the first wave starts with the rollout"
    );
    let eu_full = eu_rows
        .iter()
        .find(|d| d.to == Phase::Full)
        .expect("eu reaches FULL");
    let full_since = eu_full.phase_started_at.unwrap();
    let us_rows = l.of(&us);
    assert_eq!(
        (us_rows[0].action, us_rows[0].to),
        (Action::Start, Phase::Off)
    );
    assert!(
        us_rows[0].reason.contains("wave 2"),
        "{}",
        us_rows[0].reason
    );
    let us_start = us_rows
        .iter()
        .find(|d| d.action == Action::Start && d.to == Phase::Probe)
        .expect("us starts");
    // Not before the soak, and at the first bucket boundary after it.
    assert!(us_start.at >= full_since + 5_000, "{us_start:?}");
    assert!(us_start.at <= full_since + 5_000 + 1_000, "{us_start:?}");
    assert!(
        us_start.reason.contains("wave_soak_ms = 5000"),
        "{}",
        us_start.reason
    );
    // Until then us served only the baseline.
    assert!(l
        .events
        .iter()
        .filter(|e| e.region.as_deref() == Some("us") && e.timestamp < us_start.at)
        .all(|e| e.variant == Variant::Baseline));
    assert_eq!(l.phase(&us), Phase::Full);
}

#[test]
fn a_rollback_in_one_scope_rolls_back_the_rollout_by_default() {
    let mut l = Loop::new(policy(WAVES));
    let enterprise = scope(Some("enterprise"), None);
    let scopes = [
        Scope::DEFAULT,
        enterprise.clone(),
        scope(None, Some("eu")),
        scope(None, Some("us")),
    ];
    // Enterprise's candidate fails: it trips soon after it starts, before the US wave.
    l.run(T0, T0 + 60_000, &scopes, |s, _| *s == enterprise);
    let trip = l
        .published
        .iter()
        .find(|d| d.action == Action::Rollback)
        .expect("a rollback");
    assert_eq!(trip.scope, enterprise, "{trip:?}");
    assert_eq!(trip.cause, Cause::Automatic);
    let contained: Vec<&Decision> = l
        .published
        .iter()
        .filter(|d| d.action == Action::Rollback && d.scope != enterprise)
        .collect();
    // Every other started scope rolls back at the same time, naming the scope that tripped
    // (internal users, at FULL from the start, included).
    let rolled: Vec<Scope> = contained.iter().map(|d| d.scope.clone()).collect();
    for s in [
        Scope::DEFAULT,
        scope(None, Some("eu")),
        scope(Some("internal"), None),
    ] {
        assert!(rolled.contains(&s), "{s} not rolled back: {rolled:?}");
    }
    let root = l.engine.rollout(ID).unwrap();
    assert!(
        root.with_scopes().all(|r| r.phase() == Phase::Off),
        "every scope is OFF"
    );
    for d in &contained {
        assert_eq!(d.at, trip.at);
        assert!(
            d.reason.contains("segment `enterprise` tripped"),
            "{}",
            d.reason
        );
    }
    for s in &scopes {
        assert_eq!(l.phase(s), Phase::Off, "{s}");
    }
    // The wave that had not started never does.
    assert!(l
        .of(&scope(None, Some("us")))
        .iter()
        .all(|d| d.to == Phase::Off));
}

#[test]
fn with_rollback_scope_scope_only_the_tripped_scope_rolls_back_and_waves_stop() {
    let mut l = Loop::new(policy(&format!("rollback_scope = \"scope\"\n{WAVES}")));
    let enterprise = scope(Some("enterprise"), None);
    let us = scope(None, Some("us"));
    let scopes = [
        Scope::DEFAULT,
        enterprise.clone(),
        scope(None, Some("eu")),
        us.clone(),
    ];
    l.run(T0, T0 + 80_000, &scopes, |s, _| *s == enterprise);
    let rollbacks: Vec<&Decision> = l
        .published
        .iter()
        .filter(|d| d.action == Action::Rollback)
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert_eq!(rollbacks[0].scope, enterprise);
    // The others carry on to FULL; us, in the wave after eu, stays stopped.
    assert_eq!(l.phase(&Scope::DEFAULT), Phase::Full);
    assert_eq!(l.phase(&scope(None, Some("eu"))), Phase::Full);
    assert_eq!(l.phase(&us), Phase::Off);
    assert!(l.engine.rollout(ID).unwrap().scoped(&us).unwrap().waiting());
    // An operator's RETRY of the tripped scope lifts the halt: the next wave starts.
    let at = l.events.last().unwrap().timestamp;
    l.command(
        &Command::new(ID, CommandKind::Retry, "ana", "fixed", at).for_scope(enterprise.clone()),
    )
    .unwrap();
    l.run(at + 10, at + 5_000, &scopes, healthy);
    assert_ne!(l.phase(&us), Phase::Off);
}

#[test]
fn commands_address_one_scope_a_region_or_the_whole_rollout() {
    let mut l = Loop::new(policy(WAVES));
    let us = scope(None, Some("us"));
    let scopes = [
        Scope::DEFAULT,
        scope(None, Some("eu")),
        us.clone(),
        scope(Some("enterprise"), Some("us")),
    ];
    l.run(T0, T0 + 2_000, &scopes, healthy);
    // Pause the US wave before it starts (every scope of region us).
    let before = l.published.len();
    l.command(
        &Command::new(ID, CommandKind::Pause, "ana", "hold US", T0 + 2_000)
            .for_scope(scope(None, Some("us"))),
    )
    .unwrap();
    let paused: Vec<&Decision> = l.published[before..].iter().collect();
    assert_eq!(
        paused
            .iter()
            .map(|d| (d.action, d.scope.clone()))
            .collect::<Vec<_>>(),
        [
            (Action::Pause, us.clone()),
            (Action::Pause, scope(Some("enterprise"), Some("us"))),
            (Action::Pause, scope(Some("internal"), Some("us"))),
        ],
        "every scope of region us but the excluded one"
    );
    l.run(T0 + 2_010, T0 + 60_000, &scopes, healthy);
    assert_eq!(l.phase(&scope(None, Some("eu"))), Phase::Full);
    assert_eq!(l.phase(&us), Phase::Off, "a paused wave does not start");
    let before = l.published.len();
    l.command(
        &Command::new(ID, CommandKind::Resume, "ana", "go", T0 + 60_000).for_scope(us.clone()),
    )
    .unwrap();
    // Resumed, and the wave (soaked long ago) starts at once: us at PROBE, internal users of
    // us at FULL; enterprise in us still trails us.
    let resumed: Vec<(Action, Phase, Scope)> = l.published[before..]
        .iter()
        .map(|d| (d.action, d.to, d.scope.clone()))
        .collect();
    assert!(
        resumed.contains(&(Action::Start, Phase::Probe, us.clone())),
        "{resumed:?}"
    );
    assert!(
        resumed.contains(&(
            Action::Start,
            Phase::Full,
            scope(Some("internal"), Some("us"))
        )),
        "{resumed:?}"
    );
    assert_eq!(l.phase(&scope(Some("enterprise"), Some("us"))), Phase::Off);
    // Refusals: an unknown scope, and START/RETIRE aimed at a scope.
    let err = l
        .command(
            &Command::new(ID, CommandKind::Pause, "ana", "", T0 + 60_000)
                .for_scope(scope(None, Some("mars"))),
        )
        .unwrap_err();
    assert!(matches!(err, CommandError::UnknownScope { .. }), "{err}");
    let err = l
        .command(
            &Command::new(ID, CommandKind::Start, "ana", "", T0 + 60_000).for_scope(us.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(err, CommandError::WholeRolloutOnly { .. }),
        "{err}"
    );
    let err = l
        .command(
            &Command::new(ID, CommandKind::Retry, "ana", "", T0 + 60_000)
                .for_scope(scope(Some("banned"), None)),
        )
        .unwrap_err();
    assert!(matches!(err, CommandError::NotAllowed { .. }), "{err}");
    // ABORT of the whole rollout rolls back every started scope; RETIRE then retires every row.
    let before = l.published.len();
    l.command(&Command::new(
        ID,
        CommandKind::Abort,
        "ana",
        "stop",
        T0 + 60_000,
    ))
    .unwrap();
    let aborted: Vec<&Decision> = l.published[before..].iter().collect();
    assert!(aborted
        .iter()
        .all(|d| d.action == Action::Rollback && d.cause == Cause::Operator));
    assert!(aborted.len() >= 3, "{aborted:?}");
    let rows = 1 + l.engine.rollout(ID).unwrap().scopes().count();
    let before = l.published.len();
    l.command(&Command::new(
        ID,
        CommandKind::Retire,
        "ana",
        "done",
        T0 + 60_000,
    ))
    .unwrap();
    let retired: Vec<&Decision> = l.published[before..].iter().collect();
    assert_eq!(retired.len(), rows);
    assert!(retired.iter().all(|d| d.is_tombstone()));
    assert!(l.engine.rollout(ID).is_none());
}

/// What a restarted processor holds after `prefix`: the latest decision per row (a RETIRE is
/// a tombstone) and the prefix's events replayed without judging.
fn restored(p: &Policy, prefix: &[ExecutionEvent], published: &[Decision]) -> Engine {
    let mut table = LatestDecisions::new();
    for d in published {
        table.apply(&d.key(), (!d.is_tombstone()).then(|| d.clone()));
    }
    let mut e = engine(p.clone());
    for d in table.values() {
        e.restore(d).unwrap();
    }
    for ev in prefix {
        e.replay_event(ev);
    }
    e
}

#[test]
fn a_restore_at_any_point_decides_every_scope_as_the_uninterrupted_engine() {
    for rollback_scope in ["rollout", "scope"] {
        let p = policy(&format!("rollback_scope = \"{rollback_scope}\"\n{WAVES}"));
        let enterprise_us = scope(Some("enterprise"), Some("us"));
        let scopes = all_scopes();
        let mut l = Loop::new(p.clone());
        l.run(T0, T0 + 90_000, &scopes, |s, t| {
            *s == enterprise_us && t >= T0 + 60_000
        });
        let events = l.events.clone();
        assert!(l.published.iter().any(|d| d.action == Action::Rollback));
        assert!(l
            .published
            .iter()
            .any(|d| d.scope.region.as_deref() == Some("us") && d.to == Phase::Full));
        // Decisions published before each event: the live run's, replayed.
        let mut live = engine(p.clone());
        let mut published: Vec<Decision> = Vec::new();
        let mut published_before = Vec::with_capacity(events.len());
        for e in &events {
            published_before.push(published.len());
            let mut out = Vec::new();
            live.apply_event(e, &mut out);
            published.extend(out.into_iter().filter(Decision::is_published));
        }
        assert_eq!(published, l.published);
        // Every decision goes through the wire format unchanged.
        for d in &published {
            for enc in [Encoding::AvroSingleObject, Encoding::Json] {
                assert_eq!(
                    &codec::decode_decision(&codec::encode_decision(d, enc), enc).unwrap(),
                    d
                );
            }
        }
        for cut in [
            1,
            700,
            5_003,
            14_000,
            33_333,
            48_000,
            61_234,
            events.len() - 5,
        ] {
            let mut again = restored(&p, &events[..cut], &published[..published_before[cut]]);
            let mut after = Vec::new();
            for e in &events[cut..] {
                let mut out = Vec::new();
                again.apply_event(e, &mut out);
                after.extend(out.into_iter().filter(Decision::is_published));
            }
            assert_eq!(
                after,
                published[published_before[cut]..],
                "rollback_scope = {rollback_scope}, cut at event {cut}"
            );
        }
    }
}

/// The `simulate --scenario segments-regions` set under the shipped policy, in a closed loop:
/// eu-west first, the second wave after its soak, internal users at FULL from the start,
/// enterprise in us-east degraded and rolled back alone.
#[test]
fn the_simulated_segments_and_regions_scenario_plays_as_documented() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/config/policies/segments-regions.toml"),
    )
    .unwrap();
    let p = Policy::from_toml(&text).unwrap();
    let scenarios = rollout_breaker::sim::segments_and_regions(
        "sim",
        100,
        600_000,
        T0,
        rollout_breaker::sim::Profile::new(0.99, 900.0, 100.0),
    );
    let run = rollout_breaker::sim::closed_loop_all(scenarios, &p);
    let ds: Vec<&Decision> = run.published.iter().map(|(_, d)| d).collect();
    let of = |seg: Option<&str>, region: &str| -> Vec<&Decision> {
        let s = scope(seg, Some(region));
        ds.iter().copied().filter(|d| d.scope == s).collect()
    };
    let full_at = |rows: &[&Decision]| {
        rows.iter()
            .find(|d| d.to == Phase::Full)
            .and_then(|d| d.phase_started_at)
    };
    let eu_full = full_at(&of(None, "eu-west")).expect("eu-west reaches FULL");
    for region in ["us-east", "ap-south"] {
        let rows = of(None, region);
        let start = rows
            .iter()
            .find(|d| d.action == Action::Start && d.to == Phase::Probe)
            .unwrap_or_else(|| panic!("{region} starts: {rows:#?}"));
        assert!(start.at >= eu_full + 120_000, "{region} before the soak");
        assert!(full_at(&rows).is_some(), "{region} reaches FULL");
    }
    assert_eq!(of(Some("internal"), "eu-west")[0].to, Phase::Full);
    let rollbacks: Vec<&&Decision> = ds.iter().filter(|d| d.action == Action::Rollback).collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    assert_eq!(
        rollbacks[0].scope,
        scope(Some("enterprise"), Some("us-east"))
    );
    assert!(run.events.iter().all(|e| e.region.is_some()));
}

#[test]
fn a_whole_rollout_abort_reaches_the_scopes_that_carry_on_after_the_rollout_row_tripped() {
    let mut l = Loop::new(policy(&format!("rollback_scope = \"scope\"\n{WAVES}")));
    let eu = scope(None, Some("eu"));
    let scopes = [Scope::DEFAULT, eu.clone()];
    // The rollout's own (unscoped) traffic fails: only its row rolls back.
    l.run(T0, T0 + 30_000, &scopes, |s, _| s.is_default());
    assert_eq!(l.phase(&Scope::DEFAULT), Phase::Off);
    assert_eq!(l.phase(&eu), Phase::Full);
    let internal = scope(Some("internal"), None);
    assert_eq!(l.phase(&internal), Phase::Full);
    let before = l.published.len();
    l.command(&Command::new(
        ID,
        CommandKind::Abort,
        "ana",
        "stop everywhere",
        T0 + 30_000,
    ))
    .unwrap();
    let aborted: Vec<Scope> = l.published[before..]
        .iter()
        .map(|d| d.scope.clone())
        .collect();
    assert!(
        aborted.contains(&eu) && aborted.contains(&internal),
        "{aborted:?}"
    );
    assert!(!aborted.contains(&Scope::DEFAULT), "already OFF");
    let root = l.engine.rollout(ID).unwrap();
    assert!(root.with_scopes().all(|r| r.phase() == Phase::Off));
    // Nothing left to abort: refused.
    let err = l
        .command(&Command::new(
            ID,
            CommandKind::Abort,
            "ana",
            "again",
            T0 + 30_000,
        ))
        .unwrap_err();
    assert!(matches!(err, CommandError::NotAllowed { .. }), "{err}");
}

mod property {
    //! Restore exactness with scopes under generated input: events in every scope (and out of
    //! scope), quality drifting over time, and commands for the whole rollout, a region, a
    //! segment or one scope, with operators' clocks ahead or behind.

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum In {
        Event(ExecutionEvent),
        Command(Box<Command>),
    }

    const KINDS: [CommandKind; 6] = [
        CommandKind::Start,
        CommandKind::Pause,
        CommandKind::Resume,
        CommandKind::Promote,
        CommandKind::Abort,
        CommandKind::Retry,
    ];
    const SEGMENTS: [Option<&str>; 5] = [
        None,
        None,
        Some("internal"),
        Some("enterprise"),
        Some("banned"),
    ];
    const REGIONS: [Option<&str>; 4] = [None, Some("eu"), Some("us"), Some("mars")];

    fn log() -> impl Strategy<Value = Vec<In>> {
        prop::collection::vec(
            (
                0usize..5,
                0usize..4,
                0u8..10,
                1i64..40,
                0.0f64..1.0,
                0usize..300,
                -3_000i64..3_000,
            ),
            500..3_000,
        )
        .prop_map(|steps| {
            let mut t = T0;
            steps
                .into_iter()
                .map(|(seg, region, v, dt, p, cmd, skew)| {
                    t += dt;
                    let (segment, region) = (SEGMENTS[seg], REGIONS[region]);
                    if cmd < KINDS.len() {
                        let scope = match cmd % 3 {
                            0 => Scope::DEFAULT,
                            1 => Scope::new(None, region),
                            _ => Scope::new(segment, region),
                        };
                        let c =
                            Command::new(ID, KINDS[cmd], "ana", "test", t + skew).for_scope(scope);
                        return In::Command(Box::new(c));
                    }
                    let variant = if v < 4 {
                        Variant::Candidate
                    } else {
                        Variant::Baseline
                    };
                    let quality = [0.99, 0.97, 0.5][(((t - T0) / 10_000) % 3) as usize];
                    let mut e = ExecutionEvent::new(
                        ID,
                        variant,
                        p < quality,
                        LatencyMs::new(100.0).unwrap(),
                        t,
                    );
                    e.segment = segment.map(str::to_owned);
                    e.region = region.map(str::to_owned);
                    In::Event(e)
                })
                .collect()
        })
    }

    fn apply(engine: &mut Engine, input: &In, out: &mut Vec<Decision>) {
        match input {
            In::Event(e) => {
                let mut ds = Vec::new();
                engine.apply_event(e, &mut ds);
                out.extend(ds.into_iter().filter(Decision::is_published));
            }
            In::Command(c) => {
                let _ = engine.apply_command_into(c, out);
            }
        }
    }

    /// The generated logs do exercise scopes: waves open, scopes advance and roll back, and
    /// operators' scoped commands apply.
    #[test]
    fn generated_logs_exercise_waves_rollbacks_and_scoped_commands() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut waves, mut scoped_advances, mut rollbacks, mut scoped_operator) = (0, 0, 0, 0);
        for _ in 0..20 {
            let log = log().new_tree(&mut runner).unwrap().current();
            let mut e = engine(policy(WAVES));
            let mut out = Vec::new();
            for input in &log {
                apply(&mut e, input, &mut out);
            }
            for d in &out {
                let us = d.scope.region.as_deref() == Some("us");
                waves += usize::from(us && d.action == Action::Start && d.to != Phase::Off);
                scoped_advances +=
                    usize::from(!d.scope.is_default() && d.action == Action::Advance);
                rollbacks +=
                    usize::from(d.action == Action::Rollback && d.cause == Cause::Automatic);
                scoped_operator += usize::from(!d.scope.is_default() && d.cause == Cause::Operator);
            }
        }
        assert!(waves > 0 && scoped_advances > 0 && rollbacks > 0 && scoped_operator > 0,
            "waves {waves}, scoped advances {scoped_advances}, rollbacks {rollbacks}, scoped operator {scoped_operator}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn restore_plus_replay_decides_every_scope_like_the_uninterrupted_engine(
            log in log(),
            cut in 0.0f64..1.0,
            per_scope in any::<bool>(),
        ) {
            let mode = if per_scope { "scope" } else { "rollout" };
            let p = policy(&format!("rollback_scope = \"{mode}\"\n{WAVES}"));
            let k = (log.len() as f64 * cut) as usize;
            let mut live = engine(p.clone());
            let mut before = Vec::new();
            for input in &log[..k] {
                apply(&mut live, input, &mut before);
            }
            let events: Vec<ExecutionEvent> = log[..k]
                .iter()
                .filter_map(|i| match i {
                    In::Event(e) => Some(e.clone()),
                    In::Command(_) => None,
                })
                .collect();
            let mut again = restored(&p, &events, &before);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for input in &log[k..] {
                apply(&mut live, input, &mut a);
                apply(&mut again, input, &mut b);
            }
            prop_assert_eq!(a, b);
        }
    }
}
