"""A real ``ax.Pool`` on the embedded SQL backends: drain throughput and enqueue→start latency.

    uv run python benchmarks/sql_pool.py                           # SQLite and PostgreSQL
    uv run python benchmarks/sql_pool.py --only sqlite --tasks 5000 --workers 2 --concurrency 4

1. Drain: ``--tasks`` no-op tasks enqueued with ``ax.enqueue_many`` while the pool runs, timed
   until ``ax.gather`` has every result (each task: lease, activity RUNNING/COMPLETE, result,
   ack — the whole lifecycle, not just the queue).
2. Enqueue→start: ``--trials`` single tasks enqueued 50 ms apart into an idle pool; the handler
   returns how long after the ``ax.enqueue`` call it started.

Everything (queue, results, events, activity) lives on one database: a fresh SQLite file, or a
fresh PostgreSQL database created (and dropped) on the server of ``--pg-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import agentexec as ax
import sqlalchemy as sa
from _support import PG_URL, fresh_postgres
from agentexec.config import CONF
from agentexec.runtime import set_backends
from pydantic import BaseModel


class Noop(BaseModel):
    sent_at: float = 0.0




async def drain(tasks: int, queue: str) -> float:
    started = time.perf_counter()
    queued = []
    for start in range(0, tasks, 500):
        queued += await ax.enqueue_many([("noop", Noop())] * min(500, tasks - start), queue_name=queue)
    await ax.gather(*queued, timeout=600)
    return time.perf_counter() - started


async def latency(trials: int, queue: str) -> list[float]:
    delays = []
    for _ in range(trials):
        task = await ax.enqueue("noop", Noop(sent_at=time.time()), queue_name=queue)
        delays.append(float(await ax.get_result(task, timeout=30)))
        await asyncio.sleep(0.05)
    return delays


def bench(label: str, url: str, args: argparse.Namespace) -> None:
    CONF.num_workers = args.workers
    CONF.worker_concurrency = args.concurrency
    engine = sa.create_engine(url)
    ax.Base.metadata.create_all(engine)
    pool = ax.Pool(engine=engine, database_url=url, queue_name=f"bench_{uuid.uuid4().hex[:8]}")

    @pool.task("noop")
    async def noop(agent_id: uuid.UUID, context: Noop) -> float:
        return time.time() - context.sent_at if context.sent_at else 0.0

    pool.start()
    try:
        queue = pool.queue_name
        asyncio.run(latency(3, queue))  # warm up: workers started and connected
        elapsed = asyncio.run(drain(args.tasks, queue))
        delays = sorted(d * 1000 for d in asyncio.run(latency(args.trials, queue)))
    finally:
        pool.shutdown(timeout=10)
        set_backends(None)
        engine.dispose()
    print(f"{label}: {args.workers} worker(s) x {args.concurrency} slot(s)")
    print(f"  drain            {args.tasks / elapsed:>8,.0f} tasks/s  ({args.tasks} no-op tasks in {elapsed:.2f}s)")
    print(f"  enqueue->start   median {statistics.median(delays):.1f} ms   "
          f"p95 {delays[int(0.95 * len(delays))]:.1f}   max {delays[-1]:.1f}   ({len(delays)} trials)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            bench("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", args)
    if args.only != "sqlite":
        with fresh_postgres(args.pg_url) as url:
            bench("PostgreSQL", url, args)


if __name__ == "__main__":
    main()
