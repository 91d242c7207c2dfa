//! The processor: consume events and commands, run them through one engine per partition,
//! and publish decisions, dead letters and input offsets in one Kafka transaction.
//!
//! ```text
//!  events ─┐                          ┌─▶ decisions (compacted, same partition as the input)
//!          ├─▶ poll batch ─▶ engine[p] ┤
//! commands ┘   (≤ max_batch_ms)        └─▶ dead-letter
//!                 └── offsets ──▶ send_offsets_to_transaction ─▶ commit_transaction
//! ```
//!
//! - **Exactly once.** Each batch is one transaction: its decisions, its dead letters and the
//!   next input offsets commit together or not at all; readers use `read_committed`. The
//!   transactional id is stable per instance, so a restarted instance fences its zombie and
//!   aborts its open transaction at once.
//! - **Blocking calls stay off the async executor.** The whole loop runs on a blocking thread
//!   (`spawn_blocking`) with librdkafka's synchronous consumer and producer; the async side
//!   only serves HTTP and waits for signals.
//! - **Rebalance.** The consumer is only polled between transactions, so partitions are never
//!   revoked with a transaction open. Revoked partitions' engines are parked; if the partition
//!   comes back and the group's committed offsets are still the ones this instance committed,
//!   the parked state is reused, otherwise it is restored ([`super::restore`]). The `range`
//!   assignor is the default because it keeps events-p and commands-p on the same instance.
//! - **Bad input.** A record that is too large, fails to decode or validate, or is a refused
//!   command goes to the dead-letter topic with headers naming its source and the error;
//!   processing goes on. If the share of dead letters among the last `dead_letter_window`
//!   records exceeds `max_dead_letter_ratio`, the processor stops: that is a wrong topic or
//!   encoding, not a few bad agents.
//! - **Failure.** A transaction that fails is aborted and the processor returns an error; run
//!   it under a supervisor (systemd, Kubernetes) — the restart restores state exactly.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::client::{client_config, client_config_with_defaults};
use super::restore::restore_partition;
use crate::codec::{self, WireRecord};
use crate::config::Config;
use crate::engine::{Decision, Engine, EngineOptions};
use crate::observe::{self, DeadLettered, DecisionPublished, Health};

/// Errors that stop the processor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A Kafka call failed (connect, transaction, commit). Retryable by restarting.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Topic setup failed (missing permission, not co-partitioned...).
    #[error(transparent)]
    Admin(#[from] super::admin::AdminError),
    /// Too many dead letters: most likely a wrong topic or encoding. Not retryable as is.
    #[error("dead-letter ratio {ratio:.2} over the last {window} records exceeds the limit {limit}; stopping (wrong topic or encoding?)")]
    DeadLetterFlood {
        /// Observed ratio.
        ratio: f64,
        /// Records it was computed over.
        window: u64,
        /// Configured limit.
        limit: f64,
    },
    /// The HTTP listener could not bind.
    #[error("http listener: {0}")]
    Http(#[from] std::io::Error),
}

impl ProcessorError {
    /// Whether restarting the processor unchanged may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Kafka(_) => true,
            ProcessorError::Admin(e) => e.is_retryable(),
            ProcessorError::DeadLetterFlood { .. } | ProcessorError::Http(_) => false,
        }
    }
}

/// Rebalance notifications, handed from librdkafka's callback to the loop.
#[derive(Default)]
struct RebalanceLog {
    assigned: Vec<(String, i32)>,
    revoked: Vec<(String, i32)>,
}

/// Consumer context: records rebalances and exports lag from statistics.
struct Ctx {
    log: Arc<Mutex<RebalanceLog>>,
    events_topic: String,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        if let Some(t) = stats.topics.get(&self.events_topic) {
            for (p, s) in &t.partitions {
                if *p >= 0 && s.consumer_lag >= 0 {
                    metrics::gauge!(observe::CONSUMER_LAG, "partition" => p.to_string())
                        .set(s.consumer_lag as f64);
                }
            }
        }
    }
}

