//! Restoring a partition's rollouts after an assignment (start, restart, rebalance).
//!
//! 1. **Phases** from the compacted decisions topic: read partition `p` from the beginning
//!    until the consumer's *position* reaches the end offset captured at start (transaction
//!    markers occupy offsets that are never delivered, so waiting for a message at
//!    `end - 1` could hang), keep the highest sequence per rollout, and restore each.
//! 2. **Windows** from the events topic: re-read partition `p` from a bounded look-back up to
//!    the group's committed offset, recording events without judging (see
//!    [`crate::engine::Rollout::close_buckets_silently`] for why that is exact). The look-back
//!    starts `monitoring_window + evaluation_interval + 2 × allowed_lateness + restore_slack`
//!    of event time before the last committed event, found with `offsets_for_times` (record
//!    timestamps are event times when agents use [`crate::agent`]'s emitter). Every evaluation
//!    after the restart covers only buckets inside that span, so it sees the same data as an
//!    uninterrupted run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::client::reader_config;
use super::retry::with_backoff;
use crate::codec;
use crate::config::Config;
use crate::engine::{Decision, Engine};

/// What one partition's restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// Decision records read.
    pub decisions_read: u64,
    /// Rollouts restored.
    pub rollouts: usize,
    /// Decision records that could not be decoded (skipped, logged).
    pub undecodable_decisions: u64,
    /// Events re-read to rebuild windows.
    pub events_replayed: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// How long a restore may wait for one partition before giving up.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads partition `p` of `topic` from `start` until the position reaches `end`, handing every
/// record (offset, timestamp, payload) to `f`.
///
/// Each read gets a consumer of its own: right after a re-assignment, a reused consumer may
/// still report the position of its previous read of the same partition, which would end the
/// loop before anything was read.
fn read_range(
    config: &Config,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    mut f: impl FnMut(i64, Option<i64>, &[u8]),
) -> Result<(), KafkaError> {
    if start >= end {
        return Ok(());
    }
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-restore", config.kafka.group_id)).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    // Track the next offset from the records themselves; ask for the consumer's position only
    // when nothing arrives, which is how a read past trailing transaction markers (offsets
    // that are never delivered) ends.
    let mut next = start;
    loop {
        if next >= end {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KafkaError::Global(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(20)) {
            // Take only this partition's records (defensive: the consumer is ours alone).
            Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                if m.offset() < end {
                    f(
                        m.offset(),
                        m.timestamp().to_millis(),
                        m.payload().unwrap_or_default(),
                    );
                }
                next = next.max(m.offset() + 1);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => warn!(topic, partition, error = %e, "Restore read error; retrying."),
            None => {
                let pos = consumer
                    .position()?
                    .find_partition(topic, partition)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(start);
                next = next.max(pos);
            }
        }
    }
}

/// Restores partition `partition`'s rollouts into `engine` (which should be empty).
/// `committed_events_offset` is the group's committed offset of the events partition, where
/// live processing will resume.
pub fn restore_partition(
    config: &Config,
    partition: i32,
    committed_events_offset: Option<i64>,
    engine: &mut Engine,
) -> Result<RestoreStats, KafkaError> {
    let started = Instant::now();
    let mut stats = RestoreStats::default();
    let consumer: BaseConsumer =
        reader_config(&config.kafka, &format!("{}-restore", config.kafka.group_id)).create()?;
    let topics = &config.topics;
    let timeout = Duration::from_secs(30);

    // 1. Phases.
    let (low, high) = with_backoff("fetch_watermarks", || {
        consumer.fetch_watermarks(&topics.decisions, partition, timeout)
    })?;
    let mut latest: HashMap<String, Decision> = HashMap::new();
    read_range(
        config,
        &topics.decisions,
        partition,
        low,
        high,
        |offset, _, bytes| {
            stats.decisions_read += 1;
            match codec::decode_decision(bytes, topics.decisions_encoding)
                .or_else(|_| codec::decode_decision_any(bytes))
            {
                Ok(d) => {
                    if latest
                        .get(&d.rollout_id)
                        .is_none_or(|old| old.sequence < d.sequence)
                    {
                        latest.insert(d.rollout_id.clone(), d);
                    }
                }
                Err(e) => {
                    stats.undecodable_decisions += 1;
                    warn!(partition, offset, error = %e, "Undecodable record in the decisions topic; skipped.");
                }
            }
        },
    )?;
    let mut max_span: i64 = 0;
    let mut last_decision_at = i64::MIN;
    for d in latest.values() {
        if let Err(e) = engine.restore(d) {
            warn!(rollout = %d.rollout_id, error = %e, "Restored rollout's own policy is invalid; using the default.");
        }
        last_decision_at = last_decision_at.max(d.at);
    }
    for r in engine.rollouts() {
        let p = r.policy();
        let span = p.monitoring_window_ms + p.evaluation_interval_ms + 2 * p.allowed_lateness_ms;
        max_span = max_span.max(span as i64);
    }
    stats.rollouts = latest.len();

    // 2. Windows.
    if let Some(committed) = committed_events_offset.filter(|_| !latest.is_empty()) {
        let (ev_low, ev_high) = with_backoff("fetch_watermarks", || {
            consumer.fetch_watermarks(&topics.events, partition, timeout)
        })?;
        info!(
            partition,
            committed, ev_low, ev_high, "Events partition before window rebuild."
        );
        if committed > ev_low {
            // Event time of the last committed event.
            let mut last_ts = None;
            read_range(
                config,
                &topics.events,
                partition,
                committed - 1,
                committed,
                |_, ts, bytes| {
                    last_ts = codec::decode_event(bytes, topics.events_encoding)
                        .map(|e| e.timestamp)
                        .ok()
                        .or(ts);
                },
            )?;
            let last_ts = last_ts.unwrap_or(last_decision_at);
            let from_ts = last_ts - max_span - config.processing.restore_slack_ms as i64;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topics.events, partition, Offset::Offset(from_ts))?;
            let found = with_backoff("offsets_for_times", || {
                consumer.offsets_for_times(tpl.clone(), timeout)
            })?;
            let from = match found
                .find_partition(&topics.events, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o.max(ev_low),
                _ => committed,
            };
            info!(
                partition,
                last_ts, from_ts, from, committed, "Rebuilding windows from the events topic."
            );
            read_range(
                config,
                &topics.events,
                partition,
                from,
                committed,
                |_, _, bytes| {
                    if let Ok(e) = codec::decode_event(bytes, topics.events_encoding) {
                        if engine.replay_event(&e) {
                            stats.events_replayed += 1;
                        }
                    }
                },
            )?;
        }
    }
    stats.elapsed = started.elapsed();
    info!(
        partition,
        rollouts = stats.rollouts,
        decisions = stats.decisions_read,
        events_replayed = stats.events_replayed,
        committed = ?committed_events_offset,
        ms = stats.elapsed.as_millis() as u64,
        "Restored partition."
    );
    Ok(stats)
}
