//! Helpers shared by the integration tests. Each test file does `mod common;`.
//!
//! Tests that need Kafka call [`kafka`] first. It never skips: without a broker the test
//! fails and says how to get one (`scripts/test` starts a real single-node broker).
#![allow(dead_code)] // Not every test file uses every helper.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use rollout_breaker::kafka::admin::{ensure_topics, TopicSpec, TopicStatus};
use testcontainers_modules::kafka::apache;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

pub mod cli;
pub mod http;
pub mod processor;

/// Generous bound for admin calls against a broker that may still be warming up.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A reachable Kafka broker. Keep it alive for the whole test: when it came from
/// testcontainers, dropping it stops the container.
pub struct KafkaHandle {
    /// `bootstrap.servers` for clients.
    pub bootstrap: String,
    _container: Option<ContainerAsync<apache::Kafka>>,
}

/// Finds a broker for an integration test (async because starting a container is).
///
/// 1. `KAFKA_BOOTSTRAP`, as exported by `scripts/test` (which starts a real single-node
///    broker with `scripts/kafka.sh`), or any broker you point it at;
/// 2. otherwise a testcontainers `apache/kafka` container, if a Docker engine is reachable;
/// 3. otherwise the test panics, saying how to get a broker.
pub async fn kafka() -> KafkaHandle {
    // `RUST_LOG=rollout_breaker=info scripts/test FILE -- --nocapture` shows the processor's logs.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    if let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") {
        if !bootstrap.trim().is_empty() {
            return KafkaHandle {
                bootstrap,
                _container: None,
            };
        }
    }
    if !docker_configured() {
        panic!(
            "this test needs a Kafka broker: run it through `scripts/test` (which starts one), \
             or set KAFKA_BOOTSTRAP=host:port (e.g. after `scripts/kafka.sh start`); \
             no Docker engine is configured for testcontainers either"
        );
    }
    let container = match testcontainers_kafka().start().await {
        Ok(container) => container,
        Err(err) => panic!(
            "this test needs a Kafka broker: run it through `scripts/test` (which starts one), \
             or set KAFKA_BOOTSTRAP=host:port; starting a testcontainers Kafka failed: {err}"
        ),
    };
    let port = container
        .get_host_port_ipv4(apache::KAFKA_PORT)
        .await
        .expect("the Kafka container exposes its client port");
    KafkaHandle {
        bootstrap: format!("127.0.0.1:{port}"),
        _container: Some(container),
    }
}

/// The broker image and single-node settings of docker-compose.yml's `kafka` service (the
/// same `apache/kafka` tag, and its env file: one replica for the offsets and transaction-state
/// topics, min.isr 1 — without them transactional producers time out). testcontainers' own
/// listener settings stay. `tests/deploy_manifests.rs` checks the tag against the compose file.
pub fn testcontainers_kafka(
) -> testcontainers_modules::testcontainers::ContainerRequest<apache::Kafka> {
    let mut request = apache::Kafka::default()
        .with_jvm_image()
        .with_tag(TESTCONTAINERS_KAFKA_TAG);
    for (name, value) in kafka_env_file() {
        request = request.with_env_var(name, value);
    }
    request
}

/// The `apache/kafka` image tag testcontainers runs (docker-compose.yml runs the same).
pub const TESTCONTAINERS_KAFKA_TAG: &str = "4.1.1";

/// `deploy/compose/kafka.env` as (name, value) pairs.
pub fn kafka_env_file() -> Vec<(String, String)> {
    include_str!("../../deploy/compose/kafka.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Cheap look for a Docker engine before asking testcontainers, so the common case here
/// (no Docker) fails at once with the useful message.
fn docker_configured() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
        || std::env::var_os("HOME")
            .map(|home| std::path::Path::new(&home).join(".docker/run/docker.sock"))
            .is_some_and(|sock| sock.exists())
}

/// A fresh topic or group name, unique across tests, test processes and reruns against the
/// same broker: `<prefix>-<pid>-<nanos>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// Base client config for `bootstrap`.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000");
    config
}

/// Producer config: idempotent, acks from all in-sync replicas.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("enable.idempotence", "true")
        // Fail a test in seconds rather than after librdkafka's 5-minute default.
        .set("message.timeout.ms", "30000");
    config
}

/// Consumer config for a fresh `group`: reads from the earliest offset, commits nothing on
/// its own.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    config
}

/// An admin client for `bootstrap`.
pub fn admin_client(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap)
        .create()
        .expect("admin client config is valid")
}

/// Creates `name` with `partitions` partitions and the given topic configs through the
/// library's [`ensure_topics`]; returns once the topic is visible.
pub async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> TopicStatus {
    let admin = admin_client(bootstrap);
    let mut spec = TopicSpec::new(name, partitions);
    for (key, value) in configs {
        spec = spec.with_config(*key, *value);
    }
    let mut statuses = ensure_topics(&admin, &[spec], ADMIN_TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("creating topic {name}: {err}"));
    statuses.remove(0)
}
