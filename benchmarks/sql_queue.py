"""Throughput and wake-up latency of the embedded SQL queue, on SQLite and on PostgreSQL.

    uv run python benchmarks/sql_queue.py                       # both databases
    uv run python benchmarks/sql_queue.py --only sqlite --tasks 5000 --trials 300

Scenarios (tasks/s, through the async API, ~150-byte envelopes):
- push: ``queue.push`` one at a time;
- push_many: batches of 1,000 in one transaction;
- take+ack: ``reserve`` + ``ack`` of queued tasks by one consumer;
- take+ack x4: four consumers of one process racing over the same queue;
- push+take+ack: a producer and a consumer in lockstep, one task at a time.
Latency (ms from the push's commit to ``reserve`` returning, consumer idle in ``reserve``):
- same process: the in-process wake-up;
- other process: a subprocess pushes at random intervals (0-300 ms) — NOTIFY on PostgreSQL,
  the shared poll (5 ms doubling to 100 ms while idle) on SQLite.

SQLite runs on a fresh temporary file; PostgreSQL in a fresh database created (and dropped) on
the server of ``--pg-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _support import PG_URL, envelopes, fresh_postgres, rate
from agentexec_sqlalchemy.transport.queue import SQLQueue

BATCH = 1000


async def throughput(queue: SQLQueue, tasks: int) -> None:
    name = f"bench-{uuid.uuid4().hex[:8]}"

    async def push_each() -> None:
        for env in envelopes(name, tasks):
            await queue.push(env)

    async def push_batches() -> None:
        for start in range(0, tasks, BATCH):
            await queue.push_many(envelopes(name, min(BATCH, tasks - start)))

    async def take_all(consumer: str) -> int:
        taken = 0
        while (lease := await queue.reserve(name, consumer, 0)) is not None:
            await queue.ack(lease)
            taken += 1
        return taken

    async def take_concurrently() -> None:
        counts = await asyncio.gather(*(take_all(f"c{i}") for i in range(4)))
        assert sum(counts) == tasks, counts

    async def lockstep() -> None:
        for env in envelopes(name, tasks):
            await queue.push(env)
            lease = await queue.reserve(name, "c", 1.0)
            assert lease is not None
            await queue.ack(lease)

    await rate("push", tasks, push_each())
    await rate("take+ack", tasks, take_all("c"))
    await rate("push_many", tasks, push_batches())
    await rate("take+ack x4", tasks, take_concurrently())
    await rate("push+take+ack", tasks, lockstep())


PRODUCER = """
import asyncio, random, sys, time, uuid
from agentexec.task import Envelope
from agentexec_sqlalchemy.transport.queue import SQLQueue

url, name, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main() -> None:
    queue = SQLQueue(url)
    queue.ensure_schema()
    await asyncio.sleep(1.0)  # let the consumer settle into its wait
    for _ in range(trials):
        await asyncio.sleep(random.uniform(0, 0.3))
        env = Envelope(agent_id=uuid.uuid4(), task_name="bench", context={}, queue_name=name)
        await queue.push(env.model_copy(update={"enqueued_at": time.time()}))

asyncio.run(main())
"""


def summary(label: str, delays: list[float]) -> None:
    ms = sorted(d * 1000 for d in delays)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    print(f"  {label:<16} median {statistics.median(ms):6.2f} ms   p95 {p(0.95):6.2f}   "
          f"p99 {p(0.99):6.2f}   max {ms[-1]:6.2f}   ({len(ms)} trials)")


async def latency(queue: SQLQueue, url: str, trials: int) -> None:
    name = f"lat-{uuid.uuid4().hex[:8]}"
    delays: list[float] = []

    async def consume(count: int, out: list[float]) -> None:
        for _ in range(count):
            lease = await queue.reserve(name, "idle", 30.0)
            assert lease is not None
            out.append(time.time() - lease.envelope.enqueued_at)
            await queue.ack(lease)

    async def produce(count: int) -> None:
        for _ in range(count):
            await asyncio.sleep(0.02)
            env = envelopes(name, 1)[0]
            await queue.push(env.model_copy(update={"enqueued_at": time.time()}))

    await asyncio.gather(consume(trials, delays), produce(trials))
    summary("same process", delays)

    remote: list[float] = []
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PRODUCER, url, name, str(trials))
    await consume(trials, remote)
    await asyncio.wait_for(proc.wait(), 60)
    summary("other process", remote)


async def bench(label: str, url: str, tasks: int, trials: int) -> None:
    print(f"{label}  ({url})")
    queue = SQLQueue(url)
    queue.ensure_schema()
    await throughput(queue, tasks)
    await latency(queue, url, trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(bench("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.tasks, args.trials))
    if args.only != "sqlite":
        with fresh_postgres(args.pg_url) as url:
            asyncio.run(bench("PostgreSQL", url, args.tasks, args.trials))
    print(json.dumps({"note": "figures depend on load; run on a quiet machine"}))


if __name__ == "__main__":
    main()
