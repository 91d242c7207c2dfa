//! Restore exactness in the pure engine: a processor that restarts after any prefix of its
//! input rebuilds each rollout from its latest published decision plus a replay of the
//! events it had processed, and must then decide exactly what an uninterrupted engine decides.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rollout_breaker::engine::{
    Command, CommandKind, Decision, Engine, EngineOptions, ExecutionEvent, LatencyMs,
    LatestDecisions, Phase, Policy, Variant,
};

const T0: i64 = 1_764_201_600_000;

// Test inputs: the size difference does not matter here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum In {
    Event(ExecutionEvent),
    Command(Command),
}

const KINDS: [CommandKind; 7] = CommandKind::ALL;

/// Three rollouts, quality drifting over time, commands of every kind sprinkled in with
/// timestamps a little ahead of or behind the events (operators' clocks are not the agents').
/// RETIRE is for rollouts whose agents no longer report: rollout-2 stops reporting after 70 %
/// of the log and is then aborted and retired (events of a retired id would start a new
/// rollout, whose first interval a restore cannot tell apart from the retired one's).
fn input_log() -> impl Strategy<Value = Vec<In>> {
    prop::collection::vec(
        (
            0u8..3,
            0u8..10,
            1i64..300,
            0.0f64..1.0,
            100.0f64..3_000.0,
            0usize..40,
            -20_000i64..20_000,
        ),
        100..900,
    )
    .prop_map(|steps| {
        let mut t = T0;
        let n = steps.len();
        let mut log: Vec<In> = steps
            .into_iter()
            .enumerate()
            .filter(|(i, step)| step.0 != 2 || *i < n * 7 / 10)
            .map(|(_, (r, v, dt, p, lat, cmd, skew))| {
                t += dt;
                let id = format!("rollout-{r}");
                if cmd < KINDS.len() && KINDS[cmd] != CommandKind::Retire {
                    let mut c = Command::new(&id, KINDS[cmd], "ana", "test", t + skew);
                    if c.kind == CommandKind::Start && skew > 0 {
                        c.policy = Some(Policy {
                            min_samples_per_phase: 5,
                            ..Policy::threshold()
                        });
                        c.candidate_version = Some("v2".into());
                    }
                    return In::Command(c);
                }
                let variant = if v < 3 {
                    Variant::Candidate
                } else {
                    Variant::Baseline
                };
                let phase_of_run = ((t - T0) / 60_000) % 3;
                let success = p < [0.99, 0.9, 0.6][phase_of_run as usize];
                In::Event(ExecutionEvent::new(
                    id,
                    variant,
                    success,
                    LatencyMs::new(lat).unwrap(),
                    t,
                ))
            })
            .collect();
        for kind in [CommandKind::Abort, CommandKind::Retire] {
            t += 1;
            log.push(In::Command(Command::new(
                "rollout-2",
                kind,
                "ana",
                "done",
                t,
            )));
        }
        log
    })
}

fn engine() -> Engine {
    Engine::new(Policy::threshold(), EngineOptions::default())
}

/// The default policy with automatic retry on.
fn auto_retry_engine() -> Engine {
    let policy = Policy {
        auto_retry: true,
        ..Policy::default()
    };
    Engine::new(policy, EngineOptions::default())
}

/// The log with version labels: baselines `v1`, candidates a new label every 30 s, every
/// other one failing all its tasks (a fleet shipping a bad build, then a fix, ...), so the
/// breaker trips and automatic retries follow.
fn labelled(mut log: Vec<In>) -> Vec<In> {
    for input in &mut log {
        if let In::Event(e) = input {
            let build = (e.timestamp - T0) / 30_000;
            e.version = match e.variant {
                Variant::Baseline => "v1".into(),
                Variant::Candidate => format!("v2.{build}").into(),
            };
            if e.variant == Variant::Candidate && build % 2 == 1 {
                e.success = false;
            }
        }
    }
    log
}

fn apply(engine: &mut Engine, input: &In, out: &mut Vec<Decision>) {
    match input {
        In::Event(e) => {
            let mut ds = Vec::new();
            engine.apply_event(e, &mut ds);
            out.extend(ds.into_iter().filter(Decision::is_published));
        }
        In::Command(c) => {
            if let Ok(d) = engine.apply_command(c) {
                out.push(d);
            }
        }
    }
}

/// What a restarted processor holds after the prefix: the latest decision per rollout (a
/// RETIRE is a tombstone) and the prefix's events replayed without judging.
fn restored_into(mut e: Engine, prefix: &[In], published: &[Decision]) -> Engine {
    let mut table = LatestDecisions::new();
    for d in published {
        let value = (!d.is_tombstone()).then(|| d.clone());
        table.apply(&d.rollout_id, value);
    }
    for d in table.values() {
        e.restore(d).unwrap();
    }
    for input in prefix {
        if let In::Event(ev) = input {
            e.replay_event(ev);
        }
    }
    e
}

