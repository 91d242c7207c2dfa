//! Golden files: an input event log in `tests/fixtures/engine/`, the expected decisions beside
//! it. Any change to what the engine decides, or to the reason it gives, fails here. After an
//! intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test engine_golden` and review
//! the diff.

use std::path::PathBuf;

use rollout_breaker::engine::{
    Decision, Engine, EngineOptions, ExecutionEvent, Policy, Schedule, TrafficPercent,
};
use rollout_breaker::sim::Scenario;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/engine")
        .join(name)
}

fn policy() -> Policy {
    Policy {
        schedule: Schedule {
            probe: TrafficPercent::new(10.0).unwrap(),
            small: TrafficPercent::new(25.0).unwrap(),
            medium: TrafficPercent::new(50.0).unwrap(),
        },
        ..Policy::threshold()
    }
}

fn scenarios() -> Vec<(&'static str, Scenario)> {
    let mut good = Scenario::successful_rollout("golden-good");
    let mut bad = Scenario::automatic_rollback("golden-bad");
    for s in [&mut good, &mut bad] {
        s.requests_per_sec = 20;
        s.duration_ms = 80_000;
    }
    vec![("scenario1", good), ("scenario2", bad)]
}

/// Closed-loop generation of the event log (used only to (re)write the fixture).
fn generate(scenario: Scenario) -> Vec<ExecutionEvent> {
    rollout_breaker::sim::closed_loop(scenario, &policy()).events
}

fn decide(events: &[ExecutionEvent]) -> Vec<Decision> {
    let mut engine = Engine::new(policy(), EngineOptions::default());
    events
        .iter()
        .flat_map(|e| engine.apply(e))
        .filter(Decision::is_published)
        .collect()
}

fn to_jsonl<T: serde::Serialize>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| serde_json::to_string(i).unwrap() + "\n")
        .collect()
}

#[test]
fn decisions_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, scenario) in scenarios() {
        let events_path = fixture(&format!("{name}.events.jsonl"));
        let decisions_path = fixture(&format!("{name}.decisions.jsonl"));
        if update {
            let events = generate(scenario);
            std::fs::write(&events_path, to_jsonl(&events)).unwrap();
            std::fs::write(&decisions_path, to_jsonl(&decide(&events))).unwrap();
        }
        let events: Vec<ExecutionEvent> = std::fs::read_to_string(&events_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected = std::fs::read_to_string(&decisions_path).unwrap();
        let actual = to_jsonl(&decide(&events));
        assert_eq!(
            actual,
            expected,
            "{name}: decisions differ from {}",
            decisions_path.display()
        );
        assert!(
            expected.lines().count() >= 3,
            "{name}: golden file has too few decisions"
        );
    }
}
