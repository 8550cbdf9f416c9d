"""Per-key locks, concurrency limits, enqueue keys, and pipeline cancellation on the
in-process backends (the worker code is the same in worker processes: tests/e2e runs the
locks on every stack, the kit's suites prove each backend)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.runtime import Backends
from agentexec.task import Envelope

pytestmark = pytest.mark.anyio

WAIT = 10


class Job(BaseModel):
    user_id: str
    seconds: float = 0.05


async def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def overlaps(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


async def test_max_concurrency_bounds_runs_and_lock_key_filled_by_the_worker(
    make_pool: Any, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "worker_concurrency", 6)
    pool = make_pool()
    spans: dict[str, list[tuple[float, float]]] = {}

    @pool.task("limited", max_concurrency=2)
    async def limited(agent_id: UUID, context: Job) -> None:
        start = time.monotonic()
        await anyio.sleep(context.seconds)
        spans.setdefault("limited", []).append((start, time.monotonic()))

    @pool.task("per_user", lock_key="user:{user_id}")
    async def per_user(agent_id: UUID, context: Job) -> None:
        start = time.monotonic()
        await anyio.sleep(context.seconds)
        spans.setdefault(context.user_id, []).append((start, time.monotonic()))

    pool.start()
    tasks = [await ax.enqueue(limited, Job(user_id=str(n)), queue_name=pool.queue_name) for n in range(6)]
    # a producer that does not know the task (no pool in its process): its envelope has no
    # locks, and the worker fills them in from its definition
    for _ in range(4):
        env = Envelope(
            agent_id=uuid.uuid4(), task_name="per_user", context={"user_id": "u1", "seconds": 0.05},
            queue_name=pool.queue_name,
        )
        await backends.activity.acreate("per_user", CONF.activity_message_create, env.agent_id)
        await backends.queue.push(env)
        tasks.append(ax.Task(agent_id=env.agent_id, task_name="per_user", context=Job(user_id="u1")))
    await ax.gather(*tasks, timeout=WAIT)
    assert len(spans["limited"]) == 6 and overlaps(spans["limited"]) == 2
    assert len(spans["u1"]) == 4 and overlaps(spans["u1"]) == 1
    assert await backends.queue.parked(pool.queue_name) == 0  # type: ignore[attr-defined]


async def test_enqueue_key_returns_the_task_queued_or_running_until_it_ends(make_pool: Any) -> None:
    pool = make_pool()
    release = anyio.Event()
    runs: list[UUID] = []

    @pool.task("report")
    async def report(agent_id: UUID, context: Job) -> str:
        runs.append(agent_id)
        await release.wait()
        return context.user_id

    queued = await ax.enqueue(report, Job(user_id="a"), queue_name=pool.queue_name, key="report:a")
    again = await ax.enqueue(report, Job(user_id="a"), queue_name=pool.queue_name, key="report:a")
    assert again.agent_id == queued.agent_id  # queued: the same task
    other = await ax.enqueue(report, Job(user_id="b"), queue_name=pool.queue_name, key="report:b")
    assert other.agent_id != queued.agent_id
    pool.start()
    await wait_for(lambda: queued.agent_id in runs)
    running = await ax.enqueue(report, Job(user_id="a"), queue_name=pool.queue_name, key="report:a")
    assert running.agent_id == queued.agent_id  # running: still the same task
    release.set()
    assert await ax.get_result(queued, timeout=WAIT) == "a"
    await ax.get_result(other, timeout=WAIT)
    fresh = await ax.enqueue(report, Job(user_id="a"), queue_name=pool.queue_name, key="report:a")
    assert fresh.agent_id != queued.agent_id  # the first ended: its key went with it
    assert await ax.get_result(fresh, timeout=WAIT) == "a"
    # a cancelled queued task lets its key go too
    blocked = await ax.enqueue(report, Job(user_id="c"), queue_name="nobody-takes-this", key="k")
    await ax.cancel(blocked.agent_id, queue_name="nobody-takes-this")
    after = await ax.enqueue(report, Job(user_id="c"), queue_name="nobody-takes-this", key="k")
    assert after.agent_id != blocked.agent_id


async def test_a_retry_keeps_its_enqueue_key(make_pool: Any) -> None:
    pool = make_pool()
    runs: list[int] = []

    @pool.task("flaky", retries=1, backoff=0.3)
    async def flaky(agent_id: UUID, context: Job) -> int:
        runs.append(1)
        if len(runs) == 1:
            raise ConnectionError("first run fails")
        return len(runs)

    pool.start()
    first = await ax.enqueue(flaky, Job(user_id="a"), queue_name=pool.queue_name, key="once")
    await wait_for(lambda: len(runs) == 1)
    await anyio.sleep(0.1)  # waiting out its backoff in the delayed set
    again = await ax.enqueue(flaky, Job(user_id="a"), queue_name=pool.queue_name, key="once")
    assert again.agent_id == first.agent_id
    assert await ax.get_result(first, timeout=WAIT) == 2


async def test_a_parked_task_is_cancelled_like_a_queued_one(make_pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "worker_concurrency", 2)
    pool = make_pool()
    started: list[str] = []

    @pool.task("per_user", lock_key="user:{user_id}")
    async def per_user(agent_id: UUID, context: Job) -> None:
        started.append(str(agent_id))
        await anyio.sleep(context.seconds)

    pool.start()
    holder = await ax.enqueue(per_user, Job(user_id="u", seconds=1.0), queue_name=pool.queue_name)
    await wait_for(lambda: started == [str(holder.agent_id)])
    parked = await ax.enqueue(per_user, Job(user_id="u"), queue_name=pool.queue_name)
    queue = ax.runtime.get_backends().queue
    with anyio.fail_after(WAIT):
        while await queue.parked(pool.queue_name) != 1:  # type: ignore[attr-defined]
            await anyio.sleep(0.01)
    result = await ax.cancel(parked.agent_id, reason="not needed", queue_name=pool.queue_name)
    assert result.state == "cancelled"
    await ax.get_result(holder, timeout=WAIT)
    with pytest.raises(ax.TaskCancelledError):
        await ax.get_result(parked, timeout=WAIT)
    assert started == [str(holder.agent_id)]


async def test_cancelling_a_running_pipeline_cancels_its_step_and_skips_the_rest(
    make_pool: Any,
) -> None:
    from agentexec.pipeline import Pipeline

    pool = make_pool()
    pipeline = Pipeline(pool)
    steps: list[str] = []

    class Two(pipeline.Base):
        @pipeline.step(0)
        async def first(self, ctx: Job) -> Job:
            steps.append("first started")
            try:
                await anyio.sleep(60)
            except anyio.get_cancelled_exc_class():
                steps.append("first cancelled")
                raise
            return ctx

        @pipeline.step(1)
        async def second(self, ctx: Job) -> str:
            steps.append("second")
            return "done"

    pool.start()
    task = await pipeline.enqueue(context=Job(user_id="p"))
    await wait_for(lambda: steps == ["first started"])
    result = await ax.cancel(task.agent_id, reason="stop the pipeline")
    assert result.state == "requested"
    with pytest.raises(ax.TaskCancelledError, match="stop the pipeline"):
        await ax.get_result(task, timeout=WAIT)
    await anyio.sleep(0.2)
    assert steps == ["first started", "first cancelled"]
    detail = ax.activity.detail(task.agent_id)
    assert detail is not None and detail.status is Status.CANCELED
