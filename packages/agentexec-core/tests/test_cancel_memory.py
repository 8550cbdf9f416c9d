"""``ax.cancel`` on the in-process backends: every branch of the cancel transition (queued,
running, finished, unknown, a request left by a worker that died), quickly. The same code runs
in worker processes: tests/e2e/test_pool_cancel.py runs it on every stack."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.cancellation import cancel_message, parse_cancel
from agentexec.config import CONF
from agentexec.runtime import Backends
from agentexec.task import Envelope

pytestmark = pytest.mark.anyio

WAIT = 10


class Ctx(BaseModel):
    label: str = ""
    seconds: float = 0.0


def status_of(agent_id: UUID) -> Status | None:
    detail = ax.activity.detail(agent_id)
    return None if detail is None else detail.status


async def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_running_and_queued_tasks_end_canceled(make_pool: Any) -> None:
    pool = make_pool()
    started: list[str] = []
    cancelled: list[str] = []

    @pool.task("work")
    async def work(agent_id: UUID, context: Ctx) -> str:
        started.append(context.label)
        try:
            await anyio.sleep(context.seconds)
        except anyio.get_cancelled_exc_class():
            cancelled.append(context.label)
            raise
        return context.label

    pool.start()
    running = await ax.enqueue("work", Ctx(label="running", seconds=60), queue_name=pool.queue_name)
    await wait_for(lambda: started == ["running"])
    queued = await ax.enqueue("work", Ctx(label="queued"), queue_name=pool.queue_name)  # one slot: it waits

    result = await ax.cancel(queued.agent_id, reason="no longer needed", queue_name=pool.queue_name)
    assert (result.state, result.status, bool(result)) == ("cancelled", Status.CANCELED, True)
    with pytest.raises(ax.TaskCancelledError, match="no longer needed"):
        await ax.get_result(queued, timeout=WAIT)

    result = await ax.cancel(running.agent_id, reason="user pressed stop", queue_name=pool.queue_name)
    # RUNNING, or still QUEUED when its RUNNING line is a moment behind the handler's start
    assert result.state == "requested" and result.status in (Status.QUEUED, Status.RUNNING)
    with pytest.raises(ax.TaskCancelledError) as info:
        await ax.get_result(running, timeout=WAIT)
    assert info.value.reason == "user pressed stop" and info.value.attempts == 1
    assert str(info.value) == f"task 'work' ({running.agent_id}) was cancelled: user pressed stop"
    assert cancelled == ["running"]
    detail = ax.activity.detail(running.agent_id)
    assert detail is not None
    assert [(log.status, log.message) for log in detail.logs][-2:] == [
        (Status.RUNNING, "Cancel requested: user pressed stop"),
        (Status.CANCELED, "Task cancelled: user pressed stop"),
    ]

    # the slot is free, the cancelled one never started, and gather reports the cancel
    after = await ax.enqueue("work", Ctx(label="after"), queue_name=pool.queue_name)
    assert await ax.get_result(after, timeout=WAIT) == "after"
    assert started == ["running", "after"]
    with pytest.raises(ax.TaskFailedError):
        await ax.gather(after, queued, timeout=WAIT)

    finished = await ax.cancel(after.agent_id)
    assert (finished.state, finished.status, bool(finished)) == ("finished", Status.COMPLETE, False)
    assert finished.message == f"task {after.agent_id} already ended COMPLETE; nothing to cancel"
    with pytest.raises(RuntimeError, match=r"ax.cancel_sync\(\) blocks.*await ax.cancel"):
        ax.cancel_sync(running.agent_id)
    again = await anyio.to_thread.run_sync(lambda: ax.cancel_sync(running.agent_id, reason="twice"))
    assert again.state == "finished" and "already ended CANCELED" in again.message


async def test_unknown_ids_and_bad_input(backends: Backends) -> None:
    unknown = uuid.uuid4()
    result = await ax.cancel(str(unknown))
    assert (result.agent_id, result.state) == (unknown, "unknown")
    assert result.message == f"no task with agent id {unknown}: nothing to cancel"
    with pytest.raises(ValueError, match="is not an agent id"):
        await ax.cancel("nope")
    with pytest.raises(ValueError, match="reason must be a non-empty str"):
        await ax.cancel(unknown, reason=" ")


async def test_a_cancel_request_left_by_a_dead_worker_is_honoured(
    make_pool: Any, backends: Backends
) -> None:
    """Its worker died after the request and before ending it: the next worker ends it
    CANCELED from the request line, without running it."""
    pool = make_pool()
    ran: list[UUID] = []

    @pool.task("work")
    async def work(agent_id: UUID, context: Ctx) -> None:
        ran.append(agent_id)

    agent_id = uuid.uuid4()
    await backends.activity.acreate("work", CONF.activity_message_create, agent_id)
    await backends.activity.aappend(agent_id, CONF.activity_message_started, Status.RUNNING)
    await backends.activity.aappend(agent_id, "Cancel requested: too late for it")
    envelope = Envelope(agent_id=agent_id, task_name="work", context={}, queue_name=pool.queue_name, attempts=1)
    await backends.queue.push(envelope)
    pool.start()
    await wait_for(lambda: status_of(agent_id) is Status.CANCELED)
    with pytest.raises(ax.TaskCancelledError, match="too late for it"):
        await ax.get_result(agent_id, timeout=WAIT)
    assert ran == []


async def test_a_cancel_heard_before_the_task_arrives_stops_it_before_it_starts(backends: Backends) -> None:
    """The cancel came while this worker's reserve was bringing the task (the queue no longer
    had it, the worker did not hold it yet): the worker remembers the request and ends the task
    CANCELED instead of starting it."""
    from agentexec.lanes import Lane
    from agentexec.task import TaskDefinition
    from agentexec.worker.consumer import Worker

    ran: list[UUID] = []

    async def work(agent_id: UUID, context: Ctx) -> None:
        ran.append(agent_id)

    queue_name = f"q{uuid.uuid4().hex[:8]}"
    worker = Worker(
        index=0, consumer_id="w0", pool_id="p", queue_name=queue_name,
        lanes=[Lane.of(queue_name, "default")], definitions={"work": TaskDefinition("work", work)},
        backends=backends,
    )
    agent_id = uuid.uuid4()
    assert worker.cancel(agent_id, "heard early") is False  # not its task (yet): remembered
    await backends.activity.acreate("work", CONF.activity_message_create, agent_id)
    await backends.queue.push(Envelope(agent_id=agent_id, task_name="work", context={}, queue_name=queue_name))
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_for(lambda: status_of(agent_id) is Status.CANCELED)
        worker.stop()
    assert ran == []
    with pytest.raises(ax.TaskCancelledError, match="heard early"):
        await ax.get_result(agent_id, timeout=WAIT)


def test_cancel_messages_round_trip() -> None:
    agent_id = uuid.uuid4()
    assert parse_cancel(cancel_message(agent_id, "why")) == (agent_id, "why")
    for junk in ("", "{", "[]", '{"action": "cancel"}', '{"action": "shutdown", "pool": null}',
                 '{"action": "cancel", "agent_id": "x"}'):
        assert parse_cancel(junk) is None


def test_cancel_cli(backends: Backends, capsys: pytest.CaptureFixture[str]) -> None:
    from agentexec.cli import main

    agent_id = uuid.uuid4()
    start = time.monotonic()
    assert main(["cancel", str(agent_id)]) == 1
    assert f"no task with agent id {agent_id}" in capsys.readouterr().out
    assert main(["cancel", str(agent_id), "--json"]) == 1
    assert '"state": "unknown"' in capsys.readouterr().out
    assert time.monotonic() - start < WAIT
