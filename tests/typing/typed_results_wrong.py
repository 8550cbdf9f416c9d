"""Mistakes mypy must reject (tests/test_typing.py checks each `# error:` line is reported)."""

from __future__ import annotations

from uuid import UUID

import agentexec as ax
from pydantic import BaseModel

pool = ax.Pool()


class Research(BaseModel):
    company: str


class Other(BaseModel):
    name: str


@pool.task("research")
async def research(agent_id: UUID, context: Research) -> str:
    return context.company


async def producer() -> None:
    task = await ax.enqueue(research, Research(company="Acme"))
    n: int = await ax.get_result(task)  # error: [arg-type]
    await ax.enqueue(reserch, Research(company="Acme"))  # noqa: F821  # error: [name-defined]
    await ax.enqueue(research, Other(name="Acme"))  # error: [arg-type]
    a, b = await ax.gather(task, task)
    flag: bool = a  # error: [assignment]
    print(n, b, flag)
