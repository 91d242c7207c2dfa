//! Processor configuration: a TOML file, overridden by `ROLLOUT_BREAKER_*` environment variables
//! and command-line flags (see `rollout-breaker run --help`).
//!
//! ```toml
//! [kafka]
//! bootstrap_servers = "127.0.0.1:9092"
//! group_id = "rollout-breaker"
//! instance_id = "processor-1"          # stable per instance: fences its own zombie
//! [kafka.options]                      # passed to librdkafka as is (SASL/SSL, tuning)
//! "security.protocol" = "SASL_SSL"
//!
//! [topics]
//! events = "rollout-events"
//! partitions = 6                       # used when the processor creates the topics
//!
//! [policy]                             # the default policy (see engine::policy)
//! min_task_completion_rate = 0.85
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::{Encoding, SchemaIds};
use crate::engine::{Policy, PolicyError};

/// Why librdkafka `options` cannot work in this build: a TLS `security.protocol` (`SSL`,
/// `SASL_SSL`) in a binary built without the `tls` cargo feature, which librdkafka would refuse
/// with a message that does not say how to fix it. `None` when they can.
pub fn tls_unavailable(options: &BTreeMap<String, String>) -> Option<String> {
    let protocol = options.get("security.protocol")?;
    let needs_tls = protocol.trim().to_ascii_uppercase().ends_with("SSL");
    (needs_tls && !cfg!(feature = "tls")).then(|| {
        format!(
            "\"security.protocol\" = \"{protocol}\" needs TLS, and this binary was built without \
             it: build with `cargo build --release --features tls` (needs OpenSSL headers, Debian \
             libssl-dev), or use the container image, which is built with it"
        )
    })
}

/// A configuration that cannot be used. The message names the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape (unknown fields included).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said (it names the key).
        message: String,
    },
    /// A field is out of range.
    #[error("invalid config: `{field}` {message}")]
    Invalid {
        /// The field, as spelled in the file.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A `[notify]` field is invalid (`field` names the webhook by index).
    #[error("invalid config: `{field}` {message}")]
    Notify {
        /// The field, as `notify.webhooks[i].name`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The default policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Broker connection and client identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: String,
    /// Consumer group of the processors.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Stable id of this processor instance; the transactional id is
    /// `{group_id}-{instance_id}`, so a restarted instance fences its previous incarnation and
    /// aborts its open transaction at once. Defaults to the host name.
    #[serde(default = "default_instance_id")]
    pub instance_id: String,
    /// Extra librdkafka properties for every client (security settings go here).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Local broker of `scripts/kafka.sh`.
fn default_bootstrap() -> String {
    "127.0.0.1:19092".into()
}
fn default_group_id() -> String {
    "rollout-breaker".into()
}
fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "processor".into())
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: default_bootstrap(),
            group_id: default_group_id(),
            instance_id: default_instance_id(),
            options: BTreeMap::new(),
        }
    }
}

/// Topic names and how the processor creates missing ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Execution events from agents, keyed by rollout id.
    pub events: String,
    /// Phase changes, compacted, keyed by rollout id, co-partitioned with `events`.
    pub decisions: String,
    /// Operator commands, keyed by rollout id, co-partitioned with `events`.
    pub commands: String,
    /// Records that could not be decoded or were refused, with headers saying why.
    pub dead_letter: String,
    /// Create missing topics at start.
    pub create_missing: bool,
    /// Partitions of topics the processor creates.
    pub partitions: i32,
    /// Replication factor of topics the processor creates.
    pub replication_factor: i32,
    /// Encoding of each topic.
    pub events_encoding: Encoding,
    /// Encoding of the decisions topic.
    pub decisions_encoding: Encoding,
    /// Encoding of the commands topic.
    pub commands_encoding: Encoding,
    /// Confluent schema ids accepted besides each topic's own.
    pub schema_ids: SchemaIds,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            events: "rollout-events".into(),
            decisions: "rollout-decisions".into(),
            commands: "rollout-commands".into(),
            dead_letter: "rollout-dead-letter".into(),
            create_missing: true,
            partitions: 6,
            replication_factor: 1,
            events_encoding: Encoding::Json,
            decisions_encoding: Encoding::AvroSingleObject,
            commands_encoding: Encoding::Json,
            schema_ids: SchemaIds::default(),
        }
    }
}

