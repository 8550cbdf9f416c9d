"""Retries with backoff and delayed tasks on the in-process backends. Real processes on every
stack: tests/e2e/test_pool_cancel.py."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

import agentexec as ax
from agentexec.activity.status import Status
from agentexec.config import CONF

pytestmark = pytest.mark.anyio

WAIT = 10


class Ctx(BaseModel):
    fail_times: int = 0
    label: str = ""


def lines(agent_id: UUID) -> list[tuple[Status, str]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.status, log.message) for log in detail.logs]


RETRY_LINE = re.compile(r"Retrying in (\d+\.\d) s \(attempt (\d) of (\d)\): (.*)")


async def test_retries_with_growing_backoff_then_success_or_failure(make_pool: Any) -> None:
    pool = make_pool()
    runs: dict[str, int] = {}

    @pool.task("flaky", retries=3, backoff=0.1)
    async def flaky(agent_id: UUID, context: Ctx) -> str:
        runs[context.label] = runs.get(context.label, 0) + 1
        if runs[context.label] <= context.fail_times:
            raise ConnectionError(f"rate limited ({runs[context.label]})")
        return context.label

    @pool.task("once", retries=1, backoff=0.1)
    async def once(agent_id: UUID, context: Ctx) -> str:
        raise ValueError("always")

    @pool.task("quick")
    async def quick(agent_id: UUID, context: Ctx) -> str:
        return "quick"

    pool.start()
    ok = await ax.enqueue("flaky", Ctx(fail_times=2, label="ok"), queue_name=pool.queue_name)
    assert await ax.get_result(ok, timeout=WAIT) == "ok"
    log = lines(ok.agent_id)
    retries = [RETRY_LINE.fullmatch(m) for s, m in log if m.startswith("Retrying")]
    assert [(m.group(2), m.group(3), m.group(4)) for m in retries if m] == [
        ("2", "4", "rate limited (1)"), ("3", "4", "rate limited (2)"),
    ]
    waits = [float(m.group(1)) for m in retries if m]
    assert waits[0] <= waits[1], waits  # 0.05-0.1 s, then 0.1-0.2 s
    assert all(s is not Status.ERROR for s, _ in log), "a retried task flapped through ERROR"
    assert [s for s, m in log if m.startswith("Retrying")] == [Status.QUEUED, Status.QUEUED]
    assert log[-1][0] is Status.COMPLETE

    failed = await ax.enqueue("once", Ctx(), queue_name=pool.queue_name)
    with pytest.raises(ax.TaskFailedError, match="always") as info:
        await ax.get_result(failed, timeout=WAIT)
    assert info.value.attempts == 2
    statuses = [s for s, _ in lines(failed.agent_id)]
    assert statuses.count(Status.ERROR) == 1 and statuses[-1] is Status.ERROR


async def test_retry_after_and_non_retryable_and_retry_on(make_pool: Any) -> None:
    pool = make_pool()
    runs: dict[str, int] = {}

    @pool.task("handler", retries=2, backoff=30, retry_on=ConnectionError)
    async def handler(agent_id: UUID, context: Ctx) -> str:
        runs[context.label] = runs.get(context.label, 0) + 1
        if context.label == "after" and runs["after"] == 1:
            raise ax.RetryAfter(0.05, "429: come back later")
        if context.label == "fatal":
            raise ax.NonRetryableError("bad input")
        if context.label == "other":
            raise KeyError("not retried: not a ConnectionError")
        return context.label

    @pool.task("quick")
    async def quick(agent_id: UUID, context: Ctx) -> str:
        return "quick"

    pool.start()
    after = await ax.enqueue("handler", Ctx(label="after"), queue_name=pool.queue_name)
    assert await ax.get_result(after, timeout=WAIT) == "after"  # 0.05 s, not the 30 s backoff
    assert any(m.startswith("Retrying in 0.1 s (attempt 2 of 3): 429: come back later") or
               m.startswith("Retrying in 0.0 s (attempt 2 of 3): 429: come back later")
               for _, m in lines(after.agent_id))
    for label in ("fatal", "other"):
        task = await ax.enqueue("handler", Ctx(label=label), queue_name=pool.queue_name)
        with pytest.raises(ax.TaskFailedError) as info:
            await ax.get_result(task, timeout=WAIT)
        assert info.value.attempts == 1 and runs[label] == 1


async def test_a_waiting_retry_holds_no_slot(make_pool: Any) -> None:
    pool = make_pool()  # one slot

    @pool.task("slow_retry", retries=1, backoff=timedelta(seconds=2))
    async def slow_retry(agent_id: UUID, context: Ctx) -> str:
        raise ConnectionError("later")

    @pool.task("quick")
    async def quick(agent_id: UUID, context: Ctx) -> str:
        return "quick"

    pool.start()
    waiting = await ax.enqueue("slow_retry", Ctx(), queue_name=pool.queue_name)
    with anyio.fail_after(WAIT):
        while not any(m.startswith("Retrying") for _, m in lines(waiting.agent_id)):
            await anyio.sleep(0.01)
    start = time.monotonic()
    other = await ax.enqueue("quick", Ctx(), queue_name=pool.queue_name)
    assert await ax.get_result(other, timeout=WAIT) == "quick"
    assert time.monotonic() - start < 1, "the quick task waited for the retry's backoff"
    assert ax.activity.detail(waiting.agent_id).status is Status.QUEUED  # type: ignore[union-attr]


async def test_delayed_tasks_wait_in_the_queue_and_show_their_due_time(make_pool: Any) -> None:
    pool = make_pool()
    started: dict[str, float] = {}

    @pool.task("stamp")
    async def stamp(agent_id: UUID, context: Ctx) -> str:
        started[context.label] = time.time()
        return context.label

    pool.start()
    t0 = time.time()
    later = await ax.enqueue("stamp", Ctx(label="later"), queue_name=pool.queue_name, delay=0.6)
    # due at t0 + 0.3 however long the first enqueue took, so always before "later"
    at = await ax.enqueue(
        "stamp", Ctx(label="at"), queue_name=pool.queue_name, at=datetime.fromtimestamp(t0, UTC) + timedelta(seconds=0.3)
    )
    now = await ax.enqueue("stamp", Ctx(label="now"), queue_name=pool.queue_name)
    first = lines(later.agent_id)[0]
    assert first[0] is Status.QUEUED and re.fullmatch(
        re.escape(CONF.activity_message_create) + r" Due at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\.", first[1]
    ), first
    assert await ax.get_result(later, timeout=WAIT) == "later"
    assert await ax.get_result(at, timeout=WAIT) == "at"
    assert await ax.get_result(now, timeout=WAIT) == "now"
    assert list(started) == ["now", "at", "later"]
    assert started["later"] - t0 >= 0.59 and started["at"] - t0 >= 0.29


def test_bad_delays_are_refused() -> None:
    from agentexec.client import _due

    with pytest.raises(TypeError, match="not both"):
        _due(1, datetime.now(UTC))
    with pytest.raises(ValueError, match="has no timezone"):
        _due(None, datetime.now())
    for bad in (-1, float("inf"), "5", True):
        with pytest.raises(ValueError, match="delay must be seconds >= 0 or a timedelta"):
            _due(bad, None)  # type: ignore[arg-type]
    assert _due(None, None) is None
