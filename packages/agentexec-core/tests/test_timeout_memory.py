"""Task timeouts on the in-process backends: ``@pool.task(name, timeout=...)``, ``add_task``'s
``timeout=``, and ``CONF.task_timeout``. Real processes on every stack:
tests/e2e/test_pool_cancel.py."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.runtime import build_backends

pytestmark = pytest.mark.anyio

WAIT = 10


class Ctx(BaseModel):
    seconds: float = 0.0


def last_line(agent_id: UUID) -> tuple[Status, str]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return detail.logs[-1].status, detail.logs[-1].message


async def test_async_and_sync_handlers_past_their_timeout_end_error_and_free_the_slot(
    make_pool: Any,
) -> None:
    pool = make_pool()
    cancelled: list[str] = []

    @pool.task("async_slow", timeout=0.3)
    async def async_slow(agent_id: UUID, context: Ctx) -> str:
        try:
            await anyio.sleep(context.seconds)
        except anyio.get_cancelled_exc_class():
            cancelled.append("async")
            raise
        return "finished"

    def sync_slow(agent_id: UUID, context: Ctx) -> str:
        time.sleep(context.seconds)
        return "finished"

    pool.add_task("sync_slow", sync_slow, timeout=timedelta(milliseconds=300))

    @pool.task("quick")
    async def quick(agent_id: UUID, context: Ctx) -> str:
        return "quick"

    pool.start()
    start = time.monotonic()
    first = await ax.enqueue("async_slow", Ctx(seconds=30), queue_name=pool.queue_name)
    second = await ax.enqueue("sync_slow", Ctx(seconds=3), queue_name=pool.queue_name)
    third = await ax.enqueue("quick", Ctx(), queue_name=pool.queue_name)
    # one slot: the quick task completes only once both slow ones gave their slot back
    assert await ax.get_result(third, timeout=WAIT) == "quick"
    # the sync handler's thread is abandoned at its deadline, not waited for (3 s)
    assert time.monotonic() - start < 3
    for task in (first, second):
        with pytest.raises(ax.TaskFailedError, match=r"timed out after 0\.3 s") as info:
            await ax.get_result(task, timeout=WAIT)
        assert info.value.attempts == 1
        assert last_line(task.agent_id) == (Status.ERROR, "Task failed with error: timed out after 0.3 s")
    assert cancelled == ["async"]


async def test_conf_task_timeout_is_the_default_and_a_task_timeout_overrides_it(
    make_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "task_timeout", 0.2)
    pool = make_pool()

    @pool.task("by_default")
    async def by_default(agent_id: UUID, context: Ctx) -> str:
        await anyio.sleep(context.seconds)
        return "no"

    @pool.task("longer", timeout=5)
    async def longer(agent_id: UUID, context: Ctx) -> str:
        await anyio.sleep(context.seconds)
        return "yes"

    pool.start()
    timed_out = await ax.enqueue("by_default", Ctx(seconds=30), queue_name=pool.queue_name)
    allowed = await ax.enqueue("longer", Ctx(seconds=0.4), queue_name=pool.queue_name)
    with pytest.raises(ax.TaskFailedError, match=r"timed out after 0\.2 s"):
        await ax.get_result(timed_out, timeout=WAIT)
    assert await ax.get_result(allowed, timeout=WAIT) == "yes"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10", True, timedelta(0)])
def test_a_bad_timeout_is_refused_at_registration(bad: Any) -> None:
    pool = ax.Pool(backends=build_backends(dict.fromkeys(("queue", "results", "events", "activity"), "memory://t")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds or a timedelta"):
        @pool.task("t", timeout=bad)
        async def t(agent_id: UUID, context: Ctx) -> None: ...
