//! One batch, one Kafka transaction: apply every record to its partition's engine, produce
//! decisions and dead letters, send the input offsets, commit.
//!
//! The commit's broker round trips (delivery of the batch's records, the offsets, the end of
//! the transaction) run on a thread of their own while the loop polls and decodes the next
//! batch; the next transaction begins only once that commit has ended, so transactions stay
//! one after the other and each holds exactly its batch's output and offsets. Applying a
//! record needs its transaction open (refusals are produced into it), so decoding is what
//! overlaps, not applying. What follows a commit (committed offsets, webhooks, metrics) runs
//! on the loop when it collects the commit ([`Processor::finish_commit`]).

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::error;

use rdkafka::message::{Header, OwnedHeaders};

use super::error::ProcessorError;
use super::worker::{Input, Processor};
use crate::codec::WireRecord;
use crate::engine::{Decision, Prefetch, PREFETCH_AHEAD};
use crate::input::{admit, AdmissionRules, Admitted, InputTopic, Refusal, RELAYED_COMMAND_HEADER};
use crate::kafka::read::record_view;
use crate::observe::{self, DecisionPublished};

/// Longest the loop pokes librdkafka's broker threads for a batch's records.
const POKE_LIMIT: Duration = Duration::from_millis(500);

/// Batches at least this large are decoded on several threads.
const PARALLEL_ADMIT_MIN: usize = 2_048;

/// Admits (decodes and checks) every record of `batch` into `out` (emptied first), in batch
/// order. Admission is a pure function of the record, so large batches are split across
/// `threads` threads (this thread takes the first share, the others write into `spare`
/// buffers, appended in order) and the results are the same, in the same order, as one
/// thread's: the records are then applied one by one, in order, as before. `out` and `spare`
/// are kept by the caller from batch to batch, so admission allocates no buffer per batch.
/// Each result comes with the record's topic (read once: librdkafka's topic name is a C string
/// to measure and check).
fn admit_all<T: Sync, M: Message>(
    rules: &AdmissionRules,
    events_topic: &str,
    batch: &[T],
    msg: fn(&T) -> &M,
    threads: usize,
    out: &mut Admissions,
    spare: &mut Vec<Admissions>,
) {
    let admit_one = |item: &T| {
        let m = msg(item);
        let topic = if m.topic() == events_topic {
            InputTopic::Events
        } else {
            InputTopic::Commands
        };
        (topic, admit(rules, &record_view(m, topic)))
    };
    out.clear();
    if threads <= 1 || batch.len() < PARALLEL_ADMIT_MIN {
        out.extend(batch.iter().map(admit_one));
        return;
    }
    let share = batch.len().div_ceil(threads);
    if spare.len() < threads - 1 {
        spare.resize_with(threads - 1, Vec::new);
    }
    std::thread::scope(|scope| {
        let others: Vec<_> = batch
            .chunks(share)
            .skip(1)
            .zip(spare.iter_mut())
            .map(|(chunk, buf)| {
                scope.spawn(move || {
                    buf.clear();
                    buf.extend(chunk.iter().map(admit_one));
                })
            })
            .collect();
        out.extend(batch[..share].iter().map(admit_one));
        for other in others {
            other.join().expect("admission thread panicked");
        }
    });
    let used = batch.len().div_ceil(share) - 1;
    for buf in &mut spare[..used] {
        out.append(buf);
    }
}

/// Next input offsets of a batch, per (events topic?, partition).
type NextOffsets = FxHashMap<(bool, i32), i64>;

/// A batch's records admitted or refused, in order, with their topics.
pub(super) type Admissions = Vec<(InputTopic, Result<Admitted, Refusal>)>;

/// A transaction whose records are all produced, its commit running on its own thread.
pub(super) struct Committing {
    commit: JoinHandle<Result<(), KafkaError>>,
    next: NextOffsets,
    /// Its decisions, offered to webhooks once committed.
    decisions: Vec<(i32, Decision)>,
}

