//! The decision table loses its broker and gets it back. Runs a private single-node broker
//! (`scripts/kafka.sh` with its own ports and data dir) so the shared one is never disturbed,
//! and makes it unreachable by freezing its process (SIGSTOP): connections stay open but
//! nothing answers, the hardest loss to notice. SIGCONT brings it back with its data.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rollout_breaker::codec::{encode_decision, Encoding};
use rollout_breaker::engine::{Action, Cause, Decision, MetricsSnapshot, Phase, TrafficPercent};
use rollout_breaker::router::{DecisionTable, RouteReason, RouterConfig, TableState};

/// A broker of our own; stopped (after being thawed) when dropped.
struct PrivateBroker {
    env: Vec<(&'static str, String)>,
    pid_file: PathBuf,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

impl PrivateBroker {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("kafka");
        let env = vec![
            ("KAFKA_PORT", free_port().to_string()),
            ("KAFKA_CONTROLLER_PORT", free_port().to_string()),
            ("KAFKA_SSL_PORT", free_port().to_string()),
            ("KAFKA_DATA_DIR", data.display().to_string()),
        ];
        let out = Command::new(script())
            .arg("start")
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "private broker did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bootstrap = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP="))
            .expect("kafka.sh prints KAFKA_BOOTSTRAP")
            .to_owned();
        // kafka.sh keeps the pid file beside the data dir: `<data dir>.pid`.
        let pid_file = PathBuf::from(format!("{}.pid", data.display()));
        Self {
            env,
            pid_file,
            bootstrap,
            _dir: dir,
        }
    }

    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(&self.pid_file).unwrap();
        let status = Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if self.pid_file.exists() {
            self.signal("-CONT");
        }
        let _ = Command::new(script())
            .arg("stop")
            .envs(self.env.iter().cloned())
            .status();
    }
}

fn full(id: &str) -> Decision {
    Decision {
        rollout_id: id.into(),
        sequence: 1,
        action: Action::Start,
        from: Phase::Off,
        to: Phase::Full,
        traffic: TrafficPercent::FULL,
        breaker: Phase::Full.breaker(),
        paused: false,
        reason: String::new(),
        metrics: MetricsSnapshot::default(),
        at: 1_764_222_000_000,
        cause: Cause::Operator,
        actor: "test".into(),
        candidate_version: None,
        baseline_version: None,
        policy_json: None,
        phase_started_at: None,
        warning: None,
        scope: rollout_breaker::engine::Scope::DEFAULT,
    }
}

async fn wait_for(table: &DecisionTable, state: TableState, within: Duration) -> Duration {
    let started = Instant::now();
    while table.state() != state {
        assert!(
            started.elapsed() < within,
            "not {state} after {within:?} (is {})",
            table.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_broker_makes_the_table_stale_and_its_return_ready() {
    let broker = tokio::task::spawn_blocking(PrivateBroker::start)
        .await
        .unwrap();
    let topic = common::unique_name("router-loss");
    common::create_topic(
        &broker.bootstrap,
        &topic,
        2,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let producer: BaseProducer = common::producer_config(&broker.bootstrap).create().unwrap();
    let bytes = encode_decision(&full("r"), Encoding::AvroSingleObject);
    producer
        .send(BaseRecord::to(&topic).key("r").payload(&bytes))
        .map_err(|(e, _)| e)
        .unwrap();
    tokio::task::block_in_place(|| producer.flush(Duration::from_secs(30))).unwrap();

    let stale_after = Duration::from_secs(2);
    let table = DecisionTable::start(RouterConfig {
        stale_after,
        ..RouterConfig::new(&broker.bootstrap, &topic)
    })
    .unwrap();
    table.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(table.should_use_new_version("r", "user-1"));

    broker.signal("-STOP");
    let lost = Instant::now();
    // Stale after `stale_after` plus at most one probe interval and one tick, not before.
    let took = wait_for(&table, TableState::Stale, Duration::from_secs(6)).await;
    assert!(
        lost.elapsed() >= stale_after - Duration::from_millis(600),
        "stale after only {took:?}"
    );
    assert!(!table.should_use_new_version("r", "user-1"));
    let route = table.route("r", "user-1");
    assert_eq!(
        (route.use_candidate, route.reason, route.phase),
        (false, RouteReason::Stale, Some(Phase::Full))
    );
    assert!(table.lookups().stale >= 2);
    eprintln!(
        "stale {:?} after the broker froze (stale_after {stale_after:?})",
        lost.elapsed()
    );

    broker.signal("-CONT");
    let back = Instant::now();
    wait_for(&table, TableState::Ready, Duration::from_secs(60)).await;
    eprintln!("ready {:?} after the broker came back", back.elapsed());
    assert!(table.should_use_new_version("r", "user-1"));
    tokio::task::block_in_place(|| table.shutdown());
}