/// Batching, limits and restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// Start rollouts on their first event (otherwise only a START command does).
    pub auto_start: bool,
    /// Most input records per transaction.
    pub max_batch_records: usize,
    /// Longest time a transaction collects input before it commits, in ms (bounds decision
    /// latency).
    pub max_batch_ms: u64,
    /// Records larger than this go to the dead-letter topic unread.
    pub max_record_bytes: usize,
    /// Stop the processor when more than this fraction of the last `dead_letter_window`
    /// records were dead letters (a wrong topic or encoding, not a few bad agents).
    pub max_dead_letter_ratio: f64,
    /// Number of recent records the dead-letter ratio is computed over.
    pub dead_letter_window: u64,
    /// Extra look-back, in ms of event time, when rebuilding windows from the events topic on
    /// restore (covers producers whose record timestamps lag their event times).
    pub restore_slack_ms: u64,
    /// Timeout of transaction calls, in ms.
    pub transaction_timeout_ms: u64,
    /// Records whose own time (event or command time) is more than this many ms ahead of
    /// their record timestamp are dead-lettered (`clock_skew`), so no producer can move a
    /// rollout's watermark into the future.
    pub max_clock_skew_ms: u64,
    /// Threads that decode and check a large batch's records before they are applied in
    /// order (0, the default: one per core, at most 4; 1: the loop's own thread only).
    /// Decisions do not depend on it. On the 2-core development machine, with the broker on
    /// the same cores, two threads drain a backlog about 12 % faster than one (README
    /// "Benchmarks").
    pub decode_threads: usize,
}

impl ProcessingConfig {
    /// The number of decoding threads `decode_threads` asks for on this machine.
    pub fn decode_threads(&self) -> usize {
        match self.decode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        }
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            auto_start: true,
            max_batch_records: 20_000,
            max_batch_ms: 50,
            max_record_bytes: crate::codec::MAX_RECORD_BYTES,
            max_dead_letter_ratio: 0.5,
            dead_letter_window: 10_000,
            restore_slack_ms: 60_000,
            transaction_timeout_ms: 30_000,
            // One minute: well above NTP-synchronised clock differences and producer batching,
            // well below the 5-minute decision window one bad clock must not blind.
            max_clock_skew_ms: 60_000,
            decode_threads: 0,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// HTTP listener for `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on; `None` disables the listener.
    pub listen: Option<SocketAddr>,
    /// `/healthz` fails when the consumer has not polled for this long, in ms.
    pub max_poll_gap_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            max_poll_gap_ms: 30_000,
        }
    }
}

/// The whole processor configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Broker and identity.
    pub kafka: KafkaConfig,
    /// Topics.
    pub topics: TopicsConfig,
    /// Default policy of rollouts that do not bring their own.
    pub policy: Policy,
    /// Batching, limits, restore.
    pub processing: ProcessingConfig,
    /// Metrics and health endpoints.
    pub http: HttpConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// Webhooks that receive published decisions.
    pub notify: crate::notify::NotifyConfig,
}