impl Committing {
    /// Waits for the commit; a failed one is aborted here.
    pub(super) fn finish(
        self,
        producer: &BaseProducer,
        timeout: Duration,
    ) -> Result<(NextOffsets, Vec<(i32, Decision)>), KafkaError> {
        match self.commit.join().expect("commit thread panicked") {
            Ok(()) => Ok((self.next, self.decisions)),
            Err(e) => {
                if let Err(abort) = producer.abort_transaction(timeout) {
                    error!(error = %abort, "Aborting the transaction failed too.");
                }
                Err(e)
            }
        }
    }
}

impl Processor {
    /// Decodes and checks every record of `batch` (no transaction needed).
    pub(super) fn admit_batch(&mut self, batch: &[Input<'_>], out: &mut Admissions) {
        admit_all(
            &self.admission,
            &self.config.topics.events,
            batch,
            |input| &input.msg,
            self.config.processing.decode_threads(),
            out,
            &mut self.decode_buffers,
        );
    }

    /// Processes `batch` (admitted by [`admit_batch`](Self::admit_batch)) in one transaction,
    /// once the previous one has committed; leaves its commit running.
    pub(super) fn process_batch(
        &mut self,
        batch: &[Input<'_>],
        admissions: &Admissions,
    ) -> Result<(), ProcessorError> {
        self.finish_commit()?;
        self.producer.begin_transaction()?;
        match self.process_in_transaction(batch, admissions) {
            Ok(committing) => {
                self.committing = Some(committing);
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = self.producer.abort_transaction(self.txn_timeout()) {
                    error!(error = %abort, "Aborting the transaction failed too.");
                }
                Err(e)
            }
        }
    }

    /// Waits for the commit in flight, if any, and does what follows it.
    pub(super) fn finish_commit(&mut self) -> Result<(), ProcessorError> {
        let Some(committing) = self.committing.take() else {
            return Ok(());
        };
        let (next, decisions) = committing.finish(&self.producer, self.txn_timeout())?;
        metrics::counter!(observe::TRANSACTIONS).increment(1);
        for ((is_events, p), o) in next {
            // A revoked partition is parked with its state: its offsets are ours all the same.
            let state = self.partitions.get_mut(&p).or(self.parked.get_mut(&p));
            if let Some(s) = state {
                if is_events {
                    s.committed.0 = Some(o);
                } else {
                    s.committed.1 = Some(o);
                }
            }
        }
        // Only now, with the transaction committed: a webhook never hears of an aborted
        // decision. `offer` never waits (a full queue drops and counts).
        for (p, d) in &decisions {
            DecisionPublished(d, *p).emit();
            self.notify.offer(d);
        }
        Ok(())
    }

    /// Starts loading the engine state of the events a few records ahead of record `i` (see
    /// [`Engine::prefetch`](crate::engine::Engine::prefetch)): the rollout's state for one
    /// [`PREFETCH_AHEAD`] records ahead, its bucket for one half as far.
    fn prefetch_ahead(&self, batch: &[Input<'_>], admissions: &Admissions, i: usize) {
        for (ahead, what) in [
            (PREFETCH_AHEAD, Prefetch::Rollout),
            (PREFETCH_AHEAD / 2, Prefetch::Bucket),
        ] {
            if let (Some(input), Some((_, Ok(Admitted::Event(ev))))) =
                (batch.get(i + ahead), admissions.get(i + ahead))
            {
                if let Some(state) = self.partitions.get(&input.msg.partition()) {
                    state.engine.prefetch(ev, what);
                }
            }
        }
    }

    fn process_in_transaction(
        &mut self,
        batch: &[Input<'_>],
        admissions: &Admissions,
    ) -> Result<Committing, ProcessorError> {
        let in_flight_before = self.producer.in_flight_count();
        let mut next = NextOffsets::default();
        let mut decisions: Vec<(i32, Decision)> = Vec::new();
        let mut scratch = Vec::new();
        let (mut events_in, mut commands_in) = (0u64, 0u64);
        let mut executions = observe::ExecutionTally::default();
        for (i, (input, (topic, admitted))) in batch.iter().zip(admissions).enumerate() {
            self.prefetch_ahead(batch, admissions, i);
            let (topic, admitted) = (*topic, admitted.as_ref());
            let m = &input.msg;
            let p = m.partition();
            let is_events = topic == InputTopic::Events;
            next.insert((is_events, p), m.offset() + 1);
            if is_events {
                events_in += 1;
            } else {
                commands_in += 1;
            }
            // A command is relayed whoever owns its events partition; anything else needs the
            // partition's engine.
            let relay = !is_events && admitted.is_ok();
            let state = match self.partitions.get_mut(&p) {
                Some(state) => Some(state),
                None if relay => None,
                None => {
                    self.dead_letters.push(true);
                    self.dead_letter(
                        m,
                        "unowned_partition",
                        "the events partition of this record is assigned to another instance",
                    )?;
                    continue;
                }
            };
            let outcome = match admitted {
                Ok(Admitted::Event(ev)) => {
                    let state = state.expect("events partitions are owned");
                    executions.record(ev);
                    scratch.clear();
                    state.engine.apply_event(ev, &mut scratch);
                    decisions.extend(
                        scratch
                            .drain(..)
                            .filter(Decision::is_published)
                            .map(|d| (p, d)),
                    );
                    Ok(())
                }
                // Read back from the events partition: the command's place among the events.
                Ok(Admitted::Command(c)) if is_events => {
                    scratch.clear();
                    match state
                        .expect("events partitions are owned")
                        .engine
                        .apply_command_into(c, &mut scratch)
                    {
                        Ok(()) => {
                            decisions.extend(scratch.drain(..).map(|d| (p, d)));
                            Ok(())
                        }
                        Err(e) => Err(("refused_command", e.to_string())),
                    }
                }
                // From the commands topic: relayed into the events partition (input::RELAY).
                Ok(Admitted::Command(_)) => {
                    let offset = m.offset().to_string();
                    let headers = OwnedHeaders::new().insert(Header {
                        key: RELAYED_COMMAND_HEADER,
                        value: Some(&offset),
                    });
                    let events = self.config.topics.events.clone();
                    let mut relay = BaseRecord::to(&events)
                        .partition(p)
                        .headers(headers)
                        .payload(m.payload().unwrap_or_default());
                    if let Some(k) = m.key() {
                        relay = relay.key(k);
                    }
                    self.send(relay)?;
                    Ok(())
                }
                Err(refusal) => Err((refusal.reason, refusal.message.clone())),
            };
            self.dead_letters.push(outcome.is_err());
            if let Err((reason, error)) = outcome {
                self.dead_letter(m, reason, &error)?;
            }
        }
        if events_in > 0 {
            metrics::counter!(observe::RECORDS_IN, "topic" => "events").increment(events_in);
        }
        if commands_in > 0 {
            metrics::counter!(observe::RECORDS_IN, "topic" => "commands").increment(commands_in);
        }
        executions.emit();
        let topic = self.config.topics.decisions.clone();
        for (p, d) in &decisions {
            // Every scope of a rollout is its own compacted row, in the rollout's partition
            // `p` (co-partitioned with its events and commands); the default scope keeps the
            // rollout id as key.
            let key = d.key();
            let record = BaseRecord::to(&topic).partition(*p).key(key.as_bytes());
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
        // Counters the engines keep; read now, before the next batch is applied.
        let late: u64 = self
            .partitions
            .values()
            .map(|s| s.engine.counters().late_events)
            .sum();
        if late > self.late_seen {
            metrics::counter!(observe::LATE_EVENTS).increment(late - self.late_seen);
        }
        self.late_seen = late;
        let outside: u64 = self
            .partitions
            .values()
            .map(|s| s.engine.counters().out_of_scope_events)
            .sum();
        if outside > self.out_of_scope_seen {
            metrics::counter!(observe::OUT_OF_SCOPE_EVENTS)
                .increment(outside - self.out_of_scope_seen);
        }
        self.out_of_scope_seen = outside;
        // Phases change only with a published decision.
        self.update_rollouts_gauge(!decisions.is_empty());
        let producer = Arc::clone(&self.producer);
        let timeout = self.txn_timeout();
        let gate = Arc::clone(&self.commits);
        gate.enter();
        let commit = std::thread::Builder::new()
            .name("rb-commit".into())
            .spawn(move || {
                // librdkafka does not wake the partition leader's thread when a partition's
                // registration in the transaction completes, so the first records of a
                // transaction would wait for that thread's next periodic wake-up (~100 ms
                // here). Every flush call wakes the broker threads: poke them until the
                // records are out. `in_flight_count` also counts queued client events (log
                // lines, errors) that a flush may leave: wait for this batch's records only,
                // and never long (the commit waits for delivery anyway; this only saves
                // librdkafka's periodic wake-up).
                let deadline = Instant::now() + POKE_LIMIT;
                while producer.in_flight_count() > in_flight_before && Instant::now() < deadline {
                    let _ = producer.flush(Duration::from_millis(2));
                }
                let result = producer
                    .send_offsets_to_transaction(&offsets, &meta, timeout)
                    .and_then(|()| producer.commit_transaction(timeout));
                gate.leave();
                result
            })
            .expect("the OS refused a thread for the commit");
        Ok(Committing {
            commit,
            next,
            decisions,
        })
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

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;
    use crate::codec::{encode_event, Encoding};
    use crate::config::Config;
    use crate::engine::{ExecutionEvent, LatencyMs, Variant};
    use crate::input::admission::kafka_partition;

    /// Events, undecodable values and records in the wrong partition, 5 000 of them.
    fn records(partitions: i32) -> Vec<OwnedMessage> {
        (0..5_000i64)
            .map(|i| {
                let id = format!("rollout-{}", i % 37);
                let e = ExecutionEvent::new(
                    id.clone(),
                    Variant::Candidate,
                    i % 3 != 0,
                    LatencyMs::new(100.0 + i as f64).unwrap(),
                    1_764_000_000_000 + i,
                );
                let payload = if i % 11 == 0 {
                    b"{not json".to_vec()
                } else {
                    encode_event(&e, Encoding::Json)
                };
                let right = kafka_partition(id.as_bytes(), partitions);
                let partition = if i % 13 == 0 {
                    (right + 1) % partitions
                } else {
                    right
                };
                OwnedMessage::new(
                    Some(payload),
                    Some(id.into_bytes()),
                    "events".into(),
                    Timestamp::CreateTime(1_764_000_000_000 + i),
                    partition,
                    i,
                    None,
                )
            })
            .collect()
    }

    #[test]
    fn admission_on_several_threads_equals_one_thread_in_order() {
        let rules = Config::default().admission_rules(6);
        let batch = records(6);
        let (mut one, mut spare) = (Vec::new(), Vec::new());
        admit_all(&rules, "events", &batch, |m| m, 1, &mut one, &mut spare);
        let refused = one.iter().filter(|(_, r)| r.is_err()).count();
        assert!(refused > 500 && refused < 1_500, "a mix: {refused} refused");
        // The buffers are reused from batch to batch: nothing of an earlier batch may remain.
        let (mut out, mut spare) = (Vec::new(), Vec::new());
        for threads in [2, 3, 4, 3, 2] {
            admit_all(
                &rules,
                "events",
                &batch[..3_000],
                |m| m,
                threads,
                &mut out,
                &mut spare,
            );
            assert_eq!(out, one[..3_000]);
            admit_all(
                &rules,
                "events",
                &batch,
                |m| m,
                threads,
                &mut out,
                &mut spare,
            );
            assert_eq!(out, one);
        }
    }
}
