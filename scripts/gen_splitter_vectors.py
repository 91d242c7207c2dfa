#!/usr/bin/env python3
"""Regenerates tests/fixtures/splitter_vectors.json with an independent MurmurHash3 (Python mmh3).

Usage: pip install mmh3 && python3 scripts/gen_splitter_vectors.py > tests/fixtures/splitter_vectors.json
The Rust test `splitter_vectors` checks the engine's splitter against this file, so a router in
any language can check its port against the same vectors.
"""
import json

import mmh3

rollouts = ["checkout-agent", "doer-v2", "r", "ünïcode-rollout", ""]
keys = ["user-1", "user-2", "user-42", "", "a", "ab", "abc", "abcd", "abcde",
        "550e8400-e29b-41d4-a716-446655440000", "ключ", "user-" + "x" * 100]
keys += ["user-%d" % i for i in range(100, 130)]
vectors = []
for r in rollouts:
    for k in keys:
        h = mmh3.hash(f"{r}:{k}".encode("utf-8"), 0, signed=False)
        vectors.append({"rollout_id": r, "request_key": k, "hash": h, "bucket": h % 10000})
print(json.dumps({
    "algorithm": "MurmurHash3_x86_32, seed 0, over UTF-8 of '{rollout_id}:{request_key}'; bucket = hash mod 10000; candidate iff bucket < percent*100",
    "vectors": vectors,
}, ensure_ascii=False, indent=1))
