//! [`DecisionTable`]: the Kafka shell around [`Table`]. A follower thread reads the decisions
//! topic as a table and publishes snapshots; a watch thread turns freshness into a state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics::{counter, gauge};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::table::{
    Applied, CatchUp, Freshness, Route, RouteEntry, RouteReason, Table, TableState,
};
use super::{Router, CLIENT_ERRORS, DECISIONS, LOOKUPS, ROLLOUTS, STALENESS, STATE};
use crate::codec::{self, Encoding};

/// Configuration of a [`DecisionTable`].
///
/// ```toml
/// bootstrap_servers = "127.0.0.1:19092"
/// topic = "rollout-decisions"
/// encoding = "avro"
/// stale_after_ms = 30000
/// [options]                 # passed to librdkafka as is (SASL/SSL, tuning)
/// "security.protocol" = "SASL_SSL"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// The decisions topic (compacted, keyed by rollout id).
    pub topic: String,
    /// Encoding of the decisions topic (`TopicsConfig::decisions_encoding`); records in
    /// another encoding are still read (sniffed), so a change of encoding needs no restart.
    pub encoding: Encoding,
    /// The table serves the baseline once it has not been known current for this long
    /// (spelled `stale_after_ms` in files, in milliseconds).
    #[serde(rename = "stale_after_ms", with = "duration_ms")]
    pub stale_after: Duration,
    /// Extra librdkafka consumer properties (security settings go here). The settings the
    /// table needs for correctness (`isolation.level`, `enable.auto.commit`, …) win.
    pub options: BTreeMap<String, String>,
}

/// Default `stale_after`: 30 s, the processor's `http.max_poll_gap_ms` default, so a router
/// gives up on the table about when the processor's own health check would fail.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);

impl Default for RouterConfig {
    fn default() -> Self {
        let topics = crate::config::TopicsConfig::default();
        Self {
            // Local broker of `scripts/kafka.sh`, as the processor's default.
            bootstrap_servers: "127.0.0.1:19092".into(),
            topic: topics.decisions,
            encoding: topics.decisions_encoding,
            stale_after: DEFAULT_STALE_AFTER,
            options: BTreeMap::new(),
        }
    }
}

