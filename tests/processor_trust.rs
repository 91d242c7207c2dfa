//! The breaker fails safe and keeps its word across restarts, through a real broker: one test
//! per way it used to fail open or change its mind (the trust issue's numbered problems).

mod common;

use std::time::Duration;

use common::processor::*;
use rdkafka::producer::FutureRecord;
use rollout_breaker::codec::{self, Encoding};
use rollout_breaker::config::Config;
use rollout_breaker::engine::{
    Action, Command, CommandKind, Decision, ExecutionEvent, LatencyMs, Phase, Policy, Variant,
};
use rollout_breaker::input::admission::kafka_partition;
use rollout_breaker::sim::Scenario;

async fn setup(partitions: i32) -> (common::KafkaHandle, Config) {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, partitions);
    config.policy = test_policy();
    rollout_breaker::kafka::processor::ensure_topics(&config)
        .await
        .unwrap();
    (kafka, config)
}

fn reasons(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r.headers
                .get("rb.error.reason")
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Problem 1: a record refused live (here: key differs from its rollout id) must not count
/// after a restart either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_do_not_count_after_a_restart() {
    let (kafka, config) = setup(1).await;
    let events = scenario_events(
        Scenario::successful_rollout("trust-refused"),
        &config.policy,
    );
    let expected = expected_decisions(&events, &config.policy);
    let half = events.len() / 2;
    let producer = producer(&kafka.bootstrap);
    produce_events(
        &producer,
        &config.topics.events,
        &events[..half],
        Encoding::Json,
    )
    .await;
    // Slow failing candidate executions of the same rollout under a wrong key, in the window
    // the restarted processor will judge next.
    let at = events[half - 1].timestamp;
    for i in 0..60 {
        let bad = ExecutionEvent::new(
            "trust-refused",
            Variant::Candidate,
            false,
            LatencyMs::new(9_000.0).unwrap(),
            at - i,
        );
        let payload = codec::encode_event(&bad, Encoding::Json);
        producer
            .send(
                FutureRecord::to(&config.topics.events)
                    .key("someone-else")
                    .payload(&payload)
                    .timestamp(at),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let first = start(&config);
    await_committed(&kafka.bootstrap, &config, Duration::from_secs(60)).await;
    first.stop().await;
    let second = start(&config);
    produce_events(
        &producer,
        &config.topics.events,
        &events[half..],
        Encoding::Json,
    )
    .await;
    // Everything processed, then every decision read: a rollback the refused records caused
    // after the restart would show up here.
    await_committed(&kafka.bootstrap, &config, Duration::from_secs(60)).await;
    second.stop().await;
    let want = count(&expected);
    let got = await_decisions(
        &kafka.bootstrap,
        &config,
        usize::MAX,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        got, expected,
        "the restart decided like an uninterrupted run"
    );
    // The audit takes the input as the processor did: the refused records do not count.
    let report = audit(&config).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.verified as usize, want);
    assert_eq!(report.refused, 60);
    let dlq = read_records(
        &kafka.bootstrap,
        &config.topics.dead_letter,
        1,
        60,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(reasons(&dlq), vec!["key_mismatch".to_owned(); 60]);
}

/// Problem 3: a candidate that stops reporting while the baseline goes on trips the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_candidate_trips_the_breaker() {
    let (kafka, config) = setup(1).await;
    let start_at = now_epoch_ms() - 180_000;
    // 20 executions/s for two minutes, none of them the candidate's (PROBE routes 10 %).
    let events: Vec<ExecutionEvent> = (0..2_400)
        .map(|i| {
            ExecutionEvent::new(
                "trust-silent",
                Variant::Baseline,
                true,
                LatencyMs::new(800.0).unwrap(),
                start_at + i * 50,
            )
        })
        .collect();
    let expected = expected_decisions(&events, &config.policy);
    let decided = &expected["trust-silent"];
    assert_eq!(decided.len(), 2, "{decided:#?}");
    assert_eq!(decided[1].action, Action::Rollback);
    assert!(
        decided[1].reason.contains("candidate reported 0 of"),
        "{}",
        decided[1].reason
    );
    let processor = start(&config);
    produce_events(
        &producer(&kafka.bootstrap),
        &config.topics.events,
        &events,
        Encoding::Json,
    )
    .await;
    let got = await_decisions(&kafka.bootstrap, &config, 2, Duration::from_secs(60)).await;
    processor.stop().await;
    assert_eq!(got, expected);
}

/// Problem 4: one event stamped an hour ahead of its record cannot blind the rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_the_future_is_refused_and_the_rollback_still_comes() {
    let (kafka, config) = setup(1).await;
    let events = scenario_events(Scenario::automatic_rollback("trust-skew"), &config.policy);
    let expected = expected_decisions(&events, &config.policy);
    assert!(expected["trust-skew"]
        .iter()
        .any(|d| d.action == Action::Rollback));
    let producer = producer(&kafka.bootstrap);
    let now = now_epoch_ms();
    let future = ExecutionEvent::new(
        "trust-skew",
        Variant::Baseline,
        true,
        LatencyMs::new(100.0).unwrap(),
        now + 3_600_000,
    );
    let payload = codec::encode_event(&future, Encoding::Json);
    producer
        .send(
            FutureRecord::to(&config.topics.events)
                .key("trust-skew")
                .payload(&payload)
                .timestamp(now),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let processor = start(&config);
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;
    let got = await_decisions(
        &kafka.bootstrap,
        &config,
        count(&expected),
        Duration::from_secs(60),
    )
    .await;
    processor.stop().await;
    assert_eq!(got, expected);
    let dlq = read_records(
        &kafka.bootstrap,
        &config.topics.dead_letter,
        1,
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(reasons(&dlq), vec!["clock_skew".to_owned()]);
}

/// Problem 5: a keyless event and a command in the wrong partition for its key are refused
/// with reasons that say how to fix the producer, instead of splitting a rollout or being
/// refused as an unknown rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_and_misplaced_records_are_refused_with_a_hint() {
    let (kafka, config) = setup(2).await;
    let id = "trust-keys";
    let right = kafka_partition(id.as_bytes(), 2);
    let producer = producer(&kafka.bootstrap);
    let now = now_epoch_ms();
    let event = baseline_event(id, now);
    let payload = codec::encode_event(&event, Encoding::Json);
    producer
        .send(
            FutureRecord::<(), _>::to(&config.topics.events)
                .partition(1 - right)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // The rollout exists (its events are well keyed)...
    produce_events(
        &producer,
        &config.topics.events,
        std::slice::from_ref(&event),
        Encoding::Json,
    )
    .await;
    // ...but the command went where a CRC32 partitioner might put it.
    let pause = Command::new(id, CommandKind::Pause, "ana", "look", now + 1);
    let cmd = codec::encode_command(&pause, Encoding::Json);
    producer
        .send(
            FutureRecord::to(&config.topics.commands)
                .key(id)
                .partition(1 - right)
                .payload(&cmd),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let processor = start(&config);
    let dlq = read_records(
        &kafka.bootstrap,
        &config.topics.dead_letter,
        2,
        2,
        Duration::from_secs(60),
    )
    .await;
    processor.stop().await;
    let mut got = reasons(&dlq);
    got.sort();
    assert_eq!(
        got,
        vec!["missing_key".to_owned(), "wrong_partition".to_owned()]
    );
    let misplaced = dlq
        .iter()
        .find(|r| r.headers["rb.error.reason"] == "wrong_partition")
        .unwrap();
    assert!(
        misplaced.headers["rb.error.message"].contains("partitioner=murmur2_random"),
        "{:?}",
        misplaced.headers
    );
    let decisions = read_decisions(&kafka.bootstrap, &config, Duration::from_secs(3), |_| false);
    assert_eq!(
        decisions[id].len(),
        1,
        "only the auto-start; the misplaced PAUSE did nothing"
    );
}

/// Problem 6: an operator's START that loses the race with the rollout's first event is
/// applied, with its policy and versions, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wins_over_an_auto_start() {
    let (kafka, config) = setup(1).await;
    let id = "trust-start";
    let producer = producer(&kafka.bootstrap);
    let now = now_epoch_ms();
    let event = baseline_event(id, now);
    produce_events(&producer, &config.topics.events, &[event], Encoding::Json).await;
    let mut start_cmd = Command::new(id, CommandKind::Start, "ana", "v2 at SMALL", now + 1);
    start_cmd.policy = Some(Policy {
        initial_phase: Phase::Small,
        ..test_policy()
    });
    start_cmd.candidate_version = Some("v2".into());
    let processor = start(&config);
    // The event is processed first: the rollout is auto-started under the default policy.
    let got = await_decisions(&kafka.bootstrap, &config, 1, Duration::from_secs(60)).await;
    assert_eq!(got[id][0].cause, rollout_breaker::engine::Cause::Automatic);
    produce_command(&producer, &config.topics.commands, &start_cmd).await;
    let got = await_decisions(&kafka.bootstrap, &config, 2, Duration::from_secs(60)).await;
    processor.stop().await;
    let d: &Decision = &got[id][1];
    assert_eq!(
        (d.action, d.sequence, d.to),
        (Action::Start, 2, Phase::Small)
    );
    assert_eq!(d.candidate_version.as_deref(), Some("v2"));
    assert!(
        d.policy_json.is_some(),
        "the START's own policy is in force"
    );
}

/// Problem 10: RETIRE forgets a finished rollout: a tombstone in the compacted decisions topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_publishes_a_tombstone() {
    let (kafka, config) = setup(1).await;
    let id = "trust-retire";
    let producer = producer(&kafka.bootstrap);
    let now = now_epoch_ms();
    let event = baseline_event(id, now);
    produce_events(&producer, &config.topics.events, &[event], Encoding::Json).await;
    let processor = start(&config);
    await_decisions(&kafka.bootstrap, &config, 1, Duration::from_secs(60)).await;
    for (i, kind) in [CommandKind::Abort, CommandKind::Retire]
        .into_iter()
        .enumerate()
    {
        let c = Command::new(id, kind, "ana", "done", now + 1 + i as i64);
        produce_command(&producer, &config.topics.commands, &c).await;
    }
    let records = read_records(
        &kafka.bootstrap,
        &config.topics.decisions,
        1,
        3,
        Duration::from_secs(60),
    )
    .await;
    processor.stop().await;
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[2].key.as_deref(), Some(id.as_bytes()));
    assert!(records[2].value.is_none(), "RETIRE is a tombstone");
}