fn tpl_entries(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.log
                .lock()
                .expect("rebalance log")
                .revoked
                .extend(tpl_entries(tpl));
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self
                .log
                .lock()
                .expect("rebalance log")
                .assigned
                .extend(tpl_entries(tpl)),
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// One assigned partition's state.
struct PartitionState {
    engine: Engine,
    /// Next offsets this instance committed for (events, commands).
    committed: (Option<i64>, Option<i64>),
}

/// Counts dead letters over the last N records.
struct DeadLetterRatio {
    recent: VecDeque<bool>,
    dead: u64,
    window: u64,
}

impl DeadLetterRatio {
    fn push(&mut self, dead: bool) {
        self.recent.push_back(dead);
        self.dead += u64::from(dead);
        if self.recent.len() as u64 > self.window {
            if let Some(true) = self.recent.pop_front() {
                self.dead -= 1;
            }
        }
    }
    fn ratio(&self) -> Option<f64> {
        (self.recent.len() as u64 >= self.window.min(1_000))
            .then(|| self.dead as f64 / self.recent.len() as f64)
    }
}

/// The processing loop's state. Build with [`Processor::new`], drive with [`Processor::run`].
pub struct Processor {
    config: Config,
    consumer: BaseConsumer<Ctx>,
    producer: BaseProducer,
    log: Arc<Mutex<RebalanceLog>>,
    partitions: HashMap<i32, PartitionState>,
    parked: HashMap<i32, PartitionState>,
    health: Arc<Health>,
    dead_letters: DeadLetterRatio,
    late_seen: u64,
    buf: Vec<u8>,
}

/// One input record, detached from the consumer.
struct Input {
    msg: OwnedMessage,
}

impl Processor {
    /// Connects the consumer (subscribed to events and commands) and the transactional producer.
    pub fn new(config: Config, health: Arc<Health>) -> Result<Self, ProcessorError> {
        let log = Arc::new(Mutex::new(RebalanceLog::default()));
        let ctx = Ctx {
            log: log.clone(),
            events_topic: config.topics.events.clone(),
        };
        let consumer: BaseConsumer<Ctx> = client_config_with_defaults(
            &config.kafka,
            &[
                ("partition.assignment.strategy", "range"),
                ("statistics.interval.ms", "5000"),
            ],
            &[
                ("group.id", &config.kafka.group_id),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create_with_context(ctx)?;
        consumer.subscribe(&[&config.topics.events, &config.topics.commands])?;
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
        producer.init_transactions(Duration::from_millis(
            config.processing.transaction_timeout_ms,
        ))?;
        let window = config.processing.dead_letter_window;
        Ok(Self {
            config,
            consumer,
            producer,
            log,
            partitions: HashMap::new(),
            parked: HashMap::new(),
            health,
            dead_letters: DeadLetterRatio {
                recent: VecDeque::new(),
                dead: 0,
                window,
            },
            late_seen: 0,
            buf: Vec::with_capacity(1024),
        })
    }

    fn txn_timeout(&self) -> Duration {
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
        let mut batch: Vec<Input> = Vec::with_capacity(max_records);
        while !stop.load(Ordering::Relaxed) {
            batch.clear();
            let mut first_at: Option<Instant> = None;
            while batch.len() < max_records && !stop.load(Ordering::Relaxed) {
                let wait = match first_at {
                    Some(t) => match max_wait.checked_sub(t.elapsed()) {
                        Some(w) => w,
                        None => break,
                    },
                    None => Duration::from_millis(100),
                };
                let polled = self.consumer.poll(wait).map(|r| r.map(|m| m.detach()));
                self.health.polled();
                self.handle_rebalance(&mut batch)?;
                match polled {
                    Some(Ok(msg)) => {
                        if !self.partitions.contains_key(&msg.partition()) {
                            // Assigned in this very poll: restore before anything else.
                            self.handle_rebalance(&mut batch)?;
                        }
                        first_at.get_or_insert_with(Instant::now);
                        batch.push(Input { msg });
                    }
                    Some(Err(e)) => warn!(error = %e, "Consumer error."),
                    None if first_at.is_none() => {}
                    None => {}
                }
            }
            if !batch.is_empty() {
                self.process_batch(&batch)?;
            }
        }
        info!("Processor stopping: last batch committed.");
        Ok(())
    }

    /// Applies pending assignments (restoring) and revocations (parking, dropping buffered
    /// records of revoked partitions).
    fn handle_rebalance(&mut self, batch: &mut Vec<Input>) -> Result<(), ProcessorError> {
        let (assigned, revoked) = {
            let mut log = self.log.lock().expect("rebalance log");
            (
                std::mem::take(&mut log.assigned),
                std::mem::take(&mut log.revoked),
            )
        };
        if assigned.is_empty() && revoked.is_empty() {
            return Ok(());
        }
        for (topic, p) in &revoked {
            if *topic == self.config.topics.events {
                if let Some(state) = self.partitions.remove(p) {
                    self.parked.insert(*p, state);
                }
                batch.retain(|i| i.msg.partition() != *p);
                info!(partition = p, "Partition revoked; state parked.");
            }
        }
        let events_topic = self.config.topics.events.clone();
        let mut to_restore = Vec::new();
        for (topic, p) in assigned {
            if topic != events_topic || self.partitions.contains_key(&p) {
                continue;
            }
            let committed = committed(&self.consumer, &self.config, p)?;
            match self.parked.remove(&p) {
                Some(state) if state.committed == committed => {
                    info!(
                        partition = p,
                        "Partition re-assigned unchanged; parked state reused."
                    );
                    self.partitions.insert(p, state);
                }
                _ => to_restore.push((p, committed)),
            }
        }
        // Partitions restore in parallel, each with consumers of its own; nothing of theirs is
        // processed before every one has finished.
        let config = &self.config;
        let restored: Vec<Result<(i32, PartitionState), KafkaError>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = to_restore
                    .iter()
                    .map(|&(p, committed)| {
                        scope.spawn(move || {
                            let mut engine = Engine::new(
                                config.policy.clone(),
                                EngineOptions {
                                    auto_start: config.processing.auto_start,
                                },
                            );
                            let stats = restore_partition(config, p, committed.0, &mut engine)?;
                            metrics::counter!(observe::RESTORE_DECISIONS)
                                .increment(stats.decisions_read);
                            metrics::counter!(observe::RESTORE_EVENTS)
                                .increment(stats.events_replayed);
                            Ok((p, PartitionState { engine, committed }))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("restore thread panicked"))
                    .collect()
            });
        for r in restored {
            let (p, state) = r?;
            self.partitions.insert(p, state);
        }
        self.parked.retain(|p, _| !self.partitions.contains_key(p));
        let n = self.partitions.len();
        self.health.set_partitions(n, n);
        metrics::gauge!(observe::ROLLOUTS).set(
            self.partitions
                .values()
                .map(|s| s.engine.len())
                .sum::<usize>() as f64,
        );
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Input]) -> Result<(), ProcessorError> {
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
        if let Some(ratio) = self.dead_letters.ratio() {
            let limit = self.config.processing.max_dead_letter_ratio;
            if ratio > limit {
                return Err(ProcessorError::DeadLetterFlood {
                    ratio,
                    window: self.dead_letters.recent.len() as u64,
                    limit,
                });
            }
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        m: &OwnedMessage,
        reason: &'static str,
        error: &str,
    ) -> Result<(), ProcessorError> {
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "rb.source.topic",
                value: Some(m.topic()),
            })
            .insert(Header {
                key: "rb.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "rb.source.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "rb.error.reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "rb.error.message",
                value: Some(error),
            });
        let topic = self.config.topics.dead_letter.clone();
        let mut record = BaseRecord::to(&topic)
            .headers(headers)
            .payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        self.send(record)?;
        DeadLettered {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            reason,
            error,
        }
        .emit();
        Ok(())
    }

    fn send<'a>(&self, mut record: BaseRecord<'a, [u8], [u8]>) -> Result<(), KafkaError> {
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

impl Drop for Processor {
    fn drop(&mut self) {
        // Leave the group promptly so partitions move without waiting for the session timeout.
        self.consumer.unsubscribe();
    }
}

fn committed(
    consumer: &BaseConsumer<Ctx>,
    config: &Config,
    p: i32,
) -> Result<(Option<i64>, Option<i64>), KafkaError> {
    // Right after a crash, the zombie's last transaction may still be being aborted: the
    // group then answers UNSTABLE_OFFSET_COMMIT for its partitions. The consumer's own
    // fetch position waits for that internally; the restore must wait too, or it would
    // rebuild windows up to no offset at all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&config.topics.events, p);
        tpl.add_partition(&config.topics.commands, p);
        let got = consumer.committed_offsets(tpl, Duration::from_secs(30))?;
        let unstable = got.elements().iter().find_map(|e| e.error().err());
        match unstable {
            Some(e) if Instant::now() < deadline => {
                info!(partition = p, error = %e, "Committed offsets not stable yet; waiting.");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Some(e) => return Err(e),
            None => {}
        }
        let off = |t: &str| {
            got.find_partition(t, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
        };
        return Ok((off(&config.topics.events), off(&config.topics.commands)));
    }
}

/// Creates or checks the topics: decisions compacted, all three co-partitioned.
pub async fn ensure_topics(config: &Config) -> Result<(), ProcessorError> {
    use super::admin::{self, TopicSpec};
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    let t = &config.topics;
    let admin_client: AdminClient<DefaultClientContext> =
        client_config(&config.kafka, &[]).create()?;
    let spec = |name: &str| {
        TopicSpec::new(name, t.partitions).with_replication_factor(t.replication_factor)
    };
    let specs = vec![
        spec(&t.events),
        spec(&t.decisions).with_config("cleanup.policy", "compact"),
        spec(&t.commands),
        spec(&t.dead_letter),
    ];
    let timeout = Duration::from_secs(30);
    if t.create_missing {
        admin::ensure_topics(&admin_client, &specs, timeout).await?;
    }
    let cfg = config.clone();
    let counts =
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, i32)>, ProcessorError> {
            let consumer: BaseConsumer =
                client_config(&cfg.kafka, &[("group.id", "rollout-breaker-admin")]).create()?;
            let t = &cfg.topics;
            let mut counts = Vec::new();
            for name in [&t.events, &t.decisions, &t.commands] {
                let n =
                    admin::partition_count(consumer.client(), name, timeout)?.ok_or_else(|| {
                        admin::AdminError::UnknownTopic {
                            topic: name.clone(),
                        }
                    })?;
                counts.push((name.clone(), n));
            }
            Ok(counts)
        })
        .await
        .expect("partition count task panicked")?;
    admin::check_co_partitioned(&counts)?;
    Ok(())
}

/// Runs the processor until `shutdown` completes: topics, HTTP endpoints, then the processing
/// loop on a blocking thread. Returns when the loop has committed its last batch.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProcessorError> {
    ensure_topics(&config).await?;
    let health = Arc::new(Health::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = config.http.listen {
        observe::serve_http(
            addr,
            health.clone(),
            Duration::from_millis(config.http.max_poll_gap_ms),
            async move {
                let _ = http_stop_rx.await;
            },
        )
        .await?;
    }
    // If this future is dropped (its task cancelled, its runtime shutting down), the loop on
    // the blocking thread must still stop, or the runtime would wait for it forever.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_on_drop = StopOnDrop(stop.clone());
    let loop_stop = stop.clone();
    let loop_health = health.clone();
    let mut worker = tokio::task::spawn_blocking(move || {
        let processor = Processor::new(config, loop_health)?;
        processor.run(&loop_stop)
    });
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut worker => r,
        () = &mut shutdown => {
            info!("Shutdown requested; finishing the batch in flight.");
            stop.store(true, Ordering::Relaxed);
            worker.await
        }
    };
    let _ = http_stop_tx.send(());
    result.expect("processor thread panicked")
}
