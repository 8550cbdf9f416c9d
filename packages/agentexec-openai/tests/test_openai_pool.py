"""End to end: a pool task runs an agent with ``ax.OpenAIRunner`` (real ``Runner.run``, scripted
model); the caller enqueues it, awaits ``ax.get_result`` and reads progress in
``ax.activity.detail``. On memory backends the pool's workers run on a thread of this process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.runners import TokenUsage
from agentexec_openai.testing import ScriptedModel, answer, scripted_run_config, tool_call
from agents import Agent
from pydantic import BaseModel

pytestmark = pytest.mark.anyio


class Briefing(BaseModel):
    company: str
    recovery: bool = False


def report(message: str, percentage: int) -> list[Any]:
    return [tool_call("report_activity", message=message, percentage=percentage)]


@pytest.fixture
def pool_with(memory_backends: Any) -> Iterator[Any]:
    """``pool_with(model)``: a started pool whose ``briefing`` task runs an agent on ``model``."""
    pools: list[ax.Pool] = []

    def start(model: ScriptedModel) -> ax.Pool:
        pool = ax.Pool(queue_name=f"openai_{uuid.uuid4().hex[:8]}", backends=memory_backends)

        @pool.task("briefing")
        async def briefing(agent_id: UUID, context: Briefing) -> str:
            runner = ax.OpenAIRunner(
                agent_id, max_turns_recovery=context.recovery, run_config=scripted_run_config(model)
            )
            agent = Agent(
                name="Analyst",
                instructions=f"You write briefings.\n\n{runner.prompts.report_status}",
                tools=[runner.tools.report_status],
                model="gpt-4.1",
            )
            result = await runner.run(agent, f"Brief me on {context.company}", max_turns=3)
            return str(result.final_output)

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
    assert detail is not None
    assert detail.status is Status.COMPLETE
    progress = [(log.message, log.percentage) for log in detail.logs if log.percentage in (25, 75)]
    assert progress == [("Reading filings", 25), ("Drafting", 75)]
    usages = [u for log in detail.logs if (u := TokenUsage.parse(log.message))]
    assert usages == [TokenUsage(30, 15, 45, 3)]
    assert "Brief me on Acme" in model.calls[0].transcript()[0]


async def test_pool_task_that_runs_out_of_turns_ends_error_with_the_message(pool_with: Any) -> None:
    model = ScriptedModel([report(f"step {i}", 10 * i) for i in range(3)])
    pool = pool_with(model)
    with anyio.fail_after(20):
        task = await ax.enqueue("briefing", Briefing(company="Acme"), queue_name=pool.queue_name)
        with pytest.raises(ax.TaskFailedError, match=r"Max turns \(3\) exceeded"):
            await ax.get_result(task, timeout=15)
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.ERROR
    assert "Max turns (3) exceeded" in detail.logs[-1].message
    assert [log.percentage for log in detail.logs if log.message.startswith("step")] == [0, 10, 20]


async def test_pool_task_recovers_from_max_turns(pool_with: Any) -> None:
    model = ScriptedModel([*(report(f"step {i}", 10 * i) for i in range(3)), [answer("Partial: Acme.")]])
    pool = pool_with(model)
    with anyio.fail_after(20):
        task = await ax.enqueue(
            "briefing", Briefing(company="Acme", recovery=True), queue_name=pool.queue_name
        )
        assert await ax.get_result(task, timeout=15) == "Partial: Acme."
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.COMPLETE
    assert any(log.message.startswith("Max turns (3) reached; recovering") for log in detail.logs)
