"""TaskDefinition infers the context model from the handler, and rejects handlers it cannot use
with a message that shows the expected signature."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from agentexec.task import EXPECTED_SIGNATURE, Task, TaskDefinition


class Ctx(BaseModel):
    company: str
    priority: int = 1


async def good(agent_id: UUID, context: Ctx) -> str:
    return context.company


async def no_annotation(agent_id: UUID, context):  # type: ignore[no-untyped-def]
    return None


async def dict_annotation(agent_id: UUID, context: dict[str, Any]) -> None:
    return None


async def no_context(agent_id: UUID, ctx: Ctx) -> None:
    return None


async def undefined_annotation(agent_id: UUID, context: NotDefinedAnywhere) -> None:  # type: ignore[name-defined] # noqa: F821
    return None


def sync_handler(agent_id: UUID, context: Ctx) -> int:
    return 1


def test_context_class_is_inferred_from_the_annotation() -> None:
    definition = TaskDefinition("research", good)
    assert definition.context_class is Ctx
    assert definition.is_async
    assert not TaskDefinition("sync", sync_handler).is_async


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        (no_annotation, "`context` has no type annotation"),
        (dict_annotation, "which is not a pydantic BaseModel subclass"),
        (no_context, "the handler needs a `context` parameter"),
        (undefined_annotation, "cannot resolve the handler's annotations"),
    ],
)
def test_unusable_handlers_are_rejected_with_the_expected_signature(handler: Any, problem: str) -> None:
    with pytest.raises(TypeError) as info:
        TaskDefinition("research", handler)
    message = str(info.value)
    assert problem in message
    assert "task 'research'" in message
    assert EXPECTED_SIGNATURE in message


def test_an_explicit_context_class_skips_inference() -> None:
    assert TaskDefinition("t", no_annotation, context_class=Ctx).context_class is Ctx


def test_validate_context_accepts_the_model_a_dict_or_another_model() -> None:
    definition = TaskDefinition("t", good)
    ctx = Ctx(company="acme")
    assert definition.validate_context(ctx) is ctx
    assert definition.validate_context({"company": "acme"}) == ctx

    class Other(BaseModel):
        company: str

    assert definition.validate_context(Other(company="acme")) == ctx


def test_task_create_rejects_a_context_that_is_not_a_model() -> None:
    with pytest.raises(TypeError, match="must be a pydantic BaseModel instance, got dict"):
        Task.create("t", {"company": "acme"})  # type: ignore[arg-type]
    task = Task.create("t", Ctx(company="acme"))
    assert isinstance(task.agent_id, UUID) and task.context == Ctx(company="acme")
    assert task.to_envelope("q").context == {"company": "acme", "priority": 1}
