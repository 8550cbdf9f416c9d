"""Lifecycle events (``agentexec.task_events``) against a real pool on every stack: this process
subscribes to ``task.*`` on the stack's event backend and receives what the pool's worker
process publishes: ``task.started`` and ``task.completed`` for a finished task, ``task.failed``
for a failed one, ``task.cancelled`` for one cancelled while running; ``task.queued`` comes
from this process's own enqueues. Payloads carry the task name, agent_id and metadata, and
never the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import agentexec as ax
import anyio
import pytest
from agentexec.events import BusEvent
from agentexec.runtime import Backends
from e2e_support import WAIT, PoolProcess, Stack, python_app
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0
    fail: bool = False


async def test_a_subscriber_elsewhere_receives_task_events(
    stack: Stack, producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY="2")
    seen: dict[tuple[str, str], BusEvent] = {}

    async with ax.events.subscribe("task.*") as events:

        async def until(*wanted: tuple[str, str]) -> None:
            with anyio.fail_after(WAIT):
                async for event in events:
                    payload: dict[str, Any] = event.payload
                    seen[(payload["agent_id"], event.event_type)] = event
                    if all(w in seen for w in wanted):
                        return

        ok = await ax.enqueue("job", Job(label="ok"), queue_name=queue_name, metadata={"tenant": "acme"})
        bad = await ax.enqueue("job", Job(label="bad", fail=True), queue_name=queue_name)
        slow = await ax.enqueue("job", Job(label="slow", seconds=30), queue_name=queue_name)
        await until((str(ok.agent_id), "task.completed"), (str(bad.agent_id), "task.failed"),
                    (str(slow.agent_id), "task.started"))
        await ax.cancel(slow.agent_id, reason="enough", queue_name=queue_name)
        await until((str(slow.agent_id), "task.cancelled"))

    for task in (ok, bad, slow):
        assert (str(task.agent_id), "task.queued") in seen
        assert (str(task.agent_id), "task.started") in seen
    done = seen[(str(ok.agent_id), "task.completed")]
    assert done.source == "agentexec"
    assert done.payload == {
        "task_id": str(ok.agent_id), "agent_id": str(ok.agent_id), "task_name": "job",
        "status": "COMPLETE", "metadata": {"tenant": "acme"},
    }  # the task's metadata, and no result body
    failed = seen[(str(bad.agent_id), "task.failed")].payload
    assert failed["status"] == "ERROR" and failed["task_name"] == "job" and "boom bad" in failed["message"]
    cancelled = seen[(str(slow.agent_id), "task.cancelled")].payload
    assert cancelled["status"] == "CANCELED" and "enough" in cancelled["message"]
    # only this test's tasks: on Redis other tests' pools publish on the same bus
    assert not any((str(task.agent_id), "task.completed") in seen for task in (bad, slow))
