"""Chaos soak: a real pool keeps every promise while its processes are SIGKILLed at random.

    uv run python benchmarks/chaos.py --stack redis     # Redis queue/results/events, SQLite activity
    uv run python benchmarks/chaos.py --stack sqlite    # the embedded SQLite stack
    uv run python benchmarks/chaos.py --stack postgres  # everything on PostgreSQL (a fresh database)

A pool of ``--workers`` worker processes (``tests/e2e/app_pool.py``, run as a user runs it) gets
``--tasks`` tasks of 20-80 ms; every ``--interval`` seconds one random process of the pool other
than its main process (workers, the fork server, any helper) is SIGKILLed, ``--kills`` times.
After the queue settles, it checks what an operator relies on:

- the pool is still running (and then stops on SIGTERM, exit code 0);
- every activity is COMPLETE (none QUEUED, RUNNING or ERROR), every task has its result;
- no activity's log shows a transition the task did not make (nothing after its final line);
- nothing was dead-lettered that never ran;
- duplicate runs (handler starts beyond one per task) <= kills.

``--only main`` SIGKILLs the pool's main process instead (``--kills`` times, ``--interval`` apart;
say ``--kills 3 --interval 4``): one second later none of its processes may be alive (a worker
outliving its pool would hold leases no one reaps), and a fresh pool takes over; each kill may
cut off one run per worker, so the bound on duplicate runs is ``kills x workers``.

``tests/e2e/test_chaos.py`` runs a shorter version of the same soak in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(E2E))

from _support import fresh_postgres  # noqa: E402
from e2e_support import PoolProcess, children, process_name, python_app  # noqa: E402

FINAL = {"COMPLETE", "ERROR", "CANCELED"}


class Job(BaseModel):
    """The context of app_pool's ``job`` task."""

    label: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    stack: str
    tasks: int
    kills: int
    killed: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    missing_results: int = 0
    after_final: list[str] = field(default_factory=list)
    dead_never_ran: int = 0
    dead: int = 0
    starts: int = 0
    started_tasks: int = 0
    pool_alive: bool = False
    exit_code: int | None = None
    drain_seconds: float = 0.0
    settle_seconds: float = 0.0
    #: processes of a killed main process still alive a second after it (``--only main``)
    survivors: int = 0
    #: runs one kill may cut off (1, or the workers when the main process is killed)
    runs_per_kill: int = 1

    @property
    def duplicates(self) -> int:
        return self.starts - self.started_tasks

    def problems(self) -> list[str]:
        found = []
        if not self.pool_alive:
            found.append("the pool stopped")
        if self.exit_code != 0:
            found.append(f"the pool exited with {self.exit_code} on SIGTERM")
        bad = {s: n for s, n in self.statuses.items() if s != "COMPLETE"}
        if bad:
            found.append(f"activities not COMPLETE: {bad}")
        if self.missing_results:
            found.append(f"{self.missing_results} task(s) without a result")
        if self.after_final:
            found.append(f"{len(self.after_final)} log(s) go on after a final line: {self.after_final[:3]}")
        if self.dead_never_ran:
            found.append(f"{self.dead_never_ran} task(s) dead-lettered that never ran")
        if self.duplicates > self.kills * self.runs_per_kill:
            found.append(f"{self.duplicates} duplicate runs for {self.kills} kills")
        if self.survivors:
            found.append(f"{self.survivors} process(es) outlived their killed main process by 1 s")
        return found

    def line(self) -> str:
        return (
            f"{self.stack:<7} tasks={self.tasks} kills={self.kills} ({dict(self.killed)}) "
            f"statuses={dict(self.statuses)} duplicates={self.duplicates} dead={self.dead} "
            f"dead_never_ran={self.dead_never_ran} after_final={len(self.after_final)} "
            f"missing_results={self.missing_results} pool_alive={self.pool_alive} "
            f"exit={self.exit_code} drain={self.drain_seconds:.1f}s settle={self.settle_seconds:.1f}s"
            + (f" survivors={self.survivors}" if self.killed["main"] else "")
        )


