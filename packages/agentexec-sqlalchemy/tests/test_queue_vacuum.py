"""PostgreSQL: the pool's periodic ``reap`` vacuums the queue table once enough of its rows are
dead, so takes do not slow down as taken and finished tasks pile up in its waiting index (the
server's autovacuum looks at most once a minute, and this machine's is off)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anyio
import pytest
import sqlalchemy as sa
from agentexec.task import Envelope
from agentexec_sqlalchemy import pg_async
from agentexec_sqlalchemy.transport import queue as queue_module
from agentexec_sqlalchemy.transport.models import queue_table
from agentexec_sqlalchemy.transport.queue import SQLQueue

pytestmark = pytest.mark.anyio


@pytest.fixture
def queue(postgres_server_url: str) -> Iterator[SQLQueue]:
    queue = SQLQueue(postgres_server_url)
    queue.ensure_schema()
    yield queue


def _stats(queue: SQLQueue) -> tuple[int, int]:
    """(dead rows, VACUUMs of any kind) of the queue table, by the server's statistics."""
    with queue.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT n_dead_tup, vacuum_count + autovacuum_count FROM pg_stat_user_tables "
                "WHERE relid = to_regclass(:t)"
            ),
            {"t": f'"{queue_table.name}"'},
        ).one()
    return int(row[0]), int(row[1])


async def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await anyio.sleep(0.2)


async def _leave_dead_rows(queue: SQLQueue, count: int) -> None:
    queue_name = f"vac-{uuid.uuid4().hex[:8]}"
    for _ in range(count):
        await queue.push(Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=queue_name))
    leases = await queue.reserve_many(queue_name, "c", count, 1.0)
    assert len(leases) == count
    await queue.ack_many(leases)
    # a backend reports its statistics when it exits (an idle one only after 10 s)
    await pg_async.shared(queue.engine.url).close()


async def test_reap_vacuums_the_queue_table_past_the_threshold(
    queue: SQLQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "VACUUM_DEAD", 100)
    await _leave_dead_rows(queue, 120)
    await _until(lambda: _stats(queue)[0] >= 100, "the server's statistics never showed the dead rows")
    vacuums = _stats(queue)[1]
    await queue.reap("any")
    await _until(lambda: _stats(queue)[1] > vacuums, "reap did not VACUUM the queue table")
    assert _stats(queue)[0] < 100


async def test_below_the_threshold_reap_leaves_the_table_to_autovacuum(
    queue: SQLQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "VACUUM_DEAD", 10**9)
    await _leave_dead_rows(queue, 20)
    await _until(lambda: _stats(queue)[0] >= 20, "the server's statistics never showed the dead rows")
    vacuums = _stats(queue)[1]
    assert await queue.vacuum() is False
    await queue.reap("any")
    await anyio.sleep(1.5)  # the statistics lag by up to a second
    assert _stats(queue)[1] == vacuums


async def test_a_failing_vacuum_still_hands_the_reap_back(
    queue: SQLQueue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The reap's report carries the tasks it handed out again: the pool writes their QUEUED
    lines from it, so housekeeping that fails must not take it down."""
    queue_name = f"vac-{uuid.uuid4().hex[:8]}"
    await queue.push(Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=queue_name))
    assert await queue.reserve(queue_name, "gone", 1.0) is not None
    queue.lease_timeout = 0.01
    await anyio.sleep(0.05)

    async def broken() -> bool:
        raise sa.exc.OperationalError("VACUUM", {}, Exception("canceling statement"))

    monkeypatch.setattr(queue, "vacuum", broken)
    report = await queue.reap(queue_name)
    assert len(report.requeued) == 1
    assert "VACUUM of the queue table" in caplog.text
