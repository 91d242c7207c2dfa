//! The statistical rule on a real broker: the seed's scenarios, and a processor restarted
//! mid-stream (restore + silent replay) or killed with SIGKILL deciding exactly as an
//! uninterrupted engine.

mod common;

use std::collections::BTreeMap;
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::processor::*;
use rollout_breaker::codec::Encoding;
use rollout_breaker::config::Config;
use rollout_breaker::engine::stats::Rule;
use rollout_breaker::engine::{Action, BreakerState, Decision, ExecutionEvent, Phase, Policy};
use rollout_breaker::engine::{Schedule, TrafficPercent};
use rollout_breaker::sim::{Change, Profile, Scenario, Trigger, SCENARIO_EPOCH_MS};

fn statistical() -> Policy {
    Policy {
        rule: Rule::Statistical,
        ..Policy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenarios_through_kafka_under_the_statistical_rule() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 3);
    config.policy = statistical();
    let policy = config.policy.clone();
    let mut events = scenario_events(Scenario::successful_rollout("stat-1"), &policy);
    events.extend(scenario_events(
        Scenario::automatic_rollback("stat-2"),
        &policy,
    ));
    events.sort_by_key(|e| e.timestamp);
    let expected = expected_decisions(&events, &policy);
    let processor = start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let producer = producer(&kafka.bootstrap);
    produce_events(&producer, &config.topics.events, &events, Encoding::Json).await;
    let want = count(&expected);
    let got = await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(60)).await;
    processor.stop().await;
    assert_eq!(got, expected);
    let last2 = got["stat-2"].last().unwrap();
    assert_eq!(
        (last2.action, last2.from, last2.to, last2.breaker),
        (
            Action::Rollback,
            Phase::Small,
            Phase::Off,
            BreakerState::Open
        )
    );
    assert!(last2.reason.contains("ln E"), "{}", last2.reason);
    assert_eq!(got["stat-1"].last().unwrap().to, Phase::Full);
}

/// `n` rollouts of 20 req/s for `secs` seconds; every third one degrades after a while.
fn fleet(n: usize, secs: i64, policy: &Policy) -> Vec<ExecutionEvent> {
    let mut events = Vec::new();
    for i in 0..n {
        let mut s = Scenario::successful_rollout(&format!("stat-{i:03}"));
        s.requests_per_sec = 20;
        s.duration_ms = secs * 1_000;
        s.start_ms = SCENARIO_EPOCH_MS + (i as i64 * 137) % 5_000;
        s.baseline = Profile::new(0.95, 1_200.0, 900.0);
        s.candidate = Profile::new(0.95, 1_200.0, 900.0);
        s.seed = i as u64;
        if i % 3 == 0 {
            s.changes.push(Change {
                when: Trigger::AfterMs(20_000 + (i as i64 % 7) * 5_000),
                candidate: Profile::new(0.7, 2_600.0, 200.0),
            });
        }
        events.extend(scenario_events(s, policy));
    }
    events.sort_by_key(|e| e.timestamp);
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_decides_like_an_uninterrupted_run() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 3);
    config.policy = Policy {
        schedule: Schedule {
            probe: TrafficPercent::new(10.0).unwrap(),
            small: TrafficPercent::new(25.0).unwrap(),
            medium: TrafficPercent::new(50.0).unwrap(),
        },
        ..statistical()
    };
    let policy = config.policy.clone();
    let events = fleet(24, 120, &policy);
    let expected = expected_decisions(&events, &policy);
    let advances = expected
        .values()
        .flatten()
        .filter(|d| d.action == Action::Advance)
        .count();
    let rollbacks = expected
        .values()
        .flatten()
        .filter(|d| d.action == Action::Rollback)
        .count();
    assert!(
        advances >= 10 && rollbacks >= 4,
        "{advances} advances, {rollbacks} rollbacks"
    );
    restart_halfway_and_compare(&kafka.bootstrap, &config, &events, &expected).await;
}

/// Early warning through Kafka: with WARNING decisions in the decisions topic (a low warning
/// level, so there are many), a processor stopped mid-stream and restarted (restore from the
/// topic, where a rollout's latest record may be a WARNING, plus the silent replay) publishes
/// exactly the uninterrupted engine's decisions, warnings included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_warnings_in_the_log_decides_like_an_uninterrupted_run() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 3);
    let mut policy = Policy {
        schedule: Schedule {
            probe: TrafficPercent::new(10.0).unwrap(),
            small: TrafficPercent::new(25.0).unwrap(),
            medium: TrafficPercent::new(50.0).unwrap(),
        },
        ..statistical()
    };
    policy.statistical.warning_arl_hours = 0.05;
    config.policy = policy.clone();
    let events = fleet(24, 120, &policy);
    let expected = expected_decisions(&events, &policy);
    let warnings = expected
        .values()
        .flatten()
        .filter(|d| d.action == Action::Warning)
        .count();
    assert!(warnings >= 4, "{warnings} warnings");
    restart_halfway_and_compare(&kafka.bootstrap, &config, &events, &expected).await;
}

