"""Throughput of the Redis queue on ONE connection (pool size 1), single calls and bulk.

    uv run python benchmarks/redis_queue.py [--url redis://127.0.0.1:6379/0] [--tasks 20000]

Scenarios (tasks/s):
- push: ``queue.push`` one at a time (1 round trip each);
- push_many: ``queue.push_many`` in batches of 1000 (1 pipelined round trip per batch);
- push+take+ack: push, reserve, ack one task at a time (a producer and a consumer in lockstep);
- take+ack: reserve + ack of tasks already queued (what one consumer sustains);
- wire ceiling: raw pipelined LMOVE + LREM batches, the same Redis work without the API or
  envelope (de)serialization, to show where the time goes.
Uses a fresh queue name and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from _support import envelopes, rate
from agentexec.config import CONF
from agentexec.task import Priority
from agentexec_redis.client import close_redis, get_redis
from agentexec_redis.keys import queue_keys
from agentexec_redis.queue import RedisQueue

BATCH = 1000


async def main(url: str, tasks: int) -> None:
    CONF.redis_pool_size = 1  # one connection for everything
    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = RedisQueue(url)
    envs = envelopes(name, tasks)
    r = await get_redis(url)

    async def push() -> None:
        for env in envs:
            await queue.push(env, Priority.LOW)

    async def push_many() -> None:
        for i in range(0, tasks, BATCH):
            await queue.push_many(envs[i : i + BATCH])

    async def take_ack(count: int) -> None:
        for _ in range(count):
            lease = await queue.reserve(name, "bench", 1)
            assert lease is not None
            await queue.ack(lease)

    async def push_take_ack() -> None:
        for env in envs:
            await queue.push(env, Priority.LOW)
            lease = await queue.reserve(name, "bench", 1)
            assert lease is not None
            await queue.ack(lease)

    async def wire_ceiling() -> None:
        inflight = queue_keys(name).inflight("raw")
        for start in range(0, tasks, BATCH):
            async with r.pipeline(transaction=False) as pipe:
                for _ in range(min(BATCH, tasks - start)):
                    pipe.lmove(name, inflight, "RIGHT", "LEFT")
                moved = await pipe.execute()
            async with r.pipeline(transaction=False) as pipe:
                for raw in filter(None, moved):
                    pipe.lrem(inflight, 1, raw)
                await pipe.execute()

    try:
        await rate("push", tasks, push())
        await rate("take+ack", tasks, take_ack(tasks))
        await rate("push_many", tasks, push_many())
        await rate("wire ceiling", tasks, wire_ceiling())
        await rate("push+take+ack", tasks, push_take_ack())
        assert await queue.length(name) == 0
    finally:
        keys = queue_keys(name)
        await r.delete(name, keys.consumers, keys.dead, keys.dead_seq, keys.inflight("bench"),
                       keys.inflight("raw"))
        await close_redis()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=CONF.redis_url or "redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.tasks))
