"""What observability costs per task, in microseconds: the hook calls a task's life makes
(the producer's ``send`` span and count, the worker's ``process`` span, counts and duration,
one pipeline step's span), timed in one process with no backend around them.

    uv run python benchmarks/telemetry.py

Modes: ``off`` (no instrument), ``installed`` (OpenTelemetry and prometheus-client installed,
nothing configured: the OpenTelemetry instrument checks for a provider and opens nothing) and
``on`` (an SDK ``TracerProvider`` whose spans go to a no-op exporter through a
``SimpleSpanProcessor``, and Prometheus metrics in multiprocess mode). The end-to-end effect on a
pool is ``benchmarks/pool.py --telemetry off|installed|on``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from typing import Any

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
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
