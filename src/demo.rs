//! `rollout-breaker demo`: the whole system in one process. A Kafka-protocol broker
//! (librdkafka's in-process mock cluster, or a real one with `--brokers`), the processor, a
//! decision table as routers use it, and a simulated fleet playing the seed's two scenarios:
//! a good candidate that reaches FULL and a bad one that rolls back from SMALL.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::agent::{EmitterConfig, EventEmitter};
use crate::codec;
use crate::config::Config;
use crate::engine::{Action, Decision, Phase};
use crate::fleet::{self, ScenarioProgress};
use crate::kafka::client::reader_config;
use crate::router::{DecisionTable, RouterConfig};
use crate::sim::Scenario;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Kafka client or mock cluster failure.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The processor failed.
    #[error("processor: {0}")]
    Processor(#[from] crate::kafka::processor::ProcessorError),
    /// The decision table failed.
    #[error("router: {0}")]
    Router(#[from] crate::router::RouterError),
    /// The event emitter failed.
    #[error("emitter: {0}")]
    Emitter(#[from] crate::agent::EmitterError),
}

/// What the demo saw: every published decision per rollout.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Decisions per rollout, in order.
    pub decisions: BTreeMap<String, Vec<Decision>>,
    /// Traffic per scenario.
    pub progress: Vec<ScenarioProgress>,
    /// Wall-clock duration.
    pub elapsed: Duration,
}

impl DemoReport {
    /// The phase path of a rollout, e.g. `OFF → PROBE → SMALL → OFF`.
    pub fn path(&self, rollout: &str) -> Vec<Phase> {
        let ds = self.decisions.get(rollout).map_or(&[][..], Vec::as_slice);
        let mut path = vec![Phase::Off];
        path.extend(ds.iter().filter(|d| d.to != d.from).map(|d| d.to));
        path
    }

    /// Whether both scenarios ended as the seed says.
    pub fn as_expected(&self) -> bool {
        use Phase::*;
        self.path(GOOD) == [Off, Probe, Small, Medium, Full]
            && self.path(BAD) == [Off, Probe, Small, Off]
    }
}

const GOOD: &str = "checkout-agent";
const BAD: &str = "search-agent";
/// Simulated seconds per wall-clock second.
const SPEED: f64 = 10.0;
/// Upper bound of the whole demo.
const DEADLINE: Duration = Duration::from_secs(55);

fn fmt_phase(p: Option<Phase>) -> String {
    p.map_or_else(|| "-".into(), |p| p.to_string())
}

/// Runs the demo, printing a live view to stdout.
pub async fn run(brokers: Option<String>) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let mut config = Config::default();
    let run_id = std::process::id();
    for (name, topic) in [
        ("events", &mut config.topics.events),
        ("decisions", &mut config.topics.decisions),
        ("commands", &mut config.topics.commands),
        ("dlq", &mut config.topics.dead_letter),
    ] {
        *topic = format!("demo-{run_id}-{name}");
    }
    config.kafka.group_id = format!("demo-{run_id}");
    config.kafka.instance_id = "demo".into();
    config.http.listen = None;
    config.topics.partitions = 2;
    config.processing.max_batch_ms = 20;
    // The two reference scenarios are the seed's, written for its threshold rule: a handful of
    // executions per phase, decided in seconds. The statistical rule (the default) would hold
    // them in PROBE; `bench quality` measures it.
    config.policy = crate::engine::Policy::threshold();
    // Held for the whole demo: dropping it stops the in-process broker.
    let mut _mock: Option<MockCluster<'static, DefaultProducerContext>> = None;
    match brokers {
        Some(b) => {
            println!("broker: {b}");
            config.kafka.bootstrap_servers = b;
        }
        None => {
            let mock = MockCluster::new(1)?;
            for t in [
                &config.topics.events,
                &config.topics.decisions,
                &config.topics.commands,
                &config.topics.dead_letter,
            ] {
                mock.create_topic(t, config.topics.partitions, 1)?;
            }
            config.kafka.bootstrap_servers = mock.bootstrap_servers();
            // The mock cluster has no admin API: topics exist already.
            config.topics.create_missing = false;
            println!("broker: librdkafka in-process mock cluster at {} (use --brokers host:port for a real one)", config.kafka.bootstrap_servers);
            _mock = Some(mock);
        }
    }
    let policy = &config.policy;
    println!(
        "policy: threshold rule, completion >= {} (trip < {}, advance >= {}), mean latency <= {} ms, >= {} samples per phase, window {} s, tick {} s",
        policy.min_task_completion_rate,
        policy.rollback_threshold,
        policy.advancement_threshold,
        policy.max_latency_ms,
        policy.min_samples_per_phase,
        policy.monitoring_window_ms / 1000,
        policy.evaluation_interval_ms / 1000
    );
    println!("simulated time runs {SPEED}x faster than the clock; event time stays exact\n");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let processor = tokio::spawn(crate::kafka::processor::run(config.clone(), async move {
        let _ = stop_rx.await;
    }));
    let mut router_config =
        RouterConfig::new(&config.kafka.bootstrap_servers, &config.topics.decisions);
    router_config.encoding = config.topics.decisions_encoding;
    router_config.options = config.kafka.options.clone();
    let table = DecisionTable::start(router_config)?;
    table.wait_ready(Duration::from_secs(30)).await?;
    let mut emitter_config =
        EmitterConfig::new(&config.kafka.bootstrap_servers, &config.topics.events);
    emitter_config.encoding = config.topics.events_encoding;
    let emitter = EventEmitter::new(emitter_config)?;

    // Played in the present: a real broker would delete events older than its retention.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(crate::sim::SCENARIO_EPOCH_MS, |d| d.as_millis() as i64);
    let mut scenarios = vec![
        Scenario::successful_rollout(GOOD),
        Scenario::automatic_rollback(BAD),
    ];
    for s in &mut scenarios {
        s.start_ms = now - now % 10_000;
    }
    println!(
        "{:>6}  {:<16} {:<8} {:>7} {:>9} {:>9}",
        "t(sim)", "rollout", "phase", "traffic", "events", "candidate"
    );
    let t0 = scenarios[0].start_ms;
    let progress = fleet::drive(
        scenarios,
        &table,
        &emitter,
        SPEED,
        |ps| {
            let mut out = String::new();
            for p in ps {
                let _ = writeln!(
                    out,
                    "{:>5}s  {:<16} {:<8} {:>7} {:>9} {:>9}",
                    (p.sim_time_ms - t0) / 1000,
                    p.rollout_id,
                    fmt_phase(table.entry(&p.rollout_id).map(|e| e.phase)),
                    table
                        .entry(&p.rollout_id)
                        .map_or("0%".into(), |e| e.traffic.to_string()),
                    p.emitted,
                    p.candidate
                );
            }
            print!("{out}");
        },
        |_| {
            let done = |r: &str, p: Phase| {
                table
                    .entry(r)
                    .is_some_and(|e| e.phase == p && e.sequence > 1)
            };
            (done(GOOD, Phase::Full) && done(BAD, Phase::Off)) || started.elapsed() > DEADLINE
        },
    )
    .await;
    // One last line of the live view, with the final phases.
    for p in &progress {
        let e = table.entry(&p.rollout_id);
        println!(
            "{:>5}s  {:<16} {:<8} {:>7} {:>9} {:>9}",
            (p.sim_time_ms - t0) / 1000,
            p.rollout_id,
            fmt_phase(e.as_ref().map(|e| e.phase)),
            e.map_or("0%".into(), |e| e.traffic.to_string()),
            p.emitted,
            p.candidate
        );
    }
    let _ = emitter.flush(Duration::from_secs(10));
    let _ = stop_tx.send(());
    processor.await.expect("processor task")?;
    table.shutdown();

    let decisions = read_all_decisions(&config)?;
    Ok(DemoReport {
        decisions,
        progress,
        elapsed: started.elapsed(),
    })
}

