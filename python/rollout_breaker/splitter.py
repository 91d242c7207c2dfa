"""The sticky traffic splitter, identical to the Rust engine's (``src/engine/splitter.rs``).

``bucket = murmur3_x86_32("{rollout_id}:{request_key}", seed 0) mod 10000``; the candidate
serves a request iff ``bucket < round(traffic_percent * 100)``. Checked against
``tests/fixtures/splitter_vectors.json``, the vectors the Rust tests use.
"""

from __future__ import annotations

import mmh3

__all__ = ["BUCKETS", "hash_key", "bucket", "basis_points", "serves_candidate"]

#: Number of buckets; one bucket is 0.01 % of traffic.
BUCKETS = 10_000


def hash_key(rollout_id: str, request_key: str) -> int:
    """MurmurHash3 x86_32 (seed 0, unsigned) of the UTF-8 of ``"{rollout_id}:{request_key}"``."""
    return int(mmh3.hash(f"{rollout_id}:{request_key}".encode("utf-8"), 0, signed=False))


def bucket(rollout_id: str, request_key: str) -> int:
    """The bucket of a request key, in ``0..10000``."""
    return hash_key(rollout_id, request_key) % BUCKETS


def basis_points(traffic_percent: float) -> int:
    """A traffic share in basis points (decisions carry at most two decimals)."""
    if not 0.0 <= traffic_percent <= 100.0:
        raise ValueError(f"traffic_percent {traffic_percent} outside [0, 100]")
    return int(round(traffic_percent * 100.0))


def serves_candidate(rollout_id: str, request_key: str, traffic_percent: float) -> bool:
    """Whether the candidate serves this request at this traffic share (sticky and monotone)."""
    bp = basis_points(traffic_percent)
    if bp == 0 or bp >= BUCKETS:
        return bp != 0
    return bucket(rollout_id, request_key) < bp
