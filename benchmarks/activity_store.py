"""Activity store benchmark: write throughput and ``list()`` latency, SQLite and PostgreSQL.

    uv run python benchmarks/activity_store.py                 # everything
    uv run python benchmarks/activity_store.py --activities 2000 --list-size 20000

1. Throughput: for each activity, ``create`` + 3 ``update`` calls (the life of a task: queued,
   started, progress, complete), one transaction each, through the sync API; once from one
   thread and once from 8 threads (a worker pool's pattern); then the same through the batch
   calls (``acreate_many`` / ``aappend_many``, 100 activities per transaction). ``--metadata``:
   every activity is created with a tenant's metadata (on PostgreSQL the pair table's trigger
   runs for it, migration ax0007).
2. ``list()`` of a page of 50 over ``--list-size`` activities on PostgreSQL (goal: <= 20 ms):
   first page, a deep page, and filtered by status (a quarter of the rows each: the status is a
   column of the activity since migration ax0002, issue #20) / metadata (one tenant of 100, and
   one of 3: a third of the rows, issue #16's figure).

PostgreSQL runs in a fresh database created (and dropped) on the server of ``--pg-url``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import sqlalchemy as sa
from _support import PG_URL, fresh_postgres
from agentexec.activity.status import Status
from agentexec.backends import LogEntry
from agentexec_sqlalchemy.activity.models import Activity, ActivityLog, Base
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from agentexec_sqlalchemy.engine import create_engine

#: the activity row carries its status (agentexec-sqlalchemy 0.4 with migration ax0002); False
#: when this script measures an older checkout
WITH_STATUS = "status" in Activity.__table__.c


#: ``--metadata``: every activity is created with a tenant (the pair table's trigger runs)
METADATA = False


def tenant(n: int) -> dict[str, str] | None:
    return {"tenant": f"t{n % 100}", "org": f"org-{n % 3}"} if METADATA else None


def lifecycle(store: SQLActivityStore, n: int) -> None:
    agent_id = store.create("bench", "Waiting to start.", metadata=tenant(n))
    store.append(agent_id, "Task started.", Status.RUNNING, 0)
    store.append(agent_id, f"working on {n}", None, 50)
    store.append(agent_id, "Task completed successfully.", Status.COMPLETE, 100)


def throughput(store: SQLActivityStore, count: int, threads: int) -> float:
    """Activities per second (each = 1 create + 3 updates)."""
    per_thread = count // threads

    def run(offset: int) -> None:
        for n in range(offset, offset + per_thread):
            lifecycle(store, n)

    workers = [threading.Thread(target=run, args=(t * per_thread,)) for t in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - start)


def batched_throughput(store: SQLActivityStore, count: int, batch: int = 100) -> float:
    """Activities per second through the batch calls: per ``batch`` activities, one
    ``acreate_many`` and three ``aappend_many`` transactions."""

    async def run() -> None:
        for first in range(0, count, batch):
            ids = [uuid.uuid4() for _ in range(min(batch, count - first))]
            await store.acreate_many([(agent_id, "bench", "Waiting to start.", tenant(first + n))
                                      for n, agent_id in enumerate(ids)])
            for message, status, pct in (("Task started.", Status.RUNNING, 0), ("working", None, 50),
                                         ("Task completed successfully.", Status.COMPLETE, 100)):
                await store.aappend_many([LogEntry(a, message, status, pct) for a in ids])

    start = time.perf_counter()
    anyio.run(run)
    return count / (time.perf_counter() - start)


def seed(engine: sa.Engine, count: int) -> None:
    """``count`` activities with 3 logs each, bulk-inserted (fast setup, not what is measured)."""
    start = datetime.now(UTC) - timedelta(days=1)
    statuses = [Status.RUNNING, Status.COMPLETE, Status.ERROR, Status.QUEUED]
    with engine.begin() as conn:
        for first in range(0, count, 10_000):
            activities, logs = [], []
            for n in range(first, min(first + 10_000, count)):
                pk, at = uuid.uuid4(), start + timedelta(milliseconds=n)
                activities.append({
                    "id": pk, "agent_id": uuid.uuid4(), "agent_type": "seed", "created_at": at,
                    "updated_at": at, "metadata": {"tenant": f"t{n % 100}", "org": f"org-{n % 3}"},
                    # the latest log's, as every write keeps them
                    **({"status": statuses[n % 4], "percentage": 10} if WITH_STATUS else {}),
                })
                logs += [
                    {"activity_id": pk, "message": "queued", "status": Status.QUEUED,
                     "percentage": 0, "created_at": at},
                    {"activity_id": pk, "message": "started", "status": Status.RUNNING,
                     "percentage": 10, "created_at": at + timedelta(microseconds=1)},
                    {"activity_id": pk, "message": "last", "status": statuses[n % 4],
                     "percentage": None, "created_at": at + timedelta(microseconds=2)},
                ]
            conn.execute(sa.insert(Activity.__table__), activities)
            conn.execute(sa.insert(ActivityLog.__table__), logs)
    # what autovacuum does to a table of that age: statistics and the visibility map
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def timed_ms(call: Callable[[], object], repeat: int = 30) -> tuple[float, float]:
    call()  # warm caches and the statement cache
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--list-size", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--only", choices=("throughput", "list"), help="run one part")
    parser.add_argument("--metadata", action="store_true",
                        help="throughput: create every activity with tenant metadata")
    args = parser.parse_args()
    global METADATA
    METADATA = args.metadata
    if args.only != "list":
        bench_throughput(args)
    if args.only != "throughput":
        bench_list(args)


def bench_throughput(args: argparse.Namespace) -> None:
    print(f"# throughput: {args.activities} activities x (create + 3 updates)"
          f"{', with tenant metadata' if args.metadata else ''}")
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres(args.pg_url) as pg_url:
        for label, url in (("sqlite file", f"sqlite:///{Path(tmp) / 'bench.db'}"), ("postgresql", pg_url)):
            engine = create_engine(url, pool_size=args.threads + 2)
            Base.metadata.create_all(engine)
            store = SQLActivityStore(engine)
            for threads in (1, args.threads):
                rate = throughput(store, args.activities, threads)
                print(f"{label:12} {threads:2} thread(s): {rate:8.0f} activities/s  "
                      f"({rate * 4:8.0f} calls/s)")
            rate = batched_throughput(store, args.activities)
            print(f"{label:12} batches of 100: {rate:8.0f} activities/s")
            engine.dispose()


def bench_list(args: argparse.Namespace) -> None:
    print(f"\n# list(): page of 50 over {args.list_size} activities (PostgreSQL), median / p95")
    with fresh_postgres(args.pg_url) as pg_url:
        engine = create_engine(pg_url)
        Base.metadata.create_all(engine)
        start = time.perf_counter()
        seed(engine, args.list_size)
        print(f"(seeded in {time.perf_counter() - start:.1f} s)")
        store = SQLActivityStore(engine)
        some_id = store.list(page=7, page_size=1).items[0].agent_id
        cases: dict[str, Callable[[], object]] = {
            "page 1": lambda: store.list(page=1, page_size=50),
            "page 100": lambda: store.list(page=100, page_size=50),
            "status=RUNNING": lambda: store.list(page_size=50, status=Status.RUNNING),
            "metadata tenant": lambda: store.list(page_size=50, metadata={"tenant": "t7"}),
            # 3 tenants, a third of the rows each: the filtered count is the cost
            "tenant of 3": lambda: store.list(page_size=50, metadata={"org": "org-1"}),
            "tenant of 3 p20": lambda: store.list(page=20, page_size=50, metadata={"org": "org-1"}),
            "tenant detail": lambda: store.detail(some_id, metadata={"org": "org-1"}),
            "detail": lambda: store.detail(some_id),
        }
        for label, call in cases.items():
            median, p95 = timed_ms(call)
            print(f"{label:16} {median:7.2f} ms  p95 {p95:7.2f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
