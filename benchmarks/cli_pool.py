"""The pool as users run it: ``agentexec run _cli_app:pool`` in a separate process, configured
through ``AGENTEXEC_*`` only, with INFO console logging (what ``agentexec run`` turns on),
activity tracking on. ``pool.py`` measures the components inside one process instead.

    uv run python benchmarks/cli_pool.py                               # Redis + PostgreSQL
    uv run python benchmarks/cli_pool.py --stack sqlite --only drain
    uv run python benchmarks/cli_pool.py --settings default,tuned --repeat 3
    PYTHONPATH=/old/checkout/packages/agentexec-core/src uv run python benchmarks/cli_pool.py
        # another checkout's core (worker and producer), for a before/after in one sitting

``--history N``: N finished activities in the store before every step, as a service that has
run a while holds (a query plan that reads the whole activity table shows only then).

``--set NAME=VALUE`` (repeatable): an ``AGENTEXEC_*`` setting for the worker and the producer;
the environment's own ``AGENTEXEC_*`` never reach the worker, so this is the way to compare
settings (``--set WORKER_EVENT_LOOP=asyncio``). ``--tuned-log-level INFO``: the tuned setting
with its per-task lines printed.

``--yield``: every task yields to the event loop once (``await anyio.lowlevel.checkpoint()``),
the least a handler that awaits anything does.

``--hook``: every task ends with an INCR on Redis (``--redis-url``), as the tasks of
../shared/bench do. A no-op handler never yields to the event loop, so a worker runs a whole
task in one step and batches widely; a handler that awaits a round trip, as a real one does,
costs the worker far more per task (measured 2026-12-07, Redis stack, defaults: workers' CPU
227 µs per task without the hook, 418 µs with it; the INCR itself costs ~50 µs), which is
most of the gap between this script's figures and the bench's. Most of that gap was the
worker's own: slots that free one at a time meant a take of one task (two round trips on
Redis), a lifecycle-events publish per message waking every listener, the printed per-task
lines written (and the forwarder woken) every turn of the loop, and staging pipelines twice
as many. Since (same day, ``--only cpu``, medians of 3 interleaved runs, load 3-5): no-op
218 -> 174 µs, ``--yield`` 300 -> 194 µs, ``--hook`` 444 -> 331 µs.

Settings: ``default`` is ``agentexec run`` with no option but ``--workers`` (agentexec's default
``worker_concurrency``); ``tuned`` adds ``--concurrency`` (``--tuned-concurrency``, 32) and
``--log-level WARNING``: what docs/worker-pool.md recommends for many short tasks. Scenarios, as in ../shared/bench:

1. drain: ``--tasks`` no-op tasks queued (``enqueue_many``), then the pool launched with 1 and
   with 2 worker processes; tasks/s (all processes together) = tasks / (first handler start ->
   every task acknowledged), the wall time from launch (start-up included), and the CPU time
   per task of the pool's main process, of its workers (and fork server), and of the servers
   (every ``postgres`` and ``redis-server`` process: on 2 cores they share the workers'), from
   the first take to the last ack (from /proc; less noisy than tasks/s on a shared machine).
2. latency: the pool idle and warm; 200 tasks enqueued one at a time every 10 ms; enqueue call
   -> handler start, p50 / p99 ms (1 worker process).
3. io: 500 tasks that each sleep 0.1 s queued, then a 1-process pool with 500 slots launched;
   seconds from the first handler start to the last handler end.
4. cpu (only when asked, ``--only cpu``): a 1-process pool, warm and idle, then ``--tasks``
   no-op tasks queued; CPU time per task of the pool's main process and of its other
   processes (the worker, the fork server), from ``/proc/<pid>/schedstat`` before and after.
   Less sensitive to the machine's load than tasks/s. ``--py-spy FILE`` runs the pool under
   ``py-spy record --subprocesses`` (raw format) in this scenario, with ``$PY_SPY_ARGS`` added
   (``--gil --rate 500``: only the thread holding the GIL, more samples).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import agentexec as ax
import anyio
from _support import PG_URL, REDIS_URL, fresh_postgres
from agentexec.config import CONF
from agentexec.runtime import get_backends, has_backends, set_backends
from agentexec.testing.process import children

HERE = Path(__file__).resolve().parent
AGENTEXEC = Path(sys.executable).with_name("agentexec")
WAIT = 300


def uptime() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Stack:
    """The AGENTEXEC_* of one stack, for the worker's environment and the producer's CONF."""

    def __init__(
        self, name: str, redis_url: str, pg_url: str | None, tmp: Path, extra: dict[str, str] | None = None
    ) -> None:
        self.name, self.tmp, self.step = name, tmp, 0
        self.redis_url, self.pg_url = redis_url, pg_url
        #: more AGENTEXEC_* for the worker and the producer (``--set``)
        self.extra = extra or {}

    def fresh(self) -> dict[str, str]:
        """A new queue (and, embedded, a new file) per step: nothing left over from the last."""
        self.step += 1
        env = {**self.extra, "AGENTEXEC_QUEUE_NAME": f"clibench_{uuid.uuid4().hex[:8]}"}
        if self.name == "sqlite":
            env["AGENTEXEC_EMBEDDED_DB_PATH"] = str(self.tmp / f"step{self.step}.db")
        else:
            assert self.pg_url is not None
            env["AGENTEXEC_DATABASE_URL"] = self.pg_url
            if self.name == "redis":
                env["AGENTEXEC_REDIS_URL"] = self.redis_url
        return env


@contextmanager
def producer(env: dict[str, str]) -> Iterator[None]:
    """This process's agentexec settings, the worker's: these AGENTEXEC_*, defaults for the rest."""
    for field, info in type(CONF).model_fields.items():
        value = env.get(f"AGENTEXEC_{field.upper()}")
        setattr(CONF, field, value if value is not None else info.get_default(call_default_factory=True))
    if has_backends():  # built before these settings (importing _cli_app builds a Pool): stale
        stale = get_backends()
        set_backends(None)
        anyio.run(stale.aclose)
    backends = get_backends()
    if CONF.database_url:
        ax.Base.metadata.create_all(backends.activity.engine)  # type: ignore[attr-defined]
    if HISTORY:
        add_history(backends.activity.engine, HISTORY)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if has_backends():
            set_backends(None)
            anyio.run(backends.aclose)


#: finished activities every step's store holds before it starts (``--history``)
HISTORY = 0


def add_history(engine: Any, count: int) -> None:
    """Finished activities up to ``count`` in the store, as a service that has run for a while
    has (a query plan that reads the whole table shows only then)."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    tables = ax.Base.metadata.tables
    activity = tables["agentexec_activity"]
    with engine.begin() as conn:
        have = conn.execute(sa.select(sa.func.count()).select_from(activity)).scalar_one()
        now = datetime.now(UTC)
        rows = [{"id": uuid.uuid4(), "agent_id": uuid.uuid4(), "agent_type": "history", "created_at": now,
                 "updated_at": now, "status": "COMPLETE", "percentage": 100} for _ in range(count - have)]
        if rows:
            conn.execute(activity.insert(), rows)
            conn.execute(tables["agentexec_activity_log"].insert(), [
                {"activity_id": r["id"], "message": "done", "status": "COMPLETE", "percentage": 100,
                 "created_at": now} for r in rows
            ])
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE agentexec_activity"))


