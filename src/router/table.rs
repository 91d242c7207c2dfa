//! The pure decision table: the latest decision per rollout, the split it implies, and the
//! freshness logic that decides whether the table may be trusted. No Kafka, no clock: time
//! comes in as an argument (a [`Duration`] since an origin the caller chooses).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use core::hash::Hasher as _;

use hash32::{Hasher as _, Murmur3Hasher};
use rustc_hash::FxBuildHasher;

use crate::engine::splitter;
use crate::engine::{Decision, EventTime, Phase, Scope, TrafficPercent};

/// What the table knows about one rollout: the fields of its latest decision a router needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Phase after the latest decision.
    pub phase: Phase,
    /// Candidate traffic after the latest decision.
    pub traffic: TrafficPercent,
    /// Sequence number of the latest decision (the table keeps the highest).
    pub sequence: u64,
    /// Whether automatic decisions are frozen (routing is unaffected: the phase still applies).
    pub paused: bool,
    /// Version label of the candidate, when the decision carried one.
    pub candidate_version: Option<String>,
    /// Version label of the baseline, when the decision carried one.
    pub baseline_version: Option<String>,
    /// Event time of the latest decision (ms since the epoch).
    pub at: EventTime,
}

impl RouteEntry {
    /// The entry a decision implies.
    pub fn from_decision(decision: &Decision) -> Self {
        Self {
            phase: decision.to,
            traffic: decision.traffic,
            sequence: decision.sequence,
            paused: decision.paused,
            candidate_version: decision.candidate_version.clone(),
            baseline_version: decision.baseline_version.clone(),
            at: decision.at,
        }
    }
}

/// What [`Table::apply`] did with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// First decision seen for this rollout.
    Inserted,
    /// Newer than the entry held; replaced it.
    Updated,
    /// Same or lower sequence than the entry held (a duplicate, or a replay of older history);
    /// ignored.
    Ignored,
}

/// Whether the table may be trusted. Anything but [`Ready`](TableState::Ready) serves the
/// baseline to every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableState {
    /// The initial read of the topic has not reached the end offsets captured at start.
    Loading,
    /// Loaded and known to hold every decision committed less than `stale_after` ago.
    Ready,
    /// Loaded once, but not known to be current for longer than `stale_after` (broker lost,
    /// fetches stalled, or the table was shut down).
    Stale,
}

impl TableState {
    /// Lower-case name, used as a metric label value and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            TableState::Loading => "loading",
            TableState::Ready => "ready",
            TableState::Stale => "stale",
        }
    }

    /// Gauge value of `rollout_breaker_router_state`: 0 loading, 1 ready, 2 stale.
    pub const fn code(self) -> u8 {
        match self {
            TableState::Loading => 0,
            TableState::Ready => 1,
            TableState::Stale => 2,
        }
    }

    /// Inverse of [`code`](Self::code); unknown codes read as `Stale` (fail safe).
    pub const fn from_code(code: u8) -> Self {
        match code {
            0 => TableState::Loading,
            1 => TableState::Ready,
            _ => TableState::Stale,
        }
    }
}

impl fmt::Display for TableState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request was routed the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteReason {
    /// The table is ready and the sticky hash split decided (see [`Route::use_candidate`]).
    Split,
    /// The table holds no decision for this rollout: baseline.
    UnknownRollout,
    /// The rollout has scopes (segments, regions) and none for this request's region, or no
    /// row for its scope: baseline.
    UnknownScope,
    /// The initial load has not finished: baseline.
    Loading,
    /// The table is stale: baseline.
    Stale,
}

impl RouteReason {
    /// Lower-case name, used as a metric label value.
    pub const fn name(self) -> &'static str {
        match self {
            RouteReason::Split => "split",
            RouteReason::UnknownRollout => "unknown",
            RouteReason::UnknownScope => "unknown_scope",
            RouteReason::Loading => "loading",
            RouteReason::Stale => "stale",
        }
    }
}

/// The answer to one routing question, with what it was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Serve the candidate (`true`) or the baseline (`false`).
    pub use_candidate: bool,
    /// The rollout's phase as the table last knew it (`None` if unknown).
    pub phase: Option<Phase>,
    /// The rollout's candidate share as the table last knew it (zero if unknown). When the
    /// reason is not [`RouteReason::Split`], the baseline is served whatever this says.
    pub traffic: TrafficPercent,
    /// Why.
    pub reason: RouteReason,
}