def _kill_main(pool: PoolProcess, report: Report, env: dict[str, str], journal: Path) -> PoolProcess:
    """SIGKILL the pool's main process; count its processes alive a second later; start a
    fresh pool (as a supervisor such as systemd would)."""
    family = pool_processes(pool.proc.pid)
    os.kill(pool.proc.pid, signal.SIGKILL)  # the main process alone, not its process group
    pool.proc.wait(10)
    report.killed["main"] += 1
    report.runs_per_kill = max(report.runs_per_kill, int(env["AGENTEXEC_NUM_WORKERS"]))
    time.sleep(1.0)
    report.survivors += sum(1 for pid in family if _alive(pid))
    return PoolProcess.start(python_app(), env=env, journal=journal)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def pool_processes(main_pid: int) -> dict[int, str]:
    """Every descendant of the pool's main process, with its role from its name
    (``agentexec:w<N>`` workers, ``agentexec:fork`` the fork server, ``agentexec:spare`` its
    standby)."""
    found: dict[int, str] = {}
    frontier = [main_pid]
    while frontier:
        for child in children(frontier.pop()):
            name = process_name(child)
            role = {"agentexec:fork": "fork server", "agentexec:spare": "standby"}.get(
                name, "worker" if name.startswith("agentexec:w") else name
            )
            found[child] = role
            frontier.append(child)
    return found


def run(
    stack: str,
    *,
    tasks: int = 2000,
    workers: int = 4,
    kills: int = 40,
    interval: float = 0.5,
    seed: int | None = None,
    settle_timeout: float = 180.0,
    workdir: Path | None = None,
    redis_url: str = "redis://127.0.0.1:6379/0",
    only: str | None = None,
    database_url: str | None = None,
) -> Report:
    """``database_url``: the activity store's (and, on the ``postgres`` stack, the transport's)
    database; a new SQLite file by default."""
    rng = random.Random(seed)
    tmp = Path(workdir or tempfile.mkdtemp(prefix="agentexec-chaos-"))
    database_url = database_url or f"sqlite:///{tmp / 'chaos.db'}"
    if not database_url.startswith("sqlite"):
        import agentexec as ax

        ax.Base.metadata.create_all(sa.create_engine(database_url))
    queue = f"chaos_{uuid.uuid4().hex[:8]}"
    env = {
        "AGENTEXEC_DATABASE_URL": database_url,
        "AGENTEXEC_NUM_WORKERS": str(workers),
        # one slot each, as the soak was defined: a killed worker then cuts off at most one
        # running task, and "duplicate runs <= kills" is the bound (with N slots it is N x kills)
        "AGENTEXEC_WORKER_CONCURRENCY": "1",
        "AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT": "20",
        "E2E_QUEUE": queue,
    }
    if stack == "redis":
        env["AGENTEXEC_REDIS_URL"] = redis_url
    journal = tmp / "journal.jsonl"
    report = Report(stack, tasks, kills)

    # the producer: this process, on the same backends
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import agentexec as ax
    import anyio
    from agentexec.runtime import build_backends, set_backends

    pool = PoolProcess.start(python_app(), env=env, journal=journal)
    try:
        transport = redis_url if stack == "redis" else database_url
        # explicit URLs: CONF may have been read before this function set the environment
        backends = build_backends(
            {"queue": transport, "results": transport, "events": transport, "activity": database_url}
        )
        set_backends(backends)
        engine = sa.create_engine(database_url)

        items = [("job", Job(label=str(n), seconds=rng.uniform(0.02, 0.08))) for n in range(tasks)]
        started = time.monotonic()
        queued: list[Any] = anyio.run(lambda: ax.enqueue_many(items, queue_name=queue))
        agent_ids = [t.agent_id for t in queued]

        for _ in range(kills):
            time.sleep(interval)
            if only == "main":
                pool = _kill_main(pool, report, env, journal)
                continue
            victims = pool_processes(pool.proc.pid)
            if only is not None:
                victims = {pid: role for pid, role in victims.items() if role == only}
            if not victims:
                continue
            pid = rng.choice(sorted(victims))
            try:
                os.kill(pid, signal.SIGKILL)
                report.killed[victims[pid]] += 1
            except ProcessLookupError:
                pass
        report.pool_alive = pool.proc.poll() is None

        deadline = time.monotonic() + settle_timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline and pool.proc.poll() is None:
            statuses = latest_statuses(engine)
            if sum(s in FINAL for s in statuses.values()) >= tasks:
                break
            time.sleep(0.5)
        report.drain_seconds = time.monotonic() - started
        time.sleep(1.0)  # anything that would wrongly write after a final line has its chance
        report.settle_seconds = time.monotonic() - started
        report.pool_alive = report.pool_alive and pool.proc.poll() is None
        statuses = latest_statuses(engine)
        report.statuses = Counter(statuses.get(str(a), "MISSING") for a in agent_ids)
        report.after_final = lines_after_final(engine)

        async def results() -> int:
            missing = 0
            for a in agent_ids:
                if await backends.results.get(a) is None:
                    missing += 1
            return missing

        report.missing_results = anyio.run(results)
        dead = anyio.run(lambda: backends.queue.dead_letters(queue, 10_000))
        events = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()] if journal.exists() else []
        starts = Counter(e["agent_id"] for e in events if e["event"] == "start")
        report.starts = sum(starts.values())
        report.started_tasks = len(starts)
        report.dead = len(dead)
        report.dead_never_ran = sum(
            1 for d in dead if d.envelope is not None and str(d.envelope.agent_id) not in starts
        )
        report.exit_code = pool.stop(signal.SIGTERM, timeout=60)
        anyio.run(backends.aclose)
        engine.dispose()
    finally:
        if pool.proc.poll() is None:
            pool.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return report


