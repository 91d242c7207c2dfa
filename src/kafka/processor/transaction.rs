//! One batch, one Kafka transaction: apply every record to its partition's engine, produce
//! decisions and dead letters, send the input offsets, commit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::error;

use super::error::ProcessorError;
use super::worker::{Input, Processor};
use crate::codec::{self, WireRecord};
use crate::engine::Decision;
use crate::observe::{self, DecisionPublished};

impl Processor {
    pub(super) fn process_batch(&mut self, batch: &[Input]) -> Result<(), ProcessorError> {
        self.producer.begin_transaction()?;
        match self.process_in_transaction(batch) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(abort) = self.producer.abort_transaction(self.txn_timeout()) {
                    error!(error = %abort, "Aborting the transaction failed too.");
                }
                Err(e)
            }
        }
    }

    fn process_in_transaction(&mut self, batch: &[Input]) -> Result<(), ProcessorError> {
        let mut next: HashMap<(bool, i32), i64> = HashMap::new();
        let mut decisions: Vec<(i32, Decision)> = Vec::new();
        let mut scratch = Vec::new();
        for input in batch {
            let m = &input.msg;
            let p = m.partition();
            let is_events = m.topic() == self.config.topics.events;
            next.insert((is_events, p), m.offset() + 1);
            metrics::counter!(observe::RECORDS_IN, "topic" => if is_events { "events" } else { "commands" }).increment(1);
            let payload = m.payload().unwrap_or_default();
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
            let outcome: Result<(), (&'static str, String)> =
                if payload.len() > self.config.processing.max_record_bytes {
                    Err((
                        "too_large",
                        format!(
                            "record of {} bytes exceeds max_record_bytes {}",
                            payload.len(),
                            self.config.processing.max_record_bytes
                        ),
                    ))
                } else if is_events {
                    match codec::decode_event(payload, self.config.topics.events_encoding) {
                        Ok(ev) if m.key().is_some_and(|k| k != ev.rollout_id.as_bytes()) => Err((
                            "key_mismatch",
                            format!("record key differs from rollout_id `{}`", ev.rollout_id),
                        )),
                        Ok(ev) => {
                            scratch.clear();
                            state.engine.apply_event(&ev, &mut scratch);
                            decisions.extend(
                                scratch
                                    .drain(..)
                                    .filter(Decision::is_published)
                                    .map(|d| (p, d)),
                            );
                            Ok(())
                        }
                        Err(e) => Err((e.reason(), e.to_string())),
                    }
                } else {
                    match codec::decode_command(payload, self.config.topics.commands_encoding) {
                        Ok(cmd) => match state.engine.apply_command(&cmd) {
                            Ok(d) => {
                                decisions.push((p, d));
                                Ok(())
                            }
                            Err(e) => Err(("refused_command", e.to_string())),
                        },
                        Err(e) => Err((e.reason(), e.to_string())),
                    }
                };
            self.dead_letters.push(outcome.is_err());
            if let Err((reason, error)) = outcome {
                self.dead_letter(m, reason, &error)?;
            }
        }
        for (p, d) in &decisions {
            self.buf.clear();
            d.encode_into(self.config.topics.decisions_encoding, &mut self.buf);
            let payload = std::mem::take(&mut self.buf);
            let topic = self.config.topics.decisions.clone();
            self.send(
                BaseRecord::to(&topic)
                    .partition(*p)
                    .key(d.rollout_id.as_bytes())
                    .payload(&payload),
            )?;
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
