"""System calls per task of a worker as users run it (``agentexec run``, defaults), by ``strace -c``.

On this kind of machine the CPU time per task of the same code moves by ±30 % from one run to
the next (``cli_pool.py --only cpu``: 254 and 449 us on PostgreSQL, minutes apart), so a change
worth 5 % cannot be seen in it. The calls a worker makes per task move far less: they count
the thread hand-offs (``futex``), SQLite's page writes (``pwrite64``), socket round trips
(``sendto``/``recvfrom``, ``read``/``write``) and wake-ups (``epoll_pwait``) that a change adds
or removes, whatever else the machine is doing.

The scenario is ``cli_pool.py --only cpu``'s: a 1-process pool started by ``agentexec run`` with
the stack's ``AGENTEXEC_*`` only, warm and idle; then every thread of its worker process is
traced (``strace -c -f``: counts only, not the fork server or the main process) while
``--tasks`` tasks are queued and drained. strace slows the worker several times over: read the
counts, not the time.

    uv run python benchmarks/syscalls.py --stack sqlite --hook
    uv run python benchmarks/syscalls.py --stack postgres --stack redis --tasks 5000 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import agentexec as ax
import anyio
from _support import PG_URL, REDIS_URL
from cli_pool import (
    WAIT,
    Stack,
    Worker,
    drained,
    fill,
    producer,
    session_processes,
    settings_of,
    stacks,
    uptime,
)

#: the calls printed one by one (the rest are summed)
SHOWN = ("futex", "flock", "epoll_pwait", "epoll_wait", "pwrite64", "pread64", "fcntl", "write", "read",
         "sendto", "recvfrom", "getpid", "clock_nanosleep")


def worker_threads(session: int) -> list[int]:
    """Every thread of the pool's worker processes (``agentexec:w<N>``; not its main process,
    fork server or standby), found by the pool's session."""
    tids: list[int] = []
    for entry, _ in session_processes(session):
        try:
            if (entry / "comm").read_text().startswith("agentexec:w"):
                tids += [int(t.name) for t in (entry / "task").iterdir()]
        except (OSError, ValueError):
            continue
    return tids


def parse(report: str) -> dict[str, int]:
    """``strace -c``'s table: calls per system call."""
    calls: dict[str, int] = {}
    for line in report.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and not line.startswith("100.00"):
            # % time, seconds, usecs/call, calls, [errors], syscall
            calls[parts[-1]] = int(parts[3])
    return calls


def measure(stack: Stack, count: int, out: Path, workers: int = 1) -> dict[str, int]:
    from _cli_app import Job

    env = stack.fresh()
    with producer(env):
        worker = Worker(env, workers, None, out.with_suffix(".log"))
        try:
            async def warm() -> None:
                await ax.get_result(await ax.enqueue("noop", Job()), timeout=WAIT)
                await anyio.sleep(0.5)

            anyio.run(warm)
            tids = worker_threads(worker.proc.pid)
            if not tids:
                raise SystemExit("no worker process found (agentexec:w<N>)")
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out),
                                       *[arg for tid in tids for arg in ("-p", str(tid))]],
                                      stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached to every thread
            tasks = anyio.run(fill, count)
            anyio.run(drained)
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            anyio.run(lambda: ax.gather(*tasks, timeout=WAIT))
        finally:
            worker.stop()
    return parse(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["redis", "sqlite", "postgres"], action="append")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (all traced, counts summed)")
    parser.add_argument("--hook", action="store_true",
                        help="each task ends with an INCR on Redis, as ../shared/bench's tasks do")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an AGENTEXEC_* setting for the worker and the producer (repeatable)")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    if args.hook:
        os.environ["AXBENCH_HOOK_REDIS"] = args.redis_url
    print(f"system calls per task of the {args.workers} worker process(es) ({args.tasks:,} tasks, agentexec run, defaults"
          f"{', --hook' if args.hook else ''}); {uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        for stack in stacks(args.stack or ["sqlite"], args.redis_url, args.pg_url, Path(tmp), settings_of(args.set)):
            for run in range(args.repeat):
                calls = measure(stack, args.tasks, Path(tmp) / f"strace-{stack.name}-{run}.txt", args.workers)
                total = sum(calls.values())
                shown = ", ".join(f"{k} {calls[k] / args.tasks:.1f}" for k in SHOWN if k in calls)
                print(f"{stack.name:<8} all {total / args.tasks:.1f}: {shown}", flush=True)


if __name__ == "__main__":
    main()
