//! The sticky traffic splitter.
//!
//! `bucket = murmur3_x86_32("{rollout_id}:{request_key}", seed 0) mod 10_000`, and the candidate
//! serves a request iff `bucket < percent × 100` (percent in basis points). MurmurHash3 x86_32
//! with seed 0 over `group:key` is what Unleash uses, and it exists in every language (Python
//! `mmh3.hash(s, 0, signed=False)`, Java Guava `murmur3_32_fixed()`, Go `spaolacci/murmur3`), so
//! routers written in other languages agree bucket for bucket; `tests/fixtures/splitter_vectors.json`
//! holds vectors to check a port against.
//!
//! Sticky: the bucket depends only on the rollout and the key. Monotone: a key served by the
//! candidate at p % is served at every p' ≥ p, because the comparison is against a fixed bucket.

use core::hash::Hasher as _;

use hash32::{Hasher as _, Murmur3Hasher};

use super::types::TrafficPercent;

/// Number of buckets; one bucket is 0.01 % of traffic.
pub const BUCKETS: u32 = 10_000;

/// MurmurHash3 x86_32 (seed 0) of `"{rollout_id}:{request_key}"`, without allocating.
pub fn hash(rollout_id: &str, request_key: &str) -> u32 {
    let mut h = Murmur3Hasher::default();
    h.write(rollout_id.as_bytes());
    h.write(b":");
    h.write(request_key.as_bytes());
    h.finish32()
}

/// The bucket of a request key in `0..10_000`.
pub fn bucket(rollout_id: &str, request_key: &str) -> u16 {
    (hash(rollout_id, request_key) % BUCKETS) as u16
}

/// Whether the candidate serves this request at the given traffic share.
pub fn serves_candidate(rollout_id: &str, request_key: &str, traffic: TrafficPercent) -> bool {
    bucket(rollout_id, request_key) < traffic.basis_points()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_murmur3_vectors() {
        // Reference values of MurmurHash3_x86_32 with seed 0 (the algorithm's published
        // test vectors, also produced by Python's mmh3).
        let h = |s: &str| {
            let mut m = Murmur3Hasher::default();
            m.write(s.as_bytes());
            m.finish32()
        };
        assert_eq!(h(""), 0);
        assert_eq!(h("hello"), 0x248b_fa47);
        assert_eq!(
            h("The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        // Hashing the parts one after another equals hashing the joined string.
        for (r, k) in [
            ("checkout", "user-1"),
            ("a", ""),
            ("rollout-with-a-longer-id", "k3y"),
        ] {
            assert_eq!(hash(r, k), h(&format!("{r}:{k}")));
        }
    }

    #[test]
    fn zero_and_full_are_absolute() {
        for k in 0..1000 {
            let key = format!("user-{k}");
            assert!(!serves_candidate("r", &key, TrafficPercent::ZERO));
            assert!(serves_candidate("r", &key, TrafficPercent::FULL));
        }
    }
}
