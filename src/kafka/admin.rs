//! Topic admin: create the topics the processor needs, read their configs back, and check
//! that topics joined by key are co-partitioned.
//!
//! Everything here talks to the broker except [`check_co_partitioned`], which is a pure check
//! over partition counts that the caller has already fetched (so it is unit-tested without a
//! broker).
//!
//! [`ensure_topics`] and [`topic_config`] are async (the admin API of librdkafka answers on
//! its own queue). [`partition_count`] uses a metadata request, which blocks the calling
//! thread: call it from `tokio::task::spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;

/// Pause between two probes while waiting for new topics to become visible.
const VISIBILITY_POLL: Duration = Duration::from_millis(100);

/// A topic the processor needs, with the configs it must be created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions; `-1` lets the broker use its `num.partitions`.
    pub partitions: i32,
    /// Replicas per partition; `-1` lets the broker use its `default.replication.factor`.
    pub replication_factor: i32,
    /// Topic-level configs such as `("cleanup.policy", "compact")`, applied at creation only.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A spec with the broker's default replication factor and no topic configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            // -1: the broker's default.replication.factor, so the same spec works on a
            // single-node test broker and on a production cluster.
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Sets the replication factor.
    pub fn with_replication_factor(mut self, replication_factor: i32) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    /// Adds a topic-level config.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }

    fn validate(&self) -> Result<(), AdminError> {
        let invalid = |reason: String| AdminError::InvalidSpec {
            topic: self.name.clone(),
            reason,
        };
        if self.name.is_empty() {
            return Err(invalid("the topic name is empty".into()));
        }
        if self.partitions == 0 || self.partitions < -1 {
            return Err(invalid(format!(
                "partitions is {}; it must be at least 1, or -1 for the broker default",
                self.partitions
            )));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(invalid(format!(
                "replication_factor is {}; it must be at least 1, or -1 for the broker default",
                self.replication_factor
            )));
        }
        Ok(())
    }
}

/// What [`ensure_topics`] did for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOutcome {
    /// The topic did not exist and was created with the spec's partitions and configs.
    Created,
    /// The topic existed already; it was left as it is (its partitions and configs are not
    /// compared with the spec: use [`partition_count`] and [`topic_config`] for that).
    AlreadyExisted,
}

/// The outcome of [`ensure_topics`] for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,
    /// Whether it was created now or existed before.
    pub outcome: TopicOutcome,
}

/// Topics with their partition counts, as reported by [`AdminError::NotCoPartitioned`];
/// displays as `metrics has 6, rollouts has 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCounts(pub Vec<(String, i32)>);

impl fmt::Display for PartitionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (topic, count)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{topic} has {count}")?;
        }
        Ok(())
    }
}

/// Errors of the topic admin.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The principal may not create or describe this topic (Kafka ACLs). Not retryable: an
    /// operator must grant `Create`/`DescribeConfigs` on the topic or create it beforehand.
    #[error(
        "permission denied for topic '{topic}': grant the processor's principal Create and \
         DescribeConfigs on it, or create the topic beforehand"
    )]
    PermissionDenied {
        /// The topic the broker refused.
        topic: String,
    },
    /// The topic does not exist (or is not yet visible on the broker that answered).
    #[error("topic '{topic}' does not exist")]
    UnknownTopic {
        /// The missing topic.
        topic: String,
    },
    /// A [`TopicSpec`] that no broker would accept; nothing was sent.
    #[error("invalid spec for topic '{topic}': {reason}")]
    InvalidSpec {
        /// The topic of the spec.
        topic: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Topics that are joined by key have different partition counts, so equal keys would
    /// land on different partition numbers.
    #[error("topics are not co-partitioned: {counts}; give them the same partition count")]
    NotCoPartitioned {
        /// Every topic checked, with its partition count.
        counts: PartitionCounts,
    },
    /// The broker answered an operation on one topic with an error code.
    #[error("{operation} for topic '{topic}' failed: {code}")]
    Topic {
        /// The topic the error is about.
        topic: String,
        /// The admin operation, e.g. `"CreateTopics"`.
        operation: &'static str,
        /// The broker's (or librdkafka's) error code.
        code: RDKafkaErrorCode,
    },
    /// Topics were created but did not show up on the broker within the timeout.
    #[error("topic '{topic}' was created but is not visible after {waited:?}")]
    NotVisible {
        /// The topic that is not visible yet.
        topic: String,
        /// How long [`ensure_topics`] waited.
        waited: Duration,
    },
    /// The broker's answer had no result for a topic that was asked about.
    #[error("the broker's answer to {operation} has no result for topic '{topic}'")]
    MissingResult {
        /// The topic without a result.
        topic: String,
        /// The admin operation.
        operation: &'static str,
    },
    /// The decisions topic exists but is not compacted: routers and restores read it as a
    /// table, and with `delete` its decisions would expire (every router would fall back to
    /// the baseline, every restart would forget its rollouts). Not retryable.
    #[error(
        "topic '{topic}' has cleanup.policy={cleanup_policy}, but the decisions topic must be \
         compacted; fix it with `kafka-configs.sh --bootstrap-server <broker> --alter \
         --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact`"
    )]
    NotCompacted {
        /// The decisions topic.
        topic: String,
        /// Its `cleanup.policy` as the broker reports it.
        cleanup_policy: String,
    },
    /// A client-level error: the request could not be built, sent or answered in time.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Something about an existing topic that works but deserves an operator's look; the
