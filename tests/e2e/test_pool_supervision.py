"""The pool's supervision with real processes and real signals: a handler's ``sys.exit()`` fails
only its task, the pool outlives the SIGKILL of any process it owns, and a signal to the whole
process group (systemd's KillMode=control-group) drains the pool gracefully."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
from agentexec.activity.status import Status
from agentexec.runtime import Backends
from e2e_support import WAIT, PoolProcess, python_app
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]


class Job(BaseModel):
    """The context of app_pool's ``job`` and ``sync_job`` tasks."""

    label: str = ""
    seconds: float = 0.0
    fail: bool = False
    exit: str = ""


def logs(agent_id: UUID) -> list[tuple[Status, str]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.status, log.message) for log in detail.logs]


async def enqueue(queue_name: str, label: str = "", task: str = "job", **kw: Any) -> ax.Task:
    return await ax.enqueue(task, Job(label=label, **kw), queue_name=queue_name)


def journal_time(pool: PoolProcess, event: str, label: str) -> float:
    [t] = [e["t"] for e in pool.events() if e["event"] == event and e["label"] == label]
    return float(t)


@pytest.mark.parametrize("stack", ["redis", "sqlite"], indirect=True)
async def test_a_handler_that_exits_fails_its_task_and_the_worker_goes_on(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(python_app())
    [worker] = pool.workers()
    cases = [
        ("job", "system_exit", "SystemExit: 3"),
        ("job", "keyboard_interrupt", "KeyboardInterrupt"),
        ("job", "base", "Bye: so long"),
        ("sync_job", "system_exit", "SystemExit: 3"),
        ("sync_job", "keyboard_interrupt", "KeyboardInterrupt"),
    ]
    for i, (name, how, reason) in enumerate(cases):
        bad = await enqueue(queue_name, f"bad{i}", name, exit=how)
        after = await enqueue(queue_name, f"after{i}", name)
        with pytest.raises(ax.TaskFailedError) as caught:
            await ax.get_result(bad, timeout=WAIT)
        assert caught.value.error == reason
        assert logs(bad.agent_id)[-1][0] is Status.ERROR
        assert reason in logs(bad.agent_id)[-1][1]
        assert await ax.get_result(after, timeout=WAIT) == f"after{i}"
        # the same worker took the next task at once: no death, no redelivery, no restart
        gap = journal_time(pool, "start", f"after{i}") - journal_time(pool, "start", f"bad{i}")
        assert gap < 1.0, f"{name}/{how}: the next task started {gap:.2f}s later"
    starts = [e for e in pool.events() if e["event"] == "start"]
    assert len(starts) == 2 * len(cases)  # each ran once
    assert {e["pid"] for e in starts} == {worker}
    assert pool.workers() == [worker]
    assert "starting a replacement" not in pool.output
    assert pool.stop() == 0
