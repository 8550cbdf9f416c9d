"""CPU per task of the event loop itself, asyncio's against uvloop's (``CONF.worker_event_loop``).

    uv run python benchmarks/event_loop.py [--url redis://127.0.0.1:6379/0] [--tasks 20000] [--pairs 3]

Each pass runs ``--tasks`` asyncio tasks, ten at a time, that each await one ``INCR`` on redis-py
(a handler that awaits a round trip, as ../shared/bench's tasks do), and prints the process's
CPU time per task. Passes alternate between the two loops, so a busy machine weighs on both.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import anyio
import redis.asyncio as aredis


async def one_pass(url: str, tasks: int) -> float:
    client = aredis.Redis.from_url(url)
    await client.ping()
    slots = asyncio.Semaphore(10)

    async def task() -> None:
        async with slots:
            await client.incr("agentexec:bench:event-loop")

    started = time.process_time()
    await asyncio.gather(*(task() for _ in range(tasks)))
    cpu = time.process_time() - started
    await client.delete("agentexec:bench:event-loop")
    await client.aclose()
    return cpu / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.pairs):
        for uvloop in (False, True):
            us = anyio.run(one_pass, args.url, args.tasks, backend_options={"use_uvloop": uvloop})
            print(f"{'uvloop ' if uvloop else 'asyncio'}: {us:5.1f} µs CPU per task")


if __name__ == "__main__":
    main()
