"""Start-up cost, as a user pays it: ``import agentexec``, and ``agentexec run app:pool`` until
the first task's handler starts.

    uv run python benchmarks/startup.py [--runs 7] [--redis URL]

1. ``import agentexec`` in a fresh interpreter: the median of ``--runs`` wall-clock runs minus
   the median of an empty interpreter (``python -c pass``), and ``-X importtime``'s own total.
2. ``agentexec run app:pool`` on the embedded default (a fresh SQLite file in a temporary
   directory, a task already queued): from spawning the command to the handler's first line
   (the handler writes ``time.time()`` to a file). ``--redis`` runs the same on Redis.

Measured as users run it, with bytecode caches: an interpreter with PYTHONDONTWRITEBYTECODE
set (this machine's default) compiles every module from source on every start, which costs more
than everything measured here; the benchmark unsets it for its children and warms up once
(writing the ``__pycache__`` directories, as a first run after ``pip install`` does).

Every wait is bounded; each run gets a fresh directory and database.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = '''
import os, time
from uuid import UUID
import agentexec as ax
from pydantic import BaseModel

pool = ax.Pool()


class Ping(BaseModel):
    n: int = 0


@pool.task("ping")
async def ping(agent_id: UUID, context: Ping) -> int:
    with open(os.environ["STARTUP_MARK"], "a") as f:
        f.write(f"{time.time()}\\n")
    return context.n
'''

ENQUEUE = '''
import os
import agentexec as ax
if os.environ.get("AGENTEXEC_DATABASE_URL"):  # not the embedded default: create its tables
    from sqlalchemy import create_engine
    ax.Base.metadata.create_all(create_engine(os.environ["AGENTEXEC_DATABASE_URL"]))
import anyio, app
anyio.run(ax.enqueue, "ping", app.Ping(n=1))
'''


#: set by --pythonpath: source directories put first (to measure another checkout)
PYTHONPATH: list[str] = []


#: what a producer loads before its first enqueue (names are imported on first use)
PRODUCER = "import agentexec as ax\nax.enqueue, ax.get_result, ax.CONF.queue_name, ax.activity.detail"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    paths = [*PYTHONPATH, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=60, env=_env())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_figures(runs: int) -> dict[str, float]:
    empty = wall([sys.executable, "-c", "pass"], runs)
    full = wall([sys.executable, "-c", "import agentexec"], runs)
    totals = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import agentexec"],
            capture_output=True, text=True, timeout=60, env=_env(),
        ).stderr
        match = re.search(r"\|\s*(\d+) \| agentexec$", out, re.M)
        assert match, out[-500:]
        totals.append(int(match.group(1)) / 1e6)
    producer = wall([sys.executable, "-c", PRODUCER], runs)
    return {"import_wall": full - empty, "importtime_total": statistics.median(totals),
            "producer_wall": producer - empty}


def first_task(runs: int, extra_env: dict[str, str]) -> float:
    agentexec = str(Path(sys.executable).parent / "agentexec")
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="agentexec-startup-") as tmp:
            work = Path(tmp)
            (work / "app.py").write_text(APP)
            mark = work / "mark"
            queue = f"startup{os.getpid()}{time.time_ns() % 10**9}"
            env = _env(STARTUP_MARK=str(mark), PYTHONPATH=tmp, AGENTEXEC_QUEUE_NAME=queue,
                       AGENTEXEC_NUM_WORKERS="1", **extra_env)
            queued = subprocess.run([sys.executable, "-c", ENQUEUE], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=60)
            if queued.returncode != 0:
                raise RuntimeError(f"could not enqueue the task: {queued.stderr}")
            started = time.time()
            process = subprocess.Popen(
                [agentexec, "run", "app:pool"], cwd=work, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 30
                while not (mark.exists() and mark.read_text().strip()):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the pool exited or never ran the task")
                    time.sleep(0.002)
                times.append(float(mark.read_text().split()[0]) - started)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--redis", metavar="URL", help="also measure on this Redis")
    parser.add_argument(
        "--pythonpath", action="append", default=[], metavar="DIR",
        help="source directories to import agentexec from instead (e.g. an older checkout's "
        "packages/*/src), to measure before and after a change",
    )
    args = parser.parse_args()
    PYTHONPATH.extend(args.pythonpath)
    first_task(1, {})  # warm-up: bytecode caches written, as after an install
    figures = import_figures(args.runs)
    print(f"import agentexec (wall, minus an empty interpreter): {figures['import_wall'] * 1000:6.0f} ms")
    print(f"import agentexec (-X importtime total):              {figures['importtime_total'] * 1000:6.0f} ms")
    print(f"... + the producer API (enqueue, get_result, CONF):   {figures['producer_wall'] * 1000:6.0f} ms")
    embedded = first_task(args.runs, {})
    print(f"agentexec run -> first task starts (embedded SQLite): {embedded * 1000:6.0f} ms")
    if args.redis:
        on_redis = first_task(args.runs, {"AGENTEXEC_REDIS_URL": args.redis,
                                          "AGENTEXEC_DATABASE_URL": "sqlite:///activity.db"})
        print(f"agentexec run -> first task starts (Redis):           {on_redis * 1000:6.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
