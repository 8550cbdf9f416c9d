"""Issue #16: ``pool.add_task(name, func, context_type=, result_type=)`` (the original agentexec's
README, 0.1.5+), and its ``lock_key=`` form (per-key serialization is issue #15's).

Runs a real pool on the memory backends (workers on a thread) and on the embedded SQL
transport on SQLite (worker processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
import sqlalchemy as sa
from agentexec.runtime import Backends, build_backends, set_backends
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

WAIT = 30
KINDS = ("queue", "results", "events", "activity")


class ObservationContext(BaseModel):
    user_id: str
    text: str


class Association(BaseModel):
    user_id: str
    words: int


async def untyped_handler(agent_id, context):  # type: ignore[no-untyped-def]  # no annotations at all
    return {"user_id": context.user_id, "words": len(context.text.split())}


async def typed_handler(agent_id: UUID, context: ObservationContext) -> Association:
    return Association(user_id=context.user_id, words=len(context.text.split()))


@pytest.fixture(params=["memory", "sqlite"])
def backends(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Backends]:
    if request.param == "memory":
        urls = dict.fromkeys(KINDS, f"memory://{unique_name}")
    else:
        db = f"sqlite:///{tmp_path / 'agentexec.db'}"
        ax.Base.metadata.create_all(sa.create_engine(db))
        urls = dict.fromkeys(KINDS, db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "queue_name", unique_name)
        mp.setattr(ax.CONF, "num_workers", 1)
        mp.setattr(ax.CONF, "graceful_shutdown_timeout", 5)
        built = build_backends(urls)  # type: ignore[arg-type]
        set_backends(built)
        try:
            yield built
        finally:
            set_backends(None)


def test_add_task_registers_like_the_decorator() -> None:
    pool = ax.Pool(backends=build_backends(dict.fromkeys(KINDS, "memory://add-task")))  # type: ignore[arg-type]
    assert pool.add_task("associate", typed_handler) is None  # as the original: returns nothing
    definition = pool.tasks["associate"]
    assert definition.handler is typed_handler
    assert definition.context_class is ObservationContext
    assert definition.result_type is Association  # inferred from the return annotation
    with pytest.raises(ValueError, match="already registered"):
        pool.add_task("associate", typed_handler)
    # a handler without annotations needs context_type=
    with pytest.raises(TypeError, match="`context` has no type annotation"):
        pool.add_task("untyped", untyped_handler)
    pool.add_task("untyped", untyped_handler, context_type=ObservationContext, result_type=Association)
    assert pool.tasks["untyped"].context_class is ObservationContext
    assert pool.tasks["untyped"].result_type is Association
    with pytest.raises(TypeError, match="pydantic BaseModel subclass"):
        pool.add_task("bad", untyped_handler, context_type=dict)  # type: ignore[arg-type]


async def test_add_task_handlers_run_and_results_come_back_typed(
    backends: Backends, unique_name: str
) -> None:
    pool = ax.Pool(queue_name=unique_name, backends=backends)
    pool.add_task("untyped", untyped_handler, context_type=ObservationContext, result_type=Association)
    pool.add_task("typed", typed_handler)
    pool.start()
    try:
        ctx = ObservationContext(user_id="u1", text="three words here")
        first = await ax.enqueue("untyped", ctx)
        second = await ax.enqueue("typed", ctx)
        with anyio.fail_after(WAIT):
            # the handler returned a dict; result_type= rebuilds it, as the original did
            assert await ax.get_result(first, timeout=WAIT) == Association(user_id="u1", words=3)
            assert await ax.get_result(second, timeout=WAIT) == Association(user_id="u1", words=3)
    finally:
        await anyio.to_thread.run_sync(pool.shutdown)
    found = ax.activity.detail(agent_id=first.agent_id)
    assert found is not None and found.status == ax.Status.COMPLETE


def test_the_originals_lock_key_form() -> None:
    pool = ax.Pool(backends=build_backends(dict.fromkeys(KINDS, "memory://lock-key")))  # type: ignore[arg-type]

    @pool.task("associate_observation", lock_key="user:{user_id}")
    async def associate(agent_id: UUID, context: ObservationContext) -> Any: ...

    pool.add_task("associate_other", typed_handler, lock_key="user:{user_id}")
    assert set(pool.tasks) == {"associate_observation", "associate_other"}
    ctx = ObservationContext(user_id="u7", text="hi")
    assert pool.tasks["associate_observation"].locks_for(ctx.model_dump(mode="json")) == {"key:user:u7": 1}
    with pytest.raises(ValueError, match="not a field of ObservationContext"):
        pool.add_task("typo", typed_handler, lock_key="user:{userid}")


async def test_lock_key_runs_one_per_user_at_a_time(backends: Backends, unique_name: str) -> None:
    """The original's form, running: tasks of one user never overlap, and another user's task
    runs meanwhile."""
    spans: list[tuple[str, float, float]] = []
    pool = ax.Pool(queue_name=unique_name, backends=backends)

    @pool.task("associate_observation", lock_key="user:{user_id}")
    async def associate(agent_id: UUID, context: ObservationContext) -> list[float]:
        import time

        start = time.time()
        await anyio.sleep(0.2)
        return [start, time.time()]

    pool.start()
    try:
        tasks = [
            await ax.enqueue(associate, ObservationContext(user_id=user, text="x"))
            for user in ("a", "a", "a", "b")
        ]
        with anyio.fail_after(WAIT):
            for task, user in zip(tasks, ("a", "a", "a", "b"), strict=True):
                start, end = await ax.get_result(task, timeout=WAIT)
                spans.append((user, start, end))
    finally:
        await anyio.to_thread.run_sync(pool.shutdown)
    own = sorted((s, e) for u, s, e in spans if u == "a")
    assert all(own[i][1] <= own[i + 1][0] for i in range(len(own) - 1)), own
    other = next((s, e) for u, s, e in spans if u == "b")
    assert other[0] < own[-1][0], "user b waited behind user a's chain"
