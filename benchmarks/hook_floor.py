"""The floor under every drain figure of ../shared/bench: its completion hook alone, no queue.

Every task of the shared bench ends with an ``INCR`` on Redis (``adapters/hooks.py``), whatever
the queue. This script runs only that: one process, its event loop (uvloop, as agentexec's
workers), ``--slots`` coroutines taking the next of ``--tasks`` numbers from an in-memory list
and awaiting one ``INCR`` each on a redis.asyncio client. Tasks/s here is what a one-process
worker could not exceed even if taking, tracking and finishing a task cost nothing; the CPU per
``INCR`` is what every worker's per-task CPU includes before any of its own work.

    uv run python benchmarks/hook_floor.py                      # 10 slots (agentexec's default)
    uv run python benchmarks/hook_floor.py --slots 32 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import redis.asyncio as aredis

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows, PyPy
    uvloop = None  # type: ignore[assignment]

REDIS_URL = os.environ.get("AXBENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "axbench:hook_floor"


async def run(tasks: int, slots: int) -> tuple[float, float]:
    """(tasks/s, CPU µs per INCR) of one run."""
    client = aredis.Redis.from_url(REDIS_URL)
    try:
        await client.incr(KEY)  # connected before the clock starts
        todo = iter(range(tasks))

        async def slot() -> None:
            for _ in todo:
                await client.incr(KEY)

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(slot() for _ in range(slots)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await client.delete(KEY)
    finally:
        await client.aclose()
    return tasks / wall, cpu / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    rates, cpus = [], []
    for _ in range(args.repeat):
        rate, cpu = runner(run(args.tasks, args.slots))
        rates.append(rate)
        cpus.append(cpu)
        print(f"{args.slots} slots: {rate:,.0f} INCR/s, {cpu:.0f} us of CPU per INCR")
    loop = "uvloop" if uvloop is not None else "asyncio"
    print(f"median of {args.repeat} ({loop}, {args.tasks:,} INCRs): {statistics.median(rates):,.0f}/s, "
          f"{statistics.median(cpus):.0f} us per INCR; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
