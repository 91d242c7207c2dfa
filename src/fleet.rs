//! A simulated fleet of agents: plays [`crate::sim`] scenarios against a live
//! [`DecisionTable`], so the traffic split follows the published phases as it would in
//! production, and emits every execution to the events topic through an [`EventSink`].
//!
//! Simulated time runs `speed` times faster than the wall clock (event time stays exact: every
//! event carries its scenario timestamp), so a two-minute scenario plays in seconds.

use std::time::{Duration, Instant};

use crate::agent::EventSink;
use crate::engine::{Phase, TrafficPercent, Variant};
use crate::router::{DecisionTable, TableState};
use crate::sim::{Scenario, TrafficGen};

/// Counters of one scenario's traffic so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScenarioProgress {
    /// Scenario name.
    pub name: String,
    /// Rollout id.
    pub rollout_id: String,
    /// Events emitted.
    pub emitted: u64,
    /// Of which served by the candidate.
    pub candidate: u64,
    /// Events the sink refused (queue full).
    pub refused: u64,
    /// Event time of the last event emitted (ms since the epoch).
    pub sim_time_ms: i64,
    /// Phase and share the router served the last request with.
    pub phase: Option<Phase>,
    /// Candidate share the router served the last request with.
    pub traffic: TrafficPercent,
    /// Whether every request of the scenario was made.
    pub done: bool,
}

/// Most simulated time one round of [`drive`] emits.
const MAX_STEP_MS: i64 = 1_000;

/// Plays `scenarios` concurrently until all are done or `stop` returns true (checked about
/// every 20 ms with the progress so far). `on_tick` is called about once a second.
pub async fn drive(
    scenarios: Vec<Scenario>,
    table: &DecisionTable,
    sink: &dyn EventSink,
    speed: f64,
    mut on_tick: impl FnMut(&[ScenarioProgress]),
    mut stop: impl FnMut(&[ScenarioProgress]) -> bool,
) -> Vec<ScenarioProgress> {
    let mut gens: Vec<TrafficGen> = scenarios.into_iter().map(TrafficGen::new).collect();
    let mut progress: Vec<ScenarioProgress> = gens
        .iter()
        .map(|g| ScenarioProgress {
            name: g.scenario().name.clone(),
            rollout_id: g.scenario().rollout_id.clone(),
            ..ScenarioProgress::default()
        })
        .collect();
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut sim_elapsed = 0i64;
    loop {
        // Simulated time follows the clock, but a starved loop (a busy machine) catches up at
        // most `MAX_STEP_MS` of simulated time per round: the routers' table gets a chance to
        // follow each decision, as live routers would, instead of a burst of simulated seconds
        // being routed on a stale phase (which the fail-safe on silence rightly reads as a
        // candidate that stopped reporting).
        let target = (started.elapsed().as_secs_f64() * speed * 1_000.0) as i64;
        sim_elapsed = target.min(sim_elapsed + MAX_STEP_MS);
        for (gen, p) in gens.iter_mut().zip(progress.iter_mut()) {
            let until = gen.scenario().start_ms + sim_elapsed;
            while !gen.is_done() && gen.next_time() <= until {
                let s = gen.scenario();
                let entry =
                    table.entry_scoped(&p.rollout_id, s.segment.as_deref(), s.region.as_deref());
                let (phase, traffic) = match (table.state(), entry) {
                    (TableState::Ready, Some(e)) => (e.phase, e.traffic),
                    // Not loaded, stale or unknown: routers serve the baseline.
                    _ => (Phase::Off, TrafficPercent::ZERO),
                };
                let Some(event) = gen.next_event(phase, traffic) else {
                    break;
                };
                p.phase = Some(phase);
                p.traffic = traffic;
                p.sim_time_ms = event.timestamp;
                match sink.emit(&event) {
                    Ok(()) => {
                        p.emitted += 1;
                        p.candidate += u64::from(event.variant == Variant::Candidate);
                    }
                    Err(_) => p.refused += 1,
                }
            }
            p.done = gen.is_done();
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            on_tick(&progress);
        }
        if progress.iter().all(|p| p.done) || stop(&progress) {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
