//! [`RouterConfig`]: what a [`DecisionTable`](super::DecisionTable) follows and how soon it
//! gives up on a table that is not known current.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RouterError;
use crate::codec::Encoding;

/// Configuration of a [`DecisionTable`](super::DecisionTable).
///
/// ```toml
/// bootstrap_servers = "127.0.0.1:19092"
/// topic = "rollout-decisions"
/// encoding = "avro"
/// stale_after_ms = 30000
/// [options]                 # passed to librdkafka as is (SASL/SSL, tuning)
/// "security.protocol" = "SASL_SSL"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// The decisions topic (compacted, keyed by rollout id).
    pub topic: String,
    /// Encoding of the decisions topic (`TopicsConfig::decisions_encoding`); records in
    /// another encoding are still read (sniffed), so a change of encoding needs no restart.
    pub encoding: Encoding,
    /// The table serves the baseline once it has not been known current for this long
    /// (spelled `stale_after_ms` in files, in milliseconds).
    #[serde(rename = "stale_after_ms", with = "duration_ms")]
    pub stale_after: Duration,
    /// Extra librdkafka consumer properties (security settings go here). The settings the
    /// table needs for correctness (`isolation.level`, `enable.auto.commit`, …) win.
    pub options: BTreeMap<String, String>,
}

/// Default `stale_after`: 30 s, the processor's `http.max_poll_gap_ms` default, so a router
/// gives up on the table about when the processor's own health check would fail.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);

impl Default for RouterConfig {
    fn default() -> Self {
        let topics = crate::config::TopicsConfig::default();
        Self {
            // Local broker of `scripts/kafka.sh`, as the processor's default.
            bootstrap_servers: "127.0.0.1:19092".into(),
            topic: topics.decisions,
            encoding: topics.decisions_encoding,
            stale_after: DEFAULT_STALE_AFTER,
            options: BTreeMap::new(),
        }
    }
}

impl RouterConfig {
    /// The default configuration for `topic` on `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RouterError> {
        let invalid = |field, message: String| Err(RouterError::Config { field, message });
        if self.bootstrap_servers.trim().is_empty() {
            return invalid("bootstrap_servers", "must not be empty".into());
        }
        if self.topic.trim().is_empty() {
            return invalid("topic", "must not be empty".into());
        }
        if let Some(message) = crate::config::tls_unavailable(&self.options) {
            return invalid("options", message);
        }
        let ms = self.stale_after.as_millis();
        if !(200..=3_600_000).contains(&ms) {
            return invalid(
                "stale_after_ms",
                format!("must be in [200, 3600000], got {ms}"),
            );
        }
        Ok(())
    }

    /// How often the topic's end offsets are probed: four probes per `stale_after`, so one
    /// lost or slow probe does not make a healthy table stale.
    pub(super) fn probe_interval(&self) -> Duration {
        (self.stale_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }

    /// Timeout of each broker call of a probe.
    pub(super) fn probe_timeout(&self) -> Duration {
        (self.stale_after / 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// How often the state is re-evaluated (bounds how late `Stale` is noticed).
    pub(super) fn tick(&self) -> Duration {
        (self.stale_after / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: RouterConfig = toml::from_str("topic = \"d\"\nstale_after_ms = 2000").unwrap();
        assert_eq!(c.stale_after, Duration::from_secs(2));
        assert_eq!(c.encoding, Encoding::AvroSingleObject);
        c.validate().unwrap();
        assert_eq!(c.probe_interval(), Duration::from_millis(500));
        let e = toml::from_str::<RouterConfig>("stale_after = 3").unwrap_err();
        assert!(e.to_string().contains("stale_after"), "{e}");
        let c = RouterConfig {
            stale_after: Duration::from_millis(10),
            ..RouterConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("stale_after_ms"), "{e}");
        assert!(!e.is_retryable());
    }
}
