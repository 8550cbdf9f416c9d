"""A pydantic-ai agent run as an agentexec task, with its progress watched live.

    OPENAI_API_KEY=sk-... uv run python examples/pydantic_ai_agent.py ["Company name"]
    uv run python examples/pydantic_ai_agent.py --offline ["Company name"]

A pool task builds a pydantic-ai ``Agent`` that has ``runner.tools.report_status``;
``ax.PydanticAIRunner`` runs it, records each progress report on the task's activity, recovers
if the agent runs out of turns (model requests), and logs the tokens used. This script enqueues
the task, prints the activity log as it grows, then the structured result. Everything runs in
this one process on in-memory backends, so there is nothing to set up; in production the pool
runs in worker processes on Redis and PostgreSQL and a web app reads ``ax.activity.detail``.

Without OPENAI_API_KEY it explains itself and exits 0. ``--offline`` runs the same flow with a
scripted pydantic-ai ``FunctionModel`` instead of a real model: no key, no network.
``PYDANTIC_AI_MODEL`` picks the model (default ``openai:gpt-4.1-mini``; the OpenAI models need
``pip install 'pydantic-ai-slim[openai]'``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any
from uuid import UUID

import agentexec as ax
from pydantic import BaseModel

EXPLANATION = """\
examples/pydantic_ai_agent.py runs a real pydantic-ai agent as an agentexec task, and needs an
API key for its model.

  OPENAI_API_KEY=sk-... uv run python examples/pydantic_ai_agent.py "Acme Corporation"

What it does: a pool task builds a pydantic-ai Agent with runner.tools.report_status and a
structured output type, runs it with ax.PydanticAIRunner(agent_id, max_turns_recovery=True),
and this script prints the task's activity log live (each progress report, then the token
usage) and the agent's briefing. It costs a few thousand tokens of PYDANTIC_AI_MODEL
(default openai:gpt-4.1-mini).

No OPENAI_API_KEY is set, so nothing was run. To see the same flow offline, with a scripted
model instead of the API:

  uv run python examples/pydantic_ai_agent.py --offline
"""

QUEUE = "pydantic_ai_example"


class Request(BaseModel):
    company: str
    offline: bool = False


class Briefing(BaseModel):
    """The agent's answer: pydantic-ai validates the model's output into this."""

    company: str
    bullets: list[str]


def offline_model(company: str) -> Any:
    """A scripted model that behaves like a well-mannered LLM: two progress reports, then the
    structured answer (through the agent's output tool)."""
    from agentexec_pydantic_ai.testing import ScriptedModel, final_result, tool_call

    return ScriptedModel([
        [tool_call("report_activity", message="Recalling the basics", percentage=30)],
        [tool_call("report_activity", message="Writing the briefing", percentage=80)],
        [final_result(company=company, bullets=["Makes anvils.", "Founded 1949.", "Sells to coyotes."])],
    ])


def build_pool() -> ax.Pool:
    from agentexec.runtime import build_backends

    url = "memory://pydantic-ai-example"
    backends = build_backends({"queue": url, "results": url, "events": url, "activity": url})
    pool = ax.Pool(queue_name=QUEUE, backends=backends)

    @pool.task("briefing")
    async def briefing(agent_id: UUID, context: Request) -> Briefing:
        from pydantic_ai import Agent

        model = offline_model(context.company) if context.offline else None
        runner = ax.PydanticAIRunner(agent_id, max_turns_recovery=True, recovery_turns=2, model=model)
        agent = Agent(
            os.environ.get("PYDANTIC_AI_MODEL", "openai:gpt-4.1-mini"),
            defer_model_check=True,  # the offline run never builds the real model
            instructions=(
                "You write short company briefings from what you already know. Work in three "
                "steps: recall the basics, pick the three most important facts, write the "
                "briefing."
            ),  # the runner adds runner.prompts.report_status, since the agent has the tool
            tools=[runner.tools.report_status],
            output_type=Briefing,
        )
        result = await runner.run(
            agent, f"Write a three-bullet briefing about {context.company}.", max_turns=8
        )
        return result.output

    return pool


async def watch(request: Request) -> int:
    import anyio

    task = await ax.enqueue("briefing", request, queue_name=QUEUE)
    print(f"enqueued task {task.agent_id}; its activity log:")
    shown = 0

    async def follow() -> None:
        nonlocal shown
        while True:
            detail = await ax.activity.adetail(task.agent_id)
            logs = detail.logs if detail else []
            for entry in logs[shown:]:
                pct = "" if entry.percentage is None else f" {entry.percentage:3d}%"
                print(f"  [{entry.status.value:8}]{pct} {entry.message}")
            shown = len(logs)
            await anyio.sleep(0.3)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            try:
                answer = await ax.get_result(task, timeout=180, result_type=Briefing)
            finally:
                await anyio.sleep(0.4)  # let the follower print the last lines
                tg.cancel_scope.cancel()
    except ax.TaskFailedError as exc:
        print(f"\nthe task failed: {exc.error}", file=sys.stderr)
        return 1
    print(f"\nbriefing on {answer.company}:")
    for bullet in answer.bullets:
        print(f"- {bullet}")
    return 0


def main(argv: list[str]) -> int:
    offline = "--offline" in argv
    args = [a for a in argv if a != "--offline"]
    if not offline and not os.environ.get("OPENAI_API_KEY"):
        print(EXPLANATION)
        return 0
    import anyio

    request = Request(company=args[0] if args else "the Acme Corporation", offline=offline)
    pool = build_pool()
    pool.start()
    started = time.monotonic()
    try:
        return anyio.run(watch, request)
    finally:
        pool.shutdown(timeout=5)
        print(f"(done in {time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
