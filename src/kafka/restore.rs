//! Restoring a partition's rollouts after an assignment (start, restart, rebalance).
//!
//! 1. **Phases** from the compacted decisions topic: read partition `p` to the end offset
//!    captured at start ([`super::read::read_range`]) and fold it with
//!    [`LatestDecisions`] (highest sequence per rollout; a tombstone forgets). Each decision
//!    carries the event time its phase started, so the window is restored exactly, whatever the
//!    last decision was (a PAUSE or RESUME included). Each scope of a rollout (segments,
//!    regions) is its own row, restored into its own state machine.
//! 2. **Windows** from the events topic: re-read partition `p` up to the group's committed
//!    offset, admitting each record exactly as the live loop did ([`crate::input::admit`]:
//!    refused records are not counted), recording events without judging (see
//!    [`crate::engine::Rollout::close_buckets_silently`] for why that is exact). The read
//!    starts at record time `max(earliest phase start, tail − look-back)`, where `tail` is the
//!    record timestamp of the last committed event and the look-back is
//!    `monitoring_window + evaluation_interval + 2 × allowed_lateness + restore_slack +
//!    max_clock_skew` (an admitted event is at most `max_clock_skew` ahead of its record
//!    timestamp), found with `offsets_for_times`. Nothing before the earliest phase start can
//!    count, and every evaluation after the restart covers only buckets inside the look-back.
//!    Rollouts under the statistical rule need more: their state covers the whole phase, so
//!    the read starts no later than the earliest phase start of such a rollout (minus the
//!    clock skew), however long ago.
//!    If the events it needs were already deleted by retention, the rebuild is **truncated**:
//!    counted (`rollout_breaker_restore_truncated_total`) and logged.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::client::{reader_config, DropInBackground};
use super::read::{read_range, record_view};
use super::retry::with_backoff;
use crate::codec;
use crate::config::Config;
use crate::engine::{Engine, LatestDecisions, Phase};
use crate::input::{admit, AdmissionRules, Admitted, InputTopic};
use crate::observe;

/// What one partition's restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// Decision records read (tombstones included).
    pub decisions_read: u64,
    /// Rollouts restored.
    pub rollouts: usize,
    /// Decision records that could not be decoded (skipped, logged).
    pub undecodable_decisions: u64,
    /// Events re-read to rebuild windows.
    pub events_replayed: u64,
    /// Whether events the rebuild needed had already been deleted by retention.
    pub truncated: bool,
    /// Time taken by step 1, reading the decisions topic (included in `elapsed`).
    pub decisions_elapsed: Duration,
    /// Time taken.
    pub elapsed: Duration,
}

