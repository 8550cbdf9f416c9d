"""The activity store goes down under load: backpressure, not drift (issue 14).

    uv run python benchmarks/outage.py                   # 3,000 x 10 ms, 2 workers x 8 slots, 30 s
    uv run python benchmarks/outage.py --outage 46 --kill-at 10

A real pool (``tests/e2e/app_pool.py``, run as a user runs it): Redis queue/results/events (the
shared Redis, never stopped), activity on a *private* PostgreSQL cluster the script creates,
stops and starts (``tests/e2e/servers.py``: it needs PostgreSQL's binaries and, as root, the
``postgres`` user). ``--tasks`` tasks of ``--seconds`` each are queued; once ``--warmup`` have
started, PostgreSQL is stopped (``pg_ctl stop -m fast``) for ``--outage`` seconds, and
``--kill-at`` seconds into the outage one worker is SIGKILLed. Reported:

- tasks started while the store was down (what ran that could not be recorded), and the
  queue's in-flight count at the kill;
- duplicate runs (handler starts beyond one per task): the issue's bound is the in-flight count;
- lost tasks (no result, or an activity not COMPLETE): must be 0;
- how many times the pool's log says the store is down / back, per worker;
- how long after PostgreSQL is back every task is finished.

``tests/e2e/test_pool_outages.py`` runs a short version (400 tasks, 6 s) in the suite.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import anyio
from _support import REDIS_URL
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(E2E))

from e2e_support import PoolProcess, python_app  # noqa: E402
from servers import PrivatePostgres  # noqa: E402


class Job(BaseModel):
    """The context of app_pool's ``job`` task."""

    label: str = ""
    seconds: float = 0.0


def said(pool: PoolProcess, pattern: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for line in pool.lines:
        if re.search(pattern, line):
            tag = re.search(r"\[Worker \d+\]", line)
            found[tag.group(0) if tag else "pool"] += 1
    return found


async def run(args: argparse.Namespace) -> int:
    import agentexec as ax
    from agentexec.activity.status import Status
    from agentexec.config import CONF
    from agentexec.runtime import build_backends, set_backends

    pg = PrivatePostgres().start()
    pool: PoolProcess | None = None
    try:
        queue_name = f"outage_{uuid.uuid4().hex[:8]}"
        urls = {"queue": args.redis_url, "results": args.redis_url, "events": args.redis_url, "activity": pg.url}
        CONF.lease_timeout = args.lease
        backends = build_backends(urls)  # type: ignore[arg-type]
        ax.Base.metadata.create_all(backends.activity.engine)  # type: ignore[attr-defined]
        set_backends(backends)
        env = {
            "AGENTEXEC_DATABASE_URL": pg.url, "AGENTEXEC_REDIS_URL": args.redis_url,
            "E2E_QUEUE": queue_name, "AGENTEXEC_NUM_WORKERS": str(args.workers),
            "AGENTEXEC_WORKER_CONCURRENCY": str(args.concurrency),
            "AGENTEXEC_LEASE_TIMEOUT": str(args.lease),
        }
        journal = Path(tempfile.mkdtemp(prefix="agentexec-outage-")) / "journal.jsonl"
        pool = PoolProcess.start(python_app(), env=env, journal=journal)
        tasks = []
        for start in range(0, args.tasks, 1000):
            count = min(1000, args.tasks - start)
            tasks += await ax.enqueue_many(
                [("job", Job(label=f"t{start + i}", seconds=args.seconds)) for i in range(count)],
                queue_name=queue_name,
            )
        pool.wait_event("start", args.warmup, timeout=120)
        pg.stop("fast")
        down_at = time.time()
        print(f"PostgreSQL stopped; {sum(e['event'] == 'start' for e in pool.events())} task(s) had started")
        await anyio.sleep(args.kill_at)
        in_flight = (await backends.queue.stats(queue_name)).in_flight
        waiting = await backends.queue.length(queue_name)
        victim = pool.workers()[0]
        os.kill(victim, signal.SIGKILL)
        print(f"{args.kill_at:g} s into the outage: {in_flight} in flight, {waiting} waiting; worker {victim} SIGKILLed")
        await anyio.sleep(max(0.0, args.outage - args.kill_at))
        restart_at = time.time()  # "during the outage": before PostgreSQL is started again
        pg.start()
        up_at = time.time()
        print(f"PostgreSQL started again after {up_at - down_at:.1f} s")
        results = await ax.gather(*tasks, timeout=600)
        done_at = time.time()

        events = pool.events()
        starts = Counter(e["label"] for e in events if e["event"] == "start")
        in_outage = [e for e in events if e["event"] == "start" and down_at + 0.5 < e["t"] < restart_at]
        duplicates = sum(n - 1 for n in starts.values())
        statuses: Counter[str] = Counter()
        for task in tasks:
            detail = await ax.activity.adetail(task.agent_id)
            statuses[detail.status.value if detail is not None else "missing"] += 1
        lost = args.tasks - statuses[Status.COMPLETE.value]
        wrong = sum(1 for i, value in enumerate(results) if value != f"t{i}")
        down = said(pool, r"the activity store \(SQLActivityStore\) is unreachable")
        back = said(pool, r"the activity store \(SQLActivityStore\) is reachable again")
        print(f"tasks started during the outage (after its first 0.5 s): {len(in_outage)}")
        print(f"duplicate runs: {duplicates} (in flight at the kill: {in_flight})")
        print(f"lost: {lost} (final statuses {dict(statuses)}; wrong results {wrong})")
        print(f"'store is down' lines per worker: {dict(down)}; 'back' lines: {dict(back)}")
        print(f"every task finished {done_at - up_at:.1f} s after PostgreSQL was back")
        code = pool.stop(timeout=60)
        if args.show:
            print("\n".join(line for line in pool.lines if "Processing task" not in line and "Task completed" not in line))
        pool = None
        ok = lost == 0 and wrong == 0 and duplicates <= in_flight and code == 0
        print("OK" if ok else "FAILED", f"(pool exit code {code})")
        return 0 if ok else 1
    finally:
        set_backends(None)
        if pool is not None and pool.proc.poll() is None:
            pool.kill()
        pg.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=0.01, help="length of each task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="slots per worker")
    parser.add_argument("--lease", type=float, default=30.0, help="lease timeout (s)")
    parser.add_argument("--warmup", type=int, default=200, help="tasks started before the outage")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds PostgreSQL is down")
    parser.add_argument("--kill-at", type=float, default=10.0, help="seconds into the outage of the kill")
    parser.add_argument("--show", action="store_true", help="print the pool's log (less the per-task lines)")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args))


if __name__ == "__main__":
    main()
