"""The line writer holds a RUNNING line back a moment (``RUNNING_HOLD``), so that a task which
ends meanwhile has both its lines in one batch: one update of its activity instead of two."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from uuid import UUID

import anyio
import pytest

from agentexec.activity.status import Status
from agentexec.backends import LogEntry
from agentexec.memory.activity import MemoryActivityStore
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.worker import writer as writer_module
from agentexec.worker.writer import ActivityWriter

pytestmark = pytest.mark.anyio


class CountingStore(MemoryActivityStore):
    """A memory store that records the statuses of each batch of lines it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Status | None]] = []

    async def aappend_many(self, entries: Sequence[LogEntry]) -> None:
        self.batches.append([e.status for e in entries])
        await super().aappend_many(entries)


@contextlib.asynccontextmanager
async def _running(hold: float, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[CountingStore, ActivityWriter, UUID]]:
    """A writer running with ``RUNNING_HOLD = hold``, a task's RUNNING line just submitted; the
    writer is closed on the way out."""
    monkeypatch.setattr(writer_module, "RUNNING_HOLD", hold)
    store = CountingStore()
    agent_id = await store.acreate("t", "queued")
    writer = ActivityWriter(store, MemoryResults(), MemoryQueue())
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.submit(LogEntry(agent_id, "started", Status.RUNNING))
        yield store, writer, agent_id
        with anyio.fail_after(2):  # a held line is written at once on close, not after the hold
            await writer.close()


async def test_a_task_that_ends_within_the_hold_writes_both_lines_in_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _running(5.0, monkeypatch) as (store, writer, agent_id):
        await anyio.sleep(0.05)  # the handler runs; the writer is idle meanwhile
        writer.submit(LogEntry(agent_id, "done", Status.COMPLETE, 100), outcome=(agent_id, b"out"))
        with anyio.fail_after(2):  # well before the hold ends: the final line released it
            await writer.written([agent_id])
    assert store.batches == [[Status.RUNNING, Status.COMPLETE]]


async def test_a_long_tasks_running_line_is_written_once_the_hold_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _running(0.05, monkeypatch) as (store, _writer, agent_id):
        with anyio.fail_after(2):
            while not store.batches:
                await anyio.sleep(0.01)
        assert store.batches == [[Status.RUNNING]]
        detail = await store.adetail(agent_id)
        assert detail is not None and detail.status == Status.RUNNING


async def test_a_caller_waiting_for_the_line_is_not_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ax.activity`` in a handler waits for its RUNNING line (``written``): the line goes at
    once, not after the hold."""
    async with _running(5.0, monkeypatch) as (store, writer, agent_id):
        await anyio.sleep(0.01)
        with anyio.fail_after(2):
            await writer.written([agent_id])
        assert store.batches == [[Status.RUNNING]]


async def test_closing_writes_a_held_line_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async with _running(5.0, monkeypatch) as (store, _writer, _agent_id):
        await anyio.sleep(0.01)
    assert store.batches == [[Status.RUNNING]]
