"""Delay from ``RedisResults.set`` to a blocked ``wait`` returning (median, p95, p99, max).

    uv run python benchmarks/redis_results_wakeup.py [--url redis://127.0.0.1:6379/0] [--trials 1000]

Each trial starts a waiter, lets it block, then times ``set`` -> ``wait`` returned. The delay
includes the ``set`` round trip itself (SET + XADD in one pipeline), the listener's XREAD
wake-up and the waiter's confirming GET.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from agentexec.config import CONF
from agentexec_redis.client import close_redis, get_redis
from agentexec_redis.keys import result
from agentexec_redis.results import RedisResults


async def main(url: str, trials: int) -> None:
    results = RedisResults(url)
    delays: list[float] = []
    ids = []
    for _ in range(trials):
        agent_id = uuid.uuid4()
        ids.append(agent_id)
        waiter = asyncio.create_task(results.wait(agent_id, 5))
        await asyncio.sleep(0.002)  # the waiter is blocked on the listener
        start = time.perf_counter()
        await results.set(agent_id, b"x", 60)
        await waiter
        delays.append(time.perf_counter() - start)
    delays.sort()
    ms = [d * 1000 for d in delays]
    print(
        f"set -> wait returned over {trials} trials: median {statistics.median(ms):.2f} ms, "
        f"p95 {ms[int(len(ms) * 0.95) - 1]:.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, "
        f"max {ms[-1]:.2f} ms"
    )
    r = await get_redis(url)
    await r.delete(*[result(a) for a in ids])
    await results.close()
    await close_redis()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=CONF.redis_url or "redis://127.0.0.1:6379/0")
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.trials))
