"""A reaped task's QUEUED line is decided under its activity's lock (``RequeueLine``)."""

from __future__ import annotations

import uuid

import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.backends import LogEntry, RequeueLine
from agentexec.memory.activity import MemoryActivityStore
from agentexec_sqlalchemy.activity.store import SQLActivityStore

pytestmark = pytest.mark.anyio


def statuses(detail: object) -> list[Status]:
    return [line.status for line in detail.logs]  # type: ignore[attr-defined]


@pytest.mark.parametrize("db_engine", ["sqlite_file", "postgresql"], indirect=True)
async def test_only_a_running_activity_gets_the_line(store: SQLActivityStore) -> None:
    await _only_a_running_activity_gets_the_line(store)


async def test_only_a_running_activity_gets_the_line_in_memory() -> None:
    await _only_a_running_activity_gets_the_line(MemoryActivityStore())


async def _only_a_running_activity_gets_the_line(store: RequeueLine) -> None:
    assert isinstance(store, RequeueLine)
    running = await store.acreate("t", "queued")  # type: ignore[attr-defined]
    done = await store.acreate("t", "queued")  # type: ignore[attr-defined]
    await store.aappend_many([LogEntry(running, "started", Status.RUNNING)])  # type: ignore[attr-defined]
    await store.aappend_many([  # type: ignore[attr-defined]
        LogEntry(done, "started", Status.RUNNING), LogEntry(done, "done", Status.COMPLETE),
    ])
    assert await store.arequeue(running, "queued again") is True
    assert await store.arequeue(done, "queued again") is False
    assert await store.arequeue(uuid.uuid4(), "queued again") is False
    after = await store.adetail(running)  # type: ignore[attr-defined]
    assert statuses(after) == [Status.QUEUED, Status.RUNNING, Status.QUEUED]
    assert after.logs[-1].message == "queued again"
    assert after.status is Status.QUEUED
    assert statuses(await store.adetail(done)) == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]  # type: ignore[attr-defined]


@pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True)
async def test_a_complete_line_committing_meanwhile_stays_the_last(store: SQLActivityStore) -> None:
    """What a killed worker's last statement does on a PostgreSQL server: its COMPLETE line
    commits after the reaper looked (RUNNING) but before its QUEUED line; the line is left out."""
    agent_id = await store.acreate("t", "queued")
    await store.aappend(agent_id, "started", Status.RUNNING)
    with store.engine.connect() as dying:
        store._append_entries(dying, [LogEntry(agent_id, "done", Status.COMPLETE)])  # locked, uncommitted
        async with anyio.create_task_group() as tg:
            requeued: list[bool] = []

            async def reaper() -> None:
                requeued.append(await store.arequeue(agent_id, "queued again"))

            tg.start_soon(reaper)
            await anyio.sleep(0.3)  # the reaper's UPDATE waits for the row lock
            assert not requeued
            dying.commit()
    assert requeued == [False]
    detail = await store.adetail(agent_id)
    assert detail is not None
    assert statuses(detail) == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
