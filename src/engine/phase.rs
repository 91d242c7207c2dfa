//! Rollout phases and the breaker state they imply.
//!
//! ```text
//!  OFF 0% ──(start/retry)──▶ PROBE 1% ─▶ SMALL 5% ─▶ MEDIUM 20% ─▶ FULL 100%
//!   ▲  breaker OPEN            breaker HALF_OPEN (trial traffic)       breaker CLOSED
//!   └──────────────── rollback / abort from any phase but OFF ───────────┘
//! ```
//! The percentages of PROBE, SMALL and MEDIUM come from the policy's schedule; OFF is always 0 %
//! and FULL always 100 %.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a rollout stands. Ordered from no candidate traffic to all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// 0 % candidate traffic: never started, rolled back or aborted. Breaker OPEN.
    Off,
    /// First trial step (default 1 %).
    Probe,
    /// Second trial step (default 5 %).
    Small,
    /// Third trial step (default 20 %).
    Medium,
    /// 100 % candidate traffic. Breaker CLOSED.
    Full,
}

impl Phase {
    /// Every phase in order.
    pub const ALL: [Phase; 5] = [
        Phase::Off,
        Phase::Probe,
        Phase::Small,
        Phase::Medium,
        Phase::Full,
    ];

    /// The phase an ADVANCE leads to; `None` at FULL (nothing above it) and at OFF (a tripped
    /// breaker is only left by an operator's RETRY, never by an automatic advance).
    pub const fn next(self) -> Option<Phase> {
        match self {
            Phase::Probe => Some(Phase::Small),
            Phase::Small => Some(Phase::Medium),
            Phase::Medium => Some(Phase::Full),
            Phase::Off | Phase::Full => None,
        }
    }

    /// The breaker state this phase implies.
    pub const fn breaker(self) -> BreakerState {
        match self {
            Phase::Off => BreakerState::Open,
            Phase::Full => BreakerState::Closed,
            Phase::Probe | Phase::Small | Phase::Medium => BreakerState::HalfOpen,
        }
    }

    /// The upper-case name used on the wire and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Off => "OFF",
            Phase::Probe => "PROBE",
            Phase::Small => "SMALL",
            Phase::Medium => "MEDIUM",
            Phase::Full => "FULL",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Circuit-breaker view of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Tripped: all traffic on the baseline (phase OFF).
    Open,
    /// Trial traffic on the candidate (PROBE, SMALL, MEDIUM).
    HalfOpen,
    /// Candidate serves everything (FULL).
    Closed,
}

impl BreakerState {
    /// The upper-case name used on the wire and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
            BreakerState::Closed => "CLOSED",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_never_skips_or_leaves_off() {
        assert_eq!(Phase::Probe.next(), Some(Phase::Small));
        assert_eq!(Phase::Medium.next(), Some(Phase::Full));
        assert_eq!(Phase::Full.next(), None);
        assert_eq!(Phase::Off.next(), None);
        for p in Phase::ALL {
            if let Some(n) = p.next() {
                assert!(n > p);
            }
        }
        assert_eq!(Phase::Full.breaker(), BreakerState::Closed);
        assert_eq!(Phase::Off.breaker(), BreakerState::Open);
    }
}
