"""What observability costs per task, in microseconds: the hook calls a task's life makes
(the producer's ``send`` span and count, the worker's ``process`` span, counts and duration,
one pipeline step's span), timed in one process with no backend around them.

    uv run python benchmarks/telemetry.py

Modes: ``off`` (no instrument), ``installed`` (OpenTelemetry and prometheus-client installed,
nothing configured: the OpenTelemetry instrument checks for a provider and opens nothing) and
``on`` (an SDK ``TracerProvider`` whose spans go to a no-op exporter through a
``SimpleSpanProcessor``, and Prometheus metrics in multiprocess mode). The end-to-end effect on a
pool is ``benchmarks/pool.py --telemetry off|installed|on``.

``--pool N``: instead, an in-process pool (memory backends, workers on threads) drains N no-op
tasks per round, ``off`` and ``installed`` alternating for ``--rounds`` pairs, and prints the
CPU time (``process_time``) per task of each mode: steadier than wall clocks on a shared machine.
The memory backends keep every result, so the heap grows round after round and the cyclic
collector's full passes land on whichever round is running: ``--no-gc`` turns it off to compare
the code the two modes run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from typing import Any
from uuid import UUID

from agentexec import telemetry
from agentexec.config import CONF
from agentexec.task import Priority, Task
from pydantic import BaseModel


class Ctx(BaseModel):
    n: int = 0


def one_task(task: Task, queue: str) -> None:
    with telemetry.sending(queue, [task]) as trace:
        envelope = task.to_envelope(queue, trace)
    running = Task.model_construct(
        agent_id=envelope.agent_id, task_name=envelope.task_name, context=envelope.context,
        queue_name=queue, priority=envelope.priority, attempts=0, trace=envelope.trace,
    )
    with telemetry.task_run(running), telemetry.span("step Research", telemetry.INTERNAL, {"agentexec.step": "research"}):
        pass


def hooked(task: Task, queue: str) -> None:
    """As agentexec's code does it: one check, then the hooks only when something observes."""
    if telemetry.on():
        one_task(task, queue)
    else:
        bare_task(task, queue)


def bare_task(task: Task, queue: str) -> None:
    envelope = task.to_envelope(queue)
    Task.model_construct(
        agent_id=envelope.agent_id, task_name=envelope.task_name, context=envelope.context,
        queue_name=queue, priority=envelope.priority, attempts=0,
    )


def measure(fn: Any, task: Task, count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            fn(task, "bench")
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def pool_cpu(count: int, rounds: int) -> None:
    """CPU µs per task of an in-process pool, off vs installed-unconfigured, alternating."""
    import statistics

    import agentexec as ax
    import anyio
    from agentexec.runtime import build_backends, set_backends

    backends = build_backends({k: "memory://" for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]
    set_backends(backends)
    CONF.num_workers, CONF.worker_concurrency = 1, 32

    def one_round(mode: str) -> float:
        telemetry.use() if mode == "off" else telemetry.load()
        queue = f"cpu{uuid.uuid4().hex[:6]}"
        pool = ax.Pool(queue_name=queue, backends=backends)

        @pool.task("noop")
        async def noop(agent_id: UUID, context: Ctx) -> int:
            return context.n

        async def fill() -> list[Any]:
            return await ax.enqueue_many([("noop", Ctx())] * count, queue_name=queue)

        async def drain(tasks: list[Any]) -> None:
            await ax.gather(*tasks, timeout=300)

        tasks = anyio.run(fill)
        pool.start()
        try:
            started = time.process_time()
            anyio.run(drain, tasks)
            return (time.process_time() - started) / count * 1e6
        finally:
            pool.shutdown(timeout=10)

    found: dict[str, list[float]] = {"off": [], "installed": []}
    for n in range(rounds):
        for mode in ("off", "installed") if n % 2 == 0 else ("installed", "off"):
            found[mode].append(one_round(mode))
    for mode, values in found.items():
        print(f"{mode}: CPU {statistics.median(values):.0f} us per task (median of {rounds}: "
              f"{', '.join(f'{v:.0f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pool", type=int, metavar="N", help="in-process pool CPU per task, N tasks a round")
    parser.add_argument("--no-gc", action="store_true", help="with --pool: the cyclic collector off")
    args = parser.parse_args()
    if args.pool:
        if args.no_gc:
            import gc

            gc.disable()
        pool_cpu(args.pool, args.rounds)
        return
    task = Task.queued("research", Ctx(), Priority.LOW, "bench")
    task.agent_id = uuid.uuid4()

    bare = measure(bare_task, task, args.count, args.rounds)
    print(f"envelope round trip, no hooks: {bare:.2f} us per task")
    telemetry.use()
    off = measure(hooked, task, args.count, args.rounds)
    print(f"off (no instrument): {off - bare:+.2f} us per task")
    telemetry.load()
    installed = measure(hooked, task, args.count, args.rounds)
    names = ", ".join(type(i).__name__ for i in telemetry.instruments())
    print(f"installed, not configured ({names}): {installed - bare:+.2f} us per task")

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)
    with tempfile.TemporaryDirectory() as tmp:
        CONF.metrics_dir = tmp
        telemetry.load()
        names = ", ".join(type(i).__name__ for i in telemetry.instruments())
        on = measure(hooked, task, args.count, args.rounds)
        print(f"on ({names}; 3 spans, 3 counts, 1 histogram per task): {on - bare:+.2f} us per task")


if __name__ == "__main__":
    main()