/// processor logs each at start.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicWarning {
    /// The topic's `retention.ms` is shorter than the restore look-back, so a restart may
    /// find the events it needs to rebuild windows deleted.
    RetentionShorterThanLookBack {
        /// The events topic.
        topic: String,
        /// Its `retention.ms`.
        retention_ms: i64,
        /// What a restore reads back, in ms of record time.
        look_back_ms: u64,
    },
    /// The topic stamps records with the producer's time (`CreateTime`), not the broker's
    /// (`LogAppendTime`), so record timestamps cannot bound a producer's clock.
    CreateTime {
        /// The topic.
        topic: String,
    },
}

impl fmt::Display for TopicWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicWarning::RetentionShorterThanLookBack {
                topic,
                retention_ms,
                look_back_ms,
            } => write!(
                f,
                "topic '{topic}' has retention.ms={retention_ms}, shorter than the restore \
                 look-back of {look_back_ms} ms (monitoring_window + evaluation_interval + \
                 2 x allowed_lateness + restore_slack + max_clock_skew): a restart may not rebuild windows \
                 exactly; raise retention.ms above {look_back_ms}"
            ),
            TopicWarning::CreateTime { topic } => write!(
                f,
                "topic '{topic}' has message.timestamp.type=CreateTime: record timestamps \
                 come from producers' clocks; set message.timestamp.type=LogAppendTime"
            ),
        }
    }
}

/// Checks that the decisions topic's `cleanup.policy` (from [`topic_config`]) includes
/// `compact`.
pub fn check_compacted(topic: &str, configs: &BTreeMap<String, String>) -> Result<(), AdminError> {
    let policy = configs
        .get("cleanup.policy")
        .map_or("delete", String::as_str);
    if policy.split(',').any(|p| p.trim() == "compact") {
        Ok(())
    } else {
        Err(AdminError::NotCompacted {
            topic: topic.to_owned(),
            cleanup_policy: policy.to_owned(),
        })
    }
}

/// Warns when `retention.ms` (from [`topic_config`]; -1 means forever) is shorter than
/// `look_back_ms`.
pub fn check_retention(
    topic: &str,
    configs: &BTreeMap<String, String>,
    look_back_ms: u64,
) -> Option<TopicWarning> {
    let retention_ms: i64 = configs.get("retention.ms")?.parse().ok()?;
    (retention_ms >= 0 && (retention_ms as u64) < look_back_ms).then(|| {
        TopicWarning::RetentionShorterThanLookBack {
            topic: topic.to_owned(),
            retention_ms,
            look_back_ms,
        }
    })
}

