"""Chaos soak (issue #13): tasks of 20-80 ms on a pool of 4 workers while one random process of
the pool (a worker, the fork server or its standby) is SIGKILLed every 0.5 s, 40 times.

    uv run python benchmarks/chaos.py --stack redis     # Redis queue, SQLite activity
    uv run python benchmarks/chaos.py --stack sqlite    # the embedded SQLite stack

The pool runs as a real program (``chaos_app.py``) in its own session; this process enqueues,
kills and checks. After the kills and the settling, it reports: whether the pool still runs,
each activity's final status (all should be COMPLETE), the duplicate runs (a task started more
than once) against the kills, and how many of those reruns no worker kill explains (should be
0: killing the fork server or its standby costs no run). Linux only (pool processes are found by
their names, ``agentexec:...``, in /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO

import agentexec as ax
from agentexec.config import CONF
from agentexec.runtime import build_backends, set_backends
from pydantic import BaseModel

HERE = Path(__file__).resolve().parent


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0


def children(pid: int) -> list[int]:
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return found


def name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def victims(pool_pid: int) -> list[tuple[int, str]]:
    """The pool's processes and their roles; a process just forked still bears its forker's
    name for an instant, so a fork server is a direct child of the pool process."""
    found: list[tuple[int, str]] = []
    todo = [pool_pid]
    while todo:
        for child in children(todo.pop()):
            todo.append(child)
            comm = name(child)
            if comm.startswith("agentexec:w"):
                found.append((child, "worker"))
            elif comm == "agentexec:spare":
                found.append((child, "standby"))
            elif comm == "agentexec:fork" and child in children(pool_pid):
                found.append((child, "fork server"))
    return found


def start_pool(args: argparse.Namespace, workdir: Path, db: str, queue: str, log: IO[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")} | {
        "AGENTEXEC_DATABASE_URL": db, "AGENTEXEC_NUM_WORKERS": str(args.workers),
        "AGENTEXEC_LEASE_TIMEOUT": str(args.lease), "CHAOS_QUEUE": queue,
        "CHAOS_JOURNAL": str(workdir / "journal.jsonl"), "PYTHONUNBUFFERED": "1",
    }
    if args.stack == "redis":
        env["AGENTEXEC_REDIS_URL"] = args.redis_url
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "chaos_app.py")], env=env, cwd=HERE, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )
    deadline = time.monotonic() + 60
    while "Pool started" not in (workdir / "pool.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the pool did not start:\n{(workdir / 'pool.log').read_text()}")
        time.sleep(0.05)
    return proc


async def soak(args: argparse.Namespace, workdir: Path, proc: subprocess.Popen[str], queue: str) -> bool:
    rng = random.Random(args.seed)
    jobs = [("job", Job(label=f"t{i}", seconds=rng.uniform(0.02, 0.08))) for i in range(args.tasks)]
    tasks = await ax.enqueue_many(jobs, queue_name=queue)  # type: ignore[arg-type]
    started = time.monotonic()
    kills: list[tuple[int, str]] = []
    for _ in range(args.kills):
        await asyncio.sleep(args.interval)
        pid, role = rng.choice(victims(proc.pid))
        try:
            os.kill(pid, signal.SIGKILL)
            kills.append((pid, role))
        except ProcessLookupError:
            pass
    try:
        await ax.gather(*tasks, timeout=args.settle)
        finished = f"all {len(tasks)} results in {time.monotonic() - started:.1f}s"
    except Exception as exc:
        finished = f"not all results within {args.settle}s ({type(exc).__name__})"
    await asyncio.sleep(args.lease * 2)  # let reaps and late writes settle
    running = proc.poll() is None
    final: Counter[str] = Counter()
    for task in tasks:
        detail = await ax.activity.adetail(task.agent_id)
        final[detail.status.value if detail else "missing"] += 1
    runs: dict[str, list[int]] = {}
    for line in (workdir / "journal.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            runs.setdefault(event["label"], []).append(event["pid"])
    killed_workers = {pid for pid, role in kills if role == "worker"}
    duplicates = sum(len(pids) - 1 for pids in runs.values())
    unexplained = sum(
        len(pids) - 1 for pids in runs.values() if len(pids) > 1 and not set(pids[:-1]) <= killed_workers
    )
    print(
        f"{args.stack}, seed {args.seed}: {finished}; pool still running: {running}\n"
        f"  kills: {dict(Counter(role for _, role in kills))} ({len(kills)})\n"
        f"  final activity status: {dict(final)}\n"
        f"  duplicate runs: {duplicates} for {len(kills)} kills; not explained by a worker kill: {unexplained}"
    )
    return running and final == Counter({"COMPLETE": len(tasks)}) and duplicates <= len(kills) and not unexplained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between kills")
    parser.add_argument("--lease", type=float, default=2.0, help="lease timeout, seconds")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to wait for every result")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentexec-chaos-") as tmp:
        workdir = Path(tmp)
        db = f"sqlite:///{workdir / 'activity.db'}"
        transport = args.redis_url if args.stack == "redis" else db
        CONF.lease_timeout = args.lease
        backends = build_backends({"queue": transport, "results": transport, "events": transport, "activity": db})
        ax.Base.metadata.create_all(backends.activity.engine)  # type: ignore[attr-defined]
        set_backends(backends)
        queue = f"chaos_{uuid.uuid4().hex[:8]}"
        with open(workdir / "pool.log", "w") as log:
            proc = start_pool(args, workdir, db, queue, log)
            try:
                ok = asyncio.run(soak(args, workdir, proc, queue))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                set_backends(None)
        if not ok:
            print((workdir / "pool.log").read_text()[-4000:])
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