/// A phase longer than the restore look-back (monitoring window + slack, about 7 minutes with
/// the defaults): the statistical state covers the whole phase, so the restart must replay the
/// events from the phase start, not only the look-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_phase_longer_than_the_look_back_decides_like_an_uninterrupted_run() {
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 2);
    config.policy = statistical();
    let policy = config.policy.clone();
    let events = fleet(4, 20 * 60, &policy);
    let expected = expected_decisions(&events, &policy);
    let want = count(&expected);
    // The restart happens 920 s into the run; some phase change must come after it, judged on
    // a phase that started before the look-back (here SMALL of stat-002, from 430 s to 940 s).
    let t0 = events[0].timestamp;
    let cut = events
        .iter()
        .position(|e| e.timestamp >= t0 + 920_000)
        .unwrap();
    let cut_at = events[cut].timestamp;
    // A decision carries the start of the phase it enters; the phase it judged began at the
    // previous decision's.
    let late = expected
        .values()
        .flat_map(|ds| ds.windows(2))
        .filter(|w| w[1].at > cut_at && w[0].phase_started_at.is_some_and(|s| s < cut_at - 440_000))
        .count();
    let summary: Vec<String> = expected
        .values()
        .flatten()
        .map(|d| {
            format!(
                "{} {}->{} at {} (phase from {:?})",
                d.rollout_id,
                d.from,
                d.to,
                (d.at - t0) / 1000,
                d.phase_started_at.map(|s| (s - t0) / 1000)
            )
        })
        .collect();
    assert!(
        late >= 1,
        "no decision after the cut ({} s) on a long phase: {summary:#?}",
        (cut_at - t0) / 1000
    );
    let producer = producer(&kafka.bootstrap);
    let (first, second) = events.split_at(cut);
    let processor = start(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce_events(&producer, &config.topics.events, first, Encoding::Json).await;
    let _ = await_decisions(&kafka.bootstrap, &config, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    processor.stop().await;
    let processor = start(&config);
    produce_events(&producer, &config.topics.events, second, Encoding::Json).await;
    let got = await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(90)).await;
    processor.stop().await;
    assert_eq!(count(&got), want);
    assert_eq!(got, expected);
}

/// The chaos test of `processor_recovery.rs` under the statistical rule: the processor binary
/// is killed without warning three times while working through a backlog, then restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_three_points_leaves_the_same_decisions_as_an_uninterrupted_run() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let kafka = common::kafka().await;
    let mut config = config(&kafka.bootstrap, 4);
    config.policy = Policy {
        schedule: Schedule {
            probe: TrafficPercent::new(10.0).unwrap(),
            small: TrafficPercent::new(25.0).unwrap(),
            medium: TrafficPercent::new(50.0).unwrap(),
        },
        ..statistical()
    };
    let events = fleet(60, 90, &config.policy);
    let expected = expected_decisions(&events, &config.policy);
    let want = count(&expected);
    let rollbacks = expected
        .values()
        .flatten()
        .filter(|d| d.action == Action::Rollback)
        .count();
    assert!(rollbacks >= 10, "{rollbacks} rollbacks");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processor.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    rollout_breaker::kafka::processor::ensure_topics(&config)
        .await
        .unwrap();
    let producer = producer(&kafka.bootstrap);
    let watcher: BaseConsumer =
        common::consumer_config(&kafka.bootstrap, &common::unique_name("watch"))
            .create()
            .unwrap();
    let ends = |w: &BaseConsumer| -> i64 {
        (0..config.topics.partitions)
            .map(|p| {
                w.fetch_watermarks(&config.topics.decisions, p, Duration::from_secs(10))
                    .map_or(0, |m| m.1)
            })
            .sum()
    };
    let spawn = || {
        Proc::new(env!("CARGO_BIN_EXE_rollout-breaker"))
            .args(["run", "--config"])
            .arg(&path)
            .args(["--instance-id", "crashy", "--http-listen", "off"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn processor")
    };
    let chunks: Vec<&[ExecutionEvent]> = events.chunks(events.len() / 4 + 1).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        produce_events(&producer, &config.topics.events, chunk, Encoding::Json).await;
        let before = ends(&watcher);
        let mut child = spawn();
        if i + 1 < chunks.len() {
            // Kill it once it has committed a transaction, while it works through the backlog.
            let deadline = Instant::now() + Duration::from_secs(60);
            while ends(&watcher) <= before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
        } else {
            let got =
                await_decisions(&kafka.bootstrap, &config, want, Duration::from_secs(120)).await;
            child.kill().unwrap();
            child.wait().unwrap();
            let settled = await_decisions(
                &kafka.bootstrap,
                &config,
                usize::MAX,
                Duration::from_secs(3),
            )
            .await;
            assert_eq!(count(&got), want);
            let differing: Vec<&String> = expected
                .iter()
                .filter(|(r, ds)| settled.get(*r) != Some(*ds))
                .map(|(r, _)| r)
                .collect();
            assert!(differing.is_empty(), "rollouts differ: {differing:?}");
            assert_eq!(settled, expected);
        }
    }
}

/// Produces the first half of `events`, lets a processor decide on it, stops it, starts a
/// fresh one (restore from the decisions topic, windows and statistics rebuilt by replaying
/// events) for the second half, and checks that the decisions topic ends up holding exactly
/// `expected`.
async fn restart_halfway_and_compare(
    bootstrap: &str,
    config: &Config,
    events: &[ExecutionEvent],
    expected: &BTreeMap<String, Vec<Decision>>,
) {
    let want = count(expected);
    let producer = producer(bootstrap);
    let (first, second) = events.split_at(events.len() / 2);
    let processor = start(config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce_events(&producer, &config.topics.events, first, Encoding::Json).await;
    let _ = await_decisions(bootstrap, config, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    processor.stop().await;
    let processor = start(config);
    produce_events(&producer, &config.topics.events, second, Encoding::Json).await;
    let got = await_decisions(bootstrap, config, want, Duration::from_secs(90)).await;
    processor.stop().await;
    let settled = await_decisions(bootstrap, config, usize::MAX, Duration::from_secs(3)).await;
    assert_eq!(count(&got), want);
    assert_eq!(&settled, expected);
}