/// Warns when the topic's `message.timestamp.type` is not `LogAppendTime`.
pub fn check_log_append_time(
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Option<TopicWarning> {
    (configs.get("message.timestamp.type").map(String::as_str) != Some("LogAppendTime")).then(
        || TopicWarning::CreateTime {
            topic: topic.to_owned(),
        },
    )
}

impl AdminError {
    /// Whether trying the same operation again later may succeed without anyone changing
    /// the cluster or the spec (timeouts, leader elections, brokers restarting).
    pub fn is_retryable(&self) -> bool {
        match self {
            AdminError::PermissionDenied { .. }
            | AdminError::UnknownTopic { .. }
            | AdminError::InvalidSpec { .. }
            | AdminError::NotCoPartitioned { .. }
            | AdminError::NotCompacted { .. } => false,
            AdminError::NotVisible { .. } | AdminError::MissingResult { .. } => true,
            AdminError::Topic { code, .. } => code_is_retryable(*code),
            // rdkafka's `rdkafka_error_code()` says None for AdminOp, so look inside.
            AdminError::Kafka(KafkaError::AdminOp(code)) => code_is_retryable(*code),
            AdminError::Kafka(err) => err.rdkafka_error_code().is_some_and(code_is_retryable),
        }
    }
}

/// Transient conditions of the cluster or the network, after Kafka's own
/// `RetriableException` subclasses and librdkafka's local transport errors.
fn code_is_retryable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::OperationTimedOut
            | C::RequestTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NetworkException
            | C::NotController
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError
            | C::ThrottlingQuotaExceeded
    )
}

fn is_permission_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

fn admin_options(timeout: Duration) -> AdminOptions {
    // operation_timeout makes the controller wait for the topic to be created before it
    // answers; request_timeout bounds the whole round trip on our side.
    AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout))
}

/// Creates every topic in `specs` that does not exist yet, with its partitions and configs,
/// and waits (within `timeout`) until the new topics are visible on the broker.
///
/// A topic that exists already is fine and left untouched ([`TopicOutcome::AlreadyExisted`]),
/// so calling this at every start is safe. A topic the principal may not create gives
/// [`AdminError::PermissionDenied`] naming the topic. The statuses come back in the order of
/// `specs`. Creating several topics is not atomic: on an error, topics before it may have been
/// created.
pub async fn ensure_topics<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<TopicStatus>, AdminError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    for spec in specs {
        spec.validate()?;
    }
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| NewTopic {
            name: &spec.name,
            num_partitions: spec.partitions,
            replication: TopicReplication::Fixed(spec.replication_factor),
            config: spec
                .configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        })
        .collect();
    let started = tokio::time::Instant::now();
    let results = admin
        .create_topics(&new_topics, &admin_options(timeout))
        .await?;

    let mut statuses = Vec::with_capacity(specs.len());
    for spec in specs {
        let result = results.iter().find(|r| match r {
            Ok(name) | Err((name, _)) => *name == spec.name,
        });
        let outcome = match result {
            Some(Ok(_)) => TopicOutcome::Created,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => TopicOutcome::AlreadyExisted,
            Some(Err((name, code))) if is_permission_error(*code) => {
                return Err(AdminError::PermissionDenied {
                    topic: name.clone(),
                });
            }
            Some(Err((name, code))) => {
                return Err(AdminError::Topic {
                    topic: name.clone(),
                    operation: "CreateTopics",
                    code: *code,
                });
            }
            None => {
                return Err(AdminError::MissingResult {
                    topic: spec.name.clone(),
                    operation: "CreateTopics",
                })
            }
        };
        statuses.push(TopicStatus {
            name: spec.name.clone(),
            outcome,
        });
    }

    // The controller acknowledges a creation before every broker has applied it; a consumer
    // or DescribeConfigs right after would see "unknown topic". Wait until it is described.
    let created: Vec<&str> = statuses
        .iter()
        .filter(|s| s.outcome == TopicOutcome::Created)
        .map(|s| s.name.as_str())
        .collect();
    wait_until_visible(admin, &created, timeout.saturating_sub(started.elapsed())).await?;
    Ok(statuses)
}

