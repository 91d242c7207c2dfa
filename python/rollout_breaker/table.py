"""The decision table a router reads: latest decision per rollout, and whether to trust it.

Mirrors ``src/router/table.rs`` (pure: no Kafka, time passed in) and ``src/router/follower.rs``
(:class:`DecisionTable`, which follows the decisions topic). The table fails safe: an unknown
rollout, a table still loading, or one not confirmed current for ``stale_after`` serves the
baseline.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import codec, splitter

__all__ = [
    "RouteEntry",
    "Route",
    "row_key",
    "Table",
    "Freshness",
    "CatchUp",
    "DecisionTable",
    "LOADING",
    "READY",
    "STALE",
]

log = logging.getLogger("rollout_breaker.router")

#: Table states, as the Rust ``TableState::name``.
LOADING, READY, STALE = "loading", "ready", "stale"


@dataclass(frozen=True)
class RouteEntry:
    """The fields of a rollout's latest decision a router needs."""

    phase: str
    traffic_percent: float
    sequence: int
    paused: bool
    candidate_version: Optional[str]
    baseline_version: Optional[str]
    at_ms: int

    @staticmethod
    def from_decision(d: codec.Decision) -> "RouteEntry":
        return RouteEntry(
            d.to_phase,
            d.traffic_percent,
            d.sequence,
            d.paused,
            d.candidate_version,
            d.baseline_version,
            d.decided_at_ms,
        )


def row_key(rollout_id: str, segment: Optional[str] = None, region: Optional[str] = None) -> str:
    """A row's key in the decisions topic, as ``Scope::key`` in Rust: the rollout id for its
    default scope, ``ROLLOUT#segment=S#region=R`` (absent parts left out) for the others."""
    key = rollout_id
    if segment is not None:
        key += "#segment=" + segment
    if region is not None:
        key += "#region=" + region
    return key


@dataclass(frozen=True)
class Route:
    """One routing answer and why: ``reason`` is ``split``, ``unknown``, ``unknown_scope``,
    ``loading`` or ``stale``."""

    use_candidate: bool
    phase: Optional[str]
    traffic_percent: float
    reason: str


class Table:
    """Latest decision per row: per rollout, and per scope (segment, region) of a rollout whose
    policy names some; the highest ``sequence`` wins per row; a tombstone removes the row."""

    def __init__(self) -> None:
        self._entries: Dict[str, RouteEntry] = {}
        # rollout id -> {row key: (segment, region)} for the rows of its scopes
        self._scoped: Dict[str, Dict[str, Tuple[Optional[str], Optional[str]]]] = {}
        # row key -> rollout id, for the rows of scopes
        self._owner: Dict[str, str] = {}

    def apply(self, d: codec.Decision) -> bool:
        """Applies a decision to its row; returns whether it replaced what was held."""
        key = row_key(d.rollout_id, d.segment, d.region)
        held = self._entries.get(key)
        if held is not None and held.sequence >= d.sequence:
            return False
        self._entries[key] = RouteEntry.from_decision(d)
        if d.segment is not None or d.region is not None:
            self._scoped.setdefault(d.rollout_id, {})[key] = (d.segment, d.region)
            self._owner[key] = d.rollout_id
        return True

    def remove(self, key: str) -> bool:
        """A tombstone: forgets the row (a rollout id, or a scope's key). Returns whether it
        was held."""
        owner = self._owner.pop(key, None)
        if owner is not None:
            rows = self._scoped.get(owner, {})
            rows.pop(key, None)
            if not rows:
                self._scoped.pop(owner, None)
        return self._entries.pop(key, None) is not None

    def get(self, rollout_id: str) -> Optional[RouteEntry]:
        return self._entries.get(rollout_id)

    def _row(self, rollout_id: str, segment: Optional[str], region: Optional[str]) -> Tuple[Optional[RouteEntry], str]:
        """The row a request of ``segment`` in ``region`` is routed by, as the Rust table
        resolves it: an unnamed segment joins its region's unsegmented row; an unnamed region
        is an unknown scope when the rollout has region rows, and ignored when it has none."""
        rows = self._scoped.get(rollout_id) if segment is not None or region is not None else None
        if not rows:
            return self._entries.get(rollout_id), "unknown"
        if segment not in {s for s, _ in rows.values()}:
            segment = None
        regions = {r for _, r in rows.values() if r is not None}
        if region is not None and region not in regions:
            if regions:
                return None, "unknown_scope"
            region = None
        return self._entries.get(row_key(rollout_id, segment, region)), "unknown_scope"

    def lookup(
        self, rollout_id: str, request_key: str, segment: Optional[str] = None, region: Optional[str] = None
    ) -> Route:
        """Routes a request (of a user ``segment`` in a ``region``, when known) assuming the
        table is ready; the hash is the rollout's in every scope, so the split is sticky."""
        e, missing = self._row(rollout_id, segment, region)
        if e is None:
            return Route(False, None, 0.0, missing)
        use = splitter.serves_candidate(rollout_id, request_key, e.traffic_percent)
        return Route(use, e.phase, e.traffic_percent, "split")

    def copy(self) -> "Table":
        t = Table()
        t._entries = dict(self._entries)
        t._scoped = {k: dict(v) for k, v in self._scoped.items()}
        t._owner = dict(self._owner)
        return t

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterable[Tuple[str, RouteEntry]]:
        return self._entries.items()


