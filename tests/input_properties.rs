//! Properties of what the processor takes from its input (admission + engine), the fail-safe
//! on silence included.

use proptest::prelude::*;
use rollout_breaker::codec::{self, Encoding, SchemaIds};
use rollout_breaker::engine::{
    Action, Engine, EngineOptions, ExecutionEvent, LatencyMs, Phase, Policy, Variant,
};
use rollout_breaker::input::admission::kafka_partition;
use rollout_breaker::input::{admit, AdmissionRules, Admitted, InputTopic, RecordView};

const T0: i64 = 1_764_201_600_000;

fn rules() -> AdmissionRules {
    AdmissionRules {
        partitions: 3,
        max_record_bytes: 10_000,
        max_clock_skew_ms: 60_000,
        events_encoding: Encoding::Json,
        commands_encoding: Encoding::Json,
        schema_ids: SchemaIds::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever producers stamp on their events, no admitted event moves a rollout's watermark
    /// further ahead of the log's own time than the skew bound.
    #[test]
    fn no_event_moves_the_watermark_beyond_the_skew_bound(
        records in prop::collection::vec((0i64..600_000, -7_200_000i64..7_200_000, any::<bool>()), 1..300),
    ) {
        let rules = rules();
        let mut engine = Engine::new(Policy::threshold(), EngineOptions::default());
        let id = "skewed";
        let partition = kafka_partition(id.as_bytes(), rules.partitions);
        let mut newest_record = i64::MIN;
        let mut out = Vec::new();
        for (record_offset, skew, ok) in records {
            let record_ts = T0 + record_offset;
            newest_record = newest_record.max(record_ts);
            let e = ExecutionEvent::new(id, Variant::Baseline, ok, LatencyMs::new(10.0).unwrap(), record_ts + skew);
            let bytes = codec::encode_event(&e, Encoding::Json);
            let view = RecordView {
                topic: InputTopic::Events,
                partition,
                key: Some(id.as_bytes()),
                payload: Some(&bytes),
                timestamp: Some(record_ts),
                relayed_command: false,
            };
            if let Ok(Admitted::Event(e)) = admit(&rules, &view) {
                engine.apply_event(&e, &mut out);
            }
            if let Some(r) = engine.rollout(id) {
                prop_assert!(r.newest_event_time() <= newest_record + rules.max_clock_skew_ms as i64);
            }
        }
    }

    /// A candidate that stops reporting while the baseline goes on trips the breaker once the
    /// window holds `ln(1/alpha) / -ln(1 - ratio × share)` executions after the phase's grace
    /// period (plus the bucket and the lateness it takes to judge them), at any traffic rate
    /// and in any trial phase.
    #[test]
    fn silence_trips_within_the_stated_bound(
        rate in 5u32..400,
        phase in prop::sample::select(vec![Phase::Probe, Phase::Small, Phase::Medium]),
    ) {
        let policy = Policy { initial_phase: phase, ..Policy::threshold() };
        let share = policy.schedule.percent(phase).percent() / 100.0;
        let p = policy.traffic_shortfall_ratio.get() * share;
        let needed = ((1.0 / policy.traffic_shortfall_alpha).ln() / -(1.0 - p).ln()).ceil();
        let gap = 1_000 / i64::from(rate);
        let rate = 1_000 / gap;
        let counted_ms = policy.monitoring_window_ms - policy.traffic_shortfall_grace_ms;
        let window_holds = rate as f64 * counted_ms as f64 / 1000.0;
        let mut engine = Engine::new(policy.clone(), EngineOptions::default());
        let mut out = Vec::new();
        let mut tripped_after = None;
        // Ten minutes of baseline-only traffic.
        for i in 0..(600_000 / gap) {
            let e = ExecutionEvent::new("quiet", Variant::Baseline, true, LatencyMs::new(10.0).unwrap(), T0 + i * gap);
            out.clear();
            engine.apply_event(&e, &mut out);
            if out.iter().any(|d| d.action == Action::Rollback) {
                tripped_after = Some(i + 1);
                break;
            }
        }
        if needed <= window_holds {
            let bound = needed as i64
                + rate
                    * (policy.traffic_shortfall_grace_ms
                        + 2 * policy.evaluation_interval_ms
                        + policy.allowed_lateness_ms) as i64
                    / 1000
                + 1;
            let after = tripped_after.expect("a silent candidate trips");
            prop_assert!(after <= bound, "tripped after {after} executions, bound {bound}");
        }
        if let Some(after) = tripped_after {
            prop_assert!(after as f64 >= needed, "tripped after {after} < {needed}");
        }
    }
}
