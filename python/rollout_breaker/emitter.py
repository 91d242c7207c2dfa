"""EventEmitter: reports execution events without ever blocking the request path.

Like the Rust ``EventEmitter`` (``src/agent/emitter.rs``): record key = rollout id, record
timestamp = event time, ``partitioner=murmur2_random`` (Java's partitioner, so events land in
the partition the processor expects; librdkafka's CRC32 default would not), idempotent,
batched by ``linger.ms``. :meth:`EventEmitter.emit` only enqueues: a full queue drops the event
and counts it; a delivery failure is counted when librdkafka reports it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from . import codec

__all__ = ["EmitterStats", "EventEmitter"]

log = logging.getLogger("rollout_breaker.agent")


@dataclass(frozen=True)
class EmitterStats:
    """Counts since the emitter was made."""

    emitted: int
    delivered: int
    failed: int
    dropped: int

    @property
    def in_flight(self) -> int:
        return self.emitted - self.delivered - self.failed


class EventEmitter:
    """A batching producer of execution events (and, with :meth:`emit_command`, commands)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = "rollout-events",
        *,
        encoding: codec.Encoding = "json",
        linger_ms: int = 5,
        queue_capacity: int = 100_000,
        message_timeout_ms: int = 30_000,
        options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.encoding = encoding
        conf: Dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": queue_capacity,
            "message.timeout.ms": message_timeout_ms,
        }
        conf.update(options or {})
        # Co-partitioning with the processor depends on it: wins over `options`.
        conf["partitioner"] = "murmur2_random"
        self._producer = Producer(conf)
        self._lock = threading.Lock()
        self._emitted = self._delivered = self._failed = self._dropped = 0
        self._stop = threading.Event()
        # Delivery callbacks run in poll(); a thread serves them so emit() never has to.
        self._poller = threading.Thread(target=self._poll_loop, name="rb-emitter", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        with self._lock:
            if err is None:
                self._delivered += 1
            else:
                self._failed += 1
                first = self._failed == 1
        if err is not None and first:
            log.warning("Execution event not delivered: %s", err)

    def _produce(self, key: str, value: bytes, timestamp_ms: int, headers: Optional[List[Tuple[str, Union[str, bytes, None]]]]) -> bool:
        try:
            self._producer.produce(
                self.topic,
                value=value,
                key=key.encode("utf-8"),
                timestamp=timestamp_ms,
                headers=headers,
                on_delivery=self._on_delivery,
            )
        except BufferError:
            with self._lock:
                self._dropped += 1
            return False
        except Exception as e:  # e.g. a KafkaException for a closed producer
            with self._lock:
                self._dropped += 1
            log.debug("Execution event dropped: %s", e)
            return False
        with self._lock:
            self._emitted += 1
        return True

    def emit(self, event: codec.ExecutionEvent) -> bool:
        """Enqueues an event; returns ``False`` (and counts a drop) if it could not be queued."""
        return self._produce(event.rollout_id, codec.encode(event, self.encoding), event.timestamp_ms, None)

    def emit_command(
        self,
        command: codec.RolloutCommand,
        *,
        relayed: bool = False,
        encoding: Optional[codec.Encoding] = None,
    ) -> bool:
        """Enqueues an operator command to this emitter's topic (the commands topic).

        ``relayed=True`` is for an emitter on the events topic: the command carries the
        ``rb.relayed.command`` header and applies exactly at that place in the rollout's event
        stream. Commands are read in the commands topic's encoding (``encoding``; by default
        this emitter's), also when relayed.
        """
        headers: Optional[List[Tuple[str, Union[str, bytes, None]]]] = (
            [("rb.relayed.command", b"python")] if relayed else None
        )
        value = codec.encode(command, self.encoding if encoding is None else encoding)
        return self._produce(command.rollout_id, value, command.timestamp_ms, headers)

    def stats(self) -> EmitterStats:
        with self._lock:
            return EmitterStats(self._emitted, self._delivered, self._failed, self._dropped)

    def flush(self, timeout: float = 10.0) -> int:
        """Waits for queued events; returns how many are still queued."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> None:
        """Flushes and stops the poll thread. Idempotent."""
        if not self._stop.is_set():
            self.flush(timeout)
            self._stop.set()
            self._poller.join(timeout=5)

    def __enter__(self) -> "EventEmitter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
