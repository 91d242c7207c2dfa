//! [`DecisionTable`]: the router's public API around [`Table`]. Lookups read an immutable
//! snapshot and an atomic state (no lock); a follower thread (`router::follower`) publishes
//! snapshots and a watch thread turns freshness into a state.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics::{counter, gauge};
use tokio::sync::watch;
use tracing::{info, warn};

use super::follower::{consumer, Follower};
use super::table::{Freshness, Route, RouteEntry, RouteReason, Table, TableState};
use super::{Router, RouterConfig, RouterError, DEFAULT_STALE_AFTER, LOOKUPS, STALENESS, STATE};

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
pub(super) struct Shared {
    pub(super) topic: String,
    pub(super) snapshot: ArcSwap<Table>,
    pub(super) state: AtomicU8,
    pub(super) origin: Instant,
    /// Milliseconds since `origin` up to which the table is known complete, plus one; 0: never.
    pub(super) fresh_as_of_ms: AtomicU64,
    pub(super) stale_after: Duration,
    pub(super) stop: AtomicBool,
    /// A table built by [`DecisionTable::fixed`]: always ready, never followed.
    pub(super) fixed: bool,
    pub(super) lookups: [AtomicU64; 5],
    pub(super) state_tx: watch::Sender<TableState>,
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
    pub(super) fn refresh_state(&self) -> TableState {
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
        self.serves(|snapshot| snapshot.serves_candidate(rollout_id, request_key))
    }

    /// [`should_use_new_version`](Self::should_use_new_version) for a request of a user
    /// `segment` in a `region` (either `None` when unknown): routed by its scope's row when the
    /// rollout's policy names segments or regions (see [`crate::engine::scope`]); the baseline
    /// for an unknown rollout, an unknown scope, or while the table is loading or stale. With
    /// both `None` this is `should_use_new_version`.
    #[inline]
    pub fn should_use_new_version_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> bool {
        self.serves(|snapshot| {
            snapshot.serves_candidate_scoped(rollout_id, request_key, segment, region)
        })
    }

    /// The answer of a ready table (`ask` reads the snapshot: `None` for an unknown rollout
    /// or scope), the baseline otherwise; counted by outcome.
    #[inline]
    fn serves(&self, ask: impl FnOnce(&Table) -> Option<bool>) -> bool {
        let s = &*self.shared;
        let outcome = match s.state() {
            TableState::Ready => match ask(&s.snapshot.load()) {
                Some(true) => Outcome::Candidate,
                Some(false) => Outcome::Baseline,
                None => Outcome::Unknown,
            },
            TableState::Loading => Outcome::Loading,
            TableState::Stale => Outcome::Stale,
        };
        s.count(outcome);
        outcome == Outcome::Candidate
    }

    /// Like [`should_use_new_version_scoped`](Self::should_use_new_version_scoped), saying
    /// why.
    pub fn route_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Route {
        self.route_with(
            |t| t.lookup_scoped(rollout_id, request_key, segment, region),
            |_| None,
        )
    }

    /// Like [`should_use_new_version`](Self::should_use_new_version), saying why and what the
    /// table last knew of the rollout.
    pub fn route(&self, rollout_id: &str, request_key: &str) -> Route {
        self.route_with(|t| t.lookup(rollout_id, request_key), |t| t.get(rollout_id))
    }

    /// The route of a ready table (`lookup`), or the baseline with what the table last knew
    /// (`last_known`) while it is loading or stale; counted by outcome.
    fn route_with(
        &self,
        lookup: impl FnOnce(&Table) -> Route,
        last_known: impl for<'t> FnOnce(&'t Table) -> Option<&'t RouteEntry>,
    ) -> Route {
        let s = &*self.shared;
        let snapshot = s.snapshot.load();
        let (route, outcome) = match s.state() {
            TableState::Ready => {
                let r = lookup(&snapshot);
                let o = match (r.reason, r.use_candidate) {
                    (RouteReason::Split, true) => Outcome::Candidate,
                    (RouteReason::Split, false) => Outcome::Baseline,
                    _ => Outcome::Unknown,
                };
                (r, o)
            }
            TableState::Loading => (
                Route::baseline(last_known(&snapshot), RouteReason::Loading),
                Outcome::Loading,
            ),
            TableState::Stale => (
                Route::baseline(last_known(&snapshot), RouteReason::Stale),
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

    /// What the table holds for the scope a request of `segment` in `region` is routed by
    /// (whatever the state; `None` for an unknown rollout or scope).
    pub fn entry_scoped(
        &self,
        rollout_id: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Option<RouteEntry> {
        self.shared
            .snapshot
            .load()
            .entry_scoped(rollout_id, segment, region)
            .cloned()
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

    #[inline]
    fn should_use_new_version_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> bool {
        DecisionTable::should_use_new_version_scoped(self, rollout_id, request_key, segment, region)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
