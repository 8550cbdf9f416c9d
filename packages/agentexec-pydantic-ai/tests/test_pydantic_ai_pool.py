"""End to end: a pool task runs a pydantic-ai agent with ``ax.PydanticAIRunner`` (real
``Agent.run``, scripted model); the caller enqueues it, awaits ``ax.get_result`` and reads the
progress in ``ax.activity.detail``. Once on memory backends (the workers on a thread of this
process), once as users run it: ``python pool_app.py`` with worker processes on SQLite."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.runners import TokenUsage
from agentexec.testing.process import ProgramProcess
from agentexec_pydantic_ai.testing import ScriptedModel, answer, tool_call
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.exceptions import UsageLimitExceeded

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
WAIT = 30.0


class Briefing(BaseModel):
    company: str
    turns: int = 3
    recovery: bool = False


def report(message: str, percentage: int) -> list[Any]:
    return [tool_call("report_activity", message=message, percentage=percentage)]


def progress(agent_id: UUID) -> list[tuple[str, int | None]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.message, log.percentage) for log in detail.logs if log.percentage in (25, 75)]


# -- in this process, on memory backends ------------------------------------------------------
@pytest.fixture
def pool_with(memory_backends: Any) -> Iterator[Any]:
    """``pool_with(model)``: a started pool whose ``briefing`` task runs an agent on ``model``."""
    pools: list[ax.Pool] = []

    def start(model: ScriptedModel) -> ax.Pool:
        pool = ax.Pool(queue_name=f"pydantic_ai_{uuid.uuid4().hex[:8]}", backends=memory_backends)

        @pool.task("briefing")
        async def briefing(agent_id: UUID, context: Briefing) -> str:
            runner = ax.PydanticAIRunner(agent_id, max_turns_recovery=context.recovery, model=model)
            agent = Agent(
                "openai:gpt-4.1", defer_model_check=True,
                instructions="You write briefings.", tools=[runner.tools.report_status],
            )
            result = await runner.run(agent, f"Brief me on {context.company}", max_turns=context.turns)
            return str(result.output)

        pool.start()
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.shutdown(timeout=5)


async def test_pool_task_reports_progress_and_returns_the_answer(pool_with: Any) -> None:
    model = ScriptedModel([report("Reading filings", 25), report("Drafting", 75), [answer("Acme: solid.")]])
    pool = pool_with(model)
    with anyio.fail_after(20):
        task = await ax.enqueue("briefing", Briefing(company="Acme"), queue_name=pool.queue_name)
        assert await ax.get_result(task, timeout=15) == "Acme: solid."
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.COMPLETE
    assert progress(task.agent_id) == [("Reading filings", 25), ("Drafting", 75)]
    assert [u for log in detail.logs if (u := TokenUsage.parse(log.message))] == [TokenUsage(30, 15, 45, 3)]
    assert model.calls[0].transcript()[0] == "user: Brief me on Acme"


async def test_pool_task_that_runs_out_of_turns_ends_error_with_the_message(pool_with: Any) -> None:
    model = ScriptedModel([report(f"step {i}", 10 * i) for i in range(2)])
    pool = pool_with(model)
    with anyio.fail_after(20):
        task = await ax.enqueue("briefing", Briefing(company="Acme", turns=2), queue_name=pool.queue_name)
        with pytest.raises(ax.TaskFailedError, match="request_limit of 2"):
            await ax.get_result(task, timeout=15)
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.ERROR
    assert "request_limit of 2" in detail.logs[-1].message
    assert issubclass(UsageLimitExceeded, ax.PydanticAIRunner.max_turns_exceptions)


async def test_pool_task_recovers_from_its_turn_limit(pool_with: Any) -> None:
    model = ScriptedModel([*(report(f"step {i}", 10 * i) for i in range(2)), [answer("Partial: Acme.")]])
    pool = pool_with(model)
    with anyio.fail_after(20):
        task = await ax.enqueue(
            "briefing", Briefing(company="Acme", turns=2, recovery=True), queue_name=pool.queue_name
        )
        assert await ax.get_result(task, timeout=15) == "Partial: Acme."
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.COMPLETE
    assert any(log.message.startswith("Max turns (2) reached; recovering") for log in detail.logs)


# -- worker processes, as users run a pool ---------------------------------------------------------
@pytest.fixture
def sqlite_pool(tmp_path: Path) -> Iterator[tuple[ProgramProcess, str]]:
    """A running ``pool_app.py`` and its queue; this process's backends on the same SQLite file."""
    from agentexec.runtime import build_backends, get_backends, has_backends, set_backends

    url = f"sqlite:///{tmp_path / 'agentexec.db'}"
    queue = f"pydantic_ai_{uuid.uuid4().hex[:8]}"
    previous = get_backends() if has_backends() else None
    backends = build_backends({"queue": url, "results": url, "events": url, "activity": url})
    engine = getattr(backends.activity, "engine", None)
    if engine is not None:
        ax.Base.metadata.create_all(engine)
    set_backends(backends)
    # ``python pool_app.py`` in its own process group, its output collected as it comes
    program = ProgramProcess.start(
        [sys.executable, str(HERE / "pool_app.py")],
        {"AGENTEXEC_NUM_WORKERS": "2", "AGENTEXEC_DATABASE_URL": url, "POOL_QUEUE": queue}, HERE, wait=WAIT,
    )
    try:
        program.wait_output("Pool started")
        yield program, queue
    finally:
        code = program.stop()
        set_backends(previous)
        assert code == 0, program.output


@pytest.mark.slow
async def test_worker_processes_run_the_agent_and_its_progress_shows_in_the_activity(
    sqlite_pool: tuple[ProgramProcess, str],
) -> None:
    program, queue = sqlite_pool
    with anyio.fail_after(WAIT + 10):
        plain = await ax.enqueue("briefing", Briefing(company="Acme"), queue_name=queue)
        recovering = await ax.enqueue(
            "briefing", Briefing(company="Globex", turns=2, recovery=True), queue_name=queue
        )
        first = await ax.get_result(plain, timeout=WAIT)
        second = await ax.get_result(recovering, timeout=WAIT)
    assert first.startswith("Acme: solid. (pid ") and second.startswith("Globex: solid. (pid ")
    pids = {int(text.rsplit("pid ", 1)[1].rstrip(")")) for text in (first, second)}
    assert os.getpid() not in pids and program.proc.pid not in pids, "the agents ran in worker processes"
    for task in (plain, recovering):
        detail = ax.activity.detail(task.agent_id)
        assert detail is not None and detail.status is Status.COMPLETE, program.output
        assert progress(task.agent_id) == [("Reading filings", 25), ("Drafting", 75)]
        assert [u for log in detail.logs if (u := TokenUsage.parse(log.message))] == [TokenUsage(30, 15, 45, 3)]
    messages = [log.message for log in ax.activity.detail(recovering.agent_id).logs]  # type: ignore[union-attr]
    assert any(m.startswith("Max turns (2) reached; recovering") for m in messages)
