//! The processing loop: poll a batch (bounded by records and time), apply rebalances between
//! batches, hand the batch to [`super::transaction`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::Message;
use rustc_hash::FxHashMap;
use tracing::{error, info, warn};

use super::context::{BrokerWatch, CommitGate, Ctx, RebalanceLog};
use super::dead_letter::DeadLetterRatio;
use super::error::{fatal_consumer_error, ProcessorError};
use super::transaction::Committing;
use crate::config::Config;
use crate::engine::Engine;
use crate::input::AdmissionRules;
use crate::kafka::admin;
use crate::kafka::client::client_config_with_defaults;
use crate::notify::NotifyQueue;
use crate::observe::Health;

/// One assigned partition's state.
pub(super) struct PartitionState {
    pub(super) engine: Engine,
    /// Next offsets this instance committed for (events, commands).
    pub(super) committed: (Option<i64>, Option<i64>),
}

impl PartitionState {
    pub(super) fn new(engine: Engine, committed: (Option<i64>, Option<i64>)) -> Self {
        Self { engine, committed }
    }
}

/// The processing loop's state. Build with [`Processor::new`], drive with [`Processor::run`].
pub struct Processor {
    pub(super) config: Config,
    /// Shared with the poll loop, whose batch borrows records from it (no copy per record).
    pub(super) consumer: Arc<BaseConsumer<Ctx>>,
    /// Shared with the thread that commits a transaction while the loop polls the next batch.
    pub(super) producer: Arc<BaseProducer>,
    /// The previous batch's transaction, its commit running (see [`super::transaction`]).
    pub(super) committing: Option<Committing>,
    pub(super) commits: Arc<CommitGate>,
    pub(super) log: Arc<Mutex<RebalanceLog>>,
    pub(super) partitions: FxHashMap<i32, PartitionState>,
    /// The current batch's admissions, and the decoding threads' buffers: kept from batch to
    /// batch, so admission allocates no buffer per batch.
    pub(super) admissions: super::transaction::Admissions,
    pub(super) decode_buffers: Vec<super::transaction::Admissions>,
    pub(super) parked: FxHashMap<i32, PartitionState>,
    pub(super) health: Arc<Health>,
    pub(super) dead_letters: DeadLetterRatio,
    pub(super) late_seen: u64,
    /// Out-of-scope events counted so far (see `late_seen`).
    pub(super) out_of_scope_seen: u64,
    pub(super) buf: Vec<u8>,
    pub(super) admission: AdmissionRules,
    /// Webhook queues committed decisions are offered to (none by default).
    pub(super) notify: NotifyQueue,
}

/// One input record, borrowed from the consumer until its batch is processed.
pub(super) struct Input<'c> {
    pub(super) msg: BorrowedMessage<'c>,
}

impl Processor {
    /// Connects the consumer (subscribed to events and commands) and the transactional producer.
    pub fn new(config: Config, health: Arc<Health>) -> Result<Self, ProcessorError> {
        let producer = Self::transactional_producer(&config)?;
        Self::with_producer(config, health, producer)
    }

    /// The transactional producer of this instance (`transactional.id` =
    /// [`Config::transactional_id`]), its transactions initialised (which fences an older
    /// instance with the same id). Needs no topic, so [`run`](super::run) starts it while
    /// the topics are checked: the two take a few hundred ms each.
    pub fn transactional_producer(config: &Config) -> Result<BaseProducer, ProcessorError> {
        let timeout = config.processing.transaction_timeout_ms.to_string();
        let producer: BaseProducer = client_config_with_defaults(
            &config.kafka,
            &[("linger.ms", "1")],
            &[
                ("transactional.id", &config.transactional_id()),
                ("enable.idempotence", "true"),
                ("transaction.timeout.ms", &timeout),
            ],
        )
        .create()?;
        // librdkafka asks for the transaction coordinator at once, and when no broker
        // connection is up yet it retries only after a fixed 500 ms: connect first.
        crate::kafka::client::connect(producer.client(), None, Duration::from_secs(5));
        producer.init_transactions(Duration::from_millis(
            config.processing.transaction_timeout_ms,
        ))?;
        Ok(producer)
    }