/// Problem 2: a restart right after PAUSE and RESUME restores the window the live run had
/// (from the phase's start, not from the RESUME), so both runs decide alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_pause_and_resume_decides_like_an_uninterrupted_run() {
    let (kafka, restarted) = setup(1).await;
    // A second processor over the same input topics, with its own group and outputs.
    let mut uninterrupted = config(&kafka.bootstrap, 1);
    uninterrupted.policy = restarted.policy.clone();
    uninterrupted.topics.events = restarted.topics.events.clone();
    uninterrupted.topics.commands = restarted.topics.commands.clone();
    rollout_breaker::kafka::processor::ensure_topics(&uninterrupted)
        .await
        .unwrap();
    let id = "trust-pause";
    let t0 = now_epoch_ms() - 300_000;
    // 40 executions/s, one in ten on the candidate (PROBE routes 10 %); the candidate
    // completes 90 % of its tasks for a minute (held: between the SLO and the advancement
    // threshold), then all of them.
    let events: Vec<ExecutionEvent> = (0..6_000)
        .map(|i: i64| {
            let candidate = i % 10 == 0;
            let at = t0 + i * 25;
            let success = !candidate || at >= t0 + 60_000 || (i / 10) % 10 != 0;
            let variant = if candidate {
                Variant::Candidate
            } else {
                Variant::Baseline
            };
            ExecutionEvent::new(id, variant, success, LatencyMs::new(500.0).unwrap(), at)
        })
        .collect();
    let split = events
        .iter()
        .position(|e| e.timestamp >= t0 + 40_000)
        .unwrap();
    let producer = producer(&kafka.bootstrap);
    produce_events(
        &producer,
        &restarted.topics.events,
        &events[..split],
        Encoding::Json,
    )
    .await;
    // Straight into the events topic, so both processors see them at the same place (each
    // processor group relays what it reads from the commands topic on its own).
    for (kind, at) in [
        (CommandKind::Pause, t0 + 30_000),
        (CommandKind::Resume, t0 + 40_000),
    ] {
        let c = Command::new(id, kind, "ana", "look closer", at);
        produce_command_in_events(&producer, &restarted, &c).await;
    }
    let first = start(&restarted);
    let got = await_decisions(&kafka.bootstrap, &restarted, 3, Duration::from_secs(60)).await;
    assert_eq!(
        got[id].iter().map(|d| d.action).collect::<Vec<_>>(),
        vec![Action::Start, Action::Pause, Action::Resume]
    );
    first.stop().await;
    let second = start(&restarted);
    produce_events(
        &producer,
        &restarted.topics.events,
        &events[split..],
        Encoding::Json,
    )
    .await;
    let other = start(&uninterrupted);
    await_committed(&kafka.bootstrap, &uninterrupted, Duration::from_secs(60)).await;
    await_committed(&kafka.bootstrap, &restarted, Duration::from_secs(60)).await;
    other.stop().await;
    second.stop().await;
    let all = usize::MAX;
    let want = await_decisions(
        &kafka.bootstrap,
        &uninterrupted,
        all,
        Duration::from_secs(3),
    )
    .await;
    let got = await_decisions(&kafka.bootstrap, &restarted, all, Duration::from_secs(3)).await;
    assert!(
        want[id].iter().any(|d| d.action == Action::Advance),
        "the scenario must advance after the RESUME: {want:#?}"
    );
    assert_eq!(got, want);
}

