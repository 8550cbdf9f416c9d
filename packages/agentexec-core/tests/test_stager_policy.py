"""Which outcomes a worker stages: every one, unless the store finishes jointly (the final line,
the outcome and the ack commit together); then only those of handlers that ran ``STAGE_AFTER``
or more."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from agentexec.activity.status import Status
from agentexec.backends import LogEntry
from agentexec.memory.activity import MemoryActivityStore
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.task import Task
from agentexec.worker import stager as stager_module
from agentexec.worker.sink import WorkerSink
from agentexec.worker.stager import Stager
from agentexec.worker.writer import ActivityWriter

pytestmark = pytest.mark.anyio


async def _staged(every: bool, runs_for: float, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setattr(stager_module, "STAGE_AFTER", 0.05)
    results = MemoryResults()
    stager = Stager(results, every=every)
    sink = WorkerSink(ActivityWriter(MemoryActivityStore(), results, MemoryQueue()), stager)
    task = Task.model_construct(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name="q")

    async def run() -> None:  # in a task of its own, as a worker runs each task
        await sink.started(LogEntry(task.agent_id, "started", Status.RUNNING))
        await anyio.sleep(runs_for)
        await sink.finished(task, LogEntry(task.agent_id, "done", Status.COMPLETE, 100), b"out")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
    return [agent_id for agent_id, _ in stager._pending]  # added, not yet sent (no run())


async def test_without_a_joint_finish_every_outcome_is_staged(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(await _staged(True, 0.0, monkeypatch)) == 1


async def test_with_a_joint_finish_a_quick_handlers_outcome_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _staged(False, 0.0, monkeypatch) == []


async def test_with_a_joint_finish_a_long_handlers_outcome_is(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(await _staged(False, 0.08, monkeypatch)) == 1


def test_the_threshold_is_50_ms() -> None:
    assert stager_module.STAGE_AFTER == 0.05
