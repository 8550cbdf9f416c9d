"""A worker's finished tasks where the transport is the activity store's database (the embedded
SQLite stack, the PostgreSQL-only stack): lines, outcomes and acks in ONE transaction
(:class:`agentexec.backends.JointFinish`), all or nothing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anyio
import psycopg
import pytest
from agentexec.activity.status import Status
from agentexec.backends import Lease, LogEntry, UnknownActivityError
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.task import Envelope, Priority
from agentexec.worker.writer import ActivityWriter
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from agentexec_sqlalchemy.transport.notify import RESULTS, channel
from agentexec_sqlalchemy.transport.queue import SQLQueue
from agentexec_sqlalchemy.transport.results import SQLResults
from sqlalchemy.engine import Engine

pytestmark = pytest.mark.anyio


async def _leases(store: SQLActivityStore, queue: SQLQueue, count: int) -> list[Lease]:
    for _ in range(count):
        agent_id = await store.acreate("t", "queued")
        await queue.push(Envelope(
            agent_id=agent_id, task_name="t", context={}, priority=Priority.LOW, queue_name="q",
            enqueued_at=time.time(),
        ))
    leases = await queue.reserve_many("q", "w", count, 1.0)
    assert len(leases) == count
    return leases


async def _finish_a_window(
    store: SQLActivityStore, results: SQLResults, queue: SQLQueue, leases: list[Lease]
) -> None:
    """Fast tasks through a worker's writer: each one's RUNNING and final lines, its outcome
    and its ack, all submitted before the writer's first batch; then everything is stored."""
    writer = ActivityWriter(store, results, queue)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for lease in leases:
            agent_id = lease.envelope.agent_id
            writer.submit(LogEntry(agent_id, "started", Status.RUNNING))
            writer.submit(LogEntry(agent_id, "done", Status.COMPLETE, 100),
                          outcome=(agent_id, f"out {agent_id}".encode()), ack=lease)
        with anyio.fail_after(10):
            await writer.close()
    for lease in leases:
        agent_id = lease.envelope.agent_id
        assert await results.get(agent_id) == f"out {agent_id}".encode()
        detail = await store.adetail(agent_id)
        assert detail is not None and detail.status == Status.COMPLETE
        assert [(line.message, line.status) for line in detail.logs] == [
            ("queued", Status.QUEUED), ("started", Status.RUNNING), ("done", Status.COMPLETE)
        ]
    assert (await queue.stats("q")).in_flight == 0
    assert writer.health.unfinished == 0


@pytest.mark.parametrize("db_engine", ["sqlite_file"], indirect=True)
async def test_a_window_of_finished_tasks_is_one_transaction(db_engine: Engine, statement_counter: Any) -> None:
    """A fast task's RUNNING and final lines, its outcome and its ack: one transaction for the
    window. Before: the RUNNING lines, the final lines, the outcomes, the acks, each a
    transaction of its own."""
    store, results, queue = SQLActivityStore(db_engine), SQLResults(db_engine), SQLQueue(db_engine)
    leases = await _leases(store, queue, 5)
    with statement_counter(db_engine) as counter:
        await _finish_a_window(store, results, queue, leases)
    assert sum(s.lstrip().upper().startswith("BEGIN") for s in counter.statements) == 1


@pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True)
async def test_a_window_of_finished_tasks_is_one_statement_on_postgresql(db_engine: Engine) -> None:
    """On PostgreSQL the window's final lines, outcomes and acks go in one statement: nothing
    goes step by step (the lines, then the outbox's outcomes and acks)."""
    store, results, queue = SQLActivityStore(db_engine), SQLResults(db_engine), SQLQueue(db_engine)
    calls: list[str] = []
    for backend, name in ((store, "aappend_many"), (results, "set_many"), (queue, "ack_many")):
        setattr(backend, name, _counting(calls, name, getattr(backend, name)))
    leases = await _leases(store, queue, 5)
    conninfo = db_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel(RESULTS)}"')  # type: ignore[arg-type]
        await _finish_a_window(store, results, queue, leases)
        notes = [json.loads(note.payload) for note in listener.notifies(timeout=2.0, stop_after=1)]
    assert calls == [], "a window went step by step"
    # the waiters of the window's outcomes are woken by one NOTIFY, not one per outcome
    assert [sorted(keys) for keys in notes] == [sorted(str(lease.envelope.agent_id) for lease in leases)]


