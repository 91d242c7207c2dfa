//! The follower loop: reads the decisions topic (manual assignment from the beginning,
//! `read_committed`, no group, no commits), applies records to the working [`Table`], probes end
//! offsets for freshness, and publishes snapshots to the [`Shared`] state of a
//! [`DecisionTable`](super::DecisionTable).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::decision_table::Shared;
use super::table::{Applied, CatchUp, Table};
use super::{RouterConfig, RouterError, CLIENT_ERRORS, DECISIONS, ROLLOUTS};
use crate::codec::{self, Encoding};

/// librdkafka callbacks: client errors are logged and counted (librdkafka retries by itself;
/// staleness is judged from probes, not from these).
pub(super) struct RouterContext {
    topic: String,
}

impl ClientContext for RouterContext {
    fn error(&self, error: KafkaError, reason: &str) {
        counter!(CLIENT_ERRORS, "topic" => self.topic.clone()).increment(1);
        warn!(topic = %self.topic, error = %error, reason, "Decision table client error.");
    }
}

impl ConsumerContext for RouterContext {}

pub(super) type TableConsumer = BaseConsumer<RouterContext>;

pub(super) fn consumer(config: &RouterConfig) -> Result<TableConsumer, RouterError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        // librdkafka refuses `assign` without a group id. The table never joins the group
        // (it assigns partitions itself) and never commits, so the name is only a label.
        .set("group.id", "rollout-breaker-router")
        // A committed transaction's records become readable when its marker lands, which does
        // not end a broker's long poll: shorter polls bound how late a decision is served.
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &config.options {
        c.set(k, v);
    }
    // The table's correctness depends on these; they win over `options`.
    for (k, v) in [
        ("isolation.level", "read_committed"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
        // Compaction or retention moved the start: read from wherever it now begins.
        ("auto.offset.reset", "earliest"),
        ("allow.auto.create.topics", "false"),
    ] {
        c.set(k, v);
    }
    c.create_with_context(RouterContext {
        topic: config.topic.clone(),
    })
    .map_err(RouterError::Client)
}

/// Largest number of records applied before a snapshot is published.
const MAX_BATCH: usize = 10_000;
/// How long a poll waits for the first record of a batch (bounds shutdown and probe latency).
const POLL_WAIT: Duration = Duration::from_millis(100);

pub(super) struct Follower {
    pub(super) shared: Arc<Shared>,
    pub(super) consumer: TableConsumer,
    pub(super) encoding: Encoding,
    pub(super) probe_interval: Duration,
    pub(super) probe_timeout: Duration,
    /// The working copy; readers see clones of it.
    pub(super) table: Table,
    pub(super) assigned: Vec<i32>,
    pub(super) undecodable: u64,
}

