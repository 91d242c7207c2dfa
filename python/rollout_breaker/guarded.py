"""``guarded``: time one agent call and report it as an execution event.

Usable as a context manager (sync or async) or a decorator (sync or async functions)::

    with guarded(emitter, "checkout-agent", "CANDIDATE", "v2", request_key=user):
        answer = call_v2(...)

A call that raises, or is cancelled (``asyncio.CancelledError``, ``KeyboardInterrupt``: any
``BaseException``), is reported as a failure — a candidate that hangs until a timeout cancels it
cannot look healthy by going silent. Cancelled calls carry ``extra_metrics["cancelled"] = 1``.
A call may also mark itself failed (``g.fail()``), e.g. when the answer is unusable.

:class:`GuardedAgent` adds the routing: it asks the :class:`~rollout_breaker.table.DecisionTable`
which version serves the request and guards the call to it.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Protocol, TypeVar

from . import codec

__all__ = ["Sink", "Router", "guarded", "GuardedAgent"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Sink(Protocol):
    """Where events go (an :class:`~rollout_breaker.emitter.EventEmitter`)."""

    def emit(self, event: codec.ExecutionEvent) -> bool: ...


class Router(Protocol):
    """Which version serves a request (a :class:`~rollout_breaker.table.DecisionTable`)."""

    def should_use_new_version(self, rollout_id: str, request_key: str) -> bool: ...


class guarded:
    """Times one call and reports it to ``sink``; see the module documentation."""

    def __init__(
        self,
        sink: Sink,
        rollout_id: str,
        variant: str,
        version: str = "",
        *,
        request_key: Optional[str] = None,
        segment: Optional[str] = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if variant not in ("BASELINE", "CANDIDATE"):
            raise ValueError(f"variant must be BASELINE or CANDIDATE (upper case), not {variant!r}")
        self.sink = sink
        self.rollout_id = rollout_id
        self.variant = variant
        self.version = version
        self.request_key = request_key
        self.segment = segment
        self.cost: Optional[float] = None
        self.extra: Dict[str, float] = {}
        self.latency_ms: Optional[float] = None
        self._clock = clock
        self._wall_ms = wall_clock_ms
        self._start = 0.0
        self._failed = False

    def fail(self) -> None:
        """Reports this call as a failure even if it returns normally."""
        self._failed = True

    # context manager ------------------------------------------------------------------------

    def __enter__(self) -> "guarded":
        self._start = self._clock()
        self._failed = False
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._report(exc_type)

    async def __aenter__(self) -> "guarded":
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._report(exc_type)

    def _report(self, exc_type: Any) -> None:
        self.latency_ms = max(0.0, (self._clock() - self._start) * 1000.0)
        extra = dict(self.extra)
        if exc_type is not None and not issubclass(exc_type, Exception):
            extra["cancelled"] = 1.0
        event = codec.ExecutionEvent(
            rollout_id=self.rollout_id,
            variant=self.variant,
            version=self.version,
            success=exc_type is None and not self._failed,
            latency_ms=self.latency_ms,
            timestamp_ms=self._wall_ms(),
            request_key=self.request_key,
            cost=self.cost,
            segment=self.segment,
            extra_metrics=extra,
        )
        try:
            self.sink.emit(event)
        except Exception:  # reporting never breaks the call
            pass

    # decorator ------------------------------------------------------------------------------

    def _fresh(self) -> "guarded":
        return guarded(
            self.sink,
            self.rollout_id,
            self.variant,
            self.version,
            request_key=self.request_key,
            segment=self.segment,
            clock=self._clock,
            wall_clock_ms=self._wall_ms,
        )

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class GuardedAgent:
    """Two versions of an agent behind the breaker: each request goes where the router says
    (sticky per request key) and every call is reported."""

    def __init__(
        self,
        rollout_id: str,
        router: Router,
        sink: Sink,
        *,
        baseline_version: str = "baseline",
        candidate_version: str = "candidate",
    ) -> None:
        self.rollout_id = rollout_id
        self.router = router
        self.sink = sink
        self.baseline_version = baseline_version
        self.candidate_version = candidate_version

    def guard(self, request_key: str) -> guarded:
        """A :class:`guarded` for the version that serves ``request_key``."""
        use_new = self.router.should_use_new_version(self.rollout_id, request_key)
        variant, version = (
            ("CANDIDATE", self.candidate_version) if use_new else ("BASELINE", self.baseline_version)
        )
        return guarded(self.sink, self.rollout_id, variant, version, request_key=request_key)

    async def call(
        self,
        request_key: str,
        baseline: Callable[[], Awaitable[T]],
        candidate: Callable[[], Awaitable[T]],
    ) -> T:
        """Awaits ``candidate()`` or ``baseline()`` as routed, guarded."""
        g = self.guard(request_key)
        async with g:
            return await (candidate() if g.variant == "CANDIDATE" else baseline())
