//! What a webhook receives, and when to try again. Pure: no IO, no clock.
//!
//! The body is `{"idempotency_key": "<rollout>:<sequence>", "decision": {...}}`, the decision
//! in its JSON wire form (the fields of `schemas/decision.avsc`). Headers:
//! `Idempotency-Key` (the same key), `Content-Type: application/json`, and with a signing key
//! `X-Rollout-Breaker-Signature: sha256=<hex of HMAC-SHA256(key, body)>`.

use std::time::Duration;

use crate::codec::{self, Encoding};
use crate::engine::Decision;

/// Header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Header carrying the body's HMAC-SHA256 signature, as `sha256=<lower-case hex>`.
pub const SIGNATURE_HEADER: &str = "X-Rollout-Breaker-Signature";

/// `{rollout_id}:{sequence}`: the same for every attempt at one decision, so a receiver can
/// drop repeats. (A rollout retired and started again counts its sequence from 1 anew; the
/// body's `decided_at_ms` tells its decisions apart from the earlier life's.)
pub fn idempotency_key(d: &Decision) -> String {
    format!("{}:{}", d.key(), d.sequence)
}

/// The JSON body posted for `d`.
pub fn body(d: &Decision) -> Vec<u8> {
    let decision = codec::encode_decision(d, Encoding::Json);
    let key = serde_json::to_string(&idempotency_key(d)).expect("a string serializes");
    let mut out = Vec::with_capacity(decision.len() + key.len() + 40);
    out.extend_from_slice(b"{\"idempotency_key\":");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b",\"decision\":");
    out.extend_from_slice(&decision);
    out.push(b'}');
    out
}

/// The signature header's value for `body` under `key`: `sha256=` and the HMAC-SHA256 in
/// lower-case hex (the form GitHub's and Stripe's webhooks use).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    use std::fmt::Write;
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Wait before attempt `attempt` (2 = the first retry): `initial` doubled per earlier retry,
/// at most `max`.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(2).min(31);
    initial.saturating_mul(1 << doublings).min(max)
}

/// Whether an HTTP answer with `status` may succeed when sent again: server errors, 408
/// (request timeout) and 429 (too many requests). Other 4xx answers mean the request itself
/// is refused (wrong URL, bad signature key), and repeating it cannot help.
pub fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, BreakerState, Cause, MetricsSnapshot, Phase, TrafficPercent};

    fn decision() -> Decision {
        Decision {
            rollout_id: "search-agent".into(),
            sequence: 3,
            action: Action::Rollback,
            from: Phase::Small,
            to: Phase::Off,
            traffic: TrafficPercent::ZERO,
            breaker: BreakerState::Open,
            paused: false,
            reason: "SMALL: candidate mean latency 2356.8 ms > max 2000 ms".into(),
            metrics: MetricsSnapshot::default(),
            at: 1_764_222_000_000,
            cause: Cause::Automatic,
            actor: "watchdog".into(),
            candidate_version: Some("v2".into()),
            baseline_version: None,
            policy_json: None,
            phase_started_at: Some(1_764_221_990_000),
            warning: None,
            scope: crate::engine::Scope::DEFAULT,
        }
    }

    #[test]
    fn body_is_json_with_the_key_and_the_decision_wire_form() {
        let d = decision();
        let v: serde_json::Value = serde_json::from_slice(&body(&d)).unwrap();
        assert_eq!(v["idempotency_key"], "search-agent:3");
        assert_eq!(v["decision"]["action"], "ROLLBACK");
        assert_eq!(v["decision"]["sequence"], 3);
        let wire = serde_json::to_vec(&v["decision"]).unwrap();
        assert_eq!(codec::decode_decision(&wire, Encoding::Json).unwrap(), d);
    }

    #[test]
    fn signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<u64> = (2..=6)
            .map(|a| backoff(i, m, a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
        assert_eq!(backoff(i, Duration::MAX, 200), i * (1 << 31));
    }

    #[test]
    fn only_transient_answers_are_retried() {
        for s in [500, 502, 503, 408, 429] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