impl RouterConfig {
    /// The default configuration for `topic` on `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RouterError> {
        let invalid = |field, message: String| Err(RouterError::Config { field, message });
        if self.bootstrap_servers.trim().is_empty() {
            return invalid("bootstrap_servers", "must not be empty".into());
        }
        if self.topic.trim().is_empty() {
            return invalid("topic", "must not be empty".into());
        }
        let ms = self.stale_after.as_millis();
        if !(200..=3_600_000).contains(&ms) {
            return invalid(
                "stale_after_ms",
                format!("must be in [200, 3600000], got {ms}"),
            );
        }
        Ok(())
    }

    /// How often the topic's end offsets are probed: four probes per `stale_after`, so one
    /// lost or slow probe does not make a healthy table stale.
    fn probe_interval(&self) -> Duration {
        (self.stale_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }

    /// Timeout of each broker call of a probe.
    fn probe_timeout(&self) -> Duration {
        (self.stale_after / 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// How often the state is re-evaluated (bounds how late `Stale` is noticed).
    fn tick(&self) -> Duration {
        (self.stale_after / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Why a [`DecisionTable`] could not be started or waited for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A configuration field is out of range. Not retryable.
    #[error("invalid router config: `{field}` {message}")]
    Config {
        /// The field, as spelled in the file.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// librdkafka refused the client configuration. Not retryable.
    #[error("creating the decisions consumer: {0}")]
    Client(#[source] KafkaError),
    /// The follower thread could not be spawned. Retryable.
    #[error("spawning the router threads: {0}")]
    Spawn(#[source] std::io::Error),
    /// The table did not become ready in time. Retryable: the follower keeps trying.
    #[error("decision table not ready after {waited:?} (state {state})")]
    NotReady {
        /// State when the wait gave up.
        state: TableState,
        /// How long was waited.
        waited: Duration,
    },
    /// The table was shut down. Not retryable.
    #[error("decision table shut down")]
    ShutDown,
}

impl RouterError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RouterError::Spawn(_) | RouterError::NotReady { .. })
    }
}

/// Lookups answered since start, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCounts {
    /// Served the candidate.
    pub candidate: u64,
    /// Served the baseline by the split (the table is ready and knows the rollout).
    pub baseline: u64,
    /// Served the baseline: unknown rollout.
    pub unknown: u64,
    /// Served the baseline: still loading.
    pub loading: u64,
    /// Served the baseline: stale.
    pub stale: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Candidate = 0,
    Baseline = 1,
    Unknown = 2,
    Loading = 3,
    Stale = 4,
}

const OUTCOMES: [&str; 5] = ["candidate", "baseline", "unknown", "loading", "stale"];

/// State shared by the readers, the follower and the watch thread.
struct Shared {
    topic: String,
    snapshot: ArcSwap<Table>,
    state: AtomicU8,
    origin: Instant,
    /// Milliseconds since `origin` up to which the table is known complete, plus one; 0: never.
    fresh_as_of_ms: AtomicU64,
    stale_after: Duration,
    stop: AtomicBool,
    /// A table built by [`DecisionTable::fixed`]: always ready, never followed.
    fixed: bool,
    lookups: [AtomicU64; 5],
    state_tx: watch::Sender<TableState>,
}

impl Shared {
    #[inline]
    fn count(&self, outcome: Outcome) {
        self.lookups[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn freshness(&self) -> Freshness {
        let mut f = Freshness::new(self.stale_after);
        match self.fresh_as_of_ms.load(Ordering::Acquire) {
            0 => {}
            ms => f.caught_up(Duration::from_millis(ms - 1)),
        }
        f
    }

    /// Re-evaluates the state from freshness and the clock; stores, logs and announces changes.
    fn refresh_state(&self) -> TableState {
        if self.fixed {
            return self.state();
        }
        let fresh = self.freshness();
        let mut state = fresh.state(self.origin.elapsed());
        if self.stop.load(Ordering::Acquire) && state == TableState::Ready {
            state = TableState::Stale;
        }
        let old = TableState::from_code(self.state.swap(state.code(), Ordering::AcqRel));
        if old != state {
            let topic = self.topic.as_str();
            match state {
                _ if self.stop.load(Ordering::Acquire) => info!(topic, "Decision table shut down."),
                TableState::Ready => info!(topic, from = %old, "Decision table ready."),
                _ => {
                    warn!(topic, from = %old, to = %state, "Decision table not ready; serving the baseline.")
                }
            }
            gauge!(STATE, "topic" => self.topic.clone()).set(f64::from(state.code()));
            self.state_tx.send_replace(state);
        }
        state
    }

    fn state(&self) -> TableState {
        TableState::from_code(self.state.load(Ordering::Acquire))
    }
}

/// librdkafka callbacks: client errors are logged and counted (librdkafka retries by itself;
/// staleness is judged from probes, not from these).
struct RouterContext {
    topic: String,
}

impl ClientContext for RouterContext {
    fn error(&self, error: KafkaError, reason: &str) {
        counter!(CLIENT_ERRORS, "topic" => self.topic.clone()).increment(1);
        warn!(topic = %self.topic, error = %error, reason, "Decision table client error.");
    }
}

impl ConsumerContext for RouterContext {}

type TableConsumer = BaseConsumer<RouterContext>;

/// A request router's view of the decisions topic: the latest phase of every rollout, read as
/// a table and followed live, answering "candidate or baseline?" per request.
///
/// # Freshness
///
/// The follower probes the topic every `stale_after / 4` (metadata, then the low and end
/// offsets of every partition; with `read_committed` the end offset is the last stable
/// offset). When the consumer's positions reach a probe's end offsets, the table is known to
/// hold every decision committed before that probe started: that instant is the table's
/// *fresh-as-of*. This one signal covers a lost broker, stalled fetches and a stuck follower
/// alike, where "the last poll succeeded" would not (a poll returns nothing both when there is
/// nothing to read and when the broker is gone).
///
/// - [`TableState::Loading`] until the first probe is caught up (the initial load);
/// - [`TableState::Ready`] while `now - fresh_as_of <= stale_after`;
/// - [`TableState::Stale`] after that; back to `Ready` as soon as a later probe is caught up.
///
/// A watch thread re-evaluates the state every `stale_after / 10` (at most 250 ms), so `Stale`
/// is reported at most that much after `stale_after`. Lookups read the state from an atomic
/// and the table from an [`ArcSwap`] snapshot swapped after each applied batch: no lock, no
/// clock read, no allocation on the read path.
pub struct DecisionTable {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for DecisionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionTable")
            .field("topic", &self.shared.topic)
            .field("state", &self.state())
            .field("rollouts", &self.shared.snapshot.load().len())
            .finish()
    }
}

impl DecisionTable {
    /// Validates the configuration, creates the consumer and starts following the topic on
    /// two threads of its own (usable from sync and async code alike). Returns at once, in
    /// [`TableState::Loading`]; an unreachable broker is not an error (the table stays
    /// `Loading` and keeps trying).
    pub fn start(config: RouterConfig) -> Result<DecisionTable, RouterError> {
        config.validate()?;
        let consumer = consumer(&config)?;
        let (state_tx, _) = watch::channel(TableState::Loading);
        let shared = Arc::new(Shared {
            topic: config.topic.clone(),
            snapshot: ArcSwap::from_pointee(Table::new()),
            state: AtomicU8::new(TableState::Loading.code()),
            origin: Instant::now(),
            fresh_as_of_ms: AtomicU64::new(0),
            stale_after: config.stale_after,
            stop: AtomicBool::new(false),
            fixed: false,
            lookups: Default::default(),
            state_tx,
        });
        gauge!(STATE, "topic" => config.topic.clone()).set(f64::from(TableState::Loading.code()));
        let follower = Follower {
            shared: Arc::clone(&shared),
            consumer,
            encoding: config.encoding,
            probe_interval: config.probe_interval(),
            probe_timeout: config.probe_timeout(),
            table: Table::new(),
            assigned: Vec::new(),
            undecodable: 0,
        };
        let threads = vec![std::thread::Builder::new()
            .name("router-follower".into())
            .spawn(move || follower.run())
            .map_err(RouterError::Spawn)?];
        let watch_shared = Arc::clone(&shared);
        let tick = config.tick();
        let spawned = std::thread::Builder::new()
            .name("router-watch".into())
            .spawn(move || watch_loop(&watch_shared, tick));
        let table = DecisionTable {
            shared,
            threads: Mutex::new(threads),
        };
        match spawned {
            Ok(handle) => table.threads.lock().expect("not poisoned").push(handle),
            Err(e) => return Err(RouterError::Spawn(e)), // dropping `table` stops the follower
        }
        Ok(table)
    }

    /// A table that is always [`Ready`](TableState::Ready) with fixed contents and follows no
    /// topic: for tests, benchmarks and demos without a broker.
    pub fn fixed(topic: impl Into<String>, table: Table) -> DecisionTable {
        let (state_tx, _) = watch::channel(TableState::Ready);
        DecisionTable {
            shared: Arc::new(Shared {
                topic: topic.into(),
                snapshot: ArcSwap::from_pointee(table),
                state: AtomicU8::new(TableState::Ready.code()),
                origin: Instant::now(),
                fresh_as_of_ms: AtomicU64::new(0),
                stale_after: DEFAULT_STALE_AFTER,
                stop: AtomicBool::new(false),
                fixed: true,
                lookups: Default::default(),
                state_tx,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Whether the candidate serves this request: the sticky split of the rollout's latest
    /// phase when the table is [`Ready`](TableState::Ready) and knows the rollout; the
    /// baseline (`false`) otherwise. The hot path: lock-free, no allocation.
    #[inline]
    pub fn should_use_new_version(&self, rollout_id: &str, request_key: &str) -> bool {
        let s = &*self.shared;
        let outcome = match s.state() {
            TableState::Ready => {
                match s.snapshot.load().serves_candidate(rollout_id, request_key) {
                    Some(true) => Outcome::Candidate,
                    Some(false) => Outcome::Baseline,
                    None => Outcome::Unknown,
                }
            }
            TableState::Loading => Outcome::Loading,
            TableState::Stale => Outcome::Stale,
        };
        s.count(outcome);
        outcome == Outcome::Candidate
    }

    /// Like [`should_use_new_version`](Self::should_use_new_version), saying why and what the
    /// table last knew of the rollout.
    pub fn route(&self, rollout_id: &str, request_key: &str) -> Route {
        let s = &*self.shared;
        let snapshot = s.snapshot.load();
        let (route, outcome) = match s.state() {
            TableState::Ready => {
                let r = snapshot.lookup(rollout_id, request_key);
                let o = match (r.reason, r.use_candidate) {
                    (RouteReason::Split, true) => Outcome::Candidate,
                    (RouteReason::Split, false) => Outcome::Baseline,
                    _ => Outcome::Unknown,
                };
                (r, o)
            }
            TableState::Loading => (
                Route::baseline(snapshot.get(rollout_id), RouteReason::Loading),
                Outcome::Loading,
            ),
            TableState::Stale => (
                Route::baseline(snapshot.get(rollout_id), RouteReason::Stale),
                Outcome::Stale,
            ),
        };
        s.count(outcome);
        route
    }

    /// The current state (re-evaluated against the clock, so it is exact even between two
    /// ticks of the watch thread).
    pub fn state(&self) -> TableState {
        self.shared.refresh_state()
    }

    /// The table as last published (whatever the state).
    pub fn snapshot(&self) -> Arc<Table> {
        self.shared.snapshot.load_full()
    }

    /// What the table holds for one rollout (whatever the state).
    pub fn entry(&self, rollout_id: &str) -> Option<RouteEntry> {
        self.shared.snapshot.load().get(rollout_id).cloned()
    }

    /// How long ago the table was last known to hold every committed decision (`None` before
    /// the initial load finished).
    pub fn staleness(&self) -> Option<Duration> {
        self.shared
            .freshness()
            .fresh_as_of()
            .map(|f| self.shared.origin.elapsed().saturating_sub(f))
    }

    /// Lookups answered since start, by outcome.
    pub fn lookups(&self) -> LookupCounts {
        let l = |o: Outcome| self.shared.lookups[o as usize].load(Ordering::Relaxed);
        LookupCounts {
            candidate: l(Outcome::Candidate),
            baseline: l(Outcome::Baseline),
            unknown: l(Outcome::Unknown),
            loading: l(Outcome::Loading),
            stale: l(Outcome::Stale),
        }
    }

    /// The topic followed.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Waits until the table is [`Ready`](TableState::Ready), at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), RouterError> {
        if self.state() == TableState::Ready {
            return Ok(());
        }
        let mut rx = self.shared.state_tx.subscribe();
        let started = Instant::now();
        let ready = tokio::time::timeout(timeout, rx.wait_for(|s| *s == TableState::Ready)).await;
        match ready {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(RouterError::ShutDown),
            Err(_) => Err(RouterError::NotReady {
                state: self.state(),
                waited: started.elapsed(),
            }),
        }
    }

    /// Blocking [`wait_ready`](Self::wait_ready), for callers without an async runtime.
    pub fn wait_ready_blocking(&self, timeout: Duration) -> Result<(), RouterError> {
        let started = Instant::now();
        loop {
            match self.state() {
                TableState::Ready => return Ok(()),
                _ if self.shared.stop.load(Ordering::Acquire) => return Err(RouterError::ShutDown),
                state if started.elapsed() >= timeout => {
                    return Err(RouterError::NotReady {
                        state,
                        waited: started.elapsed(),
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Stops following and joins the threads (returns within about one probe timeout,
    /// `stale_after / 2` at most 10 s). Idempotent. A shut-down table serves the baseline.
    /// Blocking: from async code, call it where blocking is allowed.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &threads {
            t.thread().unpark();
        }
        for t in threads {
            let _ = t.join();
        }
        self.shared.refresh_state();
    }
}

impl Drop for DecisionTable {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Router for DecisionTable {
    #[inline]
    fn should_use_new_version(&self, rollout_id: &str, request_key: &str) -> bool {
        DecisionTable::should_use_new_version(self, rollout_id, request_key)
    }
}

fn consumer(config: &RouterConfig) -> Result<TableConsumer, RouterError> {
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

/// Re-evaluates the state every `tick` and publishes lookup counts and staleness.
fn watch_loop(shared: &Shared, tick: Duration) {
    let topic = shared.topic.clone();
    let mut published = [0u64; 5];
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        shared.refresh_state();
        for (i, name) in OUTCOMES.iter().enumerate() {
            let now = shared.lookups[i].load(Ordering::Relaxed);
            if now > published[i] {
                counter!(LOOKUPS, "outcome" => *name).increment(now - published[i]);
                published[i] = now;
            }
        }
        if let Some(f) = shared.freshness().fresh_as_of() {
            let age = shared.origin.elapsed().saturating_sub(f);
            gauge!(STALENESS, "topic" => topic.clone()).set(age.as_secs_f64());
        }
        if stopping {
            return;
        }
        std::thread::park_timeout(tick);
    }
}

/// Largest number of records applied before a snapshot is published.
const MAX_BATCH: usize = 10_000;
/// How long a poll waits for the first record of a batch (bounds shutdown and probe latency).
const POLL_WAIT: Duration = Duration::from_millis(100);

struct Follower {
    shared: Arc<Shared>,
    consumer: TableConsumer,
    encoding: Encoding,
    probe_interval: Duration,
    probe_timeout: Duration,
    /// The working copy; readers see clones of it.
    table: Table,
    assigned: Vec<i32>,
    undecodable: u64,
}

impl Follower {
    fn run(mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: RouterConfig = toml::from_str("topic = \"d\"\nstale_after_ms = 2000").unwrap();
        assert_eq!(c.stale_after, Duration::from_secs(2));
        assert_eq!(c.encoding, Encoding::AvroSingleObject);
        c.validate().unwrap();
        assert_eq!(c.probe_interval(), Duration::from_millis(500));
        let e = toml::from_str::<RouterConfig>("stale_after = 3").unwrap_err();
        assert!(e.to_string().contains("stale_after"), "{e}");
        let c = RouterConfig {
            stale_after: Duration::from_millis(10),
            ..RouterConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("stale_after_ms"), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn unreachable_broker_starts_loading_and_serves_baseline() {
        let table = DecisionTable::start(RouterConfig {
            stale_after: Duration::from_millis(500),
            ..RouterConfig::new("127.0.0.1:1", "decisions")
        })
        .unwrap();
        assert_eq!(table.state(), TableState::Loading);
        assert!(!table.should_use_new_version("r", "k"));
        let r = table.route("r", "k");
        assert_eq!((r.use_candidate, r.reason), (false, RouteReason::Loading));
        let e = table
            .wait_ready_blocking(Duration::from_millis(50))
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(table.lookups().loading, 2);
        table.shutdown();
        assert_eq!(table.state(), TableState::Loading);
    }
}