/// Decisions after the cut of `log` at `cut`: from an engine that ran the whole log, and from
/// one restored (as a restarted processor is) from what the first ran before the cut.
fn after_cut(fresh: impl Fn() -> Engine, log: &[In], cut: f64) -> (Vec<Decision>, Vec<Decision>) {
    let k = (log.len() as f64 * cut) as usize;
    let mut live = fresh();
    let mut before = Vec::new();
    for input in &log[..k] {
        apply(&mut live, input, &mut before);
    }
    let mut again = restored_into(fresh(), &log[..k], &before);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for input in &log[k..] {
        apply(&mut live, input, &mut a);
        apply(&mut again, input, &mut b);
    }
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn restore_plus_replay_decides_like_the_uninterrupted_engine(
        log in input_log(),
        cut in 0.0f64..1.0,
    ) {
        let (live, restored) = after_cut(engine, &log, cut);
        prop_assert_eq!(live, restored);
    }

    /// The statistical rule (the default) on logs whose candidates fail every other build:
    /// its per-phase statistics trip the breaker, and a restore must rebuild them exactly even
    /// when an operator's command carries a time older than the buckets already closed.
    #[test]
    fn restore_is_exact_under_the_statistical_rule(log in input_log(), cut in 0.0f64..1.0) {
        let fresh = || Engine::new(Policy::default(), EngineOptions::default());
        let (live, restored) = after_cut(fresh, &labelled(log), cut);
        prop_assert_eq!(live, restored);
    }

    #[test]
    fn restore_is_exact_with_automatic_retry(log in input_log(), cut in 0.0f64..1.0) {
        let (live, restored) = after_cut(auto_retry_engine, &labelled(log), cut);
        prop_assert_eq!(live, restored);
    }
}

#[test]
fn labelled_logs_exercise_automatic_retries() {
    // Guards the property above: automatic STARTs after the first (retries) do happen.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut retries = 0;
    for _ in 0..64 {
        let log = labelled(input_log().new_tree(&mut runner).unwrap().current());
        let mut e = auto_retry_engine();
        let mut out = Vec::new();
        for input in &log {
            apply(&mut e, input, &mut out);
        }
        retries += out
            .iter()
            .filter(|d| d.reason.starts_with("auto retry:"))
            .count();
    }
    assert!(retries > 0, "no automatic retry in 64 generated logs");
}

#[test]
fn generated_logs_exercise_every_command_and_phase_change() {
    // Guards the property above against a generator that never reaches the interesting cases.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let log = input_log().new_tree(&mut runner).unwrap().current();
        let mut e = engine();
        let mut out = Vec::new();
        for input in &log {
            apply(&mut e, input, &mut out);
        }
        for d in out {
            seen.insert(format!("{:?}", d.action));
        }
    }
    for action in ["Start", "Advance", "Rollback", "Pause", "Resume", "Retire"] {
        assert!(
            seen.contains(action),
            "no {action} in generated logs: {seen:?}"
        );
    }
}

#[test]
fn start_wins_over_an_auto_start() {
    let mut e = engine();
    let ev = ExecutionEvent::new(
        "r",
        Variant::Baseline,
        true,
        LatencyMs::new(10.0).unwrap(),
        T0,
    );
    let auto = e.apply(&ev);
    assert_eq!(auto.len(), 1);
    let mut start = Command::new("r", CommandKind::Start, "ana", "v2 with its policy", T0 + 5);
    start.policy = Some(Policy {
        initial_phase: Phase::Small,
        ..Policy::threshold()
    });
    start.candidate_version = Some("v2".into());
    let d = e
        .apply_command(&start)
        .expect("START after an auto-start is applied");
    assert_eq!((d.sequence, d.from, d.to), (2, Phase::Probe, Phase::Small));
    assert_eq!(d.candidate_version.as_deref(), Some("v2"));
    assert!(d.policy_json.is_some());
    // Once the operator's START (or anything else) is published, another START is refused.
    assert!(e.apply_command(&start).is_err());
}

#[test]
fn retire_forgets_a_finished_rollout_only() {
    let mut e = engine();
    let start = Command::new("r", CommandKind::Start, "ana", "", T0);
    e.apply_command(&start).unwrap();
    let retire = Command::new("r", CommandKind::Retire, "ana", "done", T0 + 1);
    assert!(e.apply_command(&retire).is_err(), "refused at PROBE");
    let abort = Command::new("r", CommandKind::Abort, "ana", "", T0 + 2);
    e.apply_command(&abort).unwrap();
    let d = e.apply_command(&retire).unwrap();
    assert!(d.is_tombstone());
    assert!(e.rollout("r").is_none());
    assert!(e.is_empty());
}

/// Policies stored by versions before the statistical rule became the default left `rule` out
/// when it was "threshold": such a decision restores under the threshold rule, whatever the
/// processor's default now is; one that names its rule keeps it.
#[test]
fn a_stored_policy_without_a_rule_restores_under_the_threshold_rule() {
    use rollout_breaker::engine::stats::Rule;
    let mut e = engine();
    let mut start = Command::new("r", CommandKind::Start, "ana", "go", T0);
    start.policy = Some(Policy {
        max_latency_ms: 1_500.0,
        ..Policy::threshold()
    });
    let d = e.apply_command(&start).unwrap();
    let stored = d.policy_json.clone().expect("a custom policy is stored");
    assert!(stored.contains(r#""rule":"threshold""#), "{stored}");

    let mut old = d.clone();
    let mut value: serde_json::Value = serde_json::from_str(&stored).unwrap();
    value.as_object_mut().unwrap().remove("rule");
    old.policy_json = Some(value.to_string());
    let mut restored = Engine::new(Policy::default(), EngineOptions::default());
    assert_eq!(Policy::default().rule, Rule::Statistical);
    restored.restore(&old).unwrap();
    let policy = restored.rollout("r").unwrap().policy();
    assert_eq!(
        (policy.rule, policy.max_latency_ms),
        (Rule::Threshold, 1_500.0)
    );

    let mut named = d;
    named.policy_json = Some(stored.replace(r#""rule":"threshold""#, r#""rule":"statistical""#));
    let mut restored = Engine::new(Policy::threshold(), EngineOptions::default());
    restored.restore(&named).unwrap();
    assert_eq!(
        restored.rollout("r").unwrap().policy().rule,
        Rule::Statistical
    );
}
