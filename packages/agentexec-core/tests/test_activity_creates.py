"""The writer thread behind ``ax.enqueue``'s QUEUED activities (``agentexec.activity.creates``)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from uuid import UUID

import pytest

from agentexec.activity import creates
from agentexec.activity.status import Status
from agentexec.memory.activity import MemoryActivityStore

pytestmark = pytest.mark.anyio


class Flaky(MemoryActivityStore):
    """Fails its first ``failures`` batches, as a database that is briefly away."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.batches = 0

    async def acreate_many(self, items: Sequence[tuple[UUID, str, str]]) -> None:
        self.batches += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database away")
        await super().acreate_many(items)


async def test_readers_of_this_process_see_every_submitted_activity() -> None:
    writer = creates.CreateBehind()
    store = MemoryActivityStore()
    ids = [uuid.uuid4() for _ in range(300)]
    for agent_id in ids:
        writer.submit(store, agent_id, "job", "Waiting to start.")
    writer.wait(ids[-1])
    detail = store.detail(ids[-1])
    assert detail is not None and detail.status is Status.QUEUED
    await writer.await_written()
    assert all(store.detail(a) is not None for a in ids)


async def test_an_activity_created_meanwhile_does_not_sink_its_batch() -> None:
    """A worker that took a task first created its activity: the rest of the batch is created."""
    writer = creates.CreateBehind()
    store = MemoryActivityStore()
    taken, fresh = uuid.uuid4(), uuid.uuid4()
    await store.acreate("job", "created by the worker", taken)
    writer.submit(store, taken, "job", "Waiting to start.")
    writer.submit(store, fresh, "job", "Waiting to start.")
    writer.wait()
    assert [log.message for log in store.detail(taken).logs] == ["created by the worker"]  # type: ignore[union-attr]
    assert store.detail(fresh) is not None


async def test_a_failing_store_is_retried_then_given_up_without_holding_readers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(creates, "RETRY_FOR", 0.3)
    writer = creates.CreateBehind()
    brief, gone = Flaky(failures=2), Flaky(failures=10**6)
    back = uuid.uuid4()
    writer.submit(brief, back, "job", "Waiting to start.")
    writer.wait(back, timeout=5)
    assert brief.detail(back) is not None and brief.batches == 3
    lost = uuid.uuid4()
    with caplog.at_level(logging.ERROR, logger="agentexec"):
        writer.submit(gone, lost, "job", "Waiting to start.")
        writer.wait(lost, timeout=5)
    assert gone.detail(lost) is None
    assert "workers create them when they take the tasks" in caplog.text
