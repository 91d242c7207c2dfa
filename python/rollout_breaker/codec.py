"""Wire formats of the three record types, in JSON and Avro, as the Rust processor writes them.

Encodings (one per topic, as in the processor's configuration):

* ``"json"``: a UTF-8 JSON object whose field names are the Avro field names. Enum values are
  the upper-case Avro symbols and are case-sensitive (``"CANDIDATE"``, not ``"candidate"``).
* ``"avro"``: Avro single-object encoding: ``C3 01``, the 8-byte CRC-64-AVRO fingerprint of the
  schema's Parsing Canonical Form (little-endian, i.e. the byte order of fastavro's hex string),
  then the Avro binary body.
* :class:`AvroConfluent` ``(schema_id)``: ``00``, the 4-byte big-endian schema-registry id, then
  the Avro binary body.

Timestamps (``*_ms`` fields, Avro ``long`` with logical type ``timestamp-millis``) are plain
``int`` milliseconds since the Unix epoch here, in both encodings.

The schemas are ``rollout_breaker/schemas/*.avsc``, copies of the repository's ``schemas/``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, Dict, Literal, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = [
    "AvroConfluent",
    "Encoding",
    "DecodeError",
    "ExecutionEvent",
    "VariantMetrics",
    "MetricsSnapshot",
    "Warning",
    "Decision",
    "RolloutCommand",
    "encode",
    "decode",
    "decode_any",
    "decode_event",
    "decode_decision",
    "decode_command",
    "fingerprint",
    "schema_text",
    "MIN_TIMESTAMP_MS",
    "MAX_TIMESTAMP_MS",
    "MAX_ROLLOUT_ID_BYTES",
]

#: Smallest event time accepted (2000-01-01T00:00:00Z), as in the Rust codec.
MIN_TIMESTAMP_MS = 946_684_800_000
#: First event time refused (2200-01-01T00:00:00Z).
MAX_TIMESTAMP_MS = 7_258_118_400_000
#: Longest rollout id, in bytes of UTF-8.
MAX_ROLLOUT_ID_BYTES = 255

Variant = Literal["BASELINE", "CANDIDATE"]
Phase = Literal["OFF", "PROBE", "SMALL", "MEDIUM", "FULL"]


@dataclass(frozen=True)
class AvroConfluent:
    """Confluent framing with this schema-registry id."""

    schema_id: int


Encoding = Union[Literal["json", "avro"], AvroConfluent]


class DecodeError(ValueError):
    """A record that does not decode; ``reason`` is the Rust codec's dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass
class ExecutionEvent:
    """One agent execution (``schemas/execution_event.avsc``)."""

    rollout_id: str
    variant: str
    version: str
    success: bool
    latency_ms: float
    timestamp_ms: int
    request_key: Optional[str] = None
    cost: Optional[float] = None
    segment: Optional[str] = None
    extra_metrics: Dict[str, float] = field(default_factory=dict)
    #: Region (schema v2): judged in its own scope when the rollout's policy lists it in a wave.
    region: Optional[str] = None


@dataclass
class VariantMetrics:
    """What a window says about one variant."""

    samples: int
    successes: int
    completion_rate: float
    mean_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float


@dataclass
class MetricsSnapshot:
    """Both variants over the same span of event time."""

    window_start_ms: int
    window_end_ms: int
    baseline: VariantMetrics
    candidate: VariantMetrics


@dataclass
class Warning:
    """What a ``WARNING`` decision says (early warning of the statistical rule, schema v3).

    A WARNING changes no phase and no traffic: ``to_phase`` and ``traffic_percent`` of its
    decision are the rollout's current ones, so a router's table stays right.
    """

    metric: str
    statistic: float
    threshold: float
    cleared: bool
    projected_rollback_ms: Optional[int] = None