def _counting(calls: list[str], name: str, method: Any) -> Any:
    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await method(*args, **kwargs)

    return counted


@pytest.mark.parametrize("db_engine", ["sqlite_file", "postgresql"], indirect=True)
async def test_a_joint_finish_that_fails_writes_nothing(db_engine: Engine) -> None:
    """One unknown activity among the lines: no line, no outcome, no ack lands (the worker
    then writes them step by step, with that line's own handling)."""
    store, results, queue = SQLActivityStore(db_engine), SQLResults(db_engine), SQLQueue(db_engine)
    (lease,) = await _leases(store, queue, 1)
    finish = store.joint_finish(results, queue)
    assert finish is not None
    agent_id, unknown = lease.envelope.agent_id, uuid.uuid4()
    with pytest.raises(UnknownActivityError):
        await finish(
            [LogEntry(agent_id, "done", Status.COMPLETE, 100), LogEntry(unknown, "x", Status.COMPLETE)],
            [(agent_id, b"out")], 60, [lease],
        )
    assert await results.get(agent_id) is None
    assert (await queue.stats("q")).in_flight == 1
    detail = await store.adetail(agent_id)
    assert detail is not None and detail.status == Status.QUEUED

    await finish([LogEntry(agent_id, "done", Status.COMPLETE, 100)], [(agent_id, b"out")], 60, [lease])
    assert await results.get(agent_id) == b"out"
    assert (await queue.stats("q")).in_flight == 0


@pytest.mark.parametrize("db_engine", ["sqlite_file", "sqlite_memory", "postgresql"], indirect=True)
async def test_only_a_database_file_or_server_shared_with_the_transport_finishes_jointly(db_engine: Engine) -> None:
    store = SQLActivityStore(db_engine)
    assert store.joint_finish(MemoryResults(), MemoryQueue()) is None
    joint = store.joint_finish(SQLResults(db_engine), SQLQueue(db_engine))
    assert (joint is not None) == (db_engine.url.database not in (None, "", ":memory:"))


@pytest.mark.parametrize("db_engine", ["sqlite_file", "postgresql"], indirect=True)
async def test_a_joint_finish_ends_a_lease_whole_locks_and_key_included(db_engine: Engine) -> None:
    """A finished task whose lease holds a lock and an enqueue key ends whole: its lock sends
    the parked task back to the queue, and its key is free again (SQLite: in the joint
    transaction; PostgreSQL: step by step, its lock in a transaction of its own)."""
    store, results, queue = SQLActivityStore(db_engine), SQLResults(db_engine), SQLQueue(db_engine)
    envelopes = []
    for n in (1, 2):
        agent_id = await store.acreate("t", "queued")
        env = Envelope(
            agent_id=agent_id, task_name="t", context={"n": n}, priority=Priority.LOW,
            queue_name="q", enqueued_at=time.time(), locks={"key:a": 1},
            key="report:1" if n == 1 else None,
        )
        if env.key is not None:
            assert await queue.claim_key("q", env.key, agent_id) is None
        await queue.push(env)
        envelopes.append(env)
    holder, waiting = await queue.reserve_many("q", "w", 2, 1.0)
    assert [await queue.acquire(holder), await queue.acquire(waiting)] == [True, False]
    agent_id = holder.envelope.agent_id
    writer = ActivityWriter(store, results, queue)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.submit(LogEntry(agent_id, "done", Status.COMPLETE, 100), outcome=(agent_id, b"out"), ack=holder)
        with anyio.fail_after(10):
            await writer.close()
    assert await results.get(agent_id) == b"out"
    assert await queue.parked("q") == 0 and await queue.length("q") == 1
    assert await queue.claim_key("q", "report:1", uuid.uuid4()) is None, "the key outlived its task"
