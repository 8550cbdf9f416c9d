"""A pool whose task runs a pydantic-ai agent with ``ax.PydanticAIRunner``, run as a real program
(``python pool_app.py``) by test_pydantic_ai_pool.py: worker processes, the embedded SQL
transport on the SQLite file named by ``AGENTEXEC_DATABASE_URL``, queue ``POOL_QUEUE``.

The model is a ScriptedModel built inside the worker (no network, no key); the answer names the
worker's pid, so the test can tell the agent ran in another process."""

from __future__ import annotations

import os
from uuid import UUID

import agentexec as ax
from agentexec_pydantic_ai.testing import ScriptedModel, answer, tool_call
from pydantic import BaseModel
from pydantic_ai import Agent
from sqlalchemy import create_engine

DATABASE_URL = os.environ["AGENTEXEC_DATABASE_URL"]

engine = create_engine(DATABASE_URL)
ax.Base.metadata.create_all(engine)

pool = ax.Pool(engine=engine, database_url=DATABASE_URL, queue_name=os.environ["POOL_QUEUE"])


class Briefing(BaseModel):
    company: str
    turns: int = 3
    recovery: bool = False


@pool.task("briefing")
async def briefing(agent_id: UUID, context: Briefing) -> str:
    model = ScriptedModel([
        [tool_call("report_activity", message="Reading filings", percentage=25)],
        [tool_call("report_activity", message="Drafting", percentage=75)],
        [answer(f"{context.company}: solid. (pid {os.getpid()})")],
    ])
    runner = ax.PydanticAIRunner(agent_id, max_turns_recovery=context.recovery, model=model)
    agent = Agent(
        "openai:gpt-4.1",
        defer_model_check=True,
        instructions="You write briefings.",
        tools=[runner.tools.report_status],
    )
    result = await runner.run(agent, f"Brief me on {context.company}", max_turns=context.turns)
    return str(result.output)


if __name__ == "__main__":
    pool.run()
