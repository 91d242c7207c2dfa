//! Event-time windows.
//!
//! Time is cut into tumbling buckets of `evaluation_interval_ms` (`start = t - t.rem_euclid(width)`,
//! as Arroyo bins events). Each bucket holds exact counts, an integer latency sum and a mergeable
//! latency sketch (DDSketch, 1 % relative error). The rolling decision window is the merge of
//! the buckets it covers, so it is exact for counts and means, and equal to a sketch built from
//! the raw events for quantiles (DDSketch bins add exactly). Buckets older than the window are
//! evicted, so memory per rollout is bounded by `monitoring_window / evaluation_interval` buckets
//! per variant plus those still open within the allowed lateness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use super::types::{EventTime, LatencyMs};

/// DDSketch with 1 % relative accuracy; at most 2048 bins, far more than latencies need.
fn new_sketch() -> DDSketch {
    DDSketch::new(Config::new(0.01, 2048, 1.0e-3))
}

/// Aggregate of the executions of one variant in one span of event time.
#[derive(Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// Executions seen.
    pub samples: u64,
    /// Executions that completed their task.
    pub successes: u64,
    /// Sum of latencies in microseconds (an integer, so merges are order-independent).
    pub latency_sum_us: u64,
    /// Executions slower than the policy's `max_latency_ms` (exact; the statistical rule tests
    /// this count, not the mean).
    #[serde(default)]
    pub slow: u64,
    sketch: DDSketch,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("samples", &self.samples)
            .field("successes", &self.successes)
            .field("latency_sum_us", &self.latency_sum_us)
            .field("slow", &self.slow)
            .finish_non_exhaustive()
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            samples: 0,
            successes: 0,
            latency_sum_us: 0,
            slow: 0,
            sketch: new_sketch(),
        }
    }
}

impl Bucket {
    /// Adds one execution; `slow` when its latency exceeded the policy's `max_latency_ms`.
    pub fn record(&mut self, success: bool, latency: LatencyMs, slow: bool) {
        self.samples += 1;
        self.successes += u64::from(success);
        self.slow += u64::from(slow);
        self.latency_sum_us = self.latency_sum_us.saturating_add(latency.as_micros());
        self.sketch.add(latency.get());
    }

    /// Adds another bucket's executions to this one.
    pub fn merge(&mut self, other: &Bucket) {
        self.samples += other.samples;
        self.successes += other.successes;
        self.slow += other.slow;
        self.latency_sum_us = self.latency_sum_us.saturating_add(other.latency_sum_us);
        // Both sketches share one config, the only way merge can fail.
        let _ = self.sketch.merge(&other.sketch);
    }

    /// Summary numbers of this aggregate.
    pub fn metrics(&self) -> VariantMetrics {
        let q = |p: f64| {
            self.sketch
                .quantile(p)
                .ok()
                .flatten()
                .map_or(0.0, |v| (v * 1000.0).round() / 1000.0)
        };
        VariantMetrics {
            samples: self.samples,
            successes: self.successes,
            completion_rate: if self.samples == 0 {
                0.0
            } else {
                self.successes as f64 / self.samples as f64
            },
            mean_latency_ms: if self.samples == 0 {
                0.0
            } else {
                self.latency_sum_us as f64 / self.samples as f64 / 1000.0
            },
            p50_latency_ms: q(0.50),
            p95_latency_ms: q(0.95),
            p99_latency_ms: q(0.99),
        }
    }
}

/// What a window says about one variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct VariantMetrics {
    /// Executions in the window.
    pub samples: u64,
    /// Executions that completed their task.
    pub successes: u64,
    /// `successes / samples`, 0 when there are no samples.
    pub completion_rate: f64,
    /// Mean latency in ms, 0 when there are no samples.
    pub mean_latency_ms: f64,
    /// Median latency in ms (sketch estimate, ±1 %).
    pub p50_latency_ms: f64,
    /// 95th percentile latency in ms (sketch estimate, ±1 %).
    pub p95_latency_ms: f64,
    /// 99th percentile latency in ms (sketch estimate, ±1 %).
    pub p99_latency_ms: f64,
}

/// Start of the tumbling bucket that holds `t`.
pub fn bucket_start(t: EventTime, width_ms: u64) -> EventTime {
    let w = width_ms as i64;
    t - t.rem_euclid(w)
}

/// The tumbling buckets of one variant of one rollout, keyed by bucket start.
///
/// The newest bucket is kept inline (`hot`): nearly every event lands in it, and keeping it
/// next to the rollout's other fields saves the cache misses of a tree lookup on the per-event
/// path. Older buckets live in an ordered map.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VariantWindow {
    hot: Option<(EventTime, Bucket)>,
    buckets: BTreeMap<EventTime, Bucket>,
}

