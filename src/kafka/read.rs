//! Reading one partition of a topic up to an end offset captured beforehand: the one way the
//! restore and the audit read a topic to its end.
//!
//! The loop ends when the consumer's *position* reaches the end, not when a record at
//! `end - 1` arrives: transaction markers occupy offsets that are never delivered, so waiting
//! for the last offset could hang.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::client::{reader_config, DropInBackground};
use crate::config::Config;
use crate::input::{InputTopic, RecordView, RELAYED_COMMAND_HEADER};

/// Reads partition `partition` of `topic` from `start` until the position reaches `end`,
/// handing every committed record below `end` to `f`. Gives up after `timeout`. Logs progress
/// every few seconds for long reads.
///
/// Each read gets a consumer of its own: right after a re-assignment, a reused consumer may
/// still report the position of its previous read of the same partition, which would end the
/// loop before anything was read.
pub fn read_range(
    config: &Config,
    group_suffix: &str,
    topic: &str,
    partition: i32,
    (start, end): (i64, i64),
    timeout: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    if start >= end {
        return Ok(());
    }
    let group = format!("{}-{group_suffix}", config.kafka.group_id);
    let consumer: DropInBackground<BaseConsumer> =
        DropInBackground::new(reader_config(&config.kafka, &group).create()?);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    // Track the next offset from the records themselves; ask for the consumer's position only
    // when nothing arrives, which is how a read past trailing transaction markers ends.
    let mut next = start;
    loop {
        if next >= end {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(KafkaError::Global(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            info!(topic, partition, offset = next, end, "Reading…");
        }
        match consumer.poll(Duration::from_millis(20)) {
            // Take only this partition's records (defensive: the consumer is ours alone).
            Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                if m.offset() < end {
                    f(&m);
                }
                next = next.max(m.offset() + 1);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => warn!(topic, partition, error = %e, "Read error; retrying."),
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

/// The admission view of an input record read from `topic` (one place that knows how a
/// relayed command is marked).
pub fn record_view<M: Message>(m: &M, topic: InputTopic) -> RecordView<'_> {
    use rdkafka::message::Headers;
    let relayed_command = topic == InputTopic::Events
        && m.headers()
            .is_some_and(|h| h.iter().any(|h| h.key == RELAYED_COMMAND_HEADER));
    RecordView {
        topic,
        partition: m.partition(),
        key: m.key(),
        payload: m.payload(),
        timestamp: m.timestamp().to_millis(),
        relayed_command,
    }
}
