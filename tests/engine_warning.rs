//! Early warning inside the engine (statistical rule): WARNING decisions keep the phase and
//! the traffic, hold the advance while raised, and survive a restart exactly: a processor
//! restored from its latest decision (a WARNING included) plus a silent replay decides what an
//! uninterrupted one decides, and replaying the whole log decides the same twice.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rollout_breaker::codec::{Encoding, WireRecord};
use rollout_breaker::engine::stats::Rule;
use rollout_breaker::engine::{
    Action, Command, CommandKind, Decision, Engine, EngineOptions, ExecutionEvent, LatencyMs,
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

/// The statistical rule, starting at SMALL, with a low warning level (ARL bound 3 minutes of
/// buckets), so a short log holds many raises and clears.
fn policy() -> Policy {
    let mut p = Policy {
        rule: Rule::Statistical,
        initial_phase: Phase::Small,
        ..Policy::default()
    };
    p.statistical.warning_arl_hours = 0.05;
    p
}

fn engine() -> Engine {
    Engine::new(policy(), EngineOptions::default())
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

/// 40 minutes at 20 requests/s, routed as a router would (the candidate's share of the phase
/// last published); every 3 minutes the candidate completes 0.75 for 30 s, 0.95 otherwise, against
/// a 0.95 baseline, and an operator retries it every 3 minutes after a rollback (a RETRY at
/// any other time is refused and decides nothing).
fn input_log(seed: u64) -> Vec<In> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut live = engine();
    let mut log = Vec::new();
    let mut share = 0.0;
    let mut t = 0.0f64;
    let mut next_retry = 180_000;
    let mut out = Vec::new();
    while t < 2_400_000.0 {
        t += -(1.0 - rng.random::<f64>()).ln() * 50.0;
        let now = t as i64;
        if now >= next_retry {
            next_retry += 180_000;
            let c = Command::new("w", CommandKind::Retry, "ana", "again", T0 + now);
            let input = In::Command(c);
            out.clear();
            apply(&mut live, &input, &mut out);
            if let Some(d) = out.last() {
                share = live.default_policy().schedule.percent(d.to).percent() / 100.0;
            }
            log.push(input);
        }
        let candidate = rng.random::<f64>() < share;
        let p = if candidate && now % 180_000 < 30_000 {
            0.75
        } else {
            0.95
        };
        let variant = if candidate {
            Variant::Candidate
        } else {
            Variant::Baseline
        };
        let latency = LatencyMs::new(600.0 + 1000.0 * rng.random::<f64>()).unwrap();
        let e = ExecutionEvent::new("w", variant, rng.random::<f64>() < p, latency, T0 + now);
        let input = In::Event(e);
        out.clear();
        apply(&mut live, &input, &mut out);
        if let Some(d) = out.last() {
            share = live.default_policy().schedule.percent(d.to).percent() / 100.0;
        }
        log.push(input);
    }
    log
}

/// A restarted processor: the latest decision per rollout, then the prefix's events replayed
/// without judging.
fn restored(prefix: &[In], published: &[Decision]) -> Engine {
    let mut table = LatestDecisions::new();
    for d in published {
        table.apply(&d.rollout_id, (!d.is_tombstone()).then(|| d.clone()));
    }
    let mut e = engine();
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

fn run(log: &[In]) -> (Vec<Decision>, Vec<usize>) {
    let mut e = engine();
    let (mut all, mut produced_by) = (Vec::new(), Vec::new());
    for (i, input) in log.iter().enumerate() {
        let before = all.len();
        apply(&mut e, input, &mut all);
        produced_by.extend(std::iter::repeat_n(i, all.len() - before));
    }
    (all, produced_by)
}

#[test]
fn warnings_keep_the_phase_hold_the_advance_and_round_trip() {
    let log = input_log(7);
    let (all, _) = run(&log);
    let raised = all
        .iter()
        .filter(|d| d.warning.as_ref().is_some_and(|w| !w.cleared))
        .count();
    let cleared = all
        .iter()
        .filter(|d| d.warning.as_ref().is_some_and(|w| w.cleared))
        .count();
    assert!(
        raised >= 3 && cleared >= 1,
        "raised {raised}, cleared {cleared}"
    );
    let schedule = policy().schedule;
    let mut active = std::collections::BTreeSet::new();
    let mut sequence = 0;
    for d in &all {
        assert_eq!(
            d.sequence,
            sequence + 1,
            "every published decision takes a number"
        );
        sequence = d.sequence;
        match (d.action, &d.warning) {
            (Action::Warning, Some(w)) => {
                assert_eq!((d.from, d.traffic), (d.to, schedule.percent(d.to)));
                assert!(matches!(d.to, Phase::Probe | Phase::Small | Phase::Medium));
                if w.cleared {
                    assert!(w.statistic < w.threshold / 2.0, "{w:?}");
                    assert!(active.remove(&w.metric), "{w:?} was not raised");
                } else {
                    assert!(w.statistic >= w.threshold, "{w:?}");
                    assert!(active.insert(w.metric.clone()), "{w:?} raised twice");
                }
                for enc in [Encoding::Json, Encoding::AvroSingleObject] {
                    assert_eq!(&Decision::decode(&d.encode(enc), enc).unwrap(), d);
                }
            }
            (Action::Warning, None) => panic!("a WARNING without its warning: {d:?}"),
            (_, Some(_)) => panic!("a warning on a {}: {d:?}", d.action),
            (Action::Advance, None) => {
                assert!(active.is_empty(), "advanced while warned: {d:?}");
            }
            _ => {}
        }
        // A phase change starts the new phase's detectors from zero.
        if d.from != d.to || d.action == Action::Start {
            active.clear();
        }
    }
}

#[test]
fn replay_is_deterministic_with_warnings_in_the_log() {
    let log = input_log(11);
    let (a, _) = run(&log);
    let (b, _) = run(&log);
    assert!(a.iter().any(|d| d.action == Action::Warning));
    assert_eq!(a, b);
}

#[test]
fn restore_is_exact_with_warnings_in_the_log() {
    for seed in [7, 8] {
        let log = input_log(seed);
        let (all, produced_by) = run(&log);
        // Cut right after inputs that published a WARNING (the restored decision is then a
        // WARNING), right after a clear, and at evenly spread points.
        let mut cuts: Vec<usize> = all
            .iter()
            .zip(&produced_by)
            .filter(|(d, _)| d.action == Action::Warning)
            .map(|(_, &i)| i + 1)
            .step_by(3)
            .take(6)
            .collect();
        cuts.extend((1..8).map(|k| log.len() * k / 8));
        let after_warning = cuts.len() - 7;
        assert!(
            after_warning >= 2,
            "seed {seed}: too few warnings to cut after"
        );
        for k in cuts {
            let mut live = engine();
            let mut before = Vec::new();
            for input in &log[..k] {
                apply(&mut live, input, &mut before);
            }
            let mut again = restored(&log[..k], &before);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for input in &log[k..] {
                apply(&mut live, input, &mut a);
                apply(&mut again, input, &mut b);
            }
            assert!(!a.is_empty());
            assert_eq!(a, b, "seed {seed}, restart after input {k}");
            // The per-phase state, detectors included, is the same bit for bit.
            assert_eq!(
                live.rollout("w").unwrap().phase_stats(),
                again.rollout("w").unwrap().phase_stats(),
                "seed {seed}, cut {k}"
            );
        }
    }
}
