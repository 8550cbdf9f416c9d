"""A task the reaper ends (dead-lettered past ``max_attempts``: its worker died) is announced
like one a worker ends: ``task.failed`` with the reason, or ``task.completed`` when the task had
finished and staged its outcome before the worker died; nothing when its worker already wrote
(and announced) its final line; nothing with ``CONF.lifecycle_events`` off."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.events import BusEvent
from agentexec.results import Outcome
from agentexec.runtime import Backends
from agentexec.worker.reaping import reap

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("own_queue")]


async def _reaped(
    backends: Backends, lost: Callable[..., Awaitable[ax.Task]], lines: list[Status], staged: Outcome | None
) -> tuple[ax.Task, list[BusEvent]]:
    """The ``lost_on_last_attempt`` task (of tenant ``acme``), reaped past ``max_attempts``;
    the lifecycle events published by the reap."""
    task = await lost(lines, staged, {"org": "acme"})
    got: list[BusEvent] = []
    async with ax.events.subscribe("task.*") as events:
        await anyio.sleep(0.05)
        await reap(backends, CONF.queue_name)
        with anyio.move_on_after(0.3):  # the reap publishes before it returns: no more come
            async for event in events:
                got.append(event)
    assert len(await backends.queue.dead_letters(CONF.queue_name)) == 1
    return task, got


def _summary(got: list[BusEvent]) -> list[tuple[str, Any]]:
    return [(e.event_type, e.payload["agent_id"]) for e in got]


async def test_a_dead_lettered_task_is_announced_failed(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    task, got = await _reaped(backends, lost_on_last_attempt, [Status.RUNNING], None)
    assert _summary(got) == [("task.failed", str(task.agent_id))]
    payload = got[0].payload
    assert payload["status"] == "ERROR" and payload["task_name"] == "job"
    assert payload["metadata"] == {"org": "acme"}
    assert payload["message"]  # the reap's reason, as the ERROR line says it
    detail = await backends.activity.adetail(task.agent_id)
    assert detail is not None and detail.logs[-1].message == payload["message"]


async def test_a_task_finished_before_its_worker_died_is_announced_by_the_reaper(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    task, got = await _reaped(backends, lost_on_last_attempt, [Status.RUNNING], Outcome.ok("job", 42))
    assert _summary(got) == [("task.completed", str(task.agent_id))]


async def test_a_final_line_already_written_is_not_announced_again(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    _, got = await _reaped(backends, lost_on_last_attempt, [Status.RUNNING, Status.COMPLETE], Outcome.ok("job", 7))
    assert got == []


async def test_nothing_is_announced_when_lifecycle_events_are_off(
    backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "lifecycle_events", False)
    _, got = await _reaped(backends, lost_on_last_attempt, [Status.RUNNING], None)
    assert got == []
