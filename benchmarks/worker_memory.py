"""Worker memory as users run it: ``agentexec run _cli_app:pool`` (see ``cli_pool.py``), one
worker process, agentexec's default settings (``--concurrency`` to change), activity on.

Prints the worker's RSS when idle after start-up, then after every ``--step`` no-op tasks up to
``--tasks`` (default 100,000): a leak shows as RSS that keeps growing step after step.

    uv run python benchmarks/worker_memory.py                    # Redis + PostgreSQL
    uv run python benchmarks/worker_memory.py --stack sqlite --tasks 20000
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import anyio
from _support import fresh_postgres, stack_parser
from cli_pool import Stack, Worker, drained, fill, producer, uptime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker_pids(session: int) -> list[int]:
    """The pool's worker processes: named ``agentexec:w<N>`` (``PR_SET_NAME``), in its session."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{entry}/stat") as f:
                sid = int(f.read().rsplit(")", 1)[1].split()[3])  # state, ppid, pgrp, session
        except (OSError, ValueError, IndexError):
            continue
        if sid == session and name.startswith("agentexec:w"):
            pids.append(int(entry))
    return pids


def main() -> None:
    parser = stack_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--step", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = fresh_postgres(args.pg_url) if args.stack != "sqlite" else None
        pg_url = pg.__enter__() if pg else None
        try:
            stack = Stack(args.stack, args.redis_url, pg_url, Path(tmp))
            env = stack.fresh()
            with producer(env):
                worker = Worker(env, 1, args.concurrency, Path(tmp) / "worker.log")
                try:
                    deadline = time.monotonic() + 60
                    while not (pids := worker_pids(worker.proc.pid)):
                        if time.monotonic() > deadline:
                            raise SystemExit("no worker process appeared within 60 s")
                        time.sleep(0.2)
                    time.sleep(3)  # settled after start-up
                    (pid,) = pids
                    print(f"{args.stack}: worker pid {pid} idle after start-up: {rss_mb(pid):.1f} MB ({uptime()})")
                    done = 0
                    while done < args.tasks:
                        count = min(args.step, args.tasks - done)
                        started = time.monotonic()
                        anyio.run(fill, count)
                        anyio.run(drained)
                        done += count
                        print(f"  after {done:>7,} tasks: {rss_mb(pid):.1f} MB "
                              f"({count / (time.monotonic() - started):,.0f} tasks/s incl. enqueue; {uptime()})",
                              flush=True)
                    time.sleep(3)
                    print(f"  idle again: {rss_mb(pid):.1f} MB")
                finally:
                    worker.stop()
        finally:
            if pg:
                pg.__exit__(None, None, None)


if __name__ == "__main__":
    main()
