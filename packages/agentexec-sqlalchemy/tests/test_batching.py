"""The transport's batching writers: what shares a transaction and what does not."""

from __future__ import annotations

import threading

import anyio
import pytest
from agentexec_sqlalchemy.engine import create_engine
from agentexec_sqlalchemy.transport.batching import get_writer
from sqlalchemy.engine import Connection, Engine

pytestmark = pytest.mark.anyio


def _txn(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT txid_current()").scalar_one())


async def test_a_lane_commits_while_the_process_writer_is_busy(postgres_server_url: str) -> None:
    """PostgreSQL: writes of another lane (event publishes) have a writer thread and connection
    of their own: they commit while the process's writer is stuck in a batch of acks and
    results, and never share its transactions; each writer still batches what queued up."""
    engine: Engine = create_engine(postgres_server_url)
    try:
        main, events = get_writer(engine), get_writer(engine, "events")
        assert main is not events and get_writer(engine, "events") is events
        gate = threading.Event()
        held = main.submit(lambda conn: gate.wait(10))
        queued = [main.submit(_txn) for _ in range(2)]
        with anyio.fail_after(5):  # the main writer is held: the events lane is not
            published = [await op for op in [events.submit(_txn, durable=False) for _ in range(2)]]
        assert not held.done()
        gate.set()
        behind = [await op for op in queued]
        await held
        assert behind[0] == behind[1], "the main writer batched what queued up"
        assert published[0] not in behind and published[1] not in behind
    finally:
        engine.dispose()


def test_sqlite_has_one_writer_whatever_the_lane(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/lanes.db")
    try:
        assert get_writer(engine, "events") is get_writer(engine)
    finally:
        engine.dispose()