impl VariantWindow {
    /// Adds an execution to the bucket starting at `start` (`slow`: see [`Bucket::record`]).
    pub fn record(&mut self, start: EventTime, success: bool, latency: LatencyMs, slow: bool) {
        match &mut self.hot {
            Some((s, b)) if *s == start => b.record(success, latency, slow),
            Some((s, _)) if start < *s => self
                .buckets
                .entry(start)
                .or_default()
                .record(success, latency, slow),
            _ => {
                let mut b = Bucket::default();
                b.record(success, latency, slow);
                if let Some((s, old)) = self.hot.replace((start, b)) {
                    self.buckets.insert(s, old);
                }
            }
        }
    }

    fn in_range(&self, from: EventTime, to: EventTime) -> impl Iterator<Item = &Bucket> {
        let cold = if from < to {
            Some(self.buckets.range(from..to).map(|(_, b)| b))
        } else {
            None
        };
        let hot = self
            .hot
            .as_ref()
            .filter(|(s, _)| (from..to).contains(s))
            .map(|(_, b)| b);
        cold.into_iter().flatten().chain(hot)
    }

    /// Merge of the buckets whose start lies in `[from, to)`.
    pub fn aggregate(&self, from: EventTime, to: EventTime) -> Bucket {
        let mut total = Bucket::default();
        for b in self.in_range(from, to) {
            total.merge(b);
        }
        total
    }

    /// Counts and mean of the buckets whose start lies in `[from, to)`, without merging
    /// sketches (quantiles are left at 0). Cheap enough to run at every evaluation.
    pub fn aggregate_counts(&self, from: EventTime, to: EventTime) -> VariantMetrics {
        let (mut samples, mut successes, mut sum) = (0u64, 0u64, 0u64);
        for b in self.in_range(from, to) {
            samples += b.samples;
            successes += b.successes;
            sum = sum.saturating_add(b.latency_sum_us);
        }
        let (rate, mean) = if samples == 0 {
            (0.0, 0.0)
        } else {
            (
                successes as f64 / samples as f64,
                sum as f64 / samples as f64 / 1000.0,
            )
        };
        VariantMetrics {
            samples,
            successes,
            completion_rate: rate,
            mean_latency_ms: mean,
            ..VariantMetrics::default()
        }
    }

    /// Drops every bucket that starts before `cutoff`.
    pub fn evict_before(&mut self, cutoff: EventTime) {
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() >= cutoff {
                break;
            }
            entry.remove();
        }
        if self.hot.as_ref().is_some_and(|(s, _)| *s < cutoff) {
            self.hot = None;
        }
    }

    /// First bucket start at or after `from`, if any.
    pub fn first_start_from(&self, from: EventTime) -> Option<EventTime> {
        let cold = self.buckets.range(from..).next().map(|(s, _)| *s);
        let hot = self.hot.as_ref().map(|(s, _)| *s).filter(|s| *s >= from);
        match (cold, hot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Buckets currently held (for memory accounting and tests).
    pub fn len(&self) -> usize {
        self.buckets.len() + usize::from(self.hot.is_some())
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bucket starting at `start`, if it holds anything.
    pub fn bucket(&self, start: EventTime) -> Option<&Bucket> {
        match &self.hot {
            Some((s, b)) if *s == start => Some(b),
            _ => self.buckets.get(&start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> LatencyMs {
        LatencyMs::new(v).unwrap()
    }

    #[test]
    fn bucket_start_floors_including_negative_times() {
        assert_eq!(bucket_start(12_345, 10_000), 10_000);
        assert_eq!(bucket_start(10_000, 10_000), 10_000);
        assert_eq!(bucket_start(-1, 10_000), -10_000);
    }

    #[test]
    fn aggregate_covers_half_open_range_and_eviction_bounds_memory() {
        let mut w = VariantWindow::default();
        for (start, ok, lat) in [(0, true, 100.0), (10, false, 300.0), (20, true, 200.0)] {
            w.record(start, ok, ms(lat), lat > 250.0);
        }
        let m = w.aggregate(0, 20).metrics();
        assert_eq!(m.samples, 2);
        assert_eq!(m.successes, 1);
        assert_eq!(m.completion_rate, 0.5);
        assert_eq!(m.mean_latency_ms, 200.0);
        assert_eq!(w.aggregate(0, 20).slow, 1);
        assert_eq!(w.bucket(10).map(|b| b.slow), Some(1));
        w.evict_before(10);
        assert_eq!(w.len(), 2);
        assert_eq!(w.aggregate(0, 100).metrics().samples, 2);
    }

    #[test]
    fn quantiles_are_within_sketch_accuracy() {
        let mut b = Bucket::default();
        for i in 1..=1000 {
            b.record(true, ms(i as f64), false);
        }
        let m = b.metrics();
        assert!((m.p50_latency_ms - 500.0).abs() <= 500.0 * 0.02, "{m:?}");
        assert!((m.p99_latency_ms - 990.0).abs() <= 990.0 * 0.02, "{m:?}");
    }
}