    /// [`new`](Self::new) with a producer from
    /// [`transactional_producer`](Self::transactional_producer).
    pub fn with_producer(
        config: Config,
        health: Arc<Health>,
        producer: BaseProducer,
    ) -> Result<Self, ProcessorError> {
        let log = Arc::new(Mutex::new(RebalanceLog::default()));
        let commits = Arc::new(CommitGate::default());
        let ctx = Ctx {
            log: log.clone(),
            events_topic: config.topics.events.clone(),
            broker: BrokerWatch {
                health: health.clone(),
                bootstrap: config.kafka.bootstrap_servers.clone(),
            },
            commits: commits.clone(),
            commit_limit: Duration::from_millis(config.processing.transaction_timeout_ms),
        };
        let consumer: BaseConsumer<Ctx> = client_config_with_defaults(
            &config.kafka,
            &[
                ("partition.assignment.strategy", "range"),
                ("statistics.interval.ms", "5000"),
                crate::kafka::client::FETCH_QUEUE_BACKOFF,
            ],
            &[
                ("group.id", &config.kafka.group_id),
                // Static membership: a restarted instance gets its partitions back at once
                // instead of after session.timeout.ms.
                ("group.instance.id", &config.transactional_id()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create_with_context(ctx)?;
        consumer.subscribe(&[&config.topics.events, &config.topics.commands])?;
        // Admission checks partitions against the topic's actual partition count.
        let partitions = admin::partition_count(
            consumer.client(),
            &config.topics.events,
            Duration::from_secs(30),
        )?
        .ok_or_else(|| admin::AdminError::UnknownTopic {
            topic: config.topics.events.clone(),
        })?;
        let admission = config.admission_rules(partitions);
        let window = config.processing.dead_letter_window;
        Ok(Self {
            config,
            consumer: Arc::new(consumer),
            producer: Arc::new(producer),
            committing: None,
            commits,
            log,
            partitions: FxHashMap::default(),
            admissions: Vec::new(),
            decode_buffers: Vec::new(),
            parked: FxHashMap::default(),
            health,
            dead_letters: DeadLetterRatio {
                recent: VecDeque::new(),
                dead: 0,
                window,
            },
            late_seen: 0,
            out_of_scope_seen: 0,
            buf: Vec::with_capacity(1024),
            admission,
            notify: NotifyQueue::default(),
        })
    }

    /// Offers every decision to `queue` once its transaction has committed (see
    /// [`crate::notify`]).
    pub fn with_notifications(mut self, queue: NotifyQueue) -> Self {
        self.notify = queue;
        self
    }

    pub(super) fn txn_timeout(&self) -> Duration {
        Duration::from_millis(self.config.processing.transaction_timeout_ms)
    }

    /// Runs until `stop` is set; commits the batch in flight before returning.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), ProcessorError> {
        self.health.set_running(true);
        let result = self.run_inner(stop);
        self.health.set_running(false);
        if let Err(e) = &result {
            error!(error = %e, "Processor stopped on error.");
        }
        result
    }

    fn run_inner(&mut self, stop: &AtomicBool) -> Result<(), ProcessorError> {
        let max_records = self.config.processing.max_batch_records;
        let max_wait = Duration::from_millis(self.config.processing.max_batch_ms);
        // The batch borrows its records from this handle, not from `self`, so the batch can be
        // processed with `&mut self`; every record is released when the batch is cleared.
        let consumer = Arc::clone(&self.consumer);
        let mut batch: Vec<Input<'_>> = Vec::with_capacity(max_records);
        while !stop.load(Ordering::Relaxed) {
            batch.clear();
            let mut first_at: Option<Instant> = None;
            // Records taken without waiting since the clock was last read.
            let mut taken_at_once = 0;
            while batch.len() < max_records && !stop.load(Ordering::Relaxed) {
                // Records already queued are taken with a poll that does not wait (librdkafka
                // then reads no clock), up to `CLOCK_EVERY` in a row; a poll that may wait
                // always waits for what is left of the batch's time, read afresh.
                let wait = match first_at {
                    Some(_) if taken_at_once < CLOCK_EVERY => Duration::ZERO,
                    Some(t) => match max_wait.checked_sub(t.elapsed()) {
                        Some(w) => w,
                        None => break,
                    },
                    None => Duration::from_millis(100),
                };
                let polled = consumer.poll(wait);
                let empty = polled.is_none();
                taken_at_once = match (empty, wait.is_zero()) {
                    (false, true) => taken_at_once + 1,
                    (false, false) => 0,
                    // Nothing queued: the next poll reads the clock and waits.
                    (true, _) => CLOCK_EVERY,
                };
                // Liveness for `/healthz` (seconds matter): not a clock read per record.
                if empty || batch.len() % HEALTH_EVERY == 0 {
                    self.health.polled();
                }
                // A poll that serves a rebalance returns no record (rust-rdkafka reports the
                // consumed event as `None`): that is when the callbacks' log has news.
                if empty {
                    self.handle_rebalance(&mut batch)?;
                }
                match polled {
                    Some(Ok(msg)) => {
                        if !self.partitions.contains_key(&msg.partition()) {
                            // Assigned in this very poll: restore before anything else.
                            self.handle_rebalance(&mut batch)?;
                        }
                        first_at.get_or_insert_with(Instant::now);
                        batch.push(Input { msg });
                    }
                    Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                        return Err(fatal_consumer_error(&consumer, code));
                    }
                    Some(Err(e)) => warn!(error = %e, "Consumer error."),
                    None => {}
                }
            }
            if !batch.is_empty() {
                // Decoded while the previous batch's commit runs.
                let mut admissions = std::mem::take(&mut self.admissions);
                self.admit_batch(&batch, &mut admissions);
                self.process_batch(&batch, &admissions)?;
                // Kept for the next batch (emptied): no buffer allocated per batch.
                admissions.clear();
                self.admissions = admissions;
            }
        }
        self.finish_commit()?;
        info!("Processor stopping: last batch committed.");
        Ok(())
    }
}

/// How many queued records the poll loop takes in a row before it reads the clock again for
/// the batch's time bound (each takes microseconds, so the bound is overrun by well under a
/// millisecond).
const CLOCK_EVERY: usize = 64;

/// How many records the poll loop takes between two liveness marks.
const HEALTH_EVERY: usize = 256;

impl Drop for Processor {
    fn drop(&mut self) {
        // A loop that failed may leave a commit running: let it end (and abort it if it
        // failed) before the consumer leaves.
        if let Some(c) = self.committing.take() {
            let _ = c.finish(&self.producer, self.txn_timeout());
        }
        // Leave the group promptly so partitions move without waiting for the session timeout.
        self.consumer.unsubscribe();
    }
}