#: the tuned setting's ``--log-level`` (``--tuned-log-level``)
TUNED_LOG_LEVEL = "WARNING"


def session_processes(session: int) -> Iterator[tuple[Path, list[str]]]:
    """The processes of one session (a pool started with ``start_new_session``): their /proc
    entry and the fields of their ``stat`` after the command name (ppid is [1], sid [3])."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == session:
                yield entry, fields
        except (OSError, ValueError):
            continue


class Worker:
    """``agentexec run _cli_app:pool --workers N [--concurrency M]``, output to a log file."""

    def __init__(
        self, env: dict[str, str], workers: int, concurrency: int | None, log: Path, py_spy: str | None = None
    ) -> None:
        argv = [str(AGENTEXEC), "run", "_cli_app:pool", "--workers", str(workers)]
        if py_spy:
            argv = ["py-spy", "record", "--subprocesses", "--nonblocking", "--format", "raw", "-o", py_spy,
                    *os.environ.get("PY_SPY_ARGS", "").split(), "--", *argv]
        if concurrency:
            # tuned: more slots, and the per-task INFO lines kept in the workers
            argv += ["--concurrency", str(concurrency), "--log-level", TUNED_LOG_LEVEL]
        full = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")} | env
        self.log = log
        self.launched = time.time()
        with log.open("w") as out:
            self.proc = subprocess.Popen(argv, cwd=HERE, env=full, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def stop(self) -> None:
        main = self._main()
        if main != self.proc.pid:  # py-spy writes its profile once the pool has exited
            os.kill(main, signal.SIGTERM)
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def lines(self) -> int:
        return sum(1 for _ in self.log.open())

    def _main(self) -> int:
        """The pool's main process: ours, or py-spy's child."""
        if "py-spy" not in str(self.proc.args):
            return self.proc.pid
        kids = children(self.proc.pid)
        return kids[0] if kids else self.proc.pid

    def cpu(self) -> tuple[float, float]:
        """Seconds on CPU so far: (the pool's main process, its other processes)."""
        main = self._main()
        procs: dict[int, tuple[int, float]] = {}
        for entry, fields in session_processes(self.proc.pid):
            try:
                # every thread's (the process's own schedstat is its main thread's only)
                ran = sum(int((t / "schedstat").read_text().split()[0]) for t in (entry / "task").iterdir()) / 1e9
            except (OSError, ValueError):
                continue
            procs[int(entry.name)] = (int(fields[1]), ran)
        own = procs.get(main, (0, 0.0))[1]
        others = sum(ran for pid, (_, ran) in procs.items() if pid not in (main, self.proc.pid))
        return own, others


async def fill(count: int, **job: float) -> list[ax.Task]:
    from _cli_app import Job

    tasks: list[ax.Task] = []
    for start in range(0, count, 1000):
        tasks += await ax.enqueue_many([("noop", Job(**job))] * min(1000, count - start))
    return tasks


_TICK = os.sysconf("SC_CLK_TCK")


#: the servers whose CPU a drain also reports (on a 2-core machine they share the workers' cores)
SERVERS = ("postgres", "redis-server")


def tree_cpu(root: int) -> tuple[float, float, float]:
    """CPU seconds (user + system) so far of the pool's main process, of its descendants
    (fork server and workers), and of the database servers (every ``SERVERS`` process), from
    /proc: steadier than the wall clock on a shared machine."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    servers = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                name, _, rest = f.read().partition(" (")[2].rpartition(")")
                fields = rest.split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
        if name.startswith(SERVERS):
            servers += cpu[int(entry)]
    below = 0.0
    for pid in cpu:
        up = parent.get(pid)
        while up is not None and up != root and up > 1:
            up = parent.get(up)
        if up == root:
            below += cpu[pid]
    return cpu.get(root, 0.0), below, servers


async def drained(count: int = 0, pid: int = 0) -> tuple[float, float, float]:
    """Wait until every task is acknowledged; the CPU (the pool's main process, its workers, the
    servers) spent meanwhile, counted from the first take (start-up excluded)."""
    backends = get_backends()
    start: tuple[float, float] | None = None
    with anyio.fail_after(WAIT):
        while length := await backends.queue.length(CONF.queue_name):
            if start is None and pid and length < count:
                start = tree_cpu(pid)
            # length scans the list on Redis (~240 us of the server with 3,000 waiting): a
            # long queue is polled every 50 ms, the last thousand tasks every 5 ms
            await anyio.sleep(0.005 if length < 1000 or start is None else 0.05)
        while (await backends.queue.stats(CONF.queue_name)).in_flight:
            await anyio.sleep(0.005)
    if start is None or not pid:
        return 0.0, 0.0, 0.0
    end = tree_cpu(pid)
    return end[0] - start[0], end[1] - start[1], end[2] - start[2]


def bench_drain(stack: Stack, count: int, workers: int, concurrency: int | None, log: Path) -> dict[str, Any]:
    env = stack.fresh()
    with producer(env):
        tasks = anyio.run(fill, count)
        worker = Worker(env, workers, concurrency, log)
        try:
            main_cpu, workers_cpu, servers_cpu = anyio.run(drained, count, worker.proc.pid)
            done = time.time()
            results = anyio.run(lambda: ax.gather(*tasks, timeout=WAIT))
        finally:
            worker.stop()
    first = min(r[0] for r in results)
    return {"rate": count / (done - first), "wall": done - worker.launched, "log_lines": worker.lines(),
            "main_us": main_cpu / count * 1e6, "workers_us": workers_cpu / count * 1e6,
            "servers_us": servers_cpu / count * 1e6}


def bench_latency(stack: Stack, concurrency: int | None, log: Path, trials: int = 200) -> dict[str, Any]:
    from _cli_app import Job

    env = stack.fresh()
    with producer(env):
        worker = Worker(env, 1, concurrency, log)
        try:
            async def go() -> list[float]:
                warm = await ax.enqueue("noop", Job())
                await ax.get_result(warm, timeout=WAIT)
                await anyio.sleep(0.5)
                sent, tasks = [], []
                for _ in range(trials):
                    sent.append(time.time())
                    tasks.append(await ax.enqueue("noop", Job()))
                    await anyio.sleep(0.01)
                results = await ax.gather(*tasks, timeout=WAIT)
                return sorted((r[0] - s) * 1000 for r, s in zip(results, sent, strict=True))

            samples = anyio.run(go)
        finally:
            worker.stop()
    return {"p50": statistics.median(samples), "p99": samples[int(len(samples) * 0.99) - 1]}


def bench_io(stack: Stack, log: Path) -> dict[str, Any]:
    env = stack.fresh()
    with producer(env):
        tasks = anyio.run(lambda: fill(500, sleep=0.1))
        worker = Worker(env, 1, 500, log)
        try:
            results = anyio.run(lambda: ax.gather(*tasks, timeout=WAIT))
        finally:
            worker.stop()
    return {"seconds": max(r[1] for r in results) - min(r[0] for r in results)}


def bench_cpu(stack: Stack, count: int, concurrency: int | None, log: Path, py_spy: str | None) -> dict[str, Any]:
    from _cli_app import Job

    env = stack.fresh()
    with producer(env):
        worker = Worker(env, 1, concurrency, log, py_spy)
        try:
            async def warm() -> None:
                await ax.get_result(await ax.enqueue("noop", Job()), timeout=WAIT)
                await anyio.sleep(0.5)

            anyio.run(warm)
            main0, rest0 = worker.cpu()
            started = time.time()
            tasks = anyio.run(fill, count)
            anyio.run(drained)
            elapsed = time.time() - started
            main1, rest1 = worker.cpu()
            anyio.run(lambda: ax.gather(*tasks, timeout=WAIT))
        finally:
            worker.stop()
    return {"main_us": (main1 - main0) / count * 1e6, "rest_us": (rest1 - rest0) / count * 1e6,
            "rate": count / elapsed, "log_lines": worker.lines()}


def stacks(
    names: list[str], redis_url: str, pg_url: str, tmp: Path, extra: dict[str, str]
) -> Iterator[Stack]:
    """Each stack in turn, with a fresh PostgreSQL database for the stacks that use one."""
    for name in names:
        pg = fresh_postgres(pg_url) if name != "sqlite" else None
        url = pg.__enter__() if pg else None
        try:
            yield Stack(name, redis_url, url, tmp, extra)
        finally:
            if pg:
                pg.__exit__(None, None, None)


def settings_of(pairs: list[str]) -> dict[str, str]:
    """``--set NAME=VALUE`` pairs as AGENTEXEC_* variables (the prefix may be left out)."""
    settings: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: write NAME=VALUE, e.g. --set LIFECYCLE_EVENTS=false")
        name = name.strip().upper()
        settings[name if name.startswith("AGENTEXEC_") else f"AGENTEXEC_{name}"] = value
    return settings


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so the finally blocks stop the pool this script started


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["redis", "sqlite", "postgres"], action="append",
                        help="repeatable; default redis")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--settings", default="default,tuned", help="comma-separated: default, tuned")
    parser.add_argument("--tuned-concurrency", type=int, default=32)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an AGENTEXEC_* setting for the worker and the producer (repeatable): "
                             "the environment's own AGENTEXEC_* never reach the worker")
    parser.add_argument("--tuned-log-level", default="WARNING",
                        help="tuned: the workers' --log-level (INFO: 32 slots, the per-task lines printed)")
    parser.add_argument("--only", choices=["drain", "latency", "io", "cpu"], action="append")
    parser.add_argument("--py-spy", default=None, help="cpu scenario: py-spy raw output file")
    parser.add_argument("--repeat", type=int, default=1, help="drain runs per case (all printed)")
    parser.add_argument("--hook", action="store_true",
                        help="each task ends with an INCR on --redis-url, as ../shared/bench's tasks do")
    parser.add_argument("--history", type=int, default=0,
                        help="finished activities in the store before every step (a service that ran a while)")
    parser.add_argument("--yield", dest="yield_", action="store_true",
                        help="each task yields to the event loop once (await anyio.lowlevel.checkpoint())")
    args = parser.parse_args()
    global TUNED_LOG_LEVEL, HISTORY
    TUNED_LOG_LEVEL = args.tuned_log_level
    HISTORY = args.history
    if args.hook:
        os.environ["AXBENCH_HOOK_REDIS"] = args.redis_url
    if args.yield_:
        os.environ["AXBENCH_YIELD"] = "1"
    only = args.only or ["drain", "latency", "io"]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    print(f"agentexec run, default worker_concurrency {type(CONF).model_fields['worker_concurrency'].default}; "
          f"{uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        for stack in stacks(args.stack or ["redis"], args.redis_url, args.pg_url, Path(tmp), settings_of(args.set)):
            name = stack.name
            log = Path(tmp) / "worker.log"
            for setting in settings:
                conc = args.tuned_concurrency if setting == "tuned" else None
                label = f"{name:<8} {setting:<7}"
                if "drain" in only:
                    for workers in (1, 2):
                        for _ in range(args.repeat):
                            r = bench_drain(stack, args.tasks, workers, conc, log)
                            print(f"{label} drain {workers} proc: {r['rate']:>7,.0f} tasks/s "
                                  f"(wall {r['wall']:.1f} s, {r['log_lines']} output lines; CPU "
                                  f"per task main {r['main_us']:.0f} us, workers {r['workers_us']:.0f} us, "
                                  f"servers {r['servers_us']:.0f} us; "
                                  f"{uptime()})", flush=True)
                if "cpu" in only:
                    for _ in range(args.repeat):
                        r = bench_cpu(stack, args.tasks, conc, log, args.py_spy)
                        print(f"{label} cpu per task: main {r['main_us']:,.0f} us, workers "
                              f"{r['rest_us']:,.0f} us ({r['rate']:,.0f} tasks/s incl. enqueue, "
                              f"{r['log_lines']} output lines; {uptime()})", flush=True)
                if "latency" in only:
                    r = bench_latency(stack, conc, log)
                    print(f"{label} latency: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms ({uptime()})",
                          flush=True)
            if "io" in only:
                r = bench_io(stack, log)
                print(f"{name:<8} io      500 x 0.1 s, 500 slots: {r['seconds']:.2f} s ({uptime()})", flush=True)


if __name__ == "__main__":
    main()
