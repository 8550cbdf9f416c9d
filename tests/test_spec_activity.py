"""spec/activity-api.md (and the activity parts of core-api.md, task-lifecycle.md and
worker-pool.md), as a user writes them: a SQLAlchemy engine, ``ax.Base.metadata.create_all``,
``Session(engine)``, ``ax.activity.*`` and the ORM models queried directly.

Runs on a SQLite file and on a PostgreSQL database of its own (``cancel_pending`` and ``list``
see every activity of a database, so it is not shared with other tests).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
import sqlalchemy as sa
from agentexec.activity.models import Activity, ActivityLog, Status
from agentexec.activity.schemas import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
    ActivityLogSchema,
)
from agentexec.core.db import get_global_session, remove_global_session, set_global_session
from agentexec.runtime import set_backends
from pydantic import BaseModel
from sqlalchemy import create_engine, func
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


@pytest.fixture(scope="module")
def pg_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database for this module alone."""
    name = f"spec_activity_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
        ), {"n": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The spec's set-up: ``create_engine(url)`` then ``ax.Base.metadata.create_all(engine)``."""
    set_backends(None)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'agents.db'}"
    else:
        # the spec's form, no driver named: SQLAlchemy's default PostgreSQL driver must be there
        url = request.getfixturevalue("pg_url").replace("postgresql+psycopg://", "postgresql://")
    engine = create_engine(url)
    ax.Base.metadata.drop_all(engine)
    ax.Base.metadata.create_all(engine)
    set_global_session(engine)  # what a worker does; ax.activity without session= uses it
    yield engine
    from agentexec_sqlalchemy.activity.session import clear_global_session

    clear_global_session()
    engine.dispose()


def annotations(schema: type[Any]) -> dict[str, Any]:
    return {name: field.annotation for name, field in schema.model_fields.items()}


# -- tables, models, enum -------------------------------------------------------------------------
def test_create_all_creates_the_activity_tables(engine: Engine) -> None:
    tables = set(sa.inspect(engine).get_table_names())
    assert {"agentexec_activity", "agentexec_activity_log"} <= tables
    assert Activity.__tablename__ == "agentexec_activity"
    assert ActivityLog.__tablename__ == "agentexec_activity_log"
    assert ax.Base is Activity.__mro__[1] or issubclass(Activity, ax.Base)
    assert issubclass(ActivityLog, ax.Base)


def test_orm_columns() -> None:
    cols = {c.name: c for c in Activity.__table__.columns}
    assert {"id", "agent_id", "agent_type", "created_at", "updated_at"} <= set(cols)
    assert cols["id"].primary_key and cols["agent_id"].unique and cols["agent_id"].index
    assert cols["id"].type.python_type is UUID and cols["agent_id"].type.python_type is UUID
    log_cols = {c.name: c for c in ActivityLog.__table__.columns}
    assert {"id", "activity_id", "message", "status", "percentage", "created_at"} <= set(log_cols)
    assert log_cols["id"].primary_key and log_cols["percentage"].nullable
    assert [fk.column.table.name for fk in log_cols["activity_id"].foreign_keys] == ["agentexec_activity"]
    assert Activity.logs.property.mapper.class_ is ActivityLog


def test_status_enum() -> None:
    assert issubclass(Status, str)
    assert [(s.name, s.value) for s in Status] == [
        (v, v) for v in ("QUEUED", "RUNNING", "COMPLETE", "ERROR", "CANCELED")
    ]
    assert Status is ax.Status is ax.activity.Status
    assert Status.RUNNING == "RUNNING"


