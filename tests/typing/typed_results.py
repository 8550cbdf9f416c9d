"""Checked by mypy --strict in tests/test_typing.py (never run): what a type checker sees of
``ax.enqueue`` / ``ax.get_result`` / ``ax.gather`` for ``@pool.task`` handlers."""

from __future__ import annotations

from typing import Any, assert_type
from uuid import UUID

import agentexec as ax
from pydantic import BaseModel

pool = ax.Pool()


class Research(BaseModel):
    company: str


class Report(BaseModel):
    text: str


@pool.task("research")
async def research(agent_id: UUID, context: Research) -> str:
    return context.company


@pool.task("report")
async def report(agent_id: UUID, context: Research) -> Report:
    return Report(text=context.company)


@pool.task("count")
def count(agent_id: UUID, context: Research) -> int:  # a sync handler
    return len(context.company)


async def producer() -> None:
    task = await ax.enqueue(research, Research(company="Acme"))
    assert_type(task, ax.Task[str])
    assert_type(await ax.get_result(task), str)
    assert_type(await ax.get_result(task, timeout=5), str)

    made = await ax.enqueue(report, Research(company="Acme"), priority=ax.Priority.HIGH)
    assert_type(await ax.get_result(made), Report)

    counted = await ax.enqueue(count, Research(company="Acme"))
    assert_type(await ax.get_result(counted), int)

    assert_type(await ax.gather(task, made, counted), tuple[str, Report, int])
    assert_type(await ax.gather(*[task, task]), tuple[str, ...])

    by_name = await ax.enqueue("research", Research(company="Acme"))
    assert_type(by_name, ax.Task[Any])
    assert_type(await ax.get_result(by_name), Any)
    assert_type(await ax.get_result(by_name, result_type=Report), Report)
    assert_type(await ax.get_result(task.agent_id, 5, Report), Report)
    assert_type(await ax.get_result(task.agent_id), Any)