/// How long a restore may wait for one partition before giving up.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Restores partition `partition`'s rollouts into `engine` (which should be empty).
/// `committed_events_offset` is the group's committed offset of the events partition, where
/// live processing will resume; `rules` are the live loop's admission rules.
pub fn restore_partition(
    config: &Config,
    rules: &AdmissionRules,
    partition: i32,
    committed_events_offset: Option<i64>,
    engine: &mut Engine,
) -> Result<RestoreStats, KafkaError> {
    let started = Instant::now();
    let mut stats = RestoreStats::default();
    let consumer: DropInBackground<BaseConsumer> = DropInBackground::new(
        reader_config(&config.kafka, &format!("{}-restore", config.kafka.group_id)).create()?,
    );
    let topics = &config.topics;
    let timeout = Duration::from_secs(30);

    // 1. Phases. The new client connects to the topic's leader first: its first watermark
    // query otherwise waited about 700 ms in one restore in ten.
    super::client::connect(consumer.client(), Some(&topics.decisions), timeout);
    let (low, high) = with_backoff("fetch_watermarks", || {
        consumer.fetch_watermarks(&topics.decisions, partition, timeout)
    })?;
    let mut latest = LatestDecisions::new();
    read_range(
        config,
        "restore",
        &topics.decisions,
        partition,
        (low, high),
        RESTORE_TIMEOUT,
        |m| {
            stats.decisions_read += 1;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default());
            let Some(bytes) = m.payload() else {
                latest.apply(&key, None);
                return;
            };
            match codec::decode_decision(bytes, topics.decisions_encoding)
                .or_else(|_| codec::decode_decision_any(bytes))
            {
                Ok(d) => {
                    latest.apply(&key, Some(d));
                }
                Err(e) => {
                    stats.undecodable_decisions += 1;
                    warn!(partition, offset = m.offset(), error = %e, "Undecodable record in the decisions topic; skipped.");
                }
            }
        },
    )?;
    let mut last_decision_at = i64::MIN;
    for d in latest.values() {
        if let Err(e) = engine.restore(d) {
            warn!(rollout = %d.rollout_id, error = %e, "Restored rollout's own policy is invalid; using the default.");
        }
        last_decision_at = last_decision_at.max(d.at);
    }
    let mut max_span: i64 = 0;
    let mut earliest_phase = i64::MAX;
    // The statistical rule's state covers its whole phase, however long: replay from its start.
    let mut earliest_statistical_phase = i64::MAX;
    // Every scope of a rollout has its own phase start.
    for r in engine
        .rollouts()
        .flat_map(crate::engine::Rollout::with_scopes)
    {
        let p = r.policy();
        let span = p.monitoring_window_ms + p.evaluation_interval_ms + 2 * p.allowed_lateness_ms;
        max_span = max_span.max(span as i64);
        earliest_phase = earliest_phase.min(r.phase_started_at());
        if p.rule == crate::engine::stats::Rule::Statistical && r.phase() != Phase::Off {
            earliest_statistical_phase = earliest_statistical_phase.min(r.phase_started_at());
        }
    }
    stats.rollouts = latest.len();
    stats.decisions_elapsed = started.elapsed();

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
            // Record time of the last committed records: the partition's clock at the commit.
            // (A few, since the last offsets may be transaction markers of relayed commands.)
            let mut tail = None;
            read_range(
                config,
                "restore",
                &topics.events,
                partition,
                ((committed - 32).max(ev_low), committed),
                RESTORE_TIMEOUT,
                |m| tail = tail.max(m.timestamp().to_millis()),
            )?;
            let tail = tail.unwrap_or(last_decision_at);
            let look_back = max_span
                + config.processing.restore_slack_ms as i64
                + config.processing.max_clock_skew_ms as i64;
            let from_ts = tail
                .saturating_sub(look_back)
                .max(earliest_phase.saturating_sub(config.processing.max_clock_skew_ms as i64))
                .min(
                    earliest_statistical_phase
                        .saturating_sub(config.processing.max_clock_skew_ms as i64),
                );
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
            if from == ev_low && ev_low > 0 {
                stats.truncated = true;
                metrics::counter!(observe::RESTORE_TRUNCATED).increment(1);
                warn!(
                    partition,
                    from_ts,
                    log_start = ev_low,
                    "Window rebuild truncated: events it needs were deleted by retention; \
                     decisions right after this restore may differ from an uninterrupted run. \
                     Raise the events topic's retention.ms above the restore look-back."
                );
            }
            info!(
                partition,
                tail, from_ts, from, committed, "Rebuilding windows from the events topic."
            );
            read_range(
                config,
                "restore",
                &topics.events,
                partition,
                (from, committed),
                RESTORE_TIMEOUT,
                |m| {
                    // Relayed commands change phases, which the decisions already restored.
                    if let Ok(Admitted::Event(e)) =
                        admit(rules, &record_view(m, InputTopic::Events))
                    {
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
        decisions_ms = stats.decisions_elapsed.as_millis() as u64,
        ms = stats.elapsed.as_millis() as u64,
        "Restored partition."
    );
    Ok(stats)
}
