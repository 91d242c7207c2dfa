//! A fixed-size, inline, mergeable latency histogram (log-linear bins, HDR style).
//!
//! Range: latencies are binned in whole microseconds. From [`LOW_US`] (2.048 ms) to [`HIGH_US`]
//! (2³² µs ≈ 71.6 min) each power of two is cut into [`SUB_BINS`] bins whose edges are the
//! geometric sub-steps `2^(k/SUB_BINS)` rounded up to a 1/256 of the power of two (so the bin of
//! a value is a table lookup on its top mantissa bits, no logarithm). One underflow bin holds
//! everything below 2.048 ms and one overflow bin everything at or above 2³² µs.
//!
//! Error: a quantile is reported as its bin's representative `2·lo·hi / (lo + hi)`, which is
//! within [`RELATIVE_ERROR`] (8.8 %) of every value in the bin, so a reported quantile is within
//! 8.8 % (plus the 0.05 % of rounding to whole µs) of the exact quantile of the recorded values
//! when that quantile lies in [2.048 ms, 71.6 min). Below, it is reported as 1.024 ms; above, as
//! 2³² µs. The rank used is DDSketch's: the `⌊q·(n−1)⌋`-th smallest value (0-based).
//!
//! Memory: [`BINS`] `u16` counts inline (172 bytes) and one pointer. A bin that would pass
//! 65 535 moves a multiple of 65 536 to a heap array of carries allocated on first need, so
//! counts stay exact and merges are exact (a merge is the histogram of the union) whatever the
//! rate; at the default 10-s buckets that takes over 6 500 executions per second of one variant
//! of one rollout in one bin.

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Bins per power of two.
pub const SUB_BINS: usize = 4;
/// log₂ of the lowest binned latency in µs (2¹¹ µs = 2.048 ms).
const LOW_EXP: u32 = 11;
/// log₂ of the overflow bound in µs (2³² µs ≈ 71.6 min).
const HIGH_EXP: u32 = 32;
/// Lowest binned latency, µs; below goes to the underflow bin.
pub const LOW_US: u64 = 1 << LOW_EXP;
/// Overflow bound, µs; at or above goes to the overflow bin.
pub const HIGH_US: u64 = 1 << HIGH_EXP;
/// Bins: underflow, `SUB_BINS` per power of two in `[LOW_US, HIGH_US)`, overflow.
pub const BINS: usize = 2 + (HIGH_EXP - LOW_EXP) as usize * SUB_BINS;
/// Bound on the relative error of a reported quantile within `[LOW_US, HIGH_US)` (the widest
/// bin's `(hi − lo) / (hi + lo)`; checked by a unit test).
pub const RELATIVE_ERROR: f64 = 0.088;

/// Sub-bin of each of the 256 slots of a power of two: slot `m` covers `[1 + m/256, 1 +
/// (m+1)/256)` and belongs to the last sub-bin `k` whose edge `2^(k/SUB_BINS)` is at or below
/// its start (integer arithmetic: `(256 + m)^SUB_BINS ≥ 2^k · 256^SUB_BINS`).
const SLOT_BIN: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut m = 0;
    while m < 256 {
        let mut pow: u128 = 1;
        let mut i = 0;
        while i < SUB_BINS {
            pow *= 256 + m as u128;
            i += 1;
        }
        let base: u128 = 1 << (8 * SUB_BINS);
        let mut k = 0;
        while k + 1 < SUB_BINS && pow >= base << (k + 1) {
            k += 1;
        }
        table[m] = k as u8;
        m += 1;
    }
    table
};

/// The bin of a latency of `us` microseconds.
#[inline]
pub fn bin_of(us: u64) -> usize {
    if us < LOW_US {
        return 0;
    }
    if us >= HIGH_US {
        return BINS - 1;
    }
    let lz = us.leading_zeros();
    let exp = 63 - lz;
    // The 8 bits below the leading one.
    let slot = ((us << lz) >> 55) as usize & 0xFF;
    1 + (exp - LOW_EXP) as usize * SUB_BINS + SLOT_BIN[slot] as usize
}

/// `[lo, hi)` of a bin in µs (the underflow bin is `[0, LOW_US)`, the overflow bin starts at
/// `HIGH_US` and has no upper bound: `hi` is reported as `HIGH_US` too).
pub fn bin_bounds(bin: usize) -> (f64, f64) {
    if bin == 0 {
        return (0.0, LOW_US as f64);
    }
    if bin >= BINS - 1 {
        return (HIGH_US as f64, HIGH_US as f64);
    }
    let i = bin - 1;
    let exp = LOW_EXP + (i / SUB_BINS) as u32;
    let k = i % SUB_BINS;
    // First slot of sub-bin k (and of k + 1; 256 past the last).
    let first = |k: usize| {
        (0..256)
            .find(|&m| SLOT_BIN[m] as usize >= k)
            .filter(|_| k < SUB_BINS)
            .unwrap_or(256)
    };
    let unit = (1u64 << exp) as f64 / 256.0;
    (
        (256 + first(k)) as f64 * unit,
        (256 + first(k + 1)) as f64 * unit,
    )
}

/// What a quantile in `bin` is reported as, in µs: `2·lo·hi / (lo + hi)`, equally far in
/// relative terms from both edges (`lo / 2` for the underflow bin, `HIGH_US` for overflow).
pub fn representative_us(bin: usize) -> f64 {
    let (lo, hi) = bin_bounds(bin);
    if bin == 0 {
        return hi / 2.0;
    }
    if bin >= BINS - 1 {
        return lo;
    }
    2.0 * lo * hi / (lo + hi)
}

