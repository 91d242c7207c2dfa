"""An async agent with two versions behind the breaker.

    python python/examples/guarded_agent.py [--bootstrap 127.0.0.1:19092] [--rollout checkout-agent]
        [--events-topic rollout-events] [--decisions-topic rollout-decisions]

Each request goes to v1 (baseline) or v2 (candidate) as the decisions topic says, sticky per
user; every call is timed and reported to the events topic. v2 is slower and fails more often,
so with a processor running (`rollout-breaker run`, `auto_start` on) the rollout starts at PROBE
and is rolled back once enough candidate calls have been judged; the agent follows the
decisions without a restart. A call cut off by the request
timeout is reported as a failure.
"""

import argparse
import asyncio
import random

from rollout_breaker import DecisionTable, EventEmitter, GuardedAgent


async def answer_v1(question: str) -> str:
    await asyncio.sleep(random.uniform(0.005, 0.02))
    return f"v1: {question}"


async def answer_v2(question: str) -> str:
    await asyncio.sleep(random.uniform(0.01, 0.08))
    if random.random() < 0.3:
        raise RuntimeError("v2 lost its train of thought")
    return f"v2: {question}"


async def handle(agent: GuardedAgent, user: str, question: str) -> str:
    try:
        return await asyncio.wait_for(
            agent.call(user, lambda: answer_v1(question), lambda: answer_v2(question)),
            timeout=0.05,
        )
    except (RuntimeError, asyncio.TimeoutError):
        return "sorry, try again"  # already reported as a failure


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", default="127.0.0.1:19092")
    p.add_argument("--rollout", default="checkout-agent")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--events-topic", default="rollout-events")
    p.add_argument("--decisions-topic", default="rollout-decisions")
    args = p.parse_args()

    table = DecisionTable(args.bootstrap, args.decisions_topic)
    emitter = EventEmitter(args.bootstrap, args.events_topic, encoding="json")
    if not table.wait_ready(30):
        print(f"decision table {table.state()}: serving the baseline until it is ready")
    agent = GuardedAgent(args.rollout, table, emitter, baseline_version="v1", candidate_version="v2")
    try:
        for batch in range(args.requests // 100):
            users = [f"user-{random.randrange(10_000)}" for _ in range(100)]
            await asyncio.gather(*(handle(agent, u, "where is my order?") for u in users))
            entry = table.get(args.rollout)
            print(
                f"batch {batch}: table {table.state()}, "
                f"phase {entry.phase if entry else '-'} {entry.traffic_percent if entry else 0}%, "
                f"events {emitter.stats()}"
            )
    finally:
        emitter.close()
        table.close()


if __name__ == "__main__":
    asyncio.run(main())
