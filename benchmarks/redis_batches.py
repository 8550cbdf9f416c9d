"""The worker's per-batch Redis calls: ``reserve_many``, ``set_many``, ``ack_many`` of ``--batch``
tasks, on the real Redis, one call after the other (as one fetcher and the writer do them).

    uv run python benchmarks/redis_batches.py [--url redis://127.0.0.1:6379/0] [--batch 32]

Prints wall and client-CPU microseconds per task for each call. The queue is filled first, so
``reserve_many`` always finds a full batch waiting; a fresh queue name is used and its keys and
the result keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from _support import envelopes
from agentexec_redis import keys
from agentexec_redis.client import close_redis, get_redis
from agentexec_redis.keys import queue_keys
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RedisResults

OUTCOME = b'{"ok":true,"value":null}'


async def main(url: str, batch: int, rounds: int) -> None:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue, results = RedisQueue(url), RedisResults(url)
    r = await get_redis(url)
    envs = envelopes(name, batch * rounds + 1)
    await queue.push_many(envs)
    await queue.reserve(name, "bench", 1)  # starts the consumer (its start-up reap)
    labels = ("reserve_many", "set_many", "ack_many")
    wall = dict.fromkeys(labels, 0.0)
    cpu = dict.fromkeys(labels, 0.0)
    done = 0

    def tick(label: str, w0: float, c0: float) -> tuple[float, float]:
        w1, c1 = time.perf_counter(), time.process_time()
        wall[label] += w1 - w0
        cpu[label] += c1 - c0
        return w1, c1

    try:
        for _ in range(rounds):
            w, c = time.perf_counter(), time.process_time()
            leases = await queue.reserve_many(name, "bench", batch, 1)
            items = [(lease.envelope.agent_id, OUTCOME) for lease in leases]
            w, c = tick("reserve_many", w, c)
            await results.set_many(items, 60)
            w, c = tick("set_many", w, c)
            await queue.ack_many(leases)
            tick("ack_many", w, c)
            done += len(leases)
        assert done == batch * rounds, done
        print(f"batches of {batch}, {done} tasks (µs per task):")
        for label in labels:
            print(f"  {label:<13} wall {wall[label] / done * 1e6:6.1f}   client CPU {cpu[label] / done * 1e6:6.1f}")
        total_w, total_c = sum(wall.values()), sum(cpu.values())
        print(f"  {'total':<13} wall {total_w / done * 1e6:6.1f}   client CPU {total_c / done * 1e6:6.1f}"
              f"   ({done / total_w:,.0f} tasks/s)")
    finally:
        k = queue_keys(name)
        await r.delete(name, k.consumers, k.dead, k.dead_seq, k.inflight("bench"))
        for i in range(0, len(envs), 1000):
            await r.delete(*[keys.result(e.agent_id) for e in envs[i : i + 1000]])
        await close_redis()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.batch, args.rounds))
