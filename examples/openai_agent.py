"""An OpenAI Agents SDK agent run as an agentexec task, with its progress watched live.

    OPENAI_API_KEY=sk-... uv run python examples/openai_agent.py ["Company name"]

A pool task builds an agent that has ``runner.tools.report_status``; ``ax.OpenAIRunner`` runs it,
records each progress report on the task's activity, recovers if the agent runs out of turns,
and logs the tokens used. This script enqueues the task, prints the activity log as it grows,
then the result. Everything runs in this one process on in-memory backends, so there is nothing
to set up; in production the pool runs in worker processes on Redis and PostgreSQL and a web app
reads ``ax.activity.detail`` instead.

Without OPENAI_API_KEY it explains itself and exits 0. ``OPENAI_MODEL`` picks the model
(default gpt-4.1-mini); ``OPENAI_BASE_URL`` points the SDK at another Responses-API server.
The same flow runs offline, with a scripted model, in
packages/agentexec-openai/tests/test_openai_pool.py.
"""

from __future__ import annotations

import os
import sys
import time
from uuid import UUID

import agentexec as ax
from pydantic import BaseModel

EXPLANATION = """\
examples/openai_agent.py runs a real OpenAI agent as an agentexec task, and needs an API key.

  OPENAI_API_KEY=sk-... uv run python examples/openai_agent.py "Acme Corporation"

What it does: a pool task builds an Agents SDK agent with runner.tools.report_status, runs it
with ax.OpenAIRunner(agent_id, max_turns_recovery=True), and this script prints the task's
activity log live (each progress report, then the token usage) and the agent's answer.
It costs a few thousand tokens of OPENAI_MODEL (default gpt-4.1-mini).

No OPENAI_API_KEY is set, so nothing was run. To see the same flow offline, with a scripted
model instead of the API:

  uv run pytest packages/agentexec-openai/tests/test_openai_pool.py -v
"""

QUEUE = "openai_example"


class Briefing(BaseModel):
    company: str


def build_pool() -> ax.Pool:
    from agentexec.runtime import build_backends

    url = "memory://openai-example"
    backends = build_backends({"queue": url, "results": url, "events": url, "activity": url})
    pool = ax.Pool(queue_name=QUEUE, backends=backends)

    @pool.task("briefing")
    async def briefing(agent_id: UUID, context: Briefing) -> str:
        from agents import Agent

        runner = ax.OpenAIRunner(agent_id, max_turns_recovery=True, recovery_turns=2)
        agent = Agent(
            name="Analyst",
            instructions=(
                "You write short company briefings from what you already know. Work in three "
                "steps: recall the basics, pick the three most important facts, write the "
                f"briefing.\n\n{runner.prompts.report_status}"
            ),
            tools=[runner.tools.report_status],
            model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"),
        )
        result = await runner.run(
            agent, f"Write a three-bullet briefing about {context.company}.", max_turns=8
        )
        return str(result.final_output)

    return pool


async def watch(company: str) -> int:
    import anyio

    task = await ax.enqueue("briefing", Briefing(company=company), queue_name=QUEUE)
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
                answer = await ax.get_result(task, timeout=180)
            finally:
                await anyio.sleep(0.4)  # let the follower print the last lines
                tg.cancel_scope.cancel()
    except ax.TaskFailedError as exc:
        print(f"\nthe task failed: {exc.error}", file=sys.stderr)
        return 1
    print(f"\nanswer:\n{answer}")
    return 0


def main() -> int:
    if not os.environ.get("OPENAI_API_KEY"):
        print(EXPLANATION)
        return 0
    import anyio

    company = sys.argv[1] if len(sys.argv) > 1 else "the Acme Corporation"
    pool = build_pool()
    pool.start()
    started = time.monotonic()
    try:
        return anyio.run(watch, company)
    finally:
        pool.shutdown(timeout=5)
        print(f"(done in {time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    sys.exit(main())
