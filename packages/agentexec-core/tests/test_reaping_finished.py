"""A task dead-lettered by a reap after it had finished (its worker died between the final line
and the ack, on its last attempt) keeps its final state: no ERROR after COMPLETE, and
``get_result`` gives what the task produced, not the lost lease."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.runtime import Backends
from agentexec.worker.reaping import LOST_RESULT_MESSAGE, reap

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("own_queue")]


async def _lost_on_its_last_attempt(
    backends: Backends, lost: Callable[..., Awaitable[ax.Task]], lines: list[Status], staged: Outcome | None
) -> ax.Task:
    """The ``lost_on_last_attempt`` task, reaped past ``max_attempts``."""
    task = await lost(lines, staged)
    await anyio.sleep(0.05)
    await reap(backends, CONF.queue_name)
    assert len(await backends.queue.dead_letters(CONF.queue_name)) == 1
    return task


async def statuses(task: ax.Task, backends: Backends) -> list[Status]:
    detail = await backends.activity.adetail(task.agent_id)
    assert detail is not None
    return [log.status for log in detail.logs]


async def test_a_staged_outcome_is_the_result_and_completes_the_log(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    task = await _lost_on_its_last_attempt(backends, lost_on_last_attempt, [Status.RUNNING], Outcome.ok("job", 42))
    assert await ax.get_result(task, timeout=1) == 42
    assert await statuses(task, backends) == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]


async def test_a_complete_line_is_not_followed_by_an_error(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    task = await _lost_on_its_last_attempt(backends, lost_on_last_attempt, [Status.RUNNING, Status.COMPLETE], Outcome.ok("job", 7))
    assert await ax.get_result(task, timeout=1) == 7
    assert await statuses(task, backends) == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]


async def test_a_complete_task_whose_value_was_lost_says_so(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    task = await _lost_on_its_last_attempt(backends, lost_on_last_attempt, [Status.RUNNING, Status.COMPLETE], None)
    with pytest.raises(ax.TaskFailedError, match="its worker died before storing its result"):
        await ax.get_result(task, timeout=1)
    assert await statuses(task, backends) == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
    assert LOST_RESULT_MESSAGE.startswith("the task completed")


async def test_a_task_that_never_finished_still_ends_error(backends: Backends, lost_on_last_attempt: Callable[..., Awaitable[ax.Task]]) -> None:
    task = await _lost_on_its_last_attempt(backends, lost_on_last_attempt, [Status.RUNNING], None)
    with pytest.raises(ax.TaskFailedError, match="lease expired"):
        await ax.get_result(task, timeout=1)
    assert await statuses(task, backends) == [Status.QUEUED, Status.RUNNING, Status.ERROR]
