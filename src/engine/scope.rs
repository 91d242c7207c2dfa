//! Scopes of a rollout: user segments and canary regions (issue 14).
//!
//! A policy may name segments (`[segments.NAME]`: their own schedule or initial phase, trailing
//! the unsegmented traffic by some phases, or excluded) and regions as ordered waves
//! (`regions = [["eu-west"], ["us-east", "ap-south"]]`, `wave_soak_ms`). Every combination of
//! a named segment (or none) and a named region (or none) is a [`Scope`] with its own windows,
//! watchdog and phase; the combination of no segment and no region is the default scope, the
//! rollout as it was before scopes existed. A policy that names neither has only the default
//! scope, so nothing changes for it.
//!
//! Where an event falls ([`crate::engine::Policy::place`]):
//!
//! | event's `segment` / `region`            | scope part |
//! |-----------------------------------------|------------|
//! | absent                                  | none (default) |
//! | a segment the policy names              | that segment |
//! | a segment the policy names as excluded  | out of scope: not judged (counted); routers serve the baseline |
//! | a segment the policy does not name      | none: judged with the unsegmented traffic |
//! | any region, when the policy names none  | none |
//! | a region listed in a wave               | that region |
//! | a region not listed, when waves exist   | out of scope: not judged (counted); routers serve the baseline |
//!
//! Segments the policy does not name join the default audience (they are "everyone else");
//! regions it does not name are not rolled out to at all, which is the fail-safe reading of a
//! wave plan that does not mention them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::phase::Phase;
use super::policy::Schedule;

/// Longest segment or region name, in bytes.
pub const MAX_SCOPE_NAME_BYTES: usize = 64;

/// Most scopes one policy may declare, the default one included: bounds the state and the
/// decisions-topic rows of a rollout.
pub const MAX_SCOPES: usize = 64;

/// Which part of a rollout's traffic: a segment, a region, both, or neither (the default
/// scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    /// The user segment, if the scope is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The region, if the scope is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Separates a rollout id from a scope in a decisions-topic key.
const KEY_SEGMENT: &str = "#segment=";
const KEY_REGION: &str = "#region=";

impl Scope {
    /// The default scope: no segment, no region.
    pub const DEFAULT: Scope = Scope {
        segment: None,
        region: None,
    };

    /// A scope from its two optional parts.
    pub fn new(segment: Option<&str>, region: Option<&str>) -> Self {
        Self {
            segment: segment.map(str::to_owned),
            region: region.map(str::to_owned),
        }
    }

    /// Whether this is the default scope.
    pub fn is_default(&self) -> bool {
        self.segment.is_none() && self.region.is_none()
    }

    /// The key of this scope's row of `rollout_id` in the compacted decisions topic: the
    /// rollout id itself for the default scope (as before scopes existed), else
    /// `ROLLOUT#segment=S#region=R` (absent parts left out). Segment and region names cannot
    /// contain `#` (see [`check_scope_name`]); a rollout id that itself contains `#segment=` or
    /// `#region=` could collide with another rollout's scoped row, so avoid such ids with
    /// scoped policies.
    pub fn key(&self, rollout_id: &str) -> String {
        let mut key = String::with_capacity(rollout_id.len() + 32);
        key.push_str(rollout_id);
        if let Some(s) = &self.segment {
            key.push_str(KEY_SEGMENT);
            key.push_str(s);
        }
        if let Some(r) = &self.region {
            key.push_str(KEY_REGION);
            key.push_str(r);
        }
        key
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.segment, &self.region) {
            (None, None) => f.write_str("default scope"),
            (Some(s), None) => write!(f, "segment `{s}`"),
            (None, Some(r)) => write!(f, "region `{r}`"),
            (Some(s), Some(r)) => write!(f, "segment `{s}`, region `{r}`"),
        }
    }
}

/// Checks a segment or region name: 1..=[`MAX_SCOPE_NAME_BYTES`] bytes of ASCII letters,
/// digits, `.`, `_` and `-` (so a decisions-topic key splits unambiguously).
pub fn check_scope_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SCOPE_NAME_BYTES {
        return Err(format!(
            "name `{name}` must be 1 to {MAX_SCOPE_NAME_BYTES} bytes long"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "name `{name}` may only contain ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// One segment's settings (`[segments.NAME]`). Every field is optional: `{}` names a segment
/// that is judged on its own under the rollout's schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPolicy {
    /// Never roll out to this segment: routers serve it the baseline and its events are not
    /// judged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub excluded: bool,
    /// The segment's first phase (PROBE, SMALL, MEDIUM or FULL; e.g. FULL for internal users);
    /// default: the policy's `initial_phase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_phase: Option<Phase>,
    /// The segment's candidate traffic per trial phase; default: the policy's `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Phases the segment trails its region's unsegmented scope by (0..=3): it starts once that
    /// scope is `trail_phases` phases past the segment's initial phase, and never advances past
    /// that scope's phase minus `trail_phases` until that scope is FULL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trail_phases: u8,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Blast radius of an automatic rollback in one scope (`rollback_scope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackScope {
    /// Roll back every scope of the rollout: the candidate is the same code everywhere
    /// (default).
    #[default]
    Rollout,
    /// Roll back only the scope that tripped; waves that have not started stay stopped.
    Scope,
}

impl RollbackScope {
    /// Whether this is the default (`"rollout"`), left out of serialized policies.
    pub fn is_default(&self) -> bool {
        *self == Self::Rollout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scope_keeps_the_rollout_id_as_key() {
        assert_eq!(Scope::DEFAULT.key("r"), "r");
        assert_eq!(
            Scope::new(Some("internal"), None).key("r"),
            "r#segment=internal"
        );
        assert_eq!(Scope::new(None, Some("eu")).key("r"), "r#region=eu");
        assert_eq!(
            Scope::new(Some("a"), Some("eu")).key("r"),
            "r#segment=a#region=eu"
        );
        assert_eq!(
            Scope::new(Some("a"), Some("eu")).to_string(),
            "segment `a`, region `eu`"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_scope_name("eu-west.1_a").is_ok());
        assert!(check_scope_name("").is_err());
        assert!(check_scope_name("a#b").is_err());
        assert!(check_scope_name(&"x".repeat(65)).is_err());
    }
}
