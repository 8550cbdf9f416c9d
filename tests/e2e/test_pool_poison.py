"""Poison data never loops a task or holds up another one (issue 14, items 1 and 2): real pools
on Redis (activity on PostgreSQL), the embedded SQLite transport and PostgreSQL.

Each poison task ends exactly as documented in docs/operations.md ("Poison data"), runs once,
and every other task of the same batch is COMPLETE.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from uuid import UUID

import agentexec as ax
import pytest
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.runtime import Backends
from e2e_support import WAIT, PoolProcess, python_app
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]

HALF_EMOJI = json.loads('"\\ud83d"')


class Job(BaseModel):
    """The context of app_pool's ``job`` task."""

    label: str = ""
    seconds: float = 0.0
    poison: str = ""


def statuses(agent_id: UUID) -> list[Status]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None, f"no activity for {agent_id}"
    return [line.status for line in detail.logs]


def last_line(agent_id: UUID) -> tuple[Status, str]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return detail.logs[-1].status, detail.logs[-1].message


async def failure_of(task: ax.Task) -> ax.TaskFailedError:
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(task, timeout=WAIT)
    return caught.value


async def test_poison_data_ends_its_own_task_once_and_the_rest_completes(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """Among 200 good tasks: a lone surrogate in a handler's return value or in its error
    text, and a NUL byte in its error text (which PostgreSQL refuses), each end ERROR with a
    readable reason and run once; a task name PostgreSQL cannot store (over 255 characters,
    or with a NUL) and an over-long queue name fail their own ``enqueue`` at once. The 200
    others are COMPLETE.

    Before: the worker gave each poison task back uncounted and it ran hundreds of times a
    second, forever; on PostgreSQL the NUL line made the writer retry its batch forever, so
    the tasks sharing it never finished either; the bad name's ``enqueue`` returned normally
    and the create-behind batch it shared failed, losing 27 OTHER tasks' activities."""
    pool = run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY=8)
    poisons = ["surrogate_result", "surrogate_error", "nul_error"]
    good: list[ax.Task] = []
    bad: dict[str, ax.Task] = {}
    errors: list[str] = []
    for i in range(200):
        good.append(await ax.enqueue("job", Job(label=f"g{i}"), queue_name=queue_name))
        if i % 60 == 10:
            for poison in poisons:
                label = f"{poison}-{i}"
                bad[label] = await ax.enqueue("job", Job(label=label, poison=poison), queue_name=queue_name)
        if i in (50, 150):
            bad_name = "x" * 300 if i == 50 else "job\x00"
            with pytest.raises(ValueError) as caught:
                await ax.enqueue(bad_name, Job(label="bad"), queue_name=queue_name)
            errors.append(str(caught.value))
        if i == 100:
            with pytest.raises(ValueError, match="queue_name"):
                await ax.enqueue("job", Job(label="bad"), queue_name="q" * 201)
    assert errors[0].startswith("task_name is 300 characters long, more than the 255 allowed")
    assert errors[1] == "task_name 'job\\x00' holds a control character ('\\x00' at position 3); use printable text"

    assert list(await ax.gather(*good, timeout=WAIT)) == [f"g{i}" for i in range(200)]
    for label, task in bad.items():
        error = (await failure_of(task)).error
        status, message = last_line(task.agent_id)
        assert status is Status.ERROR, (label, status, message)
        if label.startswith("surrogate_result"):
            assert error.startswith("its result cannot be stored: the result (character"), error
            assert "lone surrogate" in error
        elif label.startswith("surrogate_error"):
            assert error == "half \ufffd an emoji"  # the half character replaced, the rest kept
        else:
            assert error == "a NULbyte"  # the NUL removed
        assert message == CONF.activity_message_error.format(error=error)
        assert statuses(task.agent_id) == [Status.QUEUED, Status.RUNNING, Status.ERROR]
    for task in good:
        assert statuses(task.agent_id) == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]

    runs = Counter(e["label"] for e in pool.events() if e["event"] == "start")
    assert {label: runs[label] for label in bad} == dict.fromkeys(bad, 1)
    assert all(runs[f"g{i}"] == 1 for i in range(200))
    assert runs["bad"] == 0
    assert "giving it back" not in pool.output
    assert "Logging error" not in pool.output  # the surrogate reached no log handler
    assert pool.stop() == 0


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_a_bad_error_template_stops_the_pool_at_start_with_its_name(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """``AGENTEXEC_ACTIVITY_MESSAGE_ERROR`` with ``{reason}`` instead of ``{error}``: the pool
    refuses to start, naming the setting and the field it allows; the task queued before runs
    0 times and stays QUEUED. Before: the pool started, and the first failing task ran 624
    times in 15 s (its ERROR line could not be formatted, so it was given back uncounted)."""
    task = await ax.enqueue("job", Job(label="waits"), queue_name=queue_name)
    pool = run_pool(
        python_app(), wait_ready=False,
        AGENTEXEC_ACTIVITY_MESSAGE_ERROR="Task failed: {reason}",
    )
    assert pool.stop(sig=None) == 1
    assert (
        "agentexec: AGENTEXEC_ACTIVITY_MESSAGE_ERROR='Task failed: {reason}' is invalid (unknown "
        "field {reason}: the only field allowed is {error})"
    ) in pool.output, pool.output
    assert "Traceback" not in pool.output
    assert pool.events() == []
    assert statuses(task.agent_id) == [Status.QUEUED]

