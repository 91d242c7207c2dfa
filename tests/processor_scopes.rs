//! Segments and regions through a real broker (issue 14): a rollout with two regions in two
//! waves and two segments (internal users at FULL from the start, enterprise trailing by a
//! phase). The second region starts only after the first has soaked at FULL; a breach in one
//! scope rolls back that scope only (`rollback_scope = "scope"`), or every scope (`"rollout"`,
//! the default). A processor restarted
//! halfway and the audit reproduce every scoped decision; every scope is its own row, keyed
//! `ROLLOUT#segment=S#region=R` in the rollout's partition; routers answer per scope.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::processor::*;
use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::engine::splitter::serves_candidate;
use rollout_breaker::engine::{
    Action, Decision, Engine, EngineOptions, ExecutionEvent, LatencyMs, Phase, Policy, Scope,
    TrafficPercent, Variant,
};
use rollout_breaker::input::admission::kafka_partition;
use rollout_breaker::router::{DecisionTable, RouteReason, RouterConfig};

const ID: &str = "scoped-agent";

fn policy(rollback_scope: &str) -> Policy {
    Policy::from_toml(&format!(
        r#"
rule = "threshold"
evaluation_interval_ms = 1000
monitoring_window_ms = 5000
allowed_lateness_ms = 0
min_samples_per_phase = 10
traffic_shortfall_grace_ms = 2000
schedule = {{ probe = 10, small = 20, medium = 50 }}
rollback_scope = "{rollback_scope}"
wave_soak_ms = 5000
regions = [["eu"], ["us"]]
[segments.internal]
initial_phase = "FULL"
[segments.enterprise]
trail_phases = 1
"#
    ))
    .unwrap()
}

fn scopes() -> Vec<Scope> {
    let mut v = Vec::new();
    for region in ["eu", "us"] {
        for segment in [None, Some("internal"), Some("enterprise")] {
            v.push(Scope::new(segment, Some(region)));
        }
    }
    v
}

