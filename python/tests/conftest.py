import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture
def bootstrap() -> str:
    """The broker of scripts/test. Kafka tests never skip: without one they fail and say why."""
    b = os.environ.get("KAFKA_BOOTSTRAP")
    if not b:
        pytest.fail("KAFKA_BOOTSTRAP is not set: run through scripts/test, or set it to a broker")
    return b
