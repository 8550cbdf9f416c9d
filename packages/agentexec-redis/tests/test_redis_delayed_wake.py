"""An idle consumer blocked in ``reserve`` sends Redis nothing while no task is due (it used to
re-check the delayed set four times a second), and a ``push_at`` made meanwhile still starts on
time: its wake token brings one blocked consumer back to re-read the earliest due time."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from agentexec.task import Envelope
from agentexec_redis.queue import RedisQueue

pytestmark = pytest.mark.anyio


def envelope(queue_name: str, n: int) -> Envelope:
    return Envelope(agent_id=uuid.uuid4(), task_name="t", context={"n": n}, queue_name=queue_name)


async def test_an_idle_consumer_is_silent_and_a_push_at_still_starts_on_time(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, producer = RedisQueue(redis_url), RedisQueue(redis_url)
    consumer.lease_timeout = producer.lease_timeout = 30.0
    name = f"wake-{uuid.uuid4().hex[:8]}"
    calls: list[str] = []
    real = aioredis.Redis.execute_command

    async def counted(self: Any, *args: Any, **options: Any) -> Any:
        calls.append(str(args[0]))
        return await real(self, *args, **options)

    monkeypatch.setattr(aioredis.Redis, "execute_command", counted)
    got: list[tuple[Any, float]] = []

    async def take() -> None:
        lease = await consumer.reserve(name, "c1", 2.0)
        got.append((lease, time.monotonic()))

    sent = envelope(name, 1)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.sleep(0.3)  # blocked now, on an empty queue with nothing delayed
            calls.clear()
            await anyio.sleep(1.0)
            idle_calls = list(calls)
            await producer.push_at(sent, time.time() + 0.3)
            pushed = time.monotonic()
    assert idle_calls == [], f"an idle consumer called Redis {len(idle_calls)} times in 1 s: {idle_calls}"
    lease, at = got[0]
    assert lease is not None and lease.envelope.agent_id == sent.agent_id
    late = at - pushed - 0.3
    assert -0.02 <= late <= 0.1, f"taken {late * 1000:.0f} ms after its due time"
    assert await consumer.length(name) == 0, "a wake token was left counted as a task"
    await consumer.ack(lease)
    await consumer.close()
    await producer.close()


async def test_a_wake_token_is_never_a_task(redis_url: str) -> None:
    """With no consumer blocked, the token waits at the front: ``length`` does not count it,
    and a consumer that takes it drops it and goes on to the real task."""
    queue = RedisQueue(redis_url)
    queue.lease_timeout = 30.0
    name = f"wake-{uuid.uuid4().hex[:8]}"
    await queue.push_at(envelope(name, 1), time.time() + 0.2)
    await queue.push_at(envelope(name, 2), time.time() + 0.1)  # earlier: wakes again, one token
    assert await queue.length(name) == 0
    with anyio.fail_after(5):
        first = await queue.reserve(name, "c1", 2.0)
        second = await queue.reserve(name, "c1", 2.0)
    assert first is not None and second is not None
    assert [first.envelope.context["n"], second.envelope.context["n"]] == [2, 1]
    assert (await queue.stats(name)).in_flight == 2
    await queue.ack(first)
    await queue.ack(second)
    assert await queue.reserve(name, "c1", 0.05) is None
    assert await queue.dead_letters(name) == []
    await queue.close()


async def test_a_batch_take_leaves_the_wake_token_for_a_blocked_consumer(redis_url: str) -> None:
    """``reserve_many``'s one-step take skips the token (it stays at the front for a consumer
    blocked in BLMOVE, which re-plans its wait) and hands out only tasks."""
    queue = RedisQueue(redis_url)
    queue.lease_timeout = 30.0
    name = f"wake-{uuid.uuid4().hex[:8]}"
    await queue.reserve(name, "c1", 0.01)  # the consumer has started (its take recovery done)
    await queue.push_at(envelope(name, 9), time.time() + 30)  # earliest due: a token in front
    for n in (1, 2, 3):
        await queue.push(envelope(name, n))
    with anyio.fail_after(5):
        leases = await queue.reserve_many(name, "c1", 5, 1.0)
    assert sorted(lease.envelope.context["n"] for lease in leases) == [1, 2, 3]
    assert await queue.length(name) == 0
    assert await queue.reserve(name, "c1", 0.2) is None  # takes the token, drops it, waits
    for lease in leases:
        await queue.ack(lease)
    assert await queue.dead_letters(name) == []
    assert await queue.delayed(name) == 1
    await queue.close()