impl Follower {
    pub(super) fn run(mut self) {
        let mut pending: Option<CatchUp> = None;
        let mut next_probe = Instant::now();
        let mut failures = 0u32;
        while !self.shared.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            // A probe whose targets were not reached in a few intervals (offsets truncated, a
            // partition unreachable) is replaced, so a later one can succeed.
            let expired = pending.as_ref().is_some_and(|c| {
                self.shared.origin.elapsed().saturating_sub(c.probe_started)
                    > self.probe_interval * 4
            });
            if (pending.is_none() || expired) && now >= next_probe {
                next_probe = now + self.probe_interval;
                match self.probe() {
                    Ok(c) => {
                        if failures > 0 {
                            info!(topic = %self.shared.topic, failures, "Decisions topic reachable again.");
                        }
                        failures = 0;
                        pending = Some(c);
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            warn!(topic = %self.shared.topic, error = %e, "Probing the decisions topic failed; retrying.");
                        } else {
                            debug!(topic = %self.shared.topic, error = %e, failures, "Probe failed.");
                        }
                    }
                }
            }
            if self.poll_batch() {
                self.shared.snapshot.store(Arc::new(self.table.clone()));
                gauge!(ROLLOUTS, "topic" => self.shared.topic.clone()).set(self.table.len() as f64);
            }
            if let Some(c) = &pending {
                if self.reached(c) {
                    let ms = c.probe_started.as_millis() as u64 + 1;
                    self.shared.fresh_as_of_ms.fetch_max(ms, Ordering::AcqRel);
                    self.shared.refresh_state();
                    pending = None;
                }
            }
        }
        debug!(topic = %self.shared.topic, "Decision table follower stopped.");
    }

    /// Partitions and their low and end offsets; assigns partitions not yet assigned.
    fn probe(&mut self) -> Result<CatchUp, KafkaError> {
        let probe_started = self.shared.origin.elapsed();
        let shared = Arc::clone(&self.shared);
        let topic = shared.topic.as_str();
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.probe_timeout)?;
        let t = metadata.topics().iter().find(|t| t.name() == topic).ok_or(
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
        )?;
        if let Some(err) = t.error() {
            return Err(KafkaError::MetadataFetch(err.into()));
        }
        let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        if partitions != self.assigned {
            self.assign(&partitions)?;
        }
        let mut targets = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (low, end) = self
                .consumer
                .fetch_watermarks(topic, p, self.probe_timeout)?;
            targets.push((p, low, end));
        }
        Ok(CatchUp {
            probe_started,
            targets,
        })
    }

    /// Assigns `partitions`: the ones already followed continue from their positions, new ones
    /// start at the beginning.
    fn assign(&mut self, partitions: &[i32]) -> Result<(), KafkaError> {
        let topic = self.shared.topic.as_str();
        let positions = self.consumer.position().unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            let offset = positions
                .find_partition(topic, p)
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(Offset::Beginning);
            tpl.add_partition_offset(topic, p, offset)?;
        }
        self.consumer.assign(&tpl)?;
        info!(
            topic,
            partitions = partitions.len(),
            "Following the decisions topic."
        );
        self.assigned = partitions.to_vec();
        Ok(())
    }

    fn reached(&self, c: &CatchUp) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        let topic = self.shared.topic.as_str();
        c.is_reached(|p| {
            positions
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
        })
    }

    /// Polls up to one batch into the working table. Returns whether the table changed.
    fn poll_batch(&mut self) -> bool {
        let mut changed = false;
        let mut wait = POLL_WAIT;
        for _ in 0..MAX_BATCH {
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    debug!(topic = %self.shared.topic, error = %e, "Decisions fetch error.");
                    break;
                }
                Some(Ok(m)) => m,
            };
            wait = Duration::ZERO;
            let topic = self.shared.topic.clone();
            let Some(bytes) = message.payload() else {
                // A tombstone: the rollout was deleted.
                if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    if self.table.remove(key) {
                        changed = true;
                        counter!(DECISIONS, "result" => "removed").increment(1);
                    }
                }
                continue;
            };
            match codec::decode_decision(bytes, self.encoding)
                .or_else(|_| codec::decode_decision_any(bytes))
            {
                Ok(d) => {
                    let result = match self.table.apply(&d) {
                        Applied::Ignored => "ignored",
                        Applied::Inserted | Applied::Updated => {
                            changed = true;
                            debug!(rollout = %d.rollout_id, seq = d.sequence, phase = %d.to, "Applied decision.");
                            "applied"
                        }
                    };
                    counter!(DECISIONS, "result" => result).increment(1);
                }
                Err(e) => {
                    self.undecodable += 1;
                    counter!(DECISIONS, "result" => "undecodable").increment(1);
                    let (partition, offset) = (message.partition(), message.offset());
                    // The first few at warn; a topic full of them would flood the log.
                    if self.undecodable <= 10 {
                        warn!(topic, partition, offset, error = %e, "Undecodable record in the decisions topic; skipped.");
                    } else {
                        debug!(topic, partition, offset, error = %e, "Undecodable record; skipped.");
                    }
                }
            }
        }
        changed
    }
}