/// Counts of latencies per bin (see the module docs). `Copy`-sized: no heap unless a bin of
/// one histogram passes 65 535.
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Low 16 bits of each bin's count.
    low: [u16; BINS],
    /// High bits (count >> 16) of each bin, allocated when a bin first passes 65 535.
    carries: Option<Box<[u32; BINS]>>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            low: [0; BINS],
            carries: None,
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero: Vec<(usize, u64)> = (0..BINS)
            .map(|b| (b, self.count(b)))
            .filter(|&(_, c)| c > 0)
            .collect();
        f.debug_struct("LatencyHistogram")
            .field("bins", &nonzero)
            .finish()
    }
}

impl LatencyHistogram {
    /// Adds one latency of `us` microseconds.
    #[inline]
    pub fn record_us(&mut self, us: u64) {
        let bin = bin_of(us);
        let c = &mut self.low[bin];
        if *c == u16::MAX {
            *c = 0;
            self.carry(bin, 1);
        } else {
            *c += 1;
        }
    }

    /// Where the count of a latency of `us` µs is kept (for a prefetch).
    #[inline]
    pub(crate) fn bin_address(&self, us: u64) -> *const u16 {
        &self.low[bin_of(us)]
    }

    #[cold]
    fn carry(&mut self, bin: usize, n: u32) {
        let carries = self.carries.get_or_insert_with(|| Box::new([0; BINS]));
        carries[bin] = carries[bin].saturating_add(n);
    }

    /// Executions counted in `bin`.
    pub fn count(&self, bin: usize) -> u64 {
        u64::from(self.low[bin]) + (self.carries.as_ref().map_or(0, |c| u64::from(c[bin])) << 16)
    }

    /// Executions counted.
    pub fn total(&self) -> u64 {
        (0..BINS).map(|b| self.count(b)).sum()
    }

    /// Adds another histogram's counts (the result is the histogram of the union).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (bin, (a, b)) in self.low.iter_mut().zip(&other.low).enumerate() {
            let sum = u32::from(*a) + u32::from(*b);
            *a = sum as u16;
            let over = (sum >> 16) + other.carries.as_ref().map_or(0, |c| c[bin]);
            if over > 0 {
                let carries = self.carries.get_or_insert_with(|| Box::new([0; BINS]));
                carries[bin] = carries[bin].saturating_add(over);
            }
        }
    }

    /// The `q` quantile in ms (`q` in `[0, 1]`): the representative of the bin holding the
    /// `⌊q·(n−1)⌋`-th smallest latency; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64) as u64;
        let mut seen = 0;
        for bin in 0..BINS {
            seen += self.count(bin);
            if seen > rank {
                return Some(representative_us(bin) / 1000.0);
            }
        }
        None
    }
}

/// Serialized as the `BINS` counts in order (a restore of an older format is not needed: the
/// windows are rebuilt from events, never persisted).
impl Serialize for LatencyHistogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(BINS))?;
        for bin in 0..BINS {
            seq.serialize_element(&self.count(bin))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let counts = Vec::<u64>::deserialize(d)?;
        if counts.len() != BINS {
            return Err(D::Error::invalid_length(
                counts.len(),
                &"one count per histogram bin",
            ));
        }
        let mut h = LatencyHistogram::default();
        for (bin, &c) in counts.iter().enumerate() {
            h.low[bin] = c as u16;
            let high = u32::try_from(c >> 16).map_err(D::Error::custom)?;
            if high > 0 {
                h.carry(bin, high);
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotone_and_contiguous() {
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(LOW_US - 1), 0);
        assert_eq!(bin_of(LOW_US), 1);
        assert_eq!(bin_of(HIGH_US - 1), BINS - 2);
        assert_eq!(bin_of(HIGH_US), BINS - 1);
        assert_eq!(bin_of(u64::MAX), BINS - 1);
        for b in 1..BINS - 1 {
            let (lo, hi) = bin_bounds(b);
            assert!(lo < hi, "bin {b}");
            assert_eq!(hi, bin_bounds(b + 1).0, "bin {b}");
            assert_eq!(bin_of(lo as u64), b);
            assert_eq!(bin_of(hi as u64 - 1), b);
        }
        let mut prev = 0;
        for us in (0..HIGH_US + 10).step_by(99_991) {
            let b = bin_of(us);
            assert!(b >= prev, "{us}");
            prev = b;
        }
    }

    #[test]
    fn stated_error_bounds_every_bin() {
        let worst = (1..BINS - 1)
            .map(|b| {
                let (lo, hi) = bin_bounds(b);
                (hi - lo) / (hi + lo)
            })
            .fold(0.0, f64::max);
        assert!(worst <= RELATIVE_ERROR, "{worst}");
        assert!(
            worst > RELATIVE_ERROR - 0.005,
            "stated bound is loose: {worst}"
        );
    }

    #[test]
    fn counts_past_u16_are_exact_and_merge_exactly() {
        let mut a = LatencyHistogram::default();
        for _ in 0..70_000 {
            a.record_us(5_000);
        }
        assert_eq!(a.count(bin_of(5_000)), 70_000);
        let mut b = LatencyHistogram::default();
        for _ in 0..65_000 {
            b.record_us(5_000);
        }
        b.merge(&a);
        assert_eq!(b.count(bin_of(5_000)), 135_000);
        assert_eq!(b.total(), 135_000);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<LatencyHistogram>(&json).unwrap(), b);
    }

    #[test]
    fn fits_the_memory_budget() {
        assert_eq!(std::mem::size_of::<LatencyHistogram>(), 184);
    }
}
