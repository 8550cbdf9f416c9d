"""Redis goes away and comes back: consumers back off, reconnect, and lose nothing."""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from agentexec.backends import Lease
from agentexec.task import Envelope, Priority
from agentexec_redis.client import close_redis
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RedisResults

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

OUTAGE = 1.5


def envelope(queue_name: str, n: int) -> Envelope:
    return Envelope(agent_id=uuid.uuid4(), task_name="t", context={"n": n}, queue_name=queue_name)


async def test_consumer_waiting_through_a_restart_takes_the_next_task(
    redis_process: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_process("--appendonly", "yes", "--appendfsync", "always")
    queue, results = RedisQueue(server.url), RedisResults(server.url)
    name = "restart-q"
    before = envelope(name, 1)
    await queue.push(before, Priority.LOW)
    held = await queue.reserve(name, "c1", 1)  # in flight across the restart
    assert held is not None

    taken: list[Lease] = []
    waited: list[bytes] = []
    result_id = uuid.uuid4()

    async def consumer() -> None:
        while not taken:
            lease = await queue.reserve(name, "c1", 0.5)
            if lease is not None:
                taken.append(lease)

    async def waiter() -> None:
        waited.append(await results.wait(result_id, 20))

    caplog.set_level(logging.WARNING, logger="agentexec.redis")
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                tg.start_soon(waiter)
                await anyio.sleep(0.2)
                server.stop(signal.SIGKILL)
                down_at = time.monotonic()
                await anyio.sleep(OUTAGE)  # both block on a dead server, retrying
                server.start()
                await queue.push(envelope(name, 2), Priority.LOW)
                await results.set(result_id, b"after the restart", 60)
        outage = time.monotonic() - down_at
    finally:
        await close_redis(server.url)

    assert [lease.envelope.context["n"] for lease in taken] == [2]
    assert waited == [b"after the restart"]
    # the AOF kept the in-flight list: the task held before the restart can still be acked
    queue_after = RedisQueue(server.url)
    stats = await queue_after.stats(name)
    assert stats.in_flight == 2
    await queue_after.ack(held)
    await queue_after.ack(taken[0])
    assert (await queue_after.stats(name)).in_flight == 0
    lines = [r for r in caplog.records if r.name == "agentexec.redis" and r.levelno == logging.WARNING]
    assert lines, "the outage was not logged"
    assert len(lines) <= outage + 1, f"{len(lines)} error lines in {outage:.1f} s: more than one a second"
    await close_redis(server.url)
