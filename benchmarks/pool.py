"""A real ``ax.Pool`` end to end, activity tracking on: Redis queue/results/events, PostgreSQL
activity (``--stack sqlite`` / ``--stack postgres`` run the embedded SQL transport instead).

    uv run python benchmarks/pool.py                       # everything, Redis + PostgreSQL
    uv run python benchmarks/pool.py --only drain --tasks 5000 --concurrency 32

1. enqueue: ``--enqueues`` sequential ``ax.enqueue`` calls from one producer (each: the push,
   its QUEUED activity written behind it by the producer's writer thread), timed until the last
   activity is written too, tasks/s.
2. bulk: ``ax.enqueue_many`` of ``--tasks`` tasks in batches of 1,000, tasks/s.
3. drain: ``--tasks`` no-op tasks queued first, then a pool of 1 and of 2 processes (each with
   ``--concurrency`` slots) started; timed from ``pool.start()`` returning until every task is
   acknowledged (its RUNNING and COMPLETE lines committed and its result stored), tasks/s per
   process, the workers' CPU time per task (user + system, from /proc: steadier than the
   wall clock on a shared machine), and on PostgreSQL the server's CPU time per task (every
   ``postgres`` process of the machine).
4. latency: ``--trials`` tasks enqueued one at a time into an idle 1-process pool; the handler
   returns when it started; enqueue-call → handler-start p50/p99 (ms).
5. io: 500 tasks that each ``await anyio.sleep(0.1)``, one process with 500 slots, timed from
   ``enqueue_many`` returning until ``ax.gather`` has every result; ``--io-rounds`` rounds in
   one pool: the first (the pool has run one task before) and the median of the rest.

Each pool runs in a fresh queue; PostgreSQL in a fresh database (created and dropped) on the
server of ``--pg-url``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
from _support import fresh_postgres, stack_parser
from agentexec.activity.creates import acreated
from agentexec.config import CONF
from agentexec.runtime import Backends, build_backends, set_backends
from pydantic import BaseModel

WAIT = 300


class Noop(BaseModel):
    sleep: float = 0.0




def make_pool(queue_name: str, backends: Backends) -> ax.Pool:
    pool = ax.Pool(queue_name=queue_name, backends=backends)

    @pool.task("noop")
    async def noop(agent_id: UUID, context: Noop) -> float:
        started = time.time()
        if context.sleep:
            await anyio.sleep(context.sleep)
        return started

    return pool


async def drained(backends: Backends, queue_name: str) -> None:
    """Every task taken and then every lease acknowledged (stats reads the whole queue, so it
    is only polled once the queue is empty). ``length`` scans the list on Redis (it leaves out
    wake-up tokens: ~240 us of the server per call with 3,000 waiting), so a long queue is polled
    every 50 ms and the last thousand tasks every 5 ms."""
    with anyio.fail_after(WAIT):
        while left := await backends.queue.length(queue_name):
            await anyio.sleep(0.005 if left < 1000 else 0.05)
        while (await backends.queue.stats(queue_name)).in_flight:
            await anyio.sleep(0.005)


def run_pool(backends: Backends, queue_name: str, workers: int, concurrency: int,
             body: Callable[[], Any]) -> Any:
    CONF.num_workers = workers
    CONF.worker_concurrency = concurrency
    global _current
    pool = _current = make_pool(queue_name, backends)
    pool.start()
    try:
        return body()
    finally:
        pool.shutdown(timeout=30)


#: the pool ``run_pool`` runs, for a body that reads its workers' CPU time
_current: ax.Pool | None = None


def workers_cpu(pool: ax.Pool) -> float:
    """CPU seconds (user + system) the pool's worker processes have used so far: on a machine
    that other work shares, far steadier per task than the wall clock (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pool._supervisor.pids if pool._supervisor is not None else []:  # type: ignore[attr-defined]
        try:
            # the fields after the command name, from the state: utime and stime are 12th, 13th
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def postgres_cpu() -> dict[int, float]:
    """CPU seconds each PostgreSQL server process on this machine has used so far (pid ->
    seconds): the database's side of a drain, which the workers' CPU leaves out."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" not in text:
            continue
        fields = text.rsplit(")", 1)[1].split()
        found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the server used since ``before`` (processes started since count whole)."""
    return sum(now - before.get(pid, 0.0) for pid, now in postgres_cpu().items())


def bench_enqueue(backends: Backends, count: int) -> float:
    queue_name = f"bench_{uuid.uuid4().hex[:8]}"

    async def go() -> float:
        await ax.enqueue("noop", Noop(), queue_name=queue_name)  # connections warm
        started = time.perf_counter()
        for _ in range(count):
            await ax.enqueue("noop", Noop(), queue_name=queue_name)
        await acreated()  # timed until every activity is written too, not only queued
        return count / (time.perf_counter() - started)

    return anyio.run(go)


def bench_bulk(backends: Backends, count: int) -> float:
    queue_name = f"bench_{uuid.uuid4().hex[:8]}"

    async def go() -> float:
        await ax.enqueue_many([("noop", Noop())] * 10, queue_name=queue_name)
        started = time.perf_counter()
        for start in range(0, count, 1000):
            await ax.enqueue_many([("noop", Noop())] * min(1000, count - start), queue_name=queue_name)
        return count / (time.perf_counter() - started)

    return anyio.run(go)


def bench_drain(backends: Backends, count: int, workers: int, concurrency: int) -> tuple[float, float, float]:
    queue_name = f"bench_{uuid.uuid4().hex[:8]}"

    async def fill() -> None:
        for start in range(0, count, 1000):
            await ax.enqueue_many([("noop", Noop())] * min(1000, count - start), queue_name=queue_name)

    anyio.run(fill)

    def body() -> tuple[float, float, float]:
        assert _current is not None
        cpu, server = workers_cpu(_current), postgres_cpu()
        started = time.perf_counter()
        anyio.run(drained, backends, queue_name)
        elapsed = time.perf_counter() - started
        return (count / elapsed / workers, (workers_cpu(_current) - cpu) / count * 1e6,
                postgres_cpu_since(server) / count * 1e6)

    rate: tuple[float, float, float] = run_pool(backends, queue_name, workers, concurrency, body)
    return rate


def bench_latency(backends: Backends, trials: int) -> tuple[float, float]:
    queue_name = f"bench_{uuid.uuid4().hex[:8]}"

    def body() -> tuple[float, float]:
        async def go() -> list[float]:
            samples = []
            for i in range(trials + 20):
                sent = time.time()
                task = await ax.enqueue("noop", Noop(), queue_name=queue_name)
                started = await ax.get_result(task, timeout=WAIT)
                if i >= 20:  # the first ones warm connections up
                    samples.append((started - sent) * 1000)
                await anyio.sleep(0.002)
            return samples

        samples = sorted(anyio.run(go))
        return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]

    result: tuple[float, float] = run_pool(backends, queue_name, 1, 1, body)
    return result