def test_table_prefix_comes_from_conf() -> None:
    code = (
        "from agentexec.activity.models import Activity, ActivityLog\n"
        "print(Activity.__tablename__, ActivityLog.__tablename__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env={"AGENTEXEC_TABLE_PREFIX": "myapp_", "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert out == ["myapp_activity", "myapp_activity_log"]


# -- schemas --------------------------------------------------------------------------------------
def test_schema_fields() -> None:
    assert annotations(ActivityDetailSchema) == {
        "agent_id": UUID, "agent_type": str, "created_at": datetime, "updated_at": datetime,
        "status": Status, "latest_percentage": int | None, "logs": list[ActivityLogSchema],
    }
    assert annotations(ActivityListSchema) == {
        "items": list[ActivityListItemSchema], "total": int, "page": int, "page_size": int,
        "pages": int,
    }
    assert annotations(ActivityListItemSchema) == {
        "agent_id": UUID, "agent_type": str, "created_at": datetime, "updated_at": datetime,
        "status": Status, "latest_log": str | None, "latest_percentage": int | None,
    }
    assert annotations(ActivityLogSchema) == {
        "id": int, "message": str, "status": Status, "percentage": int | None,
        "created_at": datetime,
    }


# -- ax.activity signatures ------------------------------------------------------------------------
def head(func: Any, n: int) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(func).parameters.values()][:n]


def test_function_signatures() -> None:
    E = inspect.Parameter.empty
    a = ax.activity
    assert head(a.create, 4) == [("task_name", E), ("message", E), ("agent_id", None), ("session", None)]
    assert head(a.update, 4) == [("agent_id", E), ("message", E), ("percentage", None), ("status", None)]
    assert head(a.complete, 3) == [("agent_id", E), ("message", E), ("percentage", 100)]
    assert head(a.error, 2) == [("agent_id", E), ("message", E)]
    assert head(a.cancel_pending, 1) == [("session", None)]
    assert head(a.list, 3)[1:] == [("page", 1), ("page_size", 50)]
    assert head(a.list, 1)[0][0] == "session"
    assert [name for name, _ in head(a.detail, 2)] == ["session", "agent_id"]
    assert head(Activity.get_by_agent_id, 2) == [("agent_id", E), ("session", None)]
    assert head(Activity.get_list, 3) == [("session", E), ("page", 1), ("page_size", 50)]
    assert head(Activity.get_pending_ids, 1) == [("session", E)]
    assert head(Activity.append_log, 4) == [("self", E), ("message", E), ("status", None), ("percentage", None)]
    hints = typing.get_type_hints(a.create)
    assert hints["return"] is UUID


# -- ax.activity against the spec's examples ----------------------------------------------------------
def test_create_update_complete_detail(engine: Engine) -> None:
    with Session(engine) as session:
        agent_id = ax.activity.create(task_name="my_task", message="Task created", session=session)
    assert isinstance(agent_id, UUID)
    custom = uuid.uuid4()
    assert ax.activity.create("my_task", "Task created", custom) == custom

    ax.activity.update(agent_id, "Processing data...")
    ax.activity.update(str(agent_id), "50% complete", percentage=50)
    ax.activity.update(agent_id, "Starting", status=Status.RUNNING)
    ax.activity.update(agent_id, "still going")  # status None keeps RUNNING
    ax.activity.complete(agent_id, "Task finished successfully")
    ax.activity.complete(custom, "Partial completion", percentage=75)

    with Session(engine) as session:
        activity = ax.activity.detail(session, agent_id)
        assert isinstance(activity, ActivityDetailSchema)
        assert activity.agent_id == agent_id and activity.agent_type == "my_task"
        assert activity.status is Status.COMPLETE and activity.latest_percentage == 100
        assert [(log.message, log.status) for log in activity.logs] == [
            ("Task created", Status.QUEUED),
            ("Processing data...", Status.QUEUED),
            ("50% complete", Status.QUEUED),
            ("Starting", Status.RUNNING),
            ("still going", Status.RUNNING),
            ("Task finished successfully", Status.COMPLETE),
        ]
        assert [log.percentage for log in activity.logs][2] == 50
        assert all(isinstance(log, ActivityLogSchema) and isinstance(log.id, int) for log in activity.logs)
        assert all(isinstance(log.created_at, datetime) for log in activity.logs)
        assert activity.created_at <= activity.updated_at
        partial = ax.activity.detail(session, str(custom))
        assert partial is not None and (partial.status, partial.latest_percentage) == (Status.COMPLETE, 75)
        assert ax.activity.detail(session, uuid.uuid4()) is None


