"""``pipeline.enqueue`` with a pool on the in-process backends: the lane, the activity, errors."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel, ValidationError

import agentexec as ax
from agentexec.pipeline import KIND, Pipeline
from agentexec.runtime import Backends, build_backends, set_backends

pytestmark = pytest.mark.anyio


class Ctx(BaseModel):
    value: int


class Wrong(BaseModel):
    name: str


class Other(BaseModel):
    value: int
    extra: str = "x"


@pytest.fixture
def backends(unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backends]:
    monkeypatch.setattr(ax.CONF, "queue_name", unique_name)
    monkeypatch.setattr(ax.CONF, "num_workers", 1)
    url = f"memory://{unique_name}"
    built = build_backends({k: url for k in ("queue", "results", "events", "activity")})  # type: ignore[misc]
    set_backends(built)
    yield built
    set_backends(None)


def _pipeline(pool: ax.Pool) -> Pipeline:
    pipeline = Pipeline(pool)

    class Doubler(pipeline.Base):
        @pipeline.step(0)
        async def double(self, ctx: Ctx) -> int:
            return ctx.value * 2

    return pipeline


async def test_enqueue_queues_on_the_pipelines_lane_with_activity(backends: Backends) -> None:
    pool = ax.Pool(backends=backends)
    pipeline = _pipeline(pool)
    assert "doubler" in pool.tasks
    task = await pipeline.enqueue(context=Ctx(value=4), priority=ax.Priority.HIGH)
    lane = pool.lane_queue_name("pipelines")
    assert task.queue_name == lane == f"{pool.queue_name}:pipelines"
    assert await backends.queue.length(lane) == 1
    assert await backends.queue.length(pool.queue_name) == 0
    lease = await backends.queue.reserve(lane, "inspector", 0)
    assert lease is not None
    assert lease.envelope.kind == KIND and lease.envelope.task_name == "doubler"
    assert lease.envelope.priority is ax.Priority.HIGH
    await backends.queue.release(lease)
    detail = await ax.activity.adetail(task.agent_id)
    assert detail is not None and detail.status is ax.Status.QUEUED
    assert detail.agent_type == "doubler"

    pool.start()
    try:
        with anyio.fail_after(10):
            assert await ax.get_result(task, timeout=10) == 8
    finally:
        pool.shutdown(timeout=2)


async def test_enqueue_validates_the_context_into_the_first_steps_model(backends: Backends) -> None:
    pipeline = _pipeline(ax.Pool(backends=backends))
    task = await pipeline.enqueue(context=Other(value=3))
    assert isinstance(task.context, Ctx) and task.context.value == 3
    with pytest.raises(ValidationError, match="value"):
        await pipeline.enqueue(context=Wrong(name="no value"))


async def test_enqueue_without_a_pool_says_so() -> None:
    pipeline = Pipeline()

    class Alone(pipeline.Base):
        @pipeline.step(0)
        async def only(self, ctx: Ctx) -> int:
            return 1

    with pytest.raises(RuntimeError, match=r"has no pool: create it with ax.Pipeline\(pool\)"):
        await pipeline.enqueue(context=Ctx(value=1))


async def test_enqueue_needs_a_model_annotated_context(backends: Backends) -> None:
    pool = ax.Pool(backends=backends)
    pipeline = Pipeline(pool)

    class Untyped(pipeline.Base):
        @pipeline.step(0)
        async def only(self, ctx):  # type: ignore[no-untyped-def]
            return ctx

    assert "untyped" not in pool.tasks
    assert await pipeline.run(None, {"plain": "dict"}) == {"plain": "dict"}  # inline still works
    with pytest.raises(TypeError, match="annotate the first step's context with a pydantic model"):
        await pipeline.enqueue(context=Ctx(value=1))


async def test_enqueue_before_a_class_is_defined() -> None:
    with pytest.raises(RuntimeError, match="define `class MyPipeline"):
        await Pipeline().enqueue(context=Ctx(value=1))


async def test_pipeline_name_clashing_with_a_task_is_reported(backends: Backends) -> None:
    pool = ax.Pool(backends=backends)

    @pool.task("doubler")
    async def doubler(agent_id: UUID, context: Ctx) -> int:
        return 0

    with pytest.raises(ValueError, match="a task named 'doubler' is already registered"):
        _pipeline(pool)