@dataclass
class Decision:
    """One published decision (``schemas/decision.avsc``)."""

    rollout_id: str
    sequence: int
    action: str
    from_phase: str
    to_phase: str
    traffic_percent: float
    breaker_state: str
    paused: bool
    reason: str
    metrics: MetricsSnapshot
    decided_at_ms: int
    cause: str
    actor: str
    candidate_version: Optional[str] = None
    baseline_version: Optional[str] = None
    policy_json: Optional[str] = None
    phase_started_ms: Optional[int] = None
    warning: Optional[Warning] = None
    #: The scope decided on (schema v4); both None for the rollout's default scope.
    segment: Optional[str] = None
    region: Optional[str] = None


@dataclass
class RolloutCommand:
    """An operator command (``schemas/rollout_command.avsc``)."""

    rollout_id: str
    kind: str
    actor: str
    reason: str
    timestamp_ms: int
    candidate_version: Optional[str] = None
    baseline_version: Optional[str] = None
    policy_json: Optional[str] = None
    #: The scope addressed (schema v2); both None address the whole rollout.
    segment: Optional[str] = None
    region: Optional[str] = None


Record = Union[ExecutionEvent, Decision, RolloutCommand]
R = TypeVar("R", ExecutionEvent, Decision, RolloutCommand)

_FILES: Dict[type, str] = {
    ExecutionEvent: "execution_event",
    Decision: "decision",
    RolloutCommand: "rollout_command",
}
_HISTORY: Dict[type, Sequence[str]] = {
    ExecutionEvent: ("execution_event.v1",),
    Decision: ("decision.v1", "decision.v2", "decision.v3"),
    RolloutCommand: ("rollout_command.v1", "rollout_command.v2"),
}

# Fingerprints written by rollout-breaker before it used the specification's canonical form
# (the apache-avro crate's form keeps {"type":"long"} for logical types). Accepted on decode
# only. tests/codec_fingerprints.rs checks this table against the Rust codec.
_LEGACY_FINGERPRINTS: Dict[str, str] = {
    "execution_event": "4d2deab45a9a83e1",
    "decision": "666b0187c2bdf790",
    "rollout_command": "50d584345d15f057",
    "execution_event.v1": "3b26ebd19aba08fc",
    "decision.v1": "d7fd622e2fd496c5",
    "decision.v2": "569c29e4db9f111f",
    "decision.v3": "6f7c76dd05ec5587",
    "rollout_command.v1": "987b0d537ef5b918",
    "rollout_command.v2": "27a148b77cf80a20",
}


def _read_schema(name: str) -> str:
    base = resources.files("rollout_breaker") / "schemas"
    path = base / (f"history/{name}.avsc" if "." in name else f"{name}.avsc")
    return path.read_text(encoding="utf-8")


def _fingerprint_hex(text: str) -> str:
    return str(_fastavro_fingerprint(to_parsing_canonical_form(json.loads(text)), "CRC-64-AVRO"))


@dataclass
class _Kind:
    text: str
    schema: Any
    symbols: Dict[str, Tuple[str, ...]]
    fingerprint: bytes
    # header bytes -> writer schema (parsed)
    writers: Dict[bytes, Any]
    # earlier versions, newest first: Confluent bodies name no schema, and an earlier body is
    # a prefix of the current layout (fields were only appended), as the Rust reader assumes
    earlier: Sequence[Any] = ()


def _enum_symbols(schema: Any, out: Dict[str, Tuple[str, ...]]) -> None:
    for f in schema.get("fields", []):
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "enum":
            out[f["name"]] = tuple(t["symbols"])
        elif isinstance(t, dict) and t.get("type") == "record":
            _enum_symbols(t, out)


def _load(cls: type) -> _Kind:
    name = _FILES[cls]
    text = _read_schema(name)
    raw = json.loads(text)
    schema = parse_schema(raw, named_schemas={})
    symbols: Dict[str, Tuple[str, ...]] = {}
    _enum_symbols(raw, symbols)
    # Decision's to_phase reuses the Phase enum by name.
    if "from_phase" in symbols:
        symbols["to_phase"] = symbols["from_phase"]
    standard = bytes.fromhex(_fingerprint_hex(text))
    writers = {standard: schema, bytes.fromhex(_LEGACY_FINGERPRINTS[name]): schema}
    earlier = []
    for old in reversed(_HISTORY[cls]):
        old_text = _read_schema(old)
        old_schema = parse_schema(json.loads(old_text), named_schemas={})
        writers[bytes.fromhex(_fingerprint_hex(old_text))] = old_schema
        writers[bytes.fromhex(_LEGACY_FINGERPRINTS[old])] = old_schema
        earlier.append(old_schema)
    return _Kind(text, schema, symbols, standard, writers, earlier)


