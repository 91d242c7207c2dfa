import asyncio

import pytest

from rollout_breaker import GuardedAgent, guarded


class Sink:
    def __init__(self):
        self.events = []

    def emit(self, e):
        self.events.append(e)
        return True


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.25
        return self.t


def g(sink, **kw):
    return guarded(sink, "r", "CANDIDATE", "v2", request_key="k", clock=Clock(), wall_clock_ms=lambda: 1_764_222_000_000, **kw)


def test_context_manager_times_and_reports():
    sink = Sink()
    with g(sink):
        pass
    (e,) = sink.events
    assert (e.success, e.latency_ms, e.timestamp_ms, e.variant, e.request_key) == (True, 250.0, 1_764_222_000_000, "CANDIDATE", "k")


def test_raised_and_marked_calls_are_failures():
    sink = Sink()
    with pytest.raises(RuntimeError):
        with g(sink):
            raise RuntimeError("boom")
    with g(sink) as call:
        call.fail()
    assert [e.success for e in sink.events] == [False, False]
    assert "cancelled" not in sink.events[0].extra_metrics


def test_decorators_sync_and_async_and_cancellation():
    sink = Sink()

    @g(sink)
    def ok(x):
        return x * 2

    @g(sink)
    async def slow():
        await asyncio.sleep(10)

    assert ok(2) == 4

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(), 0.01)

    asyncio.run(main())
    assert [e.success for e in sink.events] == [True, False]
    assert sink.events[1].extra_metrics == {"cancelled": 1.0}


def test_guarded_agent_routes_and_reports():
    class Router:
        def should_use_new_version(self, rollout_id, key):
            return key == "new"

    sink = Sink()
    agent = GuardedAgent("r", Router(), sink, baseline_version="v1", candidate_version="v2")

    async def v1():
        return "old answer"

    async def v2():
        return "new answer"

    assert asyncio.run(agent.call("new", v1, v2)) == "new answer"
    assert asyncio.run(agent.call("other", v1, v2)) == "old answer"
    assert [(e.variant, e.version) for e in sink.events] == [("CANDIDATE", "v2"), ("BASELINE", "v1")]


def test_lower_case_variant_is_refused():
    with pytest.raises(ValueError):
        guarded(Sink(), "r", "candidate")
