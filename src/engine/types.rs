//! Value types shared by the whole engine: event time, rates, traffic percentages, latencies,
//! variants and execution events.
//!
//! Types with a valid range are newtypes whose constructors check the range, so an invalid
//! value cannot be built anywhere downstream (the idea of quinn's `IdleTimeout`).

use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Event time: milliseconds since the Unix epoch, taken from the event itself, never from a clock.
pub type EventTime = i64;

/// Why a value could not be turned into one of the range-checked newtypes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// A rate (a fraction) was outside `[0, 1]` or not a number.
    #[error("rate must be a number in [0, 1], got {0}")]
    Rate(f64),
    /// A traffic percentage was outside `[0, 100]`, not a number, or finer than 0.01 %.
    #[error("traffic percent must be a number in [0, 100] with at most two decimals, got {0}")]
    Percent(f64),
    /// A latency was negative, infinite or not a number.
    #[error("latency must be a finite number of milliseconds >= 0, got {0}")]
    Latency(f64),
}

/// A fraction in `[0, 1]`: a completion rate or a threshold on one.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Rate(f64);

impl Rate {
    /// Builds a rate, refusing NaN and values outside `[0, 1]`.
    pub fn new(value: f64) -> Result<Self, RangeError> {
        if (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(RangeError::Rate(value))
        }
    }

    /// Const constructor for compile-time defaults; the caller guarantees the range.
    pub(crate) const fn from_const(value: f64) -> Self {
        Self(value)
    }

    /// The rate as a plain number.
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Rate {
    type Error = RangeError;
    fn try_from(value: f64) -> Result<Self, RangeError> {
        Self::new(value)
    }
}

impl From<Rate> for f64 {
    fn from(rate: Rate) -> f64 {
        rate.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

/// Share of traffic sent to the candidate, stored in basis points (1/100 of a percent) so that
/// the splitter can compare it with a bucket in `0..10_000` without floating point.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "f64", into = "f64")]
pub struct TrafficPercent(u16);

impl TrafficPercent {
    /// No candidate traffic (phase OFF).
    pub const ZERO: Self = Self(0);
    /// All traffic on the candidate (phase FULL).
    pub const FULL: Self = Self(10_000);

    /// Builds a percentage from a number in `[0, 100]` with at most two decimals.
    pub fn new(percent: f64) -> Result<Self, RangeError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(RangeError::Percent(percent));
        }
        let bp = (percent * 100.0).round();
        if (bp - percent * 100.0).abs() > 1e-6 {
            return Err(RangeError::Percent(percent));
        }
        Ok(Self(bp as u16))
    }

    /// Builds a percentage from basis points (`0..=10_000`).
    pub const fn from_basis_points(bp: u16) -> Option<Self> {
        if bp <= 10_000 {
            Some(Self(bp))
        } else {
            None
        }
    }

    /// The share in basis points, `0..=10_000`.
    pub const fn basis_points(self) -> u16 {
        self.0
    }

    /// The share as a percentage, `0.0..=100.0`.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl TryFrom<f64> for TrafficPercent {
    type Error = RangeError;
    fn try_from(value: f64) -> Result<Self, RangeError> {
        Self::new(value)
    }
}

impl From<TrafficPercent> for f64 {
    fn from(p: TrafficPercent) -> f64 {
        p.percent()
    }
}

impl fmt::Display for TrafficPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
}

/// Latency of one agent execution in milliseconds: finite and non-negative.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct LatencyMs(f64);

impl LatencyMs {
    /// Builds a latency, refusing NaN, infinities and negative values.
    pub fn new(ms: f64) -> Result<Self, RangeError> {
        if ms.is_finite() && ms >= 0.0 {
            Ok(Self(ms))
        } else {
            Err(RangeError::Latency(ms))
        }
    }

    /// The latency in milliseconds.
    pub const fn get(self) -> f64 {
        self.0
    }

    /// The latency in whole microseconds, saturating. Sums are kept in integers so that a
    /// window's mean does not depend on the order in which events were added.
    pub fn as_micros(self) -> u64 {
        (self.0 * 1000.0).round() as u64
    }
}

impl TryFrom<f64> for LatencyMs {
    type Error = RangeError;
    fn try_from(value: f64) -> Result<Self, RangeError> {
        Self::new(value)
    }
}

impl From<LatencyMs> for f64 {
    fn from(l: LatencyMs) -> f64 {
        l.0
    }
}

/// Which side of a rollout served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Variant {
    /// The version in production before the rollout.
    Baseline,
    /// The new version being rolled out.
    Candidate,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Baseline => "BASELINE",
            Variant::Candidate => "CANDIDATE",
        })
    }
}

/// One agent execution, as reported by an agent. The engine's only input besides commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    /// The rollout this execution belongs to; also the Kafka record key.
    pub rollout_id: CompactString,
    /// Which variant served the request.
    pub variant: Variant,
    /// Free-form version label of the agent that served it (e.g. `"doer-v2"`).
    pub version: CompactString,
    /// The request key the splitter hashed, when the agent knows it.
    pub request_key: Option<CompactString>,
    /// Whether the task completed.
    pub success: bool,
    /// How long the execution took.
    pub latency: LatencyMs,
    /// When the execution finished (event time, ms since the epoch).
    pub timestamp: EventTime,
    /// Optional cost of the execution (e.g. in dollars or tokens); reported, not judged.
    pub cost: Option<f64>,
    /// Optional user segment: judged in its own scope when the rollout's policy names it (see
    /// [`crate::engine::scope`]).
    pub segment: Option<String>,
    /// Optional region: judged in its own scope when the rollout's policy lists it in a wave.
    #[serde(default)]
    pub region: Option<String>,
    /// Further named metrics; reported, not judged.
    pub extra: BTreeMap<String, f64>,
}

impl ExecutionEvent {
    /// A minimal event with no optional fields.
    pub fn new(
        rollout_id: impl Into<CompactString>,
        variant: Variant,
        success: bool,
        latency: LatencyMs,
        timestamp: EventTime,
    ) -> Self {
        Self {
            rollout_id: rollout_id.into(),
            variant,
            version: CompactString::default(),
            request_key: None,
            success,
            latency,
            timestamp,
            cost: None,
            segment: None,
            region: None,
            extra: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced() {
        assert!(Rate::new(1.01).is_err());
        assert!(Rate::new(f64::NAN).is_err());
        assert_eq!(Rate::new(0.85).unwrap().get(), 0.85);
        assert_eq!(TrafficPercent::new(1.0).unwrap().basis_points(), 100);
        assert_eq!(TrafficPercent::new(0.25).unwrap().basis_points(), 25);
        assert!(TrafficPercent::new(100.5).is_err());
        assert!(TrafficPercent::new(1.234).is_err());
        assert!(LatencyMs::new(-1.0).is_err());
        assert!(LatencyMs::new(f64::INFINITY).is_err());
        assert_eq!(LatencyMs::new(1.5).unwrap().as_micros(), 1500);
    }
}
