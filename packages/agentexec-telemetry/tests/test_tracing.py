"""One trace from the web request to the agent's turns, across a real worker process.

The producer (this process) and the pool's worker each record spans with the OpenTelemetry
SDK's in-memory exporter; the worker's are written out by a task of that same worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import agentexec as ax
import anyio
import pytest
from agentexec import telemetry
from agentexec_telemetry.otel import OpenTelemetryInstrument
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Briefing(BaseModel):
    company: str


class Job(BaseModel):
    label: str = ""


def _hex(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


@pytest.fixture
def producer_spans() -> Any:
    """This process traces through its own provider (the global one is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = list(telemetry.instruments())
    telemetry.use(OpenTelemetryInstrument(provider))
    yield provider, exporter
    telemetry.use(*before)


async def test_one_trace_from_request_to_agent_turns(
    producer: Any, run_pool: Any, obs_queue: str, producer_spans: Any, tmp_path: Path
) -> None:
    provider, exporter = producer_spans
    spans_file = tmp_path / "worker-spans.json"
    # the step imports the Agents SDK (seconds, blocking the worker's loop and its heartbeat):
    # a 2 s lease would expire and deliver the pipeline again, a second "process" span
    pool = run_pool(AGENTEXEC_NUM_WORKERS=1, AGENTEXEC_LEASE_TIMEOUT=30, OBS_TRACE=1, OBS_SPANS=spans_file)
    try:
        with anyio.fail_after(60):
            with provider.get_tracer("web").start_as_current_span("POST /briefings"):
                task = await ax.enqueue("briefing", Briefing(company="Acme"), queue_name=f"{obs_queue}:pipelines")
            assert await ax.get_result(task, timeout=45) == "ACME: SOLID."
            dump = await ax.enqueue("dump_spans", Job(), queue_name=obs_queue)
            assert await ax.get_result(dump, timeout=30) > 0
    finally:
        pool.stop()

    mine: dict[str, ReadableSpan] = {s.name: s for s in exporter.get_finished_spans()}
    request, send = mine["POST /briefings"], mine[f"send {obs_queue}:pipelines"]
    assert send.kind is SpanKind.PRODUCER and send.parent is not None
    assert send.parent.span_id == request.context.span_id
    assert send.attributes is not None
    assert send.attributes["messaging.destination.name"] == f"{obs_queue}:pipelines"
    assert send.attributes["messaging.message.id"] == str(task.agent_id)
    trace_id = _hex(request.context.trace_id, 32)

    worker = json.loads(spans_file.read_text())
    assert {s["context"]["trace_id"] for s in worker} == {trace_id}, [s["name"] for s in worker]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in worker:
        by_name.setdefault(span["name"], []).append(span)

    (process,) = by_name["process briefing"]
    assert process["kind"] == "SpanKind.CONSUMER"
    assert process["parent_id"] == _hex(send.context.span_id, 16)
    assert [link["context"]["span_id"] for link in process["links"]] == [_hex(send.context.span_id, 16)]
    attributes = process["attributes"]
    assert attributes["agentexec.task.name"] == "briefing"
    assert attributes["agentexec.agent_id"] == str(task.agent_id)
    assert attributes["agentexec.attempt"] == 1
    assert attributes["messaging.destination.name"] == f"{obs_queue}:pipelines"
    assert attributes["agentexec.outcome"] == "completed"

    (research,), (summarize,) = by_name["step Research"], by_name["step Summarize"]
    for step in (research, summarize):
        assert step["parent_id"] == process["context"]["span_id"]
    assert research["attributes"]["agentexec.step.index"] == 1
    assert summarize["attributes"]["agentexec.step.index"] == 2

    (run,) = by_name["invoke_agent Analyst"]
    assert run["parent_id"] == research["context"]["span_id"]
    assert run["attributes"]["gen_ai.agent.name"] == "Analyst"
    turns = by_name["chat gpt-4.1"]
    assert [t["attributes"]["agentexec.turn"] for t in turns] == [1, 2]
    for turn in turns:
        assert turn["parent_id"] == run["context"]["span_id"]
        assert turn["kind"] == "SpanKind.CLIENT"
        assert turn["attributes"]["gen_ai.usage.input_tokens"] > 0
