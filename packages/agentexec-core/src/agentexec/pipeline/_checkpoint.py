"""Step checkpoints: each finished step's value, stored so a redelivered pipeline can resume.

A checkpoint lives in the result backend under ``uuid5(agent_id, "step:{k}")`` with
``CONF.result_ttl``. Its value is JSON: each item is encoded by the rules of
:mod:`agentexec.results` (a pydantic model keeps its ``module:qualname`` and comes back as that
model when this process has the class), and a top-level tuple is recorded as such so that it is
unpacked again on resume.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from agentexec.backends import ResultBackend
from agentexec.results import Outcome

#: no annotation to shape a resumed value by
UNSET: Any = object()


class CheckpointError(TypeError):
    """A step returned a value that cannot be stored as JSON, so the pipeline cannot resume."""


class Checkpoint(BaseModel):
    """The stored form of one finished step."""

    v: int = 1
    index: int
    step: str
    is_tuple: bool
    items: list[Outcome]

    def value(self) -> Any:
        """The step's value as the next step receives it (a tuple stays a tuple)."""
        values = tuple(item.unwrap(self.step) for item in self.items)
        return values if self.is_tuple else values[0]


def checkpoint_id(agent_id: UUID, index: int) -> UUID:
    return uuid.uuid5(agent_id, f"step:{index}")


def encode(index: int, step: str, value: Any) -> bytes:
    is_tuple = isinstance(value, tuple)
    items = value if is_tuple else (value,)
    try:
        outcomes = [Outcome.ok(step, item) for item in items]
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"step {step!r} returned a value that cannot be checkpointed as JSON ({exc}). Return "
            f"JSON-compatible values (str, int, float, bool, None, lists, dicts, tuples) or "
            f"pydantic models, so the pipeline can resume from this step if its worker dies."
        ) from exc
    return Checkpoint(index=index, step=step, is_tuple=is_tuple, items=outcomes).model_dump_json().encode()


def decode(data: bytes) -> Checkpoint:
    return Checkpoint.model_validate_json(data)


async def latest(
    results: ResultBackend, agent_id: UUID, step_names: list[str]
) -> Checkpoint | None:
    """The checkpoint of the last finished step, or None when no step has finished.

    The first step's checkpoint is read first: without it no step has finished, so a fresh run
    costs one read. Otherwise the search goes from the last step backwards. A checkpoint whose
    step name no longer matches (the pipeline's code changed between deliveries) is not trusted.
    """
    first = await _read(results, agent_id, 0, step_names)
    if first is None:
        return None
    for index in range(len(step_names) - 1, 0, -1):
        found = await _read(results, agent_id, index, step_names)
        if found is not None:
            return found
    return first


async def _read(
    results: ResultBackend, agent_id: UUID, index: int, step_names: list[str]
) -> Checkpoint | None:
    data = await results.get(checkpoint_id(agent_id, index))
    if data is None:
        return None
    try:
        found = decode(data)
    except ValueError:
        return None
    return found if found.index == index and found.step == step_names[index] else None


def coerce(value: Any, annotation: Any) -> Any:
    """A resumed value shaped by the parameter's annotation where that is possible.

    Checkpoints hold JSON, so a model whose class the reading process lacks, or a model nested in
    a container, comes back as a dict; the step's annotation says what it should be.
    """
    if annotation is UNSET or annotation is Any:
        return value
    try:
        return TypeAdapter(annotation).validate_python(value)
    except Exception:  # the annotation is not something pydantic can build; keep the JSON value
        return value