def test_error(engine: Engine) -> None:
    agent_id = ax.activity.create("api_task", "Waiting to start.")
    ax.activity.error(agent_id, "API failed: rate limited")
    with Session(engine) as session:
        detail = ax.activity.detail(session, agent_id)
    assert detail is not None and detail.status is Status.ERROR
    assert detail.logs[-1].message == "API failed: rate limited"


def test_cancel_pending(engine: Engine) -> None:
    queued = ax.activity.create("t", "Waiting to start.")
    running = ax.activity.create("t", "Waiting to start.")
    ax.activity.update(running, "Task started.", status=Status.RUNNING)
    done = ax.activity.create("t", "Waiting to start.")
    ax.activity.complete(done, "Task completed successfully.")
    failed = ax.activity.create("t", "Waiting to start.")
    ax.activity.error(failed, "Task failed with error: x")
    with Session(engine) as session:
        canceled = ax.activity.cancel_pending(session)
        assert canceled == 2 and isinstance(canceled, int)
        statuses = {a: ax.activity.detail(session, a).status for a in (queued, running, done, failed)}  # type: ignore[union-attr]
    assert statuses == {queued: Status.CANCELED, running: Status.CANCELED, done: Status.COMPLETE,
                        failed: Status.ERROR}
    assert ax.activity.cancel_pending() == 0  # session defaults to the global one


def test_list_is_paginated(engine: Engine) -> None:
    ids = [ax.activity.create(f"task_{i}", f"created {i}") for i in range(5)]
    ax.activity.update(ids[0], "half", percentage=50, status=Status.RUNNING)
    with Session(engine) as session:
        result = ax.activity.list(session, page=1, page_size=2)
        assert isinstance(result, ActivityListSchema)
        assert (result.total, result.page, result.page_size, result.pages) == (5, 1, 2, 3)
        assert len(result.items) == 2
        assert all(isinstance(item, ActivityListItemSchema) for item in result.items)
        last = ax.activity.list(session, 3, 2)
        assert (len(last.items), last.page) == (1, 3)
        everything = ax.activity.list(session)
        assert (everything.page, everything.page_size, len(everything.items)) == (1, 50, 5)
    items = {item.agent_id: item for item in everything.items}
    assert set(items) == set(ids)
    first = items[ids[0]]
    assert (first.agent_type, first.status, first.latest_log, first.latest_percentage) == (
        "task_0", Status.RUNNING, "half", 50
    )
    assert items[ids[1]].status is Status.QUEUED and items[ids[1]].latest_log == "created 1"


def test_bad_arguments(engine: Engine) -> None:
    agent_id = ax.activity.create("t", "Waiting to start.")
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="percentage"):
            ax.activity.update(agent_id, "x", percentage=bad)
    unknown = uuid.uuid4()
    for call in (
        lambda: ax.activity.update(unknown, "x"),
        lambda: ax.activity.complete(unknown, "x"),
        lambda: ax.activity.error(unknown, "x"),
    ):
        with pytest.raises(ValueError, match=str(unknown)) as info:
            call()
        assert isinstance(info.value, LookupError)
    with pytest.raises(ValueError):
        ax.activity.update("not-a-uuid", "x")