/// A labelled execution of rollout `id`.
fn labelled(id: &str, variant: Variant, version: &str, success: bool, at: i64) -> ExecutionEvent {
    let mut e = ExecutionEvent::new(id, variant, success, LatencyMs::new(100.0).unwrap(), at);
    e.version = version.into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_retry_starts_a_tripped_rollout_again_on_a_new_version_after_a_restart() {
    let (kafka, mut config) = setup(1).await;
    config.policy = Policy {
        auto_retry: true,
        rule: rollout_breaker::engine::stats::Rule::Threshold,
        ..Policy::default()
    };
    let id = "retried-agent";
    let t0 = now_epoch_ms() - 5 * 60_000;
    // A minute of `v2` failing every task (the breaker trips), baselines healthy.
    let tripping: Vec<ExecutionEvent> = (0..600)
        .map(|i| {
            let at = t0 + i * 100;
            if i % 5 == 0 {
                labelled(id, Variant::Candidate, "v2", false, at)
            } else {
                labelled(id, Variant::Baseline, "v1", true, at)
            }
        })
        .collect();
    // After the restart: a straggler of v2 (ignored), then the fix `v3` reports.
    let t1 = t0 + 70_000;
    let fixed = vec![
        labelled(id, Variant::Candidate, "v2", true, t1),
        labelled(id, Variant::Baseline, "v1", true, t1 + 100),
        labelled(id, Variant::Candidate, "v3", true, t1 + 200),
        labelled(id, Variant::Baseline, "v1", true, t1 + 300),
    ];
    let all: Vec<ExecutionEvent> = tripping.iter().chain(&fixed).cloned().collect();
    let expected = expected_decisions(&all, &config.policy);
    let actions: Vec<(Action, Phase)> = expected[id].iter().map(|d| (d.action, d.to)).collect();
    assert_eq!(
        actions,
        [
            (Action::Start, Phase::Probe),
            (Action::Rollback, Phase::Off),
            (Action::Start, Phase::Probe)
        ]
    );

    let producer = producer(&kafka.bootstrap);
    let running = start(&config);
    produce_events(&producer, &config.topics.events, &tripping, Encoding::Json).await;
    let got = await_decisions(&kafka.bootstrap, &config, 2, Duration::from_secs(60)).await;
    assert_eq!(got[id], expected[id][..2]);
    assert_eq!(got[id][1].candidate_version.as_deref(), Some("v2"));
    await_committed(&kafka.bootstrap, &config, Duration::from_secs(60)).await;
    running.stop().await;

    // The restarted processor knows the rolled-back version from the decisions topic alone.
    let running = start(&config);
    produce_events(&producer, &config.topics.events, &fixed, Encoding::Json).await;
    let got = await_decisions(&kafka.bootstrap, &config, 3, Duration::from_secs(60)).await;
    await_committed(&kafka.bootstrap, &config, Duration::from_secs(60)).await;
    running.stop().await;
    assert_eq!(got, expected);
    let retry = &got[id][2];
    assert_eq!(
        (
            retry.cause,
            retry.actor.as_str(),
            retry.candidate_version.as_deref()
        ),
        (
            rollout_breaker::engine::Cause::Automatic,
            "watchdog",
            Some("v3")
        )
    );
    assert!(retry.reason.starts_with("auto retry:"), "{}", retry.reason);
    let report = audit(&config).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.verified, 3);
}
