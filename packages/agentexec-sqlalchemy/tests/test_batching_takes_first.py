"""The transport's writer runs a worker's takes ahead of the rest of their batch (``first``)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import anyio
import pytest
from agentexec_sqlalchemy.transport.batching import BatchWriter
from sqlalchemy.engine import Connection, Engine

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("db_engine", ["sqlite_file", "postgresql"], indirect=True),
]


async def test_a_take_commits_and_answers_before_the_finishes_queued_with_it(db_engine: Engine) -> None:
    writer = BatchWriter(db_engine, f"test-{uuid.uuid4().hex}")
    ran: list[str] = []
    busy, finish_may_end = threading.Event(), threading.Event()

    def op(name: str, wait: threading.Event | None = None) -> Any:
        def run(conn: Connection) -> str:
            ran.append(name)
            if wait is not None:
                assert wait.wait(10), f"{name} waited in vain"
            return name

        return run

    first_batch = writer.submit(op("earlier", busy))
    while not ran:  # the writer is inside its first batch: the next two queue up together
        await anyio.sleep(0.001)
    finish = writer.submit(op("finish", finish_may_end))
    take = writer.submit(op("take"), durable=False, first=True)
    busy.set()
    with anyio.fail_after(10):
        assert await first_batch == "earlier"
        # the finish cannot end until the take has answered: were they one transaction, the
        # take's answer would wait for the finish, and this would time out
        assert await take == "take"
        finish_may_end.set()
        assert await finish == "finish"
    assert ran == ["earlier", "take", "finish"]
