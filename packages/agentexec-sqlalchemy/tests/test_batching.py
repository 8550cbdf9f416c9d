"""The transport's batching writer: what shares a transaction and what does not."""

from __future__ import annotations

import threading
import uuid

import anyio
import pytest
from agentexec_sqlalchemy.transport.batching import BatchWriter
from sqlalchemy.engine import Connection, Engine

pytestmark = pytest.mark.anyio


async def test_alone_operations_commit_apart_from_the_batch(pg_engine: Engine) -> None:
    """Operations queued together share one transaction, except those submitted ``alone``
    (event publishes on PostgreSQL, which hold the bus's ordering lock until they commit):
    those share one of their own, committed after the batch's and relaxed (they are) though
    the batch is durable."""
    writer = BatchWriter(pg_engine, f"test-{uuid.uuid4().hex}")
    gate = threading.Event()

    def hold(conn: Connection) -> None:
        gate.wait(5)  # the writer is busy: what follows is queued, then taken as one batch

    def txn(conn: Connection) -> tuple[int, str]:
        row = conn.exec_driver_sql("SELECT txid_current(), current_setting('synchronous_commit')").one()
        return int(row[0]), str(row[1])

    first = writer.submit(hold)
    ops = [writer.submit(txn, durable=not alone, alone=alone) for alone in (False, True, False, True)]
    await anyio.sleep(0.05)
    gate.set()
    await first
    together, alone, with_them, alone_too = [await op for op in ops]
    assert together == with_them and together[1] == "on"
    assert alone == alone_too and alone[1] == "off", "alone operations are relaxed"
    assert alone[0] > together[0], "the alone ones commit after the batch's"