_KINDS: Dict[type, _Kind] = {cls: _load(cls) for cls in _FILES}


def schema_text(cls: Type[Record]) -> str:
    """The Avro schema source of a record type (what a schema registry is given)."""
    return _KINDS[cls].text


def fingerprint(cls: Type[Record]) -> bytes:
    """The 8 single-object header bytes written for a record type (wire order)."""
    return _KINDS[cls].fingerprint


# --- encoding ---------------------------------------------------------------------------------


def _to_dict(record: Record) -> Dict[str, Any]:
    return dataclasses.asdict(record)


def encode(record: Record, encoding: Encoding = "json") -> bytes:
    """Encodes a record as the processor expects it on a topic with this encoding."""
    cls = type(record)
    kind = _KINDS[cls]
    data = _to_dict(record)
    if encoding == "json":
        # As the Rust writer: a decision without a warning has no `warning` key (v2 readers).
        if isinstance(record, Decision) and record.warning is None:
            del data["warning"]
        # Scope fields (decision v4, command v2, event v2) are left out when null, as well.
        for key in ("segment", "region") if not isinstance(record, ExecutionEvent) else ("region",):
            if data.get(key) is None:
                data.pop(key, None)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    buf = io.BytesIO()
    if encoding == "avro":
        buf.write(b"\xc3\x01" + kind.fingerprint)
    elif isinstance(encoding, AvroConfluent):
        buf.write(b"\x00" + encoding.schema_id.to_bytes(4, "big"))
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    schemaless_writer(buf, kind.schema, data)
    return buf.getvalue()


