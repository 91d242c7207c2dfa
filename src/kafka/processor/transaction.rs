//! One batch, one Kafka transaction: apply every record to its partition's engine, produce
//! decisions and dead letters, send the input offsets, commit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::error;

use super::dead_letter::Source;
use super::error::ProcessorError;
use super::worker::{Input, Processor};
use crate::codec::WireRecord;
use crate::engine::{Decision, Engine};
use crate::input::order::HeldCommand;
use crate::input::{admit, Admitted, InputTopic, RecordView};
use crate::observe::{self, DecisionPublished};

impl Processor {
    /// Processes `batch` in one transaction; `release` names partitions whose events were read
    /// to their end, so their held commands apply after the batch.
    pub(super) fn process_batch(
        &mut self,
        batch: &[Input],
        release: &[i32],
    ) -> Result<(), ProcessorError> {
        self.producer.begin_transaction()?;
        match self.process_in_transaction(batch, release) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(abort) = self.producer.abort_transaction(self.txn_timeout()) {
                    error!(error = %abort, "Aborting the transaction failed too.");
                }
                Err(e)
            }
        }
    }

    fn process_in_transaction(
        &mut self,
        batch: &[Input],
        release: &[i32],
    ) -> Result<(), ProcessorError> {
        let mut next: HashMap<(bool, i32), i64> = HashMap::new();
        let mut decisions: Vec<(i32, Decision)> = Vec::new();
        let mut refused: Vec<(i32, HeldCommand, String)> = Vec::new();
        let mut scratch = Vec::new();
        let (mut events_in, mut commands_in) = (0u64, 0u64);
        for input in batch {
            let m = &input.msg;
            let p = m.partition();
            let is_events = m.topic() == self.config.topics.events;
            next.insert((is_events, p), m.offset() + 1);
            if is_events {
                events_in += 1;
            } else {
                commands_in += 1;
            }
            let Some(state) = self.partitions.get_mut(&p) else {
                // A commands partition whose events partition is not ours (only possible with
                // an assignor that splits co-partitioned topics): never drop it silently.
                self.dead_letters.push(true);
                self.dead_letter(
                    m,
                    "unowned_partition",
                    "the events partition of this record is assigned to another instance; use the range assignor",
                )?;
                continue;
            };
            let record = RecordView {
                topic: if is_events {
                    InputTopic::Events
                } else {
                    InputTopic::Commands
                },
                partition: p,
                key: m.key(),
                payload: m.payload(),
                timestamp: m.timestamp().to_millis(),
            };
            let timestamp = record.timestamp.unwrap_or(i64::MIN);
            match admit(&self.admission, &record) {
                Ok(Admitted::Event(ev)) => {
                    self.dead_letters.push(false);
                    // Commands whose place comes before this event apply first (input::order).
                    for held in state.gate.release_before(timestamp).collect::<Vec<_>>() {
                        apply_held(&mut state.engine, p, held, &mut decisions, &mut refused);
                    }
                    scratch.clear();
                    state.engine.apply_event(&ev, &mut scratch);
                    decisions.extend(
                        scratch
                            .drain(..)
                            .filter(Decision::is_published)
                            .map(|d| (p, d)),
                    );
                }
                Ok(Admitted::Command(c)) => {
                    self.dead_letters.push(false);
                    let payload = record.payload.unwrap_or_default().to_vec();
                    state.gate.hold(c, timestamp, m.offset(), payload);
                    state.held_since.get_or_insert_with(Instant::now);
                }
                Err(refusal) => {
                    self.dead_letters.push(true);
                    self.dead_letter(m, refusal.reason, &refusal.message)?;
                }
            }
        }
        // Partitions whose events were read to their end: their held commands apply now.
        for p in release {
            if let Some(state) = self.partitions.get_mut(p) {
                for held in state.gate.release_all().collect::<Vec<_>>() {
                    next.insert((false, *p), held.offset + 1);
                    apply_held(&mut state.engine, *p, held, &mut decisions, &mut refused);
                }
            }
        }
        // The commands partition resumes at the first command not yet applied.
        for (p, state) in &mut self.partitions {
            match state.gate.first_held_offset() {
                Some(o) => {
                    next.insert((false, *p), o);
                }
                None => state.held_since = None,
            }
        }
        for (p, held, error) in refused {
            let commands = self.config.topics.commands.clone();
            let key = held.command.rollout_id.clone();
            self.dead_letter(
                Source {
                    topic: &commands,
                    partition: p,
                    offset: held.offset,
                    key: Some(key.as_bytes()),
                    payload: &held.payload,
                },
                "refused_command",
                &error,
            )?;
        }
        if events_in > 0 {
            metrics::counter!(observe::RECORDS_IN, "topic" => "events").increment(events_in);
        }
        if commands_in > 0 {
            metrics::counter!(observe::RECORDS_IN, "topic" => "commands").increment(commands_in);
        }
        let topic = self.config.topics.decisions.clone();
        for (p, d) in &decisions {
            let record = BaseRecord::to(&topic)
                .partition(*p)
                .key(d.rollout_id.as_bytes());
            if d.is_tombstone() {
                // RETIRE: no value, so compaction and every router forget the rollout.
                self.send(record)?;
                continue;
            }
            self.buf.clear();
            d.encode_into(self.config.topics.decisions_encoding, &mut self.buf);
            let payload = std::mem::take(&mut self.buf);
            self.send(record.payload(&payload))?;
            self.buf = payload;
        }
        // librdkafka does not wake the partition leader's thread when a partition's
        // registration in the transaction completes, so the first records of a transaction
        // would wait for that thread's next periodic wake-up (~100 ms here). Every flush call
        // wakes the broker threads: poke them until the records are out.
        let deadline = Instant::now() + self.txn_timeout();
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            let _ = self.producer.flush(Duration::from_millis(2));
        }
        // A flood stops the processor before this batch commits: the batch is aborted, so
        // neither its dead letters nor its offsets are kept and a restart sees the same input.
        self.check_dead_letter_flood()?;
        let mut offsets = TopicPartitionList::new();
        for ((is_events, p), o) in &next {
            let topic = if *is_events {
                &self.config.topics.events
            } else {
                &self.config.topics.commands
            };
            offsets.add_partition_offset(topic, *p, Offset::Offset(*o))?;
        }
        let meta = self
            .consumer
            .group_metadata()
            .ok_or(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::State))?;
        self.producer
            .send_offsets_to_transaction(&offsets, &meta, self.txn_timeout())?;
        self.producer.commit_transaction(self.txn_timeout())?;
        metrics::counter!(observe::TRANSACTIONS).increment(1);
        for ((is_events, p), o) in next {
            if let Some(s) = self.partitions.get_mut(&p) {
                if is_events {
                    s.committed.0 = Some(o);
                } else {
                    s.committed.1 = Some(o);
                }
            }
        }
        for (p, d) in &decisions {
            DecisionPublished(d, *p).emit();
        }
        let late: u64 = self
            .partitions
            .values()
            .map(|s| s.engine.counters().late_events)
            .sum();
        if late > self.late_seen {
            metrics::counter!(observe::LATE_EVENTS).increment(late - self.late_seen);
        }
        self.late_seen = late;
        self.update_rollouts_gauge();
        Ok(())
    }

    pub(super) fn send<'a>(
        &self,
        mut record: BaseRecord<'a, [u8], [u8]>,
    ) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// Applies a command released by the gate: its decision is published, a refusal is
/// dead-lettered (after the loop, which holds the partition's state).
fn apply_held(
    engine: &mut Engine,
    partition: i32,
    held: HeldCommand,
    decisions: &mut Vec<(i32, Decision)>,
    refused: &mut Vec<(i32, HeldCommand, String)>,
) {
    match engine.apply_command(&held.command) {
        Ok(d) => decisions.push((partition, d)),
        Err(e) => refused.push((partition, held, e.to_string())),
    }
}
