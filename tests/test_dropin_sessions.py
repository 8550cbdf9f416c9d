"""Issue #16, sessions, as users of the original agentexec write them:

- ``set_global_session(A)`` then ``ax.Pool(engine=B)``: activities go to B (the original's
  ``Pool`` binds the global session to its engine);
- ``Task.execute()`` right after ``ax.enqueue()`` in the same process (the activity is written
  behind the push) never raises ``UnknownActivityError``;
- an ``AsyncEngine`` (the original 0.2+ takes one) given to ``ax.Pool`` or to
  ``set_global_session``: agentexec runs on the same database through the sync driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import agentexec as ax
import pytest
import sqlalchemy as sa
from agentexec.core.db import set_global_session
from agentexec.runtime import set_backends
from agentexec_sqlalchemy.activity.models import Activity
from agentexec_sqlalchemy.activity.session import clear_global_session
from agentexec_sqlalchemy.engine import get_engine, normalize_url
from pydantic import BaseModel

pytestmark = pytest.mark.anyio


class Ctx(BaseModel):
    n: int = 0


def count(engine: sa.Engine, agent_id: UUID | None = None) -> int:
    with engine.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(Activity)
        if agent_id is not None:
            stmt = stmt.where(Activity.agent_id == agent_id)
        return int(conn.scalar(stmt) or 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'b.db'}"
    else:
        url = request.getfixturevalue("postgres_server_url")
    engine = sa.create_engine(url)
    ax.Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    set_backends(None)
    yield
    clear_global_session()
    set_backends(None)


@pytest.fixture
def redis_url(redis_server_url: str | None, monkeypatch: pytest.MonkeyPatch, unique_name: str) -> str:
    if redis_server_url is None:
        pytest.skip("needs a real Redis")
    monkeypatch.setattr(ax.CONF, "redis_url", redis_server_url)
    monkeypatch.setattr(ax.CONF, "queue_name", unique_name)
    return redis_server_url


async def test_a_new_pool_rebinds_the_global_session(
    engine_b: sa.Engine, tmp_path: Path, redis_url: str
) -> None:
    engine_a = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    ax.Base.metadata.create_all(engine_a)
    set_global_session(engine_a)
    ax.activity.create("before", "m")  # the global session: A
    assert count(engine_a) == 1

    pool = ax.Pool(engine=engine_b)

    @pool.task("work")
    async def work(agent_id: UUID, context: Ctx) -> int:
        return context.n

    made = ax.activity.create("after", "m")
    task = await ax.enqueue("work", Ctx())
    assert ax.activity.detail(agent_id=task.agent_id) is not None
    assert count(engine_b, made) == 1 and count(engine_b, task.agent_id) == 1
    assert count(engine_a) == 1  # nothing more went to A


async def test_execute_right_after_enqueue_in_the_same_process(
    engine_b: sa.Engine, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentexec.activity import creates

    # the writer behind the push waits for company 50 ms per batch: the race, every time
    monkeypatch.setattr(creates, "BUSY", 3600.0)
    monkeypatch.setattr(creates, "LINGER", 0.05)
    pool = ax.Pool(engine=engine_b)

    @pool.task("double")
    async def double(agent_id: UUID, context: Ctx) -> int:
        return context.n * 2

    for n in range(10):  # the activity is written behind the push
        task = await ax.enqueue("double", Ctx(n=n))
        assert await task.execute() == n * 2
        detail = ax.activity.detail(agent_id=task.agent_id)
        assert detail is not None and detail.status == ax.Status.COMPLETE


async def test_an_async_engine_is_accepted(redis_url: str, postgres_server_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    sync = sa.create_engine(postgres_server_url)
    ax.Base.metadata.create_all(sync)
    async_engine = create_async_engine(postgres_server_url)
    try:
        pool = ax.Pool(engine=async_engine)

        @pool.task("work")
        async def work(agent_id: UUID, context: Ctx) -> int:
            return context.n

        task = await ax.enqueue("work", Ctx(n=3))
        assert count(sync, task.agent_id) == 1
        set_global_session(async_engine)  # the spec's call, with the 0.2+ engine
        made = ax.activity.create("global", "m")
        assert count(sync, made) == 1
    finally:
        await async_engine.dispose()
        sync.dispose()


def test_async_driver_urls_map_to_the_sync_driver_of_the_same_database(tmp_path: Path) -> None:
    assert normalize_url("postgresql+asyncpg://u:pw@db:5432/app") == "postgresql+psycopg://u:pw@db:5432/app"
    assert normalize_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db"
    engine = get_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert engine.dialect.driver == "pysqlite"