# -- ORM models, as "Direct Model Usage" and "Metrics" query them ----------------------------------
def test_model_queries(engine: Engine) -> None:
    running = ax.activity.create("r", "Waiting to start.")
    ax.activity.update(running, "Task started.", status=Status.RUNNING)
    done = ax.activity.create("d", "Waiting to start.")
    ax.activity.update(done, "Task started.", status=Status.RUNNING)
    ax.activity.complete(done, "Task completed successfully.")
    queued = ax.activity.create("q", "Waiting to start.")

    with Session(engine) as session:
        # "Query running activities": any log entry RUNNING, as the spec writes it
        found = session.query(Activity).filter(Activity.logs.any(status=Status.RUNNING)).all()
        assert {a.agent_id for a in found} == {running, done}
        assert all(isinstance(a, Activity) for a in found)

        # worker-pool.md "Metrics": naive utcnow() compared with updated_at
        hour_ago = datetime.utcnow() - timedelta(hours=1)
        completed = session.query(Activity).filter(
            Activity.updated_at >= hour_ago, Activity.logs.any(status=Status.COMPLETE)
        ).count()
        assert completed == 1
        future = datetime.utcnow() + timedelta(hours=1)
        assert session.query(Activity).filter(Activity.updated_at >= future).count() == 0

        cutoff = datetime.utcnow() - timedelta(hours=1)
        recent = session.query(Activity).filter(
            Activity.created_at >= cutoff
        ).order_by(Activity.created_at.desc()).all()
        assert [a.agent_id for a in recent] == [queued, done, running]

        counts = dict(session.query(ActivityLog.status, func.count(ActivityLog.id)).group_by(
            ActivityLog.status
        ).all())
        assert counts == {Status.QUEUED: 3, Status.RUNNING: 2, Status.COMPLETE: 1}

        activity = Activity.get_by_agent_id(done, session)
        assert activity is not None and activity.agent_type == "d"
        assert isinstance(activity.id, UUID) and activity.agent_id == done
        assert isinstance(activity.created_at, datetime) and isinstance(activity.updated_at, datetime)
        assert [log.status for log in activity.logs] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
        log = activity.logs[0]
        assert (isinstance(log.id, int), log.activity_id, log.message) == (True, activity.id, "Waiting to start.")
        assert Activity.get_by_agent_id(str(done), session) is not None
        assert Activity.get_by_agent_id(uuid.uuid4(), session) is None

        page, total = Activity.get_list(session, page=1, page_size=2)
        assert total == 3 and len(page) == 2 and all(isinstance(a, Activity) for a in page)
        assert isinstance(Activity.get_list(session), tuple)

        pending = Activity.get_pending_ids(session)
        assert isinstance(pending, list) and set(pending) == {running, queued}
        assert all(isinstance(p, UUID) for p in pending)

        target = Activity.get_by_agent_id(queued, session)
        assert target is not None
        target.append_log("picked up", status=Status.RUNNING, percentage=10)
        target.append_log("still working")
    with Session(engine) as session:
        fresh = Activity.get_by_agent_id(queued, session)
        assert fresh is not None
        assert [(x.message, x.status, x.percentage) for x in fresh.logs][-2:] == [
            ("picked up", Status.RUNNING, 10), ("still working", Status.RUNNING, None)
        ]
    # session=None: the global session
    assert Activity.get_by_agent_id(queued) is not None


def test_activity_built_with_the_orm(engine: Engine) -> None:
    agent_id = uuid.uuid4()
    with Session(engine) as session:
        activity = Activity(agent_id=agent_id, agent_type="manual")
        activity.append_log("created by hand")  # not in a session yet: just gains the entry
        session.add(activity)
        session.commit()
        activity.append_log("running", status=Status.RUNNING, percentage=5)
    with Session(engine) as session:
        detail = ax.activity.detail(session, agent_id)
        assert detail is not None and detail.agent_type == "manual"
        assert [(x.message, x.status, x.percentage) for x in detail.logs] == [
            ("created by hand", Status.QUEUED, None), ("running", Status.RUNNING, 5)
        ]
        assert detail.status is Status.RUNNING and detail.latest_percentage == 5


def test_updated_at_moves_with_each_log(engine: Engine) -> None:
    agent_id = ax.activity.create("t", "Waiting to start.")
    with Session(engine) as session:
        before = Activity.get_by_agent_id(agent_id, session).updated_at  # type: ignore[union-attr]
    ax.activity.update(agent_id, "later")
    with Session(engine) as session:
        after = Activity.get_by_agent_id(agent_id, session)
        assert after is not None and after.updated_at > before
        assert after.updated_at.tzinfo is not None and after.updated_at.utcoffset() == timedelta(0)
        assert abs(after.updated_at - datetime.now(UTC)) < timedelta(minutes=5)


