//! The decision table against a real broker: transactional decisions, aborted transactions,
//! the initial load, and stickiness while following live.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rollout_breaker::codec::{encode_decision, Encoding};
use rollout_breaker::engine::{
    Action, BreakerState, Cause, Decision, MetricsSnapshot, Phase, TrafficPercent,
};
use rollout_breaker::router::{DecisionTable, RouteReason, RouterConfig, TableState};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How soon a committed decision must be served (the brief's bound).
const APPLY_BOUND: Duration = Duration::from_secs(5);

fn decision(id: &str, seq: u64, action: Action, from: Phase, to: Phase) -> Decision {
    let percent = match to {
        Phase::Off => 0.0,
        Phase::Probe => 1.0,
        Phase::Small => 5.0,
        Phase::Medium => 20.0,
        Phase::Full => 100.0,
    };
    Decision {
        rollout_id: id.into(),
        sequence: seq,
        action,
        from,
        to,
        traffic: TrafficPercent::new(percent).unwrap(),
        breaker: to.breaker(),
        paused: false,
        reason: format!("{action} to {to}"),
        metrics: MetricsSnapshot::default(),
        at: 1_764_222_000_000 + seq as i64,
        cause: Cause::Automatic,
        actor: "watchdog".into(),
        candidate_version: Some("v2".into()),
        baseline_version: Some("v1".into()),
        policy_json: None,
        phase_started_at: None,
        warning: None,
        scope: rollout_breaker::engine::Scope::DEFAULT,
    }
}

/// Writes `decisions` in one transaction, committed or aborted. Transaction calls block, so
/// this runs on a blocking thread.
async fn produce_txn(
    bootstrap: &str,
    topic: &str,
    decisions: Vec<Decision>,
    commit: bool,
) -> Instant {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = common::producer_config(&bootstrap)
            .set("transactional.id", common::unique_name("router-txn"))
            .create()
            .unwrap();
        producer.init_transactions(TIMEOUT).unwrap();
        producer.begin_transaction().unwrap();
        for d in &decisions {
            let bytes = encode_decision(d, Encoding::AvroSingleObject);
            producer
                .send(
                    BaseRecord::to(&topic)
                        .key(d.rollout_id.as_str())
                        .payload(&bytes),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
        if commit {
            producer.commit_transaction(TIMEOUT).unwrap();
        } else {
            producer.flush(TIMEOUT).unwrap();
            producer.abort_transaction(TIMEOUT).unwrap();
        }
        Instant::now()
    })
    .await
    .unwrap()
}

async fn decisions_topic(bootstrap: &str, partitions: i32) -> String {
    let topic = common::unique_name("router-decisions");
    common::create_topic(
        bootstrap,
        &topic,
        partitions,
        &[("cleanup.policy", "compact")],
    )
    .await;
    topic
}

fn start(bootstrap: &str, topic: &str) -> DecisionTable {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("rollout_breaker=debug")
        .with_test_writer()
        .try_init();
    DecisionTable::start(RouterConfig {
        stale_after: Duration::from_secs(5),
        ..RouterConfig::new(bootstrap, topic)
    })
    .unwrap()
}

fn keys() -> Vec<String> {
    (0..2_000).map(|i| format!("user-{i}")).collect()
}

/// Polls `table` until `rollout` is at `phase`, checking on every round that no key's answer
/// changes while the phase it was given under stays the same. Returns how long it took.
async fn await_phase(
    table: &DecisionTable,
    rollout: &str,
    phase: Phase,
    seen: &mut HashMap<String, (Option<Phase>, bool)>,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut reached = true;
        for key in keys() {
            let route = table.route(rollout, &key);
            assert!(
                matches!(
                    route.reason,
                    RouteReason::Split | RouteReason::UnknownRollout
                ),
                "{route:?}"
            );
            let now = (route.phase, route.use_candidate);
            if let Some(before) = seen.insert(key.clone(), now) {
                assert!(
                    before.0 != now.0 || before.1 == now.1,
                    "{key} flipped from {before:?} to {now:?} within one phase"
                );
            }
            reached &= route.phase == Some(phase);
        }
        if reached {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < APPLY_BOUND,
            "{rollout} not at {phase} after {APPLY_BOUND:?}: {:?}",
            table.entry(rollout)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_decisions_are_followed_and_rollback_serves_zero() {
    let kafka = common::kafka().await;
    let topic = decisions_topic(&kafka.bootstrap, 3).await;
    let table = start(&kafka.bootstrap, &topic);
    table.wait_ready(TIMEOUT).await.unwrap();
    let id = "checkout-agent";
    let mut seen = HashMap::new();

    // Unknown before the first decision.
    assert_eq!(table.route(id, "k").reason, RouteReason::UnknownRollout);

    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 1, Action::Start, Phase::Off, Phase::Probe)],
        true,
    )
    .await;
    await_phase(&table, id, Phase::Probe, &mut seen).await;
    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 2, Action::Advance, Phase::Probe, Phase::Small)],
        true,
    )
    .await;
    await_phase(&table, id, Phase::Small, &mut seen).await;
    let share = keys()
        .iter()
        .filter(|k| table.should_use_new_version(id, k))
        .count();
    assert!((40..=180).contains(&share), "{share} of 2000 keys at 5 %");

    let committed = produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 3, Action::Rollback, Phase::Small, Phase::Off)],
        true,
    )
    .await;
    await_phase(&table, id, Phase::Off, &mut seen).await;
    let took = committed.elapsed();
    assert!(took < APPLY_BOUND, "rollback served after {took:?}");
    assert!(keys().iter().all(|k| !table.should_use_new_version(id, k)));
    assert_eq!(table.entry(id).unwrap().sequence, 3);

    // An older decision replayed (a duplicate or a zombie) is ignored.
    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 2, Action::Advance, Phase::Probe, Phase::Small)],
        true,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(table.entry(id).unwrap().phase, Phase::Off);
    assert_eq!(table.state(), TableState::Ready);
    eprintln!("rollback served {took:?} after commit returned");
    table.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn aborted_transactions_are_never_applied() {
    let kafka = common::kafka().await;
    let topic = decisions_topic(&kafka.bootstrap, 1).await;
    let table = start(&kafka.bootstrap, &topic);
    table.wait_ready(TIMEOUT).await.unwrap();
    let id = "aborted";

    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 1, Action::Start, Phase::Off, Phase::Probe)],
        true,
    )
    .await;
    let mut seen = HashMap::new();
    await_phase(&table, id, Phase::Probe, &mut seen).await;
    // An aborted jump to FULL, then a committed advance: only the advance may be seen.
    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 9, Action::Advance, Phase::Probe, Phase::Full)],
        false,
    )
    .await;
    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 2, Action::Advance, Phase::Probe, Phase::Small)],
        true,
    )
    .await;
    await_phase(&table, id, Phase::Small, &mut seen).await;
    // And an aborted transaction as the very last record (its marker is the last offset).
    produce_txn(
        &kafka.bootstrap,
        &topic,
        vec![decision(id, 10, Action::Advance, Phase::Small, Phase::Full)],
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(table.entry(id).unwrap().sequence, 2);
    assert_eq!(table.state(), TableState::Ready);

    // A new table over the same topic loads past the abort marker and never sees FULL.
    let fresh = start(&kafka.bootstrap, &topic);
    fresh.wait_ready(TIMEOUT).await.unwrap();
    let e = fresh.entry(id).unwrap();
    assert_eq!((e.phase, e.sequence), (Phase::Small, 2));
    assert_eq!(
        seen.values()
            .filter(|(p, _)| *p == Some(Phase::Full))
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_load_serves_baseline_until_ready_then_the_latest_phase() {
    let kafka = common::kafka().await;
    let topic = decisions_topic(&kafka.bootstrap, 3).await;
    let n = 60;
    let mut history = Vec::new();
    for r in 0..n {
        let id = format!("rollout-{r}");
        history.push(decision(&id, 1, Action::Start, Phase::Off, Phase::Probe));
        history.push(decision(
            &id,
            2,
            Action::Advance,
            Phase::Probe,
            Phase::Small,
        ));
        history.push(decision(
            &id,
            3,
            Action::Advance,
            Phase::Small,
            Phase::Medium,
        ));
        if r % 2 == 0 {
            history.push(decision(
                &id,
                4,
                Action::Advance,
                Phase::Medium,
                Phase::Full,
            ));
        }
    }
    // Half committed in one transaction, half in another: the last offsets are markers.
    let second = history.split_off(history.len() / 2);
    produce_txn(&kafka.bootstrap, &topic, history, true).await;
    produce_txn(&kafka.bootstrap, &topic, second, true).await;

    let table = start(&kafka.bootstrap, &topic);
    // Before the load finishes, even a FULL rollout is served the baseline.
    let early = table.route("rollout-0", "user-1");
    assert_eq!(
        (early.use_candidate, early.reason),
        (false, RouteReason::Loading)
    );
    assert_eq!(table.state(), TableState::Loading);

    let started = Instant::now();
    table.wait_ready(TIMEOUT).await.unwrap();
    eprintln!("initial load of {n} rollouts took {:?}", started.elapsed());
    assert_eq!(table.snapshot().len(), n);
    for r in 0..n {
        let id = format!("rollout-{r}");
        let e = table.entry(&id).unwrap();
        let expected = if r % 2 == 0 {
            (Phase::Full, 4)
        } else {
            (Phase::Medium, 3)
        };
        assert_eq!((e.phase, e.sequence), expected, "{id}");
        assert_eq!(
            e.traffic.basis_points(),
            if r % 2 == 0 { 10_000 } else { 2_000 }
        );
    }
    assert!(keys()
        .iter()
        .all(|k| table.should_use_new_version("rollout-0", k)));
    assert!(table.lookups().loading >= 1);
    assert!(table.staleness().unwrap() < Duration::from_secs(5));
}

#[test]
fn breaker_state_matches_the_phase_of_test_decisions() {
    // Guards the helper above: decisions built here must be valid domain values.
    let d = decision("r", 1, Action::Start, Phase::Off, Phase::Probe);
    assert_eq!(d.breaker, BreakerState::HalfOpen);
}