# --- decoding ---------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _millis(value: Any) -> Any:
    """fastavro turns timestamp-millis into datetimes; the records carry int milliseconds."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return (dt - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: _millis(v) for k, v in value.items()}
    return value


def _require(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise DecodeError("missing_field", f"`{name}` is required")
    return value


def _check_rollout_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DecodeError("invalid_field", "rollout_id: must be a non-empty string")
    if len(value.encode()) > MAX_ROLLOUT_ID_BYTES:
        raise DecodeError("invalid_field", f"rollout_id: at most {MAX_ROLLOUT_ID_BYTES} bytes")
    return value


def _check_ts(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError("invalid_field", f"{name}: must be an integer")
    if not MIN_TIMESTAMP_MS <= value < MAX_TIMESTAMP_MS:
        raise DecodeError("invalid_timestamp", f"{name}: {value} outside [2000, 2200)")
    return value


def _check_symbol(kind: _Kind, name: str, value: Any) -> str:
    symbols = kind.symbols[name]
    if value not in symbols:
        raise DecodeError(
            "invalid_field",
            f"{name}: unknown symbol {value!r}, expected one of {', '.join(symbols)} (case-sensitive)",
        )
    return str(value)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DecodeError("invalid_field", f"{name}: must be a finite number")
    return float(value)


def _opt(data: Mapping[str, Any], name: str) -> Any:
    return data.get(name)


def _variant_metrics(d: Mapping[str, Any]) -> VariantMetrics:
    return VariantMetrics(
        samples=int(_require(d, "samples")),
        successes=int(_require(d, "successes")),
        completion_rate=_finite("completion_rate", _require(d, "completion_rate")),
        mean_latency_ms=_finite("mean_latency_ms", _require(d, "mean_latency_ms")),
        p50_latency_ms=_finite("p50_latency_ms", _require(d, "p50_latency_ms")),
        p95_latency_ms=_finite("p95_latency_ms", _require(d, "p95_latency_ms")),
        p99_latency_ms=_finite("p99_latency_ms", _require(d, "p99_latency_ms")),
    )


def _build(cls: Type[R], data: Mapping[str, Any]) -> R:
    kind = _KINDS[cls]
    if cls is ExecutionEvent:
        latency = _finite("latency_ms", _require(data, "latency_ms"))
        if latency < 0:
            raise DecodeError("invalid_latency", f"latency_ms: {latency} < 0")
        success = _require(data, "success")
        if not isinstance(success, bool):
            raise DecodeError("invalid_field", "success: must be a boolean")
        cost = _opt(data, "cost")
        extra = _opt(data, "extra_metrics") or {}
        return ExecutionEvent(  # type: ignore[return-value]
            rollout_id=_check_rollout_id(_require(data, "rollout_id")),
            variant=_check_symbol(kind, "variant", _require(data, "variant")),
            version=str(_require(data, "version")),
            success=success,
            latency_ms=latency,
            timestamp_ms=_check_ts("timestamp_ms", _require(data, "timestamp_ms")),
            request_key=_opt(data, "request_key"),
            cost=None if cost is None else _finite("cost", cost),
            segment=_opt(data, "segment"),
            region=_opt(data, "region"),
            extra_metrics={str(k): _finite(f"extra_metrics.{k}", v) for k, v in extra.items()},
        )
    if cls is Decision:
        m = _require(data, "metrics")
        traffic = _finite("traffic_percent", _require(data, "traffic_percent"))
        if not 0 <= traffic <= 100:
            raise DecodeError("invalid_field", f"traffic_percent: {traffic} outside [0, 100]")
        started = _opt(data, "phase_started_ms")
        action = _check_symbol(kind, "action", _require(data, "action"))
        w = _opt(data, "warning")
        warning = None
        if w is not None:
            if not isinstance(w, Mapping):
                raise DecodeError("invalid_field", "warning: must be an object")
            projected = _opt(w, "projected_rollback_ms")
            cleared = _require(w, "cleared")
            if not isinstance(cleared, bool):
                raise DecodeError("invalid_field", "warning.cleared: must be a boolean")
            warning = Warning(
                metric=str(_require(w, "metric")),
                statistic=_finite("warning.statistic", _require(w, "statistic")),
                threshold=_finite("warning.threshold", _require(w, "threshold")),
                cleared=cleared,
                projected_rollback_ms=None if projected is None else int(projected),
            )
        if (warning is None) != (action != "WARNING"):
            raise DecodeError(
                "invalid_field", "warning: set exactly when the action is WARNING"
            )
        return Decision(  # type: ignore[return-value]
            rollout_id=_check_rollout_id(_require(data, "rollout_id")),
            sequence=int(_require(data, "sequence")),
            action=action,
            from_phase=_check_symbol(kind, "from_phase", _require(data, "from_phase")),
            to_phase=_check_symbol(kind, "to_phase", _require(data, "to_phase")),
            traffic_percent=traffic,
            breaker_state=_check_symbol(kind, "breaker_state", _require(data, "breaker_state")),
            paused=bool(_require(data, "paused")),
            reason=str(_require(data, "reason")),
            metrics=MetricsSnapshot(
                window_start_ms=int(_require(m, "window_start_ms")),
                window_end_ms=int(_require(m, "window_end_ms")),
                baseline=_variant_metrics(_require(m, "baseline")),
                candidate=_variant_metrics(_require(m, "candidate")),
            ),
            decided_at_ms=_check_ts("decided_at_ms", _require(data, "decided_at_ms")),
            cause=_check_symbol(kind, "cause", _require(data, "cause")),
            actor=str(_require(data, "actor")),
            candidate_version=_opt(data, "candidate_version"),
            baseline_version=_opt(data, "baseline_version"),
            policy_json=_opt(data, "policy_json"),
            phase_started_ms=None if started is None else int(started),
            warning=warning,
            segment=_opt(data, "segment"),
            region=_opt(data, "region"),
        )
    return RolloutCommand(  # type: ignore[return-value]
        rollout_id=_check_rollout_id(_require(data, "rollout_id")),
        kind=_check_symbol(kind, "kind", _require(data, "kind")),
        actor=str(_require(data, "actor")),
        reason=str(_require(data, "reason")),
        timestamp_ms=_check_ts("timestamp_ms", _require(data, "timestamp_ms")),
        candidate_version=_opt(data, "candidate_version"),
        baseline_version=_opt(data, "baseline_version"),
        policy_json=_opt(data, "policy_json"),
        segment=_opt(data, "segment"),
        region=_opt(data, "region"),
    )


def _avro_body(kind: _Kind, writer: Any, body: bytes) -> Dict[str, Any]:
    fo = io.BytesIO(body)
    try:
        data = schemaless_reader(fo, writer, kind.schema)
    except (EOFError, StopIteration) as e:
        raise DecodeError("truncated", str(e) or "record ends early") from e
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise DecodeError("invalid_field", str(e)) from e
    rest = len(body) - fo.tell()
    if rest:
        raise DecodeError("trailing_bytes", f"{rest} bytes after the record")
    assert isinstance(data, dict)
    converted: Dict[str, Any] = _millis(data)
    return converted


def decode(
    cls: Type[R],
    data: bytes,
    encoding: Encoding = "json",
    schema_ids: Sequence[int] = (),
) -> R:
    """Decodes a record of type ``cls`` from a topic with this encoding.

    Single-object records may carry the current fingerprint, the legacy one, or those of
    earlier schema versions (missing fields take their defaults). Confluent records must carry
    the encoding's ``schema_id`` or one of ``schema_ids``.
    """
    kind = _KINDS[cls]
    if encoding == "json":
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise DecodeError("invalid_json", str(e)) from e
        if not isinstance(obj, dict):
            raise DecodeError("invalid_json", "not a JSON object")
        return _build(cls, obj)
    if encoding == "avro":
        if len(data) < 2 or data[0] != 0xC3 or data[1] != 0x01:
            raise DecodeError("bad_magic", "expected C3 01")
        if len(data) < 10:
            raise DecodeError("truncated", "header")
        writer = kind.writers.get(bytes(data[2:10]))
        if writer is None:
            raise DecodeError("unknown_fingerprint", data[2:10].hex())
        return _build(cls, _avro_body(kind, writer, bytes(data[10:])))
    if isinstance(encoding, AvroConfluent):
        if not data or data[0] != 0:
            raise DecodeError("bad_magic", "expected 00")
        if len(data) < 5:
            raise DecodeError("truncated", "header")
        sid = int.from_bytes(data[1:5], "big")
        if sid != encoding.schema_id and sid not in schema_ids:
            raise DecodeError("unknown_schema_id", str(sid))
        body = bytes(data[5:])
        try:
            return _build(cls, _avro_body(kind, kind.schema, body))
        except DecodeError as e:
            if e.reason != "truncated":
                raise
            for writer in kind.earlier:
                try:
                    return _build(cls, _avro_body(kind, writer, body))
                except DecodeError:
                    pass
            raise
    raise ValueError(f"unknown encoding {encoding!r}")


def sniff_encoding(data: bytes) -> Encoding:
    """``{`` → JSON, ``C3`` → single-object Avro, ``00`` → Confluent with the id found."""
    if not data:
        raise DecodeError("truncated", "header")
    if data[0] == 0xC3:
        return "avro"
    if data[0] == 0:
        if len(data) < 5:
            raise DecodeError("truncated", "header")
        return AvroConfluent(int.from_bytes(data[1:5], "big"))
    if data.lstrip()[:1] == b"{":
        return "json"
    raise DecodeError("bad_magic", "expected `{`, C3 01 or 00")


def decode_any(cls: Type[R], data: bytes) -> R:
    """Decodes whatever encoding the bytes are in (Confluent framing with any id)."""
    return decode(cls, data, sniff_encoding(data))


def decode_event(data: bytes, encoding: Encoding = "json") -> ExecutionEvent:
    """Decodes an execution event."""
    return decode(ExecutionEvent, data, encoding)


def decode_decision(data: bytes, encoding: Encoding = "avro") -> Decision:
    """Decodes a decision (the decisions topic is Avro single-object by default)."""
    return decode(Decision, data, encoding)


def decode_command(data: bytes, encoding: Encoding = "json") -> RolloutCommand:
    """Decodes a rollout command."""
    return decode(RolloutCommand, data, encoding)
