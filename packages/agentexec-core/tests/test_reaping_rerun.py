"""The periodic reap writes a task's "queued again" line after handing the task out: when
another worker has taken it and run it meanwhile, that run's lines stand (no QUEUED after its
RUNNING or COMPLETE); a task nobody took yet reads QUEUED."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.runtime import Backends
from agentexec.worker.reaping import settle

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("own_queue")]


class _Job(BaseModel):
    n: int = 0


async def _expired(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> tuple[ax.Task[Any], datetime]:
    """A task run by a consumer that vanished mid-run, its lease expired; and the time a reap
    of it begins."""
    queue: Any = backends.queue
    task = await ax.enqueue("job", _Job(n=1))
    assert await queue.reserve(CONF.queue_name, "ghost", 1) is not None
    await backends.activity.aappend(task.agent_id, "Task started.", Status.RUNNING)
    monkeypatch.setattr(queue, "lease_timeout", 0.01)
    await anyio.sleep(0.05)
    return task, datetime.now(UTC)


async def _statuses(backends: Backends, task: ax.Task[Any]) -> list[Status]:
    detail = await backends.activity.adetail(task.agent_id)
    assert detail is not None
    return [line.status for line in detail.logs]


async def test_a_task_taken_again_before_the_reap_is_recorded_keeps_its_new_run(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, since = await _expired(backends, monkeypatch)
    report = await backends.queue.reap(CONF.queue_name)
    assert [env.agent_id for env in report.requeued] == [task.agent_id]
    # an idle worker takes it at once and starts it, before the reap's lines are written
    assert await backends.queue.reserve(CONF.queue_name, "next", 1) is not None
    await backends.activity.aappend(task.agent_id, "Task started.", Status.RUNNING)
    await settle(backends, report, since=since)
    assert await _statuses(backends, task) == [Status.QUEUED, Status.RUNNING, Status.RUNNING]


async def test_a_task_nobody_took_yet_reads_queued_again(backends: Backends, monkeypatch: pytest.MonkeyPatch) -> None:
    task, since = await _expired(backends, monkeypatch)
    report = await backends.queue.reap(CONF.queue_name)
    await settle(backends, report, since=since)
    assert await _statuses(backends, task) == [Status.QUEUED, Status.RUNNING, Status.QUEUED]