# -- agentexec.core.db ----------------------------------------------------------------------------
def test_global_session_functions(engine: Engine) -> None:
    set_global_session(engine)
    session = get_global_session()
    assert isinstance(session, Session) and session.get_bind() is engine
    assert get_global_session() is session  # one per thread
    assert session.execute(sa.text("SELECT 1")).scalar() == 1
    remove_global_session()
    again = get_global_session()
    assert again is not session and again.get_bind() is engine
    remove_global_session()


# -- Pool and Redis as core-api.md / worker-pool.md set them up ------------------------------------
class ResearchContext(BaseModel):
    company: str


def test_pool_constructor_as_the_spec_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ax.CONF, "redis_url", None)
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    engine = create_engine(url)
    ax.Base.metadata.create_all(engine)
    try:
        pool = ax.Pool(engine=engine, database_url=url)
        assert (pool.engine, pool.database_url, pool.queue_name) == (engine, url, "agentexec_tasks")

        @pool.task("research")
        async def research(agent_id: UUID, context: ResearchContext) -> str:
            return context.company

        definition = pool.tasks["research"]
        assert (definition.name, definition.handler, definition.context_class) == (
            "research", research, ResearchContext
        )
        assert ax.Pool(engine, url, "email_queue").queue_name == "email_queue"
        pool.shutdown()  # never started: nothing to do
    finally:
        set_backends(None)
        engine.dispose()


@pytest.mark.anyio
async def test_queue_depth_with_get_redis(
    redis_server_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    """worker-pool.md "Health Checks": ``await redis.llen(ax.CONF.queue_name)``."""
    if redis_server_url is None:
        pytest.skip("needs a Redis server")
    import redis as redis_lib
    import redis.asyncio as aioredis
    from agentexec.core.redis_client import get_redis, get_redis_sync
    from agentexec.runtime import build_backends, configured_urls

    monkeypatch.setattr(ax.CONF, "redis_url", redis_server_url)
    monkeypatch.setattr(ax.CONF, "queue_name", unique_name)
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    engine = create_engine(url)
    ax.Base.metadata.create_all(engine)
    backends = build_backends(configured_urls(url))
    set_backends(backends)
    try:
        await ax.enqueue("research", ResearchContext(company="a"))
        await ax.enqueue("research", ResearchContext(company="b"), priority=ax.Priority.HIGH)
        redis = await get_redis()
        assert isinstance(redis, aioredis.Redis)
        assert await redis.llen(ax.CONF.queue_name) == 2
        sync = get_redis_sync()
        assert isinstance(sync, redis_lib.Redis) and sync.llen(ax.CONF.queue_name) == 2
        await redis.delete(ax.CONF.queue_name)
    finally:
        set_backends(None)
        await backends.aclose()
        await ax.close_redis()
        engine.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["redis", "sqlite"])
async def test_get_result_timeout_error_on_every_transport(
    transport: str, redis_server_url: str | None, tmp_path: Path, unique_name: str
) -> None:
    import time

    from agentexec.runtime import build_backends

    db = f"sqlite:///{tmp_path / 'agents.db'}"
    if transport == "redis":
        if redis_server_url is None:
            pytest.skip("needs a Redis server")
        url = redis_server_url
    else:
        url = db
    engine = create_engine(db)
    ax.Base.metadata.create_all(engine)
    backends = build_backends({"queue": url, "results": url, "events": url, "activity": db})
    set_backends(backends)
    try:
        task = await ax.enqueue("never_run", ResearchContext(company="x"), queue_name=unique_name)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await ax.get_result(task, timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 5
    finally:
        set_backends(None)
        await backends.aclose()
        engine.dispose()
