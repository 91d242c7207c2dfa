import json

import pytest

from conftest import FIXTURES
from rollout_breaker import should_use_new_version, splitter


def vectors():
    return json.loads((FIXTURES / "splitter_vectors.json").read_text(encoding="utf-8"))["vectors"]


def test_same_vectors_as_the_rust_splitter():
    vs = vectors()
    assert len(vs) > 100
    for v in vs:
        assert splitter.hash_key(v["rollout_id"], v["request_key"]) == v["hash"]
        assert splitter.bucket(v["rollout_id"], v["request_key"]) == v["bucket"]


@pytest.mark.parametrize("percent", [0.0, 0.01, 1.0, 5.0, 20.0, 33.33, 99.99, 100.0])
def test_candidate_iff_bucket_below_basis_points(percent):
    for v in vectors():
        want = v["bucket"] < round(percent * 100)
        assert should_use_new_version(v["rollout_id"], v["request_key"], percent) == want


def test_sticky_and_monotone():
    for i in range(2000):
        key = f"user-{i}"
        served = [splitter.serves_candidate("r", key, p) for p in (0, 1, 5, 20, 100)]
        assert served == sorted(served)  # False... then True...
        assert served[0] is False and served[-1] is True


def test_out_of_range_share_is_refused():
    with pytest.raises(ValueError):
        splitter.serves_candidate("r", "k", 100.5)
