"""Checkpoints: values survive as JSON (tuples as tuples, models as models) and a rerun resumes."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from agentexec.memory.results import MemoryResults
from agentexec.pipeline import CheckpointError, Pipeline, PipelineStepError
from agentexec.pipeline import _checkpoint as checkpoint
from agentexec.pipeline._engine import run_steps

pytestmark = pytest.mark.anyio


class Ctx(BaseModel):
    value: int


class Found(BaseModel):
    name: str
    score: float


@pytest.mark.parametrize(
    "value",
    [
        None,
        7,
        "text",
        [1, 2],
        {"a": [1, {"b": None}]},
        (1, "two", [3]),
        (),
        (Found(name="x", score=0.5), {"k": 1}),
        Found(name="y", score=1.0),
        ((1, 2), 3),
    ],
)
def test_roundtrip(value: Any) -> None:
    restored = checkpoint.decode(checkpoint.encode(0, "s", value)).value()
    if isinstance(value, tuple):
        assert isinstance(restored, tuple)
        # nested containers follow JSON (an inner tuple becomes a list); top-level tuples stay tuples
        assert restored == tuple(list(v) if isinstance(v, tuple) else v for v in value)
    else:
        assert restored == value
        assert type(restored) is type(value)


def test_unknown_model_class_comes_back_as_dict() -> None:
    data = checkpoint.encode(0, "s", Found(name="x", score=1.0)).replace(
        f"{Found.__module__}:Found".encode(), b"no_such_module:Found"
    )
    assert checkpoint.decode(data).value() == {"name": "x", "score": 1.0}


def test_value_that_is_not_json_is_reported() -> None:
    with pytest.raises(CheckpointError, match="step 's' returned a value that cannot be checkpointed"):
        checkpoint.encode(0, "s", object())


def test_coerce_by_annotation() -> None:
    assert checkpoint.coerce({"name": "x", "score": 2}, Found) == Found(name="x", score=2.0)
    assert checkpoint.coerce([1, 2], tuple[int, int]) == (1, 2)
    assert checkpoint.coerce("keep", int) == "keep"  # not buildable: the JSON value is kept
    assert checkpoint.coerce({"a": 1}, checkpoint.UNSET) == {"a": 1}


def _counting_pipeline(counts: dict[str, int], fail_at: set[str]) -> Pipeline:
    pipeline = Pipeline()

    class Counted(pipeline.Base):
        @pipeline.step(0)
        async def first(self, ctx: Ctx) -> tuple[int, Found]:
            counts["first"] += 1
            return ctx.value, Found(name="a", score=1.0)

        @pipeline.step(1)
        async def second(self, value: int, found: Found) -> dict[str, Any]:
            counts["second"] += 1
            assert isinstance(found, Found)
            if "second" in fail_at:
                raise RuntimeError("worker died")
            return {"value": value + 1, "found": found.name}

        @pipeline.step(2)
        async def third(self, data: dict[str, Any]) -> str:
            counts["third"] += 1
            if "third" in fail_at:
                raise RuntimeError("worker died")
            return f"{data['found']}:{data['value']}"

    return pipeline


@pytest.mark.parametrize(
    ("fail_at", "expected_counts"),
    [
        ({"second"}, {"first": 1, "second": 2, "third": 1}),
        ({"third"}, {"first": 1, "second": 1, "third": 2}),
    ],
)
async def test_rerun_resumes_after_the_last_finished_step(
    fail_at: set[str], expected_counts: dict[str, int]
) -> None:
    counts = {"first": 0, "second": 0, "third": 0}
    pipeline = _counting_pipeline(counts, fail_at)
    results = MemoryResults()
    agent_id = uuid4()
    progress: list[tuple[str, int]] = []

    async def record(message: str, percentage: int) -> None:
        progress.append((message, percentage))

    kwargs: dict[str, Any] = dict(agent_id=agent_id, checkpoints=results, progress=record)
    cls = pipeline._require_class()
    with pytest.raises(PipelineStepError) as info:
        await run_steps("counted", pipeline.steps, cls(), Ctx(value=1), resume=False, **kwargs)
    assert info.value.step in fail_at
    fail_at.clear()  # the redelivery succeeds
    progress.clear()
    assert await run_steps("counted", pipeline.steps, cls(), Ctx(value=1), resume=True, **kwargs) == "a:2"
    assert counts == expected_counts
    assert progress[0][0].startswith("Resuming after step")


async def test_checkpoint_of_other_code_is_not_trusted() -> None:
    counts = {"first": 0, "second": 0, "third": 0}
    pipeline = _counting_pipeline(counts, set())
    results = MemoryResults()
    agent_id = uuid4()
    await results.set(checkpoint.checkpoint_id(agent_id, 0), checkpoint.encode(0, "renamed", (5, {})), 60)
    assert await checkpoint.latest(results, agent_id, [s.name for s in pipeline.steps]) is None