fn read_all_decisions(config: &Config) -> Result<BTreeMap<String, Vec<Decision>>, DemoError> {
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-report", config.kafka.group_id)).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..config.topics.partitions {
        tpl.add_partition_offset(&config.topics.decisions, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut ends = Vec::new();
    for p in 0..config.topics.partitions {
        ends.push(
            consumer
                .fetch_watermarks(&config.topics.decisions, p, Duration::from_secs(10))?
                .1,
        );
    }
    let mut out: BTreeMap<String, Vec<Decision>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let pos = consumer.position()?;
        let caught_up = (0..config.topics.partitions).all(|p| {
            pos.find_partition(&config.topics.decisions, p)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|o| o >= ends[p as usize])
        });
        if caught_up {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Ok(d) = codec::decode_decision_any(m.payload().unwrap_or_default()) {
                out.entry(d.rollout_id.clone()).or_default().push(d);
            }
        }
    }
    for ds in out.values_mut() {
        ds.sort_by_key(|d| d.sequence);
    }
    Ok(out)
}

/// Prints the summary of a demo run.
pub fn print_summary(report: &DemoReport) {
    println!("\nsummary ({:.1} s):", report.elapsed.as_secs_f64());
    for (rollout, expect) in [
        (GOOD, "scenario 1, successful rollout"),
        (BAD, "scenario 2, automatic rollback"),
    ] {
        let path: Vec<String> = report
            .path(rollout)
            .iter()
            .map(ToString::to_string)
            .collect();
        println!("  {rollout} ({expect}): {}", path.join(" -> "));
        for d in report.decisions.get(rollout).into_iter().flatten() {
            let breaker = if d.action == Action::Maintain {
                String::new()
            } else {
                format!(" [{}]", d.breaker)
            };
            println!(
                "    #{} {} {} -> {} at {}%{}: {}",
                d.sequence,
                d.action,
                d.from,
                d.to,
                d.traffic.percent(),
                breaker,
                d.reason
            );
        }
    }
    println!(
        "\n{}",
        if report.as_expected() {
            "both scenarios ended as the seed says: FULL with the breaker CLOSED, and a rollback to OFF with the breaker OPEN"
        } else {
            "UNEXPECTED: a scenario did not end as the seed says"
        }
    );
}
