"""rollout-breaker for Python agents and routers.

* :class:`EventEmitter` reports execution events (batching, murmur2 partitioning, never blocks).
* :class:`guarded` / :class:`GuardedAgent` time an agent call and report it.
* :class:`DecisionTable` follows the decisions topic; :meth:`DecisionTable.should_use_new_version`
  splits traffic exactly as the Rust router, and fails safe to the baseline.
* :mod:`rollout_breaker.codec` encodes and decodes every record type, JSON and Avro.
"""

from .codec import (
    AvroConfluent,
    Decision,
    DecodeError,
    ExecutionEvent,
    MetricsSnapshot,
    RolloutCommand,
    VariantMetrics,
    decode,
    decode_any,
    decode_command,
    decode_decision,
    decode_event,
    encode,
)
from .emitter import EmitterStats, EventEmitter
from .guarded import GuardedAgent, guarded
from .splitter import bucket, serves_candidate
from .table import DecisionTable, Route, Table

__all__ = [
    "AvroConfluent",
    "Decision",
    "DecodeError",
    "ExecutionEvent",
    "MetricsSnapshot",
    "RolloutCommand",
    "VariantMetrics",
    "decode",
    "decode_any",
    "decode_command",
    "decode_decision",
    "decode_event",
    "encode",
    "EmitterStats",
    "EventEmitter",
    "GuardedAgent",
    "guarded",
    "bucket",
    "serves_candidate",
    "should_use_new_version",
    "DecisionTable",
    "Route",
    "Table",
]


def should_use_new_version(rollout_id: str, request_key: str, traffic_percent: float) -> bool:
    """The sticky split alone: whether the candidate serves this key at this traffic share.

    Routers normally call :meth:`DecisionTable.should_use_new_version`, which also fails safe.
    """
    return serves_candidate(rollout_id, request_key, traffic_percent)
