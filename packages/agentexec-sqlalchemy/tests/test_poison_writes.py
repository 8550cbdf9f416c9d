"""Rows a real database refuses never sink the batch they share (issue 14, item 2), and the
transport's writer recovers from a failed commit (item 4).

On SQLite (file) and PostgreSQL: a worker's batch of activity lines with one line the database
refuses (a NUL byte on PostgreSQL, a lone surrogate anywhere), and the producer's create-behind
batch with one activity the database refuses (a task name longer than the column, which
``enqueue`` now refuses before it gets there: written here around that check).
"""

from __future__ import annotations

import json
import logging
import uuid

import anyio
import pytest
import sqlalchemy as sa
from agentexec.activity.creates import CreateBehind
from agentexec.activity.status import Status
from agentexec.backends import LogEntry
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.worker.writer import ActivityWriter
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from agentexec_sqlalchemy.transport.batching import BatchWriter
from sqlalchemy.engine import Engine

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("db_engine", ["sqlite_file", "postgresql"], indirect=True),
]

HALF_EMOJI = json.loads('"\\ud83d"')


async def test_a_refused_line_among_good_ones_lands_cleaned_and_the_rest_land(store: SQLActivityStore) -> None:
    ids = [await store.acreate("t", "queued") for _ in range(60)]
    bad = {7: "a NUL\x00byte", 31: f"half {HALF_EMOJI} an emoji"}
    writer = ActivityWriter(store, MemoryResults(), MemoryQueue())
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for i, agent_id in enumerate(ids):
            writer.submit(LogEntry(agent_id, bad.get(i, f"line {i}"), Status.ERROR if i in bad else Status.RUNNING))
        with anyio.fail_after(20):
            await writer.close()
    # PostgreSQL refuses the NUL byte (stored without it), SQLite stores it; no driver takes
    # the lone surrogate (stored replaced)
    nul = "a NULbyte" if store.engine.dialect.name == "postgresql" else "a NUL\x00byte"
    expected = {7: nul, 31: "half \ufffd an emoji"}
    for i, agent_id in enumerate(ids):
        detail = await store.adetail(agent_id)
        assert detail is not None
        assert (detail.status, detail.logs[-1].message) == (
            (Status.ERROR, expected[i]) if i in bad else (Status.RUNNING, f"line {i}")
        )
    assert writer.health.accepting


async def test_a_refused_activity_among_good_ones_fails_alone(
    store: SQLActivityStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The create-behind thread: one batch with an activity PostgreSQL refuses (a task name of
    300 characters) and with a lone surrogate (refused by every driver): the other 40 are
    created, the refused ones are logged. Before: the whole batch failed for 5 s, then was
    given up, and every activity in it was missing."""
    creates = CreateBehind()
    names = {10: "x" * 300, 25: f"half {HALF_EMOJI}"}
    ids = [uuid.uuid4() for _ in range(42)]
    caplog.set_level(logging.ERROR, logger="agentexec")
    for i, agent_id in enumerate(ids):
        creates.submit(store, agent_id, names.get(i, "t"), "queued")
    creates.flush(timeout=30)
    created = {i for i, agent_id in enumerate(ids) if await store.adetail(agent_id) is not None}
    refused = {25} | ({10} if store.engine.dialect.name == "postgresql" else set())
    assert created == set(range(42)) - refused
    messages = [r.getMessage() for r in caplog.records if "refused the activity" in r.getMessage()]
    assert len(messages) == len(refused)


def test_the_transport_writer_recovers_after_a_failed_commit(
    db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails at the driver (SQLite's "database or disk is full" did this) must
    not leave the writer's connection unusable: every later batch used to fail with
    ``PendingRollbackError`` until the process restarted."""
    dialect = db_engine.dialect
    real_commit = dialect.do_commit
    failures = [dialect.loaded_dbapi.OperationalError("database or disk is full")]

    def do_commit(dbapi_connection: object) -> None:
        if failures:
            raise failures.pop()
        real_commit(dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", do_commit)
    writer = BatchWriter(db_engine, f"test-{uuid.uuid4().hex}")
    with pytest.raises(sa.exc.OperationalError, match="disk is full"):
        writer.call(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
    for _ in range(3):
        assert writer.call(lambda conn: conn.exec_driver_sql("SELECT 41 + 1").scalar()) == 42