@dataclass(frozen=True)
class CatchUp:
    """End offsets captured by one probe, and when the probe started (caller's clock)."""

    probe_started: float
    targets: Sequence[Tuple[int, int, int]]  # (partition, low, end)

    def is_reached(self, position: Callable[[int], Optional[int]]) -> bool:
        """Positions (next offset to deliver), not last offsets seen: transaction markers
        occupy offsets that are never delivered. No position yet counts as the low mark."""
        for p, low, end in self.targets:
            pos = position(p)
            if (low if pos is None else pos) < end:
                return False
        return True


class Freshness:
    """Loading until the first catch-up, ready while ``now - fresh_as_of <= stale_after``."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.fresh_as_of: Optional[float] = None

    def caught_up(self, probe_started: float) -> None:
        if self.fresh_as_of is None or probe_started > self.fresh_as_of:
            self.fresh_as_of = probe_started

    def state(self, now: float) -> str:
        if self.fresh_as_of is None:
            return LOADING
        return READY if max(0.0, now - self.fresh_as_of) <= self.stale_after else STALE


class DecisionTable:
    """Follows the decisions topic (``read_committed``, from the beginning) in a thread.

    ``should_use_new_version(rollout_id, request_key)`` answers from an immutable snapshot
    (no lock, no I/O). The topic's end offsets are probed every ``stale_after / 4``; once the
    consumer's positions reach a probe's end offsets, the table holds every decision committed
    before that probe started.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = "rollout-decisions",
        *,
        encoding: codec.Encoding = "avro",
        stale_after: float = 30.0,
        options: Optional[Mapping[str, Any]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.1 <= stale_after <= 3600:
            raise ValueError("stale_after must be in [0.1, 3600] seconds")
        self.topic = topic
        self.encoding = encoding
        self.stale_after = stale_after
        self._clock = clock
        self._freshness = Freshness(stale_after)
        self._snapshot = Table()
        self._table = Table()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.undecodable = 0
        self.lookups: Dict[str, int] = {"candidate": 0, "baseline": 0, "unknown": 0, "loading": 0, "stale": 0}
        conf: Dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "rollout-breaker-router",
            "fetch.wait.max.ms": 100,
        }
        conf.update(options or {})
        # The table's correctness depends on these; they win over `options`.
        conf.update(
            {
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",
                "allow.auto.create.topics": False,
            }
        )
        from confluent_kafka import Consumer

        self._consumer = Consumer(conf)
        self._assigned: List[int] = []
        self._thread = threading.Thread(target=self._run, name=f"rb-table-{topic}", daemon=True)
        self._thread.start()

    # --- the read side -------------------------------------------------------------------

    def state(self) -> str:
        """``loading``, ``ready`` or ``stale`` (``stale`` after :meth:`close`)."""
        if self._stop.is_set():
            return STALE
        return self._freshness.state(self._clock())

    def route(
        self, rollout_id: str, request_key: str, segment: Optional[str] = None, region: Optional[str] = None
    ) -> Route:
        """The routing answer with its reason."""
        state = self.state()
        snapshot = self._snapshot
        if state != READY:
            e = snapshot.get(rollout_id)
            return Route(False, e.phase if e else None, e.traffic_percent if e else 0.0, state)
        return snapshot.lookup(rollout_id, request_key, segment, region)

    def should_use_new_version(
        self, rollout_id: str, request_key: str, segment: Optional[str] = None, region: Optional[str] = None
    ) -> bool:
        """Whether the candidate serves this request (of a user ``segment`` in a ``region``,
        for rollouts whose policy names segments or regions); the baseline whenever in doubt,
        an unknown scope included."""
        r = self.route(rollout_id, request_key, segment, region)
        outcome = ("candidate" if r.use_candidate else "baseline") if r.reason == "split" else r.reason
        self.lookups[outcome] = self.lookups.get(outcome, 0) + 1
        return r.use_candidate

    def get(self, rollout_id: str) -> Optional[RouteEntry]:
        return self._snapshot.get(rollout_id)

    def wait_ready(self, timeout: float) -> bool:
        """Waits for the initial load; returns whether the table is ready."""
        self._ready.wait(timeout)
        return self.state() == READY

    def close(self) -> None:
        """Stops following; the table then serves the baseline. Idempotent."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=10)

    def __enter__(self) -> "DecisionTable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the follower thread -------------------------------------------------------------

    def _probe(self) -> CatchUp:
        from confluent_kafka import TopicPartition

        started = self._clock()
        timeout = min(max(self.stale_after / 2, 0.1), 10.0)
        md = self._consumer.list_topics(self.topic, timeout=timeout)
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            raise RuntimeError(f"topic {self.topic}: {t.error if t else 'missing'}")
        partitions = sorted(t.partitions)
        if partitions != self._assigned:
            positions = {}
            if self._assigned:
                for tp in self._consumer.position([TopicPartition(self.topic, p) for p in self._assigned]):
                    if tp.offset >= 0:
                        positions[tp.partition] = tp.offset
            # OFFSET_BEGINNING = -2
            self._consumer.assign([TopicPartition(self.topic, p, positions.get(p, -2)) for p in partitions])
            self._assigned = partitions
        targets = []
        for p in partitions:
            low, end = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)
            targets.append((p, low, end))
        return CatchUp(started, targets)

    def _reached(self, c: CatchUp) -> bool:
        from confluent_kafka import TopicPartition

        positions = {
            tp.partition: tp.offset
            for tp in self._consumer.position([TopicPartition(self.topic, p) for p, _, _ in c.targets])
        }
        return c.is_reached(lambda p: positions.get(p) if positions.get(p, -1) >= 0 else None)

    def _poll_batch(self) -> bool:
        changed = False
        for m in self._consumer.consume(num_messages=10_000, timeout=0.1):
            if m.error():
                log.debug("Decisions fetch error: %s", m.error())
                continue
            value = m.value()
            if value is None:
                key = m.key()
                if key is not None and self._table.remove(key.decode("utf-8", "replace")):
                    changed = True
                continue
            try:
                try:
                    d = codec.decode(codec.Decision, value, self.encoding)
                except codec.DecodeError:
                    d = codec.decode_any(codec.Decision, value)
            except codec.DecodeError as e:
                self.undecodable += 1
                if self.undecodable <= 10:
                    log.warning(
                        "Undecodable record in %s [%d] at %d; skipped: %s", self.topic, m.partition(), m.offset(), e
                    )
                continue
            changed |= self._table.apply(d)
        return changed

    def _run(self) -> None:
        interval = min(max(self.stale_after / 4, 0.05), 10.0)
        next_probe = 0.0
        pending: Optional[CatchUp] = None
        try:
            while not self._stop.is_set():
                now = self._clock()
                expired = pending is not None and now - pending.probe_started > interval * 4
                if (pending is None or expired) and now >= next_probe:
                    next_probe = now + interval
                    try:
                        pending = self._probe()
                    except Exception as e:  # a lost broker: stay as we are, turn stale
                        log.debug("Decisions probe failed: %s", e)
                if self._assigned and self._poll_batch():
                    self._snapshot = self._table.copy()
                elif not self._assigned:
                    self._stop.wait(0.1)
                if pending is not None and self._reached(pending):
                    self._freshness.caught_up(pending.probe_started)
                    pending = None
                    self._ready.set()
        finally:
            self._consumer.close()