impl Route {
    /// The baseline, for `reason`, quoting what the table last knew.
    pub fn baseline(entry: Option<&RouteEntry>, reason: RouteReason) -> Self {
        Self {
            use_candidate: false,
            phase: entry.map(|e| e.phase),
            traffic: entry.map_or(TrafficPercent::ZERO, |e| e.traffic),
            reason,
        }
    }
}

/// Latest decision per row: per rollout, and per scope of a rollout whose policy names
/// segments or regions (keyed by [`Decision::key`]; the rollout's own row by its id). Keeps
/// the highest `sequence` per row; a tombstone (a record with a key and no value,
/// compaction's delete) removes the row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    entries: HashMap<String, Slot, FxBuildHasher>,
    /// Segments and regions with a row, per rollout that has scoped rows (with row counts).
    scopes: HashMap<String, Dims, FxBuildHasher>,
}

/// The segments and regions a rollout's rows name, with how many rows name each.
#[derive(Debug, Clone, Default)]
struct Dims {
    segments: HashMap<String, usize>,
    regions: HashMap<String, usize>,
}

impl Dims {
    fn add(&mut self, scope: &Scope, delta: isize) {
        for (map, part) in [
            (&mut self.segments, &scope.segment),
            (&mut self.regions, &scope.region),
        ] {
            if let Some(p) = part {
                let n = map.entry(p.clone()).or_default();
                *n = n.saturating_add_signed(delta);
                if *n == 0 {
                    map.remove(p);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.regions.is_empty()
    }
}

/// An entry and the splitter's hash state after `"{rollout_id}:"`, so a lookup hashes only the
/// request key (MurmurHash3 is streaming: hashing the prefix once and the key per request
/// gives the same value as [`splitter::hash`] of both; the tests check it).
/// The hash is the rollout's, whatever the scope: a request key lands in the same bucket in
/// every scope, so a user stays on the candidate as any scope's traffic grows.
#[derive(Debug, Clone)]
struct Slot {
    entry: RouteEntry,
    prefix: Murmur3Hasher,
    /// The row's rollout and scope (to keep [`Dims`] right when a tombstone removes it).
    rollout_id: String,
    scope: Scope,
}

impl Slot {
    fn new(decision: &Decision, entry: RouteEntry) -> Self {
        let mut prefix = Murmur3Hasher::default();
        prefix.write(decision.rollout_id.as_bytes());
        prefix.write(b":");
        Self {
            entry,
            prefix,
            rollout_id: decision.rollout_id.clone(),
            scope: decision.scope.clone(),
        }
    }

    #[inline]
    fn serves_candidate(&self, request_key: &str) -> bool {
        let bp = self.entry.traffic.basis_points();
        // 0 % and 100 % need no hash: every bucket is in 0..10_000.
        if bp == 0 || bp >= splitter::BUCKETS as u16 {
            return bp != 0;
        }
        let mut h = self.prefix.clone();
        h.write(request_key.as_bytes());
        ((h.finish32() % splitter::BUCKETS) as u16) < bp
    }
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one decision to its row: kept if its sequence is higher than the held one.
    pub fn apply(&mut self, decision: &Decision) -> Applied {
        let key = if decision.scope.is_default() {
            std::borrow::Cow::Borrowed(decision.rollout_id.as_str())
        } else {
            std::borrow::Cow::Owned(decision.key())
        };
        match self.entries.get_mut(&*key) {
            Some(held) if held.entry.sequence >= decision.sequence => Applied::Ignored,
            Some(held) => {
                held.entry = RouteEntry::from_decision(decision);
                Applied::Updated
            }
            None => {
                let slot = Slot::new(decision, RouteEntry::from_decision(decision));
                if !decision.scope.is_default() {
                    self.scopes
                        .entry(decision.rollout_id.clone())
                        .or_default()
                        .add(&decision.scope, 1);
                }
                self.entries.insert(key.into_owned(), slot);
                Applied::Inserted
            }
        }
    }

    /// Removes a row (a tombstone on the compacted topic: a rollout's id, or one of its
    /// scopes' keys). Returns whether it was held.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.entries.remove(key) else {
            return false;
        };
        if !slot.scope.is_default() {
            if let Some(dims) = self.scopes.get_mut(&slot.rollout_id) {
                dims.add(&slot.scope, -1);
                if dims.is_empty() {
                    self.scopes.remove(&slot.rollout_id);
                }
            }
        }
        true
    }

    /// The row a request of `segment` and `region` is routed by, or why there is none:
    /// a segment no row names joins the rollout's default segment; a region no row names
    /// joins the default region when the rollout has no region rows, and is an unknown scope
    /// (baseline) when it has some; a rollout without scoped rows ignores both.
    fn scoped_slot(
        &self,
        rollout_id: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Result<&Slot, RouteReason> {
        let Some(dims) = (segment.is_some() || region.is_some())
            .then(|| self.scopes.get(rollout_id))
            .flatten()
        else {
            return self
                .entries
                .get(rollout_id)
                .ok_or(RouteReason::UnknownRollout);
        };
        let segment = segment.filter(|s| dims.segments.contains_key(*s));
        let region = match region {
            Some(r) if dims.regions.contains_key(r) => Some(r),
            Some(_) if !dims.regions.is_empty() => return Err(RouteReason::UnknownScope),
            _ => None,
        };
        let found = if segment.is_none() && region.is_none() {
            self.entries.get(rollout_id)
        } else {
            self.entries
                .get(&Scope::new(segment, region).key(rollout_id))
        };
        found.ok_or(RouteReason::UnknownScope)
    }

    /// Routes a request of a user `segment` in a `region` (either may be unknown to the
    /// request), assuming the table is ready: by its scope's row (see [`crate::engine::scope`]),
    /// the baseline for an unknown rollout or scope. Sticky: a request key's bucket is the
    /// same in every scope.
    pub fn lookup_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Route {
        match self.scoped_slot(rollout_id, segment, region) {
            Err(reason) => Route::baseline(None, reason),
            Ok(s) => Route {
                use_candidate: s.serves_candidate(request_key),
                phase: Some(s.entry.phase),
                traffic: s.entry.traffic,
                reason: RouteReason::Split,
            },
        }
    }

    /// [`Table::serves_candidate`] for a request of a `segment` in a `region`; `None` for an
    /// unknown rollout or scope.
    #[inline]
    pub fn serves_candidate_scoped(
        &self,
        rollout_id: &str,
        request_key: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Option<bool> {
        self.scoped_slot(rollout_id, segment, region)
            .ok()
            .map(|s| s.serves_candidate(request_key))
    }

    /// The entry of the row a request of `segment` in `region` is routed by (see
    /// [`Table::lookup_scoped`]); `None` for an unknown rollout or scope.
    pub fn entry_scoped(
        &self,
        rollout_id: &str,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Option<&RouteEntry> {
        self.scoped_slot(rollout_id, segment, region)
            .ok()
            .map(|s| &s.entry)
    }

    /// The entry of one scope of a rollout (its own row for the default scope).
    pub fn get_scoped(&self, rollout_id: &str, scope: &Scope) -> Option<&RouteEntry> {
        self.entries.get(&scope.key(rollout_id)).map(|s| &s.entry)
    }

    /// The entry of a rollout.
    pub fn get(&self, rollout_id: &str) -> Option<&RouteEntry> {
        self.entries.get(rollout_id).map(|s| &s.entry)
    }

    /// Routes a request, assuming the table is ready: unknown rollouts get the baseline, known
    /// ones the sticky split of [`splitter::serves_candidate`].
    pub fn lookup(&self, rollout_id: &str, request_key: &str) -> Route {
        match self.entries.get(rollout_id) {
            None => Route::baseline(None, RouteReason::UnknownRollout),
            Some(s) => Route {
                use_candidate: s.serves_candidate(request_key),
                phase: Some(s.entry.phase),
                traffic: s.entry.traffic,
                reason: RouteReason::Split,
            },
        }
    }

    /// Whether the candidate serves this request, assuming the table is ready (the hot path:
    /// no [`Route`] built).
    #[inline]
    pub fn serves_candidate(&self, rollout_id: &str, request_key: &str) -> Option<bool> {
        self.entries
            .get(rollout_id)
            .map(|s| s.serves_candidate(request_key))
    }

    /// Number of rows held (rollouts, and scopes of rollouts that have them).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no rollout is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every row's key and its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RouteEntry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), &v.entry))
    }
}

/// End offsets of every partition, captured by one probe of the topic, and the test of
/// whether the consumer's positions have reached them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// When the probe started (caller's clock): once the positions reach the targets, the
    /// table holds every decision committed before this instant.
    pub probe_started: Duration,
    /// `(partition, low watermark, end offset)` per partition. With `read_committed` the end
    /// offset is the last stable offset.
    pub targets: Vec<(i32, i64, i64)>,
}

impl CatchUp {
    /// Whether every partition's position has reached its end offset. `position(p)` is the
    /// consumer's position (the next offset it will deliver), or `None` before the first fetch,
    /// which counts as the low watermark. Positions, not the last offsets seen, because
    /// transaction markers occupy offsets that are never delivered.
    pub fn is_reached(&self, mut position: impl FnMut(i32) -> Option<i64>) -> bool {
        self.targets
            .iter()
            .all(|&(p, low, end)| position(p).unwrap_or(low) >= end)
    }
}

/// Freshness of the table: when it was last known to hold everything committed, and whether
/// that is recent enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    stale_after: Duration,
    fresh_as_of: Option<Duration>,
}

impl Freshness {
    /// Nothing loaded yet; stale once not known current for longer than `stale_after`.
    pub const fn new(stale_after: Duration) -> Self {
        Self {
            stale_after,
            fresh_as_of: None,
        }
    }

