"""Issue #16: ``ax.Tracker(*parts)``, the original agentexec's fan-out counter (README "Dynamic
Fan-Out with Tracker"; ``incr``/``decr``/``count``/``complete`` are coroutines, as in its 0.2+
code), on every result backend: memory, the SQL results table (SQLite, PostgreSQL) and Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import agentexec as ax
import anyio
import pytest
import sqlalchemy as sa
from agentexec.backends import Counters
from agentexec.runtime import Backends, build_backends, set_backends
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

WAIT = 30
KINDS = ("queue", "results", "events", "activity")


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
def backends(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Backends]:
    if request.param == "memory":
        urls = dict.fromkeys(KINDS, f"memory://{unique_name}")
    elif request.param == "sqlite":
        db = f"sqlite:///{tmp_path / 'agentexec.db'}"
        ax.Base.metadata.create_all(sa.create_engine(db))
        urls = dict.fromkeys(KINDS, db)
    elif request.param == "postgresql":
        db = request.getfixturevalue("postgres_server_url")
        ax.Base.metadata.create_all(sa.create_engine(db))
        urls = dict.fromkeys(KINDS, db)
    else:
        redis_url = request.getfixturevalue("redis_server_url")
        if redis_url is None:
            pytest.skip("needs a real Redis")
        db = f"sqlite:///{tmp_path / 'activity.db'}"
        ax.Base.metadata.create_all(sa.create_engine(db))
        urls = {**dict.fromkeys(KINDS, redis_url), "activity": db}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "queue_name", unique_name)
        built = build_backends(urls)  # type: ignore[arg-type]
        set_backends(built)
        try:
            yield built
        finally:
            set_backends(None)


async def test_the_counter_counts_and_is_shared_by_name(backends: Backends, unique_name: str) -> None:
    assert isinstance(backends.results, Counters)
    tracker = ax.Tracker("research", unique_name)
    assert await tracker.count() == 0 and await tracker.complete()
    assert await tracker.incr() == 1
    assert await tracker.incr() == 2
    same = ax.Tracker("research", unique_name)  # another handle, same counter
    assert await same.count() == 2 and not await same.complete()
    assert await same.decr() == 1
    assert await tracker.decr() == 0 and await tracker.complete()
    other = ax.Tracker("research", unique_name, "other")
    assert await other.incr(5) == 5 and await tracker.count() == 0
    assert repr(tracker) == f"Tracker('research', '{unique_name}')"
    with pytest.raises(TypeError, match="at least one part"):
        ax.Tracker()


async def test_concurrent_increments_are_never_lost(backends: Backends, unique_name: str) -> None:
    tracker = ax.Tracker("load", unique_name)

    async def bump() -> None:
        await ax.Tracker("load", unique_name).incr()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(bump)
    assert await tracker.count() == 60
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(tracker.decr)
    assert await tracker.count() == 0 and await tracker.complete()


class ResearchContext(BaseModel):
    company: str
    batch_id: str


class AggregateContext(BaseModel):
    batch_id: str


class DiscoverContext(BaseModel):
    batch_id: str
    companies: list[str]


async def test_fan_out_from_the_readme_on_a_running_pool(backends: Backends, unique_name: str) -> None:
    """The README's pattern across worker processes: discovery counts itself and each task it
    queues; each research task counts itself down; whoever reaches zero queues the aggregate,
    exactly once."""
    if not backends.cross_process and backends.urls is None:
        pytest.skip("no pool")
    pool = ax.Pool(queue_name=unique_name, backends=backends)
    marker = Path(os.environ.get("TMPDIR", "/tmp")) / f"{unique_name}.aggregated"

    @pool.task("discover")
    async def discover(agent_id: UUID, context: DiscoverContext) -> None:
        tracker = ax.Tracker("research", context.batch_id)
        await tracker.incr()  # count the discovery process itself
        for company in context.companies:
            await tracker.incr()
            await ax.enqueue("research", ResearchContext(company=company, batch_id=context.batch_id))
        if await tracker.decr() == 0:
            await ax.enqueue("aggregate", AggregateContext(batch_id=context.batch_id))

    @pool.task("research")
    async def research(agent_id: UUID, context: ResearchContext) -> str:
        await anyio.sleep(0.01)
        if await ax.Tracker("research", context.batch_id).decr() == 0:
            await ax.enqueue("aggregate", AggregateContext(batch_id=context.batch_id))
        return context.company

    @pool.task("aggregate")
    async def aggregate(agent_id: UUID, context: AggregateContext) -> None:
        with marker.open("a") as fh:
            fh.write(context.batch_id + "\n")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "num_workers", 2)
        mp.setattr(ax.CONF, "graceful_shutdown_timeout", 5)
        pool.start()
        try:
            companies = [f"c{i}" for i in range(12)]
            await ax.enqueue("discover", DiscoverContext(batch_id=unique_name, companies=companies))
            with anyio.fail_after(WAIT):
                while not marker.exists():
                    await anyio.sleep(0.05)
                await anyio.sleep(0.3)  # a second aggregate would show up by now
        finally:
            await anyio.to_thread.run_sync(pool.shutdown)
    try:
        assert marker.read_text().split() == [unique_name]
        assert await ax.Tracker("research", unique_name).complete()
    finally:
        marker.unlink(missing_ok=True)