async fn wait_until_visible<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), AdminError> {
    let deadline = tokio::time::Instant::now() + timeout;
    for topic in topics {
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match topic_config(admin, topic, remaining.max(Duration::from_millis(500))).await {
                Ok(_) => break,
                Err(err) => {
                    let transient =
                        matches!(err, AdminError::UnknownTopic { .. }) || err.is_retryable();
                    if !transient {
                        return Err(err);
                    }
                    if remaining.is_zero() {
                        return Err(AdminError::NotVisible {
                            topic: (*topic).to_owned(),
                            waited: timeout,
                        });
                    }
                    tokio::time::sleep(VISIBILITY_POLL.min(remaining)).await;
                }
            }
        }
    }
    Ok(())
}

/// Reads a topic's effective configs (DescribeConfigs): its own overrides and the broker's
/// defaults. Sensitive entries, whose value the broker hides, are left out.
///
/// A topic that does not exist gives [`AdminError::UnknownTopic`]. So does a topic the
/// principal may not describe: rdkafka 0.39 does not pass on the broker's per-topic error
/// code here, so the two cannot be told apart.
pub async fn topic_config<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, AdminError> {
    let results: Vec<ConfigResourceResult> = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &admin_options(timeout))
        .await?;
    let resource = match results.into_iter().next() {
        Some(Ok(resource)) => resource,
        Some(Err(code)) => return Err(topic_error(topic, "DescribeConfigs", code)),
        None => {
            return Err(AdminError::MissingResult {
                topic: topic.to_owned(),
                operation: "DescribeConfigs",
            })
        }
    };
    // rdkafka 0.39 drops the per-resource error of DescribeConfigs: an unknown (or not
    // describable) topic comes back as a resource with no entries. A topic that exists always
    // has entries, because the broker lists its defaults too.
    if resource.entries.is_empty() {
        return Err(AdminError::UnknownTopic {
            topic: topic.to_owned(),
        });
    }
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|entry| Some((entry.name, entry.value?)))
        .collect())
}

/// The number of partitions of `topic`, or `None` if it does not exist, from a metadata
/// request on any client (`consumer.client()`, `producer.client()`, `admin.inner()`).
///
/// Blocks the calling thread for up to `timeout`.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, AdminError> {
    Ok(partitions_led(client, topic, timeout)?.map(|(count, _)| count))
}

/// [`partition_count`], once every partition of `topic` has a leader in the cluster's
/// metadata, or `within` has passed (then the count as it is). A topic created a moment ago
/// shows partitions without a leader for a while, and a new client that asks for one then
/// (a restore's first watermark query) waits in librdkafka's fixed steps of 100, 200, 300 ms:
/// measured, 0.7 s in a third of the bench's starts.
pub fn partition_count_led<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
    within: Duration,
) -> Result<Option<i32>, AdminError> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match partitions_led(client, topic, timeout)? {
            Some((_, false)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            found => return Ok(found.map(|(count, _)| count)),
        }
    }
}

/// `topic`'s partition count and whether every partition has a leader, or `None`.
fn partitions_led<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<(i32, bool)>, AdminError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Ok(None),
        Some(err) => return Err(topic_error(topic, "Metadata", err.into())),
    }
    let count = i32::try_from(found.partitions().len()).unwrap_or(i32::MAX);
    let led = found
        .partitions()
        .iter()
        .all(|p| p.leader() >= 0 && p.error().is_none());
    Ok(Some((count, led)))
}

fn topic_error(topic: &str, operation: &'static str, code: RDKafkaErrorCode) -> AdminError {
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            AdminError::UnknownTopic {
                topic: topic.to_owned(),
            }
        }
        code if is_permission_error(code) => AdminError::PermissionDenied {
            topic: topic.to_owned(),
        },
        code => AdminError::Topic {
            topic: topic.to_owned(),
            operation,
            code,
        },
    }
}