def latest_statuses(engine: sa.Engine) -> dict[str, str]:
    """agent_id -> the status of its latest log line (by time, then id), as the store derives it."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.agent_id, l.status FROM agentexec_activity a JOIN agentexec_activity_log l "
            "ON l.activity_id = a.id ORDER BY l.created_at, l.id"
        )).all()
    latest: dict[str, str] = {}
    for agent_id, status in rows:
        latest[str(uuid.UUID(str(agent_id)))] = str(status)
    return latest


def lines_after_final(engine: sa.Engine) -> list[str]:
    """Activities whose log has any line after a COMPLETE/ERROR/CANCELED one; the log of the
    first three is printed (time, status, message)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.agent_id, l.status, l.created_at, l.message FROM agentexec_activity a "
            "JOIN agentexec_activity_log l ON l.activity_id = a.id ORDER BY a.agent_id, l.created_at, l.id"
        )).all()
    bad: list[str] = []
    ended: set[str] = set()
    logs: dict[str, list[str]] = {}
    for agent_id, status, created_at, message in rows:
        key = str(agent_id)
        logs.setdefault(key, []).append(f"    {created_at} {status} {message}")
        if key in ended and key not in bad:
            bad.append(key)
        if str(status) in FINAL:
            ended.add(key)
    for key in bad[:3]:
        print(f"  the log of {key}:", *logs[key], sep="\n")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["redis", "sqlite", "postgres"], default="redis")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="postgres stack: a fresh database is made next to this one per run")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", choices=["worker", "fork server", "standby", "main"], default=None,
                        help="kill only processes of this role (main: the pool's main process, then "
                             "start a fresh pool)")
    args = parser.parse_args()
    failed = False
    for n in range(args.runs):
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(fresh_postgres(args.pg_url)) if args.stack == "postgres" else None
            report = run(
                args.stack, tasks=args.tasks, workers=args.workers, kills=args.kills,
                interval=args.interval, seed=None if args.seed is None else args.seed + n, only=args.only,
                database_url=database_url,
            )
        print(report.line(), flush=True)
        for problem in report.problems():
            print(f"  PROBLEM: {problem}", flush=True)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