impl Config {
    /// Parses and validates a TOML configuration.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Checks ranges and relations between fields.
    ///
    /// ```
    /// # use rollout_breaker::config::Config;
    /// let mut config = Config::default();
    /// config.kafka.options.insert("security.protocol".into(), "SASL_SSL".into());
    /// // Without the `tls` cargo feature, librdkafka has no OpenSSL: say so before connecting.
    /// assert_eq!(config.validate().is_ok(), cfg!(feature = "tls"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        self.policy.validate()?;
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return invalid("kafka.bootstrap_servers", "must not be empty".into());
        }
        if self.kafka.instance_id.trim().is_empty() {
            return invalid("kafka.instance_id", "must not be empty".into());
        }
        if let Some(message) = tls_unavailable(&self.kafka.options) {
            return invalid("kafka.options", message);
        }
        let t = &self.topics;
        let names = [&t.events, &t.decisions, &t.commands, &t.dead_letter];
        if names.iter().any(|n| n.trim().is_empty()) {
            return invalid("topics", "topic names must not be empty".into());
        }
        for (i, a) in names.iter().enumerate() {
            if names[i + 1..].contains(a) {
                return invalid("topics", format!("topic `{a}` is used for two purposes"));
            }
        }
        if !(1..=10_000).contains(&t.partitions) {
            return invalid(
                "topics.partitions",
                format!("must be in [1, 10000], got {}", t.partitions),
            );
        }
        if !(1..=32).contains(&t.replication_factor) {
            return invalid(
                "topics.replication_factor",
                format!("must be in [1, 32], got {}", t.replication_factor),
            );
        }
        let p = &self.processing;
        if p.decode_threads > 64 {
            return invalid(
                "processing.decode_threads",
                format!(
                    "must be in [0, 64] (0: one per core), got {}",
                    p.decode_threads
                ),
            );
        }
        if !(1..=1_000_000).contains(&p.max_batch_records) {
            return invalid(
                "processing.max_batch_records",
                format!("must be in [1, 1000000], got {}", p.max_batch_records),
            );
        }
        if !(1..=60_000).contains(&p.max_batch_ms) {
            return invalid(
                "processing.max_batch_ms",
                format!("must be in [1, 60000], got {}", p.max_batch_ms),
            );
        }
        if !(1..=(64 << 20)).contains(&p.max_record_bytes) {
            return invalid(
                "processing.max_record_bytes",
                format!("must be in [1, 67108864], got {}", p.max_record_bytes),
            );
        }
        if !(0.0..=1.0).contains(&p.max_dead_letter_ratio) {
            return invalid(
                "processing.max_dead_letter_ratio",
                format!("must be in [0, 1], got {}", p.max_dead_letter_ratio),
            );
        }
        if p.dead_letter_window == 0 {
            return invalid("processing.dead_letter_window", "must be >= 1".into());
        }
        if !(1_000..=900_000).contains(&p.transaction_timeout_ms) {
            return invalid(
                "processing.transaction_timeout_ms",
                format!(
                    "must be in [1000, 900000], got {}",
                    p.transaction_timeout_ms
                ),
            );
        }
        if let Err((field, message)) = self.notify.validate() {
            return Err(ConfigError::Notify { field, message });
        }
        Ok(())
    }

    /// The rules input records are admitted by (see [`crate::input::admission`]), for input
    /// topics of `partitions` partitions (the topics' actual count, not the creation default).
    pub fn admission_rules(&self, partitions: i32) -> crate::input::AdmissionRules {
        crate::input::AdmissionRules {
            partitions,
            max_record_bytes: self.processing.max_record_bytes,
            max_clock_skew_ms: self.processing.max_clock_skew_ms,
            events_encoding: self.topics.events_encoding,
            commands_encoding: self.topics.commands_encoding,
            schema_ids: self.topics.schema_ids.clone(),
        }
    }

    /// The transactional id of this instance: `{group_id}-{instance_id}`.
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.kafka.group_id, self.kafka.instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_and_valid() {
        let c = Config::from_toml("", "test").unwrap();
        assert_eq!(c.topics.events, "rollout-events");
        assert_eq!(c.policy, Policy::default());
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_toml("[topics]\npartitions = 0", "t").unwrap_err();
        assert!(e.to_string().contains("topics.partitions"), "{e}");
        let e = Config::from_toml("[processing]\nmax_dead_letter_ratio = 2.0", "t").unwrap_err();
        assert!(e.to_string().contains("max_dead_letter_ratio"), "{e}");
        let e = Config::from_toml("[kafka]\nbootstrap = \"x\"", "t").unwrap_err();
        assert!(e.to_string().contains("bootstrap"), "{e}");
        let e = Config::from_toml("[policy]\nrollback_threshold = 0.99", "t").unwrap_err();
        assert!(e.to_string().contains("rollback_threshold"), "{e}");
        let e = Config::from_toml("[topics]\ncommands = \"rollout-events\"", "t").unwrap_err();
        assert!(e.to_string().contains("two purposes"), "{e}");
        let e = Config::from_toml(
            "[topics]\nevents_encoding = { avro_confluent = { schema_id = 7 } }",
            "t",
        );
        assert!(e.is_ok(), "{e:?}");
    }
}