/// Checks that all topics have the same partition count, as a key join across them needs
/// (equal keys go to equal partition numbers only if the counts agree).
///
/// The error names every topic with its count. An empty or one-topic list is co-partitioned.
pub fn check_co_partitioned(counts: &[(String, i32)]) -> Result<(), AdminError> {
    let Some((_, first)) = counts.first() else {
        return Ok(());
    };
    if counts.iter().all(|(_, n)| n == first) {
        Ok(())
    } else {
        Err(AdminError::NotCoPartitioned {
            counts: PartitionCounts(counts.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    #[test]
    fn equal_counts_are_co_partitioned() {
        check_co_partitioned(&counts(&[
            ("metrics", 6),
            ("rollouts", 6),
            ("decisions", 6),
        ]))
        .unwrap();
    }

    #[test]
    fn empty_and_single_lists_are_co_partitioned() {
        check_co_partitioned(&[]).unwrap();
        check_co_partitioned(&counts(&[("metrics", 3)])).unwrap();
    }

    #[test]
    fn unequal_counts_name_every_topic_and_count() {
        let err = check_co_partitioned(&counts(&[("metrics", 6), ("rollouts", 3)])).unwrap_err();
        assert!(matches!(err, AdminError::NotCoPartitioned { .. }));
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "topics are not co-partitioned: metrics has 6, rollouts has 3; \
             give them the same partition count"
        );
    }

    #[test]
    fn a_late_mismatch_is_found() {
        let err =
            check_co_partitioned(&counts(&[("a", 2), ("b", 2), ("c", 2), ("d", 1)])).unwrap_err();
        assert!(err.to_string().contains("d has 1"));
    }

    #[test]
    fn specs_are_validated_before_anything_is_sent() {
        assert!(TopicSpec::new("t", 1).validate().is_ok());
        assert!(TopicSpec::new("t", -1).validate().is_ok());
        for bad in [
            TopicSpec::new("", 1),
            TopicSpec::new("t", 0),
            TopicSpec::new("t", -2),
            TopicSpec::new("t", 1).with_replication_factor(0),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(matches!(err, AdminError::InvalidSpec { .. }), "{err}");
        }
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let topic = |code| AdminError::Topic {
            topic: "t".into(),
            operation: "CreateTopics",
            code,
        };
        assert!(topic(RDKafkaErrorCode::RequestTimedOut).is_retryable());
        assert!(topic(RDKafkaErrorCode::NotController).is_retryable());
        assert!(!topic(RDKafkaErrorCode::InvalidReplicationFactor).is_retryable());
        assert!(!topic(RDKafkaErrorCode::PolicyViolation).is_retryable());
        assert!(
            AdminError::Kafka(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut))
                .is_retryable()
        );
        assert!(!AdminError::PermissionDenied { topic: "t".into() }.is_retryable());
    }

    fn configs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn decisions_must_be_compacted() {
        check_compacted("d", &configs(&[("cleanup.policy", "compact")])).unwrap();
        check_compacted("d", &configs(&[("cleanup.policy", "compact,delete")])).unwrap();
        let err = check_compacted("d", &configs(&[("cleanup.policy", "delete")])).unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("'d'") && text.contains("cleanup.policy=compact"),
            "{text}"
        );
    }

    #[test]
    fn short_retention_and_create_time_are_warned_about() {
        let c = configs(&[("retention.ms", "60000")]);
        let w = check_retention("e", &c, 400_000).unwrap();
        let text = w.to_string();
        assert!(text.contains("60000") && text.contains("400000"), "{text}");
        assert!(check_retention("e", &configs(&[("retention.ms", "-1")]), 1).is_none());
        assert!(check_retention("e", &configs(&[("retention.ms", "500000")]), 400_000).is_none());
        assert!(check_log_append_time(
            "e",
            &configs(&[("message.timestamp.type", "LogAppendTime")])
        )
        .is_none());
        assert!(
            check_log_append_time("e", &configs(&[("message.timestamp.type", "CreateTime")]))
                .is_some()
        );
    }

    #[test]
    fn permission_errors_map_to_permission_denied() {
        let err = topic_error(
            "decisions",
            "DescribeConfigs",
            RDKafkaErrorCode::TopicAuthorizationFailed,
        );
        assert!(matches!(err, AdminError::PermissionDenied { ref topic } if topic == "decisions"));
        assert!(err.to_string().contains("'decisions'"));
    }
}
