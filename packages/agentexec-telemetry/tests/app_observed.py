"""The pool the telemetry tests run as a real program (``agentexec run app_observed:pool``).

Environment: ``AGENTEXEC_*`` for agentexec; ``OBS_QUEUE``; ``OBS_TRACE=1`` sets up the
OpenTelemetry SDK in the pool (and so in every worker it forks) with an in-memory exporter,
whose finished spans the ``dump_spans`` task writes to ``OBS_SPANS``; ``OBS_MARKS`` is a
directory where tasks leave marks (a worker that dies on purpose dies once per label).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from uuid import UUID

import agentexec as ax
import anyio
from agentexec.lifecycle import current_task
from pydantic import BaseModel
from sqlalchemy import create_engine

DATABASE_URL = os.environ["AGENTEXEC_DATABASE_URL"]
engine = create_engine(DATABASE_URL)
ax.Base.metadata.create_all(engine)
pool = ax.Pool(engine=engine, database_url=DATABASE_URL, queue_name=os.environ["OBS_QUEUE"])
pipeline = ax.Pipeline(pool, name="briefing")

if os.environ.get("OBS_TRACE"):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    EXPORTER = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


class Job(BaseModel):
    label: str = ""
    fail: bool = False
    #: the worker process dies (os._exit) the first time it runs this label
    die_once: bool = False
    #: wait until this file exists
    hold: str = ""


class Briefing(BaseModel):
    company: str


@pool.task("job")
async def job(agent_id: UUID, context: Job) -> str:
    if context.hold:
        with anyio.fail_after(60):
            while not await anyio.Path(context.hold).exists():
                await anyio.sleep(0.02)
    if context.die_once:
        mark = Path(os.environ["OBS_MARKS"]) / context.label
        if not mark.exists():
            mark.touch()
            os._exit(7)
    if context.fail:
        raise ValueError(f"boom {context.label}")
    return context.label


@pool.task("dump_spans")
async def dump_spans(agent_id: UUID, context: Job) -> int:
    spans = [json.loads(span.to_json()) for span in EXPORTER.get_finished_spans()]
    await anyio.Path(os.environ["OBS_SPANS"]).write_text(json.dumps(spans))
    return len(spans)


class Research(pipeline.Base):
    @pipeline.step(0, description="Research")
    async def research(self, ctx: Briefing) -> str:
        # imported here: the Agents SDK takes seconds to import, and only this test needs it
        from agentexec_openai.testing import ScriptedModel, answer, scripted_run_config, tool_call
        from agents import Agent

        model = ScriptedModel([
            [tool_call("report_activity", message="Reading filings", percentage=40)],
            [answer(f"{ctx.company}: solid.")],
        ])
        running = current_task()
        assert running is not None
        runner = ax.OpenAIRunner(running.agent_id, run_config=scripted_run_config(model))
        agent = Agent(
            name="Analyst", instructions="Write briefings.", tools=[runner.tools.report_status],
            model="gpt-4.1",
        )
        result = await runner.run(agent, f"Brief me on {ctx.company}", max_turns=3)
        return str(result.final_output)

    @pipeline.step(1, description="Summarize")
    async def summarize(self, text: str) -> str:
        return text.upper()
