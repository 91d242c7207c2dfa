//! Event-time windows.
//!
//! Time is cut into tumbling buckets of `evaluation_interval_ms` (`start = t - t.rem_euclid(width)`,
//! as Arroyo bins events). Each bucket holds exact counts, an integer latency sum and a
//! fixed-size inline latency histogram ([`LatencyHistogram`]: log-linear bins from 2.048 ms to
//! 71.6 min, quantiles within 8.8 %, no heap). The rolling decision window is the merge of the
//! buckets it covers, so it is exact for counts and means, and equal to a histogram built from
//! the raw events for quantiles (histogram bins add exactly). Buckets older than the window are
//! evicted, so memory per rollout is bounded by `monitoring_window / evaluation_interval` buckets
//! per variant plus those still open within the allowed lateness: at the default policy 32
//! buckets of 224 bytes (start included) per variant, 16 223 bytes per rollout in all with
//! both windows full (`cargo bench --bench memory`; target < 16 KiB).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::histogram::LatencyHistogram;
use super::types::{EventTime, LatencyMs};

/// Aggregate of the executions of one variant in one span of event time.
#[derive(Clone, Default, Serialize, Deserialize)]
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
    latencies: LatencyHistogram,
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

impl Bucket {
    /// Adds one execution; `slow` when its latency exceeded the policy's `max_latency_ms`.
    pub fn record(&mut self, success: bool, latency: LatencyMs, slow: bool) {
        self.samples += 1;
        self.successes += u64::from(success);
        self.slow += u64::from(slow);
        let us = latency.as_micros();
        self.latency_sum_us = self.latency_sum_us.saturating_add(us);
        self.latencies.record_us(us);
    }

    /// Adds another bucket's executions to this one.
    pub fn merge(&mut self, other: &Bucket) {
        self.samples += other.samples;
        self.successes += other.successes;
        self.slow += other.slow;
        self.latency_sum_us = self.latency_sum_us.saturating_add(other.latency_sum_us);
        self.latencies.merge(&other.latencies);
    }

    /// Summary numbers of this aggregate.
    pub fn metrics(&self) -> VariantMetrics {
        let q = |p: f64| {
            self.latencies
                .quantile(p)
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
    /// Median latency in ms (histogram estimate, within 8.8 % from 2.048 ms to 71.6 min).
    pub p50_latency_ms: f64,
    /// 95th percentile latency in ms (histogram estimate, within 8.8 % from 2.048 ms to 71.6 min).
    pub p95_latency_ms: f64,
    /// 99th percentile latency in ms (histogram estimate, within 8.8 % from 2.048 ms to 71.6 min).
    pub p99_latency_ms: f64,
}

/// Start of the tumbling bucket that holds `t`.
pub fn bucket_start(t: EventTime, width_ms: u64) -> EventTime {
    let w = width_ms as i64;
    t - t.rem_euclid(w)
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no effect on other targets).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program,
    // whatever the address; SSE, which it needs, is part of every x86-64 target.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The tumbling buckets of one variant of one rollout, in order of bucket start.
///
/// A deque sorted by start: nearly every event lands in the newest bucket (the back, one
/// comparison), a late one is placed by binary search, eviction pops the front. It grows by
/// doubling up to 32 buckets (the default policy's 30 of the window and 2 open), then by a
/// quarter, so a full window at the default policy holds no spare capacity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VariantWindow {
    buckets: VecDeque<(EventTime, Bucket)>,
}

impl VariantWindow {
    /// Adds an execution to the bucket starting at `start` (`slow`: see [`Bucket::record`]).
    pub fn record(&mut self, start: EventTime, success: bool, latency: LatencyMs, slow: bool) {
        match self.buckets.back_mut() {
            Some((s, b)) if *s == start => b.record(success, latency, slow),
            Some((s, _)) if start < *s => {
                match self.buckets.binary_search_by_key(&start, |(s, _)| *s) {
                    Ok(i) => self.buckets[i].1.record(success, latency, slow),
                    Err(i) => {
                        self.reserve_one();
                        let mut b = Bucket::default();
                        b.record(success, latency, slow);
                        self.buckets.insert(i, (start, b));
                    }
                }
            }
            _ => {
                self.reserve_one();
                let mut b = Bucket::default();
                b.record(success, latency, slow);
                self.buckets.push_back((start, b));
            }
        }
    }

    /// Starts loading the newest bucket, where nearly every execution lands, for
    /// [`VariantWindow::record`] shortly after: its counts and the histogram bin of `latency`.
    /// Reads only the deque's header, not the bucket (that would wait for the load).
    #[inline]
    pub fn prefetch(&self, latency: LatencyMs) {
        if let Some(entry @ (_, b)) = self.buckets.back() {
            prefetch(entry);
            prefetch(b.latencies.bin_address(latency.as_micros()));
        }
    }

    /// Room for one more bucket: doubling up to 32, then a quarter more.
    fn reserve_one(&mut self) {
        let len = self.buckets.len();
        if len == self.buckets.capacity() {
            let more = if len < 32 { len.max(4) } else { len / 4 };
            self.buckets.reserve_exact(more);
        }
    }

    /// Index range of the buckets whose start lies in `[from, to)`.
    fn index_range(&self, from: EventTime, to: EventTime) -> std::ops::Range<usize> {
        let lo = self.buckets.partition_point(|(s, _)| *s < from);
        let hi = self.buckets.partition_point(|(s, _)| *s < to).max(lo);
        lo..hi
    }

    fn in_range(&self, from: EventTime, to: EventTime) -> impl Iterator<Item = &Bucket> {
        self.buckets
            .range(self.index_range(from, to))
            .map(|(_, b)| b)
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
    /// histograms (quantiles are left at 0). Cheap enough to run at every evaluation.
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
        while self.buckets.front().is_some_and(|(s, _)| *s < cutoff) {
            self.buckets.pop_front();
        }
    }

    /// First bucket start at or after `from`, if any.
    pub fn first_start_from(&self, from: EventTime) -> Option<EventTime> {
        let i = self.buckets.partition_point(|(s, _)| *s < from);
        self.buckets.get(i).map(|(s, _)| *s)
    }

    /// Buckets currently held (for memory accounting and tests).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The bucket starting at `start`, if it holds anything.
    pub fn bucket(&self, start: EventTime) -> Option<&Bucket> {
        match self.buckets.back() {
            Some((s, b)) if *s == start => Some(b),
            _ => self
                .buckets
                .binary_search_by_key(&start, |(s, _)| *s)
                .ok()
                .map(|i| &self.buckets[i].1),
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
    fn windows_round_trip_through_serde() {
        let mut w = VariantWindow::default();
        for (start, lat) in [(0, 3.0), (10, 1500.0), (10, 2500.0), (20, 9.0e6)] {
            w.record(start, lat < 2000.0, ms(lat), lat > 2000.0);
        }
        let json = serde_json::to_string(&w).unwrap();
        let back: VariantWindow = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(
            back.aggregate(0, 30).metrics(),
            w.aggregate(0, 30).metrics()
        );
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn a_bucket_and_its_start_take_224_bytes() {
        assert_eq!(std::mem::size_of::<(EventTime, Bucket)>(), 224);
    }

    #[test]
    fn quantiles_are_within_histogram_accuracy() {
        let mut b = Bucket::default();
        for i in 1..=1000 {
            b.record(true, ms(i as f64), false);
        }
        let m = b.metrics();
        assert!((m.p50_latency_ms - 500.0).abs() <= 500.0 * 0.088, "{m:?}");
        assert!((m.p99_latency_ms - 990.0).abs() <= 990.0 * 0.088, "{m:?}");
    }
}