def bench_io(backends: Backends, rounds: int) -> list[float]:
    """Seconds per round; the first round meets a pool that has run one task only (cold)."""
    queue_name = f"bench_{uuid.uuid4().hex[:8]}"

    def body() -> list[float]:
        async def go() -> list[float]:
            warm = await ax.enqueue("noop", Noop(), queue_name=queue_name)
            await ax.get_result(warm, timeout=WAIT)
            times = []
            for _ in range(rounds):
                tasks = await ax.enqueue_many([("noop", Noop(sleep=0.1))] * 500, queue_name=queue_name)
                started = time.perf_counter()
                await ax.gather(*tasks, timeout=WAIT)
                times.append(time.perf_counter() - started)
            return times

        return list(anyio.run(go))

    result: list[float] = run_pool(backends, queue_name, 1, 500, body)
    return result


def setup_telemetry(mode: str, tmp: Path) -> None:
    """Before any pool starts: its workers are forked with what is set up here."""
    from agentexec import telemetry

    if mode == "off":
        telemetry.use()
    elif mode == "on":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Discard()))
        trace.set_tracer_provider(provider)
        CONF.metrics_dir = str(tmp / "metrics")
        telemetry.load()
    else:
        telemetry.load()
    print(f"telemetry {mode}: {', '.join(type(i).__name__ for i in telemetry.instruments()) or 'none'}")


def main() -> None:
    parser = stack_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--enqueues", type=int, default=10000)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32, help="slots per process for drain")
    parser.add_argument("--io-rounds", type=int, default=5, help="rounds of the 500 x 0.1 s case")
    parser.add_argument("--only", choices=["enqueue", "bulk", "drain", "latency", "io"], action="append")
    parser.add_argument(
        "--telemetry", choices=["off", "installed", "on"], default="installed",
        help="off: no instrument at all; installed: what is installed, unconfigured (the default "
        "for a user who installed agentexec[otel,prometheus] and set up nothing); on: an "
        "OpenTelemetry SDK provider (spans exported to a no-op exporter) and Prometheus metrics",
    )
    args = parser.parse_args()
    only = set(args.only or ["enqueue", "bulk", "drain", "latency", "io"])

    with fresh_postgres(args.pg_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        setup_telemetry(args.telemetry, Path(tmp))
        if args.stack == "sqlite":
            db, transport = f"sqlite:///{Path(tmp) / 'bench.db'}", None
        else:
            db, transport = pg_url, (args.redis_url if args.stack == "redis" else None)
        urls = {k: transport or db for k in ("queue", "results", "events")} | {"activity": db}
        backends = build_backends(urls)  # type: ignore[arg-type]
        ax.Base.metadata.create_all(backends.activity.engine)  # type: ignore[attr-defined]
        set_backends(backends)
        print(f"stack: queue {urls['queue'].split('://')[0]}, activity {db.split('://')[0]}")
        if "enqueue" in only:
            print(f"enqueue (one producer): {bench_enqueue(backends, args.enqueues):,.0f} tasks/s")
        if "bulk" in only:
            print(f"enqueue_many (1,000 per call): {bench_bulk(backends, args.tasks):,.0f} tasks/s")
        if "drain" in only:
            for workers in (1, 2):
                rate, cpu, server = bench_drain(backends, args.tasks, workers, args.concurrency)
                on_server = f", PostgreSQL's {server:,.0f} us" if "postgres" in (db + str(transport)) else ""
                print(f"drain {args.tasks} no-op tasks, {workers} process(es) x {args.concurrency} "
                      f"slots: {rate:,.0f} tasks/s per process, workers' CPU {cpu:,.0f} us per task{on_server}")
        if "latency" in only:
            p50, p99 = bench_latency(backends, args.trials)
            print(f"enqueue -> start latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        if "io" in only:
            first, *warm = bench_io(backends, args.io_rounds)
            line = f"500 x sleep(0.1), 1 process x 500 slots: first round {first:.3f} s"
            if warm:
                line += f", then median {statistics.median(warm):.3f} s (of {len(warm)})"
            print(line)
        set_backends(None)


if __name__ == "__main__":
    main()