/// Agents in two regions and two segments (and unsegmented users) over `secs` seconds ending a
/// minute ago, each request routed by the scope's current traffic in an in-memory engine (as
/// a router following the decisions would): 50 requests a second per scope. Enterprise users
/// in the US get a failing candidate from 45 s on.
fn fleet(secs: i64, policy: &Policy) -> Vec<ExecutionEvent> {
    let start = now_epoch_ms() - secs * 1_000 - 60_000;
    let mut engine = Engine::new(policy.clone(), EngineOptions::default());
    let failing = Scope::new(Some("enterprise"), Some("us"));
    let mut events = Vec::new();
    let mut n = 0u64;
    let mut t = start;
    while t < start + secs * 1_000 {
        for s in scopes() {
            n += 1;
            let key = format!("user-{n}");
            let traffic = engine
                .rollout(ID)
                .and_then(|r| r.scoped(&s))
                .map_or(TrafficPercent::ZERO, |r| {
                    policy.schedule_of(&s).percent(r.phase())
                });
            let candidate = serves_candidate(ID, &key, traffic);
            let fails = candidate && s == failing && t >= start + 45_000;
            let variant = if candidate {
                Variant::Candidate
            } else {
                Variant::Baseline
            };
            let mut e = ExecutionEvent::new(ID, variant, !fails, LatencyMs::new(80.0).unwrap(), t);
            e.request_key = Some(key.into());
            e.segment = s.segment.clone();
            e.region = s.region.clone();
            engine.apply(&e);
            events.push(e);
        }
        t += 20;
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_rolls_back_its_scope_only_through_kafka_restart_and_audit() {
    scoped_rollout_through_kafka_restart_and_audit(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_rolls_back_the_whole_rollout_through_kafka_restart_and_audit() {
    scoped_rollout_through_kafka_restart_and_audit(true).await;
}

async fn scoped_rollout_through_kafka_restart_and_audit(whole_rollout: bool) {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 3);
    config.policy = policy(if whole_rollout { "rollout" } else { "scope" });
    let events = fleet(60, &config.policy);
    let expected = expected_decisions(&events, &config.policy);
    let ds = &expected[ID];
    // The scenario does what the test is about (checked on the in-memory run).
    let of = |s: &Scope| ds.iter().filter(|d| d.scope == *s).collect::<Vec<_>>();
    let eu_full = of(&Scope::new(None, Some("eu")))
        .into_iter()
        .find(|d| d.to == Phase::Full)
        .expect("eu reaches FULL")
        .phase_started_at
        .unwrap();
    let us_start = of(&Scope::new(None, Some("us")))
        .into_iter()
        .find(|d| d.action == Action::Start && d.to == Phase::Probe)
        .expect("us starts")
        .at;
    assert!(us_start >= eu_full + 5_000, "us started before eu soaked");
    let rollbacks: Vec<&Decision> = ds.iter().filter(|d| d.action == Action::Rollback).collect();
    let tripped = Scope::new(Some("enterprise"), Some("us"));
    assert_eq!(rollbacks[0].scope, tripped);
    if whole_rollout {
        // Every other started scope follows at once, naming the one that tripped.
        assert!(rollbacks.len() > 3, "{rollbacks:#?}");
        assert!(rollbacks[1..].iter().all(|d| d.at == rollbacks[0].at
            && d.scope != tripped
            && d.reason
                .contains("segment `enterprise`, region `us` tripped")));
    } else {
        assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    }
    let scoped = ds.iter().filter(|d| !d.scope.is_default()).count();
    assert!(scoped > 20, "{scoped} scoped decisions");

    // Live, with a restart halfway.
    let producer = producer(&kafka.bootstrap);
    let (first, second) = events.split_at(events.len() / 2);
    let processor = start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce_events(&producer, &config.topics.events, first, Encoding::Json).await;
    let _ = await_decisions(&kafka.bootstrap, &config, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    processor.stop().await;
    let processor = start(&config);
    produce_events(&producer, &config.topics.events, second, Encoding::Json).await;
    let got = await_decisions(
        &kafka.bootstrap,
        &config,
        ds.len(),
        Duration::from_secs(120),
    )
    .await;
    processor.stop().await;
    let settled = await_decisions(
        &kafka.bootstrap,
        &config,
        usize::MAX,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(count(&got), ds.len());
    assert_eq!(
        settled, expected,
        "the restarted processor decided differently"
    );

    // Every scope is its own row, in the rollout's partition.
    let records = read_records(
        &kafka.bootstrap,
        &config.topics.decisions,
        3,
        ds.len(),
        Duration::from_secs(30),
    )
    .await;
    let p = kafka_partition(ID.as_bytes(), 3);
    let mut keys = BTreeMap::new();
    for r in &records {
        let d = codec::decode_decision(
            r.value.as_deref().unwrap(),
            config.topics.decisions_encoding,
        )
        .unwrap();
        assert_eq!(r.partition, p);
        assert_eq!(r.key.as_deref(), Some(d.key().as_bytes()));
        keys.insert(String::from_utf8(r.key.clone().unwrap()).unwrap(), d.to);
    }
    let (still, full) = if whole_rollout {
        (Phase::Off, Phase::Off)
    } else {
        (Phase::Probe, Phase::Full)
    };
    assert_eq!(
        keys[ID], still,
        "the default scope keeps the rollout id as key"
    );
    assert_eq!(keys[&format!("{ID}#segment=internal#region=us")], full);
    assert_eq!(
        keys[&format!("{ID}#segment=enterprise#region=us")],
        Phase::Off
    );
    assert_eq!(keys.len(), 9, "{keys:?}");

    // The audit re-runs the engine over the topics and reproduces every scoped decision.
    let report = audit(&config).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.verified, ds.len() as u64, "{report:?}");

    // A router reads the rows and answers per scope; unknown regions get the baseline.
    let table = DecisionTable::start(RouterConfig::new(
        &kafka.bootstrap,
        &config.topics.decisions,
    ))
    .unwrap();
    table.wait_ready(Duration::from_secs(30)).await.unwrap();
    let share = |segment: Option<&str>, region: Option<&str>| {
        (0..1_000)
            .filter(|i| table.should_use_new_version_scoped(ID, &format!("k{i}"), segment, region))
            .count()
    };
    let all = if whole_rollout { 0 } else { 1_000 };
    assert_eq!(share(Some("internal"), Some("us")), all);
    assert_eq!(share(None, Some("eu")), all);
    assert_eq!(share(Some("enterprise"), Some("us")), 0, "rolled back");
    assert_eq!(
        share(Some("someone"), Some("eu")),
        all,
        "unnamed segment: the region's"
    );
    assert_eq!(share(None, Some("mars")), 0);
    assert_eq!(
        table.route_scoped(ID, "k", None, Some("mars")).reason,
        RouteReason::UnknownScope
    );
    table.shutdown();
}