    /// The table caught up with a probe started at `probe_started`.
    pub fn caught_up(&mut self, probe_started: Duration) {
        self.fresh_as_of = Some(
            self.fresh_as_of
                .map_or(probe_started, |f| f.max(probe_started)),
        );
    }

    /// The instant up to which the table is known to hold every committed decision.
    pub const fn fresh_as_of(&self) -> Option<Duration> {
        self.fresh_as_of
    }

    /// The state at `now`: loading until the first catch-up, then ready while
    /// `now - fresh_as_of <= stale_after`, stale after that.
    pub fn state(&self, now: Duration) -> TableState {
        match self.fresh_as_of {
            None => TableState::Loading,
            Some(f) if now.saturating_sub(f) <= self.stale_after => TableState::Ready,
            Some(_) => TableState::Stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, BreakerState, Cause, MetricsSnapshot};

    pub(crate) fn decision(id: &str, seq: u64, to: Phase, percent: f64) -> Decision {
        Decision {
            rollout_id: id.into(),
            sequence: seq,
            action: Action::Advance,
            from: Phase::Off,
            to,
            traffic: TrafficPercent::new(percent).unwrap(),
            breaker: BreakerState::HalfOpen,
            paused: false,
            reason: String::new(),
            metrics: MetricsSnapshot::default(),
            at: 1_764_222_000_000,
            cause: Cause::Automatic,
            actor: "watchdog".into(),
            candidate_version: Some("v2".into()),
            baseline_version: None,
            policy_json: None,
            phase_started_at: None,
            warning: None,
            scope: crate::engine::Scope::DEFAULT,
        }
    }

    fn scoped(
        id: &str,
        seq: u64,
        percent: f64,
        segment: Option<&str>,
        region: Option<&str>,
    ) -> Decision {
        let to = if percent == 0.0 {
            Phase::Off
        } else {
            Phase::Small
        };
        Decision {
            scope: Scope::new(segment, region),
            ..decision(id, seq, to, percent)
        }
    }

    #[test]
    fn scoped_rows_route_their_scope_and_unknown_scopes_get_the_baseline() {
        let mut t = Table::new();
        t.apply(&decision("r", 3, Phase::Full, 100.0));
        t.apply(&scoped("r", 2, 100.0, None, Some("eu")));
        t.apply(&scoped("r", 1, 0.0, None, Some("us")));
        t.apply(&scoped("r", 1, 0.0, Some("enterprise"), None));
        t.apply(&scoped("r", 1, 100.0, Some("enterprise"), Some("eu")));
        assert_eq!(t.len(), 5);
        fn yes_in(t: &Table, seg: Option<&str>, region: Option<&str>) -> Option<bool> {
            t.serves_candidate_scoped("r", "k", seg, region)
        }
        let yes = |seg, region| yes_in(&t, seg, region);
        assert_eq!(yes(None, None), Some(true));
        assert_eq!(yes(None, Some("eu")), Some(true));
        assert_eq!(yes(None, Some("us")), Some(false), "the waiting wave");
        assert_eq!(
            yes(Some("enterprise"), None),
            Some(false),
            "a trailing segment"
        );
        assert_eq!(yes(Some("enterprise"), Some("eu")), Some(true));
        // An unnamed segment joins the default segment of its region.
        assert_eq!(yes(Some("free"), Some("eu")), Some(true));
        assert_eq!(yes(Some("free"), Some("us")), Some(false));
        // A region no row names: an unknown scope, served the baseline.
        let r = t.lookup_scoped("r", "k", None, Some("mars"));
        assert_eq!(
            (r.use_candidate, r.reason),
            (false, RouteReason::UnknownScope)
        );
        // A scope whose row is missing (enterprise in us): the baseline.
        assert_eq!(yes(Some("enterprise"), Some("us")), None);
        // A rollout without scoped rows ignores segment and region.
        t.apply(&decision("plain", 1, Phase::Full, 100.0));
        assert_eq!(
            t.serves_candidate_scoped("plain", "k", Some("x"), Some("mars")),
            Some(true)
        );
        assert_eq!(
            t.lookup_scoped("none", "k", None, Some("eu")).reason,
            RouteReason::UnknownRollout
        );
        // Tombstones remove rows one at a time; the last region row gone, regions are ignored.
        assert!(t.remove("r#region=us"));
        assert!(t.remove("r#region=eu"));
        assert!(t.remove("r#segment=enterprise#region=eu"));
        assert_eq!(yes_in(&t, None, Some("mars")), Some(true));
        assert_eq!(yes_in(&t, Some("enterprise"), None), Some(false));
        assert_eq!(
            t.get_scoped("r", &Scope::new(Some("enterprise"), None))
                .unwrap()
                .sequence,
            1
        );
    }

    #[test]
    fn the_split_is_sticky_across_scopes() {
        let mut t = Table::new();
        t.apply(&scoped("r", 1, 5.0, None, Some("eu")));
        t.apply(&scoped("r", 1, 20.0, None, Some("us")));
        for i in 0..2_000 {
            let key = format!("user-{i}");
            if t.serves_candidate_scoped("r", &key, None, Some("eu")) == Some(true) {
                assert_eq!(
                    t.serves_candidate_scoped("r", &key, None, Some("us")),
                    Some(true)
                );
            }
        }
    }

    #[test]
    fn keeps_the_highest_sequence() {
        let mut t = Table::new();
        assert_eq!(
            t.apply(&decision("r", 2, Phase::Small, 5.0)),
            Applied::Inserted
        );
        assert_eq!(
            t.apply(&decision("r", 1, Phase::Probe, 1.0)),
            Applied::Ignored
        );
        assert_eq!(
            t.apply(&decision("r", 2, Phase::Full, 100.0)),
            Applied::Ignored
        );
        assert_eq!(t.get("r").unwrap().phase, Phase::Small);
        assert_eq!(
            t.apply(&decision("r", 3, Phase::Off, 0.0)),
            Applied::Updated
        );
        let e = t.get("r").unwrap();
        assert_eq!(
            (e.phase, e.traffic, e.sequence),
            (Phase::Off, TrafficPercent::ZERO, 3)
        );
        assert_eq!(e.candidate_version.as_deref(), Some("v2"));
        assert!(t.remove("r"));
        assert!(t.is_empty());
    }

    /// A WARNING (early warning) carries the current phase and traffic: applying it, as a
    /// router reading the topic as a table does, changes no request's route.
    #[test]
    fn a_warning_changes_no_route() {
        let mut t = Table::new();
        t.apply(&decision("r", 2, Phase::Small, 5.0));
        let keys: Vec<String> = (0..2_000).map(|i| format!("user-{i}")).collect();
        let before: Vec<bool> = keys
            .iter()
            .map(|k| t.lookup("r", k).use_candidate)
            .collect();
        let mut w = decision("r", 3, Phase::Small, 5.0);
        w.action = Action::Warning;
        w.from = Phase::Small;
        w.warning = Some(crate::engine::Warning {
            metric: "failures".into(),
            statistic: 8.1,
            threshold: 7.9,
            projected_rollback_ms: Some(60_000),
            cleared: false,
        });
        assert_eq!(t.apply(&w), Applied::Updated);
        let e = t.get("r").unwrap();
        assert_eq!(
            (e.phase, e.traffic, e.sequence),
            (Phase::Small, w.traffic, 3)
        );
        let after: Vec<bool> = keys
            .iter()
            .map(|k| t.lookup("r", k).use_candidate)
            .collect();
        assert_eq!(before, after);
        assert!(after.iter().any(|c| *c) && !after.iter().all(|c| *c));
    }

    #[test]
    fn unknown_rollouts_and_off_serve_baseline() {
        let mut t = Table::new();
        let r = t.lookup("nope", "k");
        assert_eq!(
            (r.use_candidate, r.reason, r.phase),
            (false, RouteReason::UnknownRollout, None)
        );
        t.apply(&decision("off", 1, Phase::Off, 0.0));
        t.apply(&decision("full", 1, Phase::Full, 100.0));
        for k in 0..1000 {
            let key = format!("user-{k}");
            assert_eq!(t.serves_candidate("off", &key), Some(false));
            assert_eq!(t.serves_candidate("full", &key), Some(true));
            assert_eq!(t.lookup("full", &key).reason, RouteReason::Split);
        }
        assert_eq!(t.serves_candidate("nope", "k"), None);
    }

    #[test]
    fn cached_prefix_hash_agrees_with_the_splitter() {
        let mut t = Table::new();
        for (i, id) in ["", "a", "abc", "abcd", "rollout-with-a-longer-id"]
            .iter()
            .enumerate()
        {
            let percent = [1.0, 5.0, 20.0, 50.0, 99.99][i];
            t.apply(&decision(id, 1, Phase::Medium, percent));
            let traffic = TrafficPercent::new(percent).unwrap();
            for k in 0..5_000 {
                let key = format!("k{k}");
                let expected = splitter::serves_candidate(id, &key, traffic);
                assert_eq!(t.serves_candidate(id, &key), Some(expected), "{id} {key}");
            }
        }
    }

    #[test]
    fn catch_up_compares_positions_with_end_offsets() {
        let c = CatchUp {
            probe_started: Duration::from_secs(1),
            targets: vec![(0, 0, 10), (1, 5, 5), (2, 0, 0)],
        };
        // Partition 1 and 2 are empty (low == end): an unknown position counts as low.
        assert!(c.is_reached(|p| (p == 0).then_some(10)));
        // A position past the end (a commit marker skipped) also counts.
        assert!(c.is_reached(|p| (p == 0).then_some(11)));
        assert!(!c.is_reached(|p| (p == 0).then_some(9)));
        assert!(!c.is_reached(|_| None));
    }

    #[test]
    fn freshness_goes_loading_ready_stale_ready() {
        let s = Duration::from_secs;
        let mut f = Freshness::new(s(5));
        assert_eq!(f.state(s(100)), TableState::Loading);
        f.caught_up(s(10));
        assert_eq!(f.state(s(10)), TableState::Ready);
        assert_eq!(f.state(s(15)), TableState::Ready);
        assert_eq!(f.state(s(16)), TableState::Stale);
        // An older probe completing late does not move freshness back.
        f.caught_up(s(8));
        assert_eq!(f.fresh_as_of(), Some(s(10)));
        f.caught_up(s(30));
        assert_eq!(f.state(s(31)), TableState::Ready);
        // A clock reading before the probe (threads racing) is not stale.
        assert_eq!(f.state(s(29)), TableState::Ready);
    }

    #[test]
    fn state_codes_round_trip() {
        for s in [TableState::Loading, TableState::Ready, TableState::Stale] {
            assert_eq!(TableState::from_code(s.code()), s);
        }
        assert_eq!(TableState::from_code(200), TableState::Stale);
    }
}
