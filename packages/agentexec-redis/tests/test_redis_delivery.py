"""Delivery guarantees under load and failure: exactly once without crashes, redelivery after a
consumer dies, dead letters past max attempts, malformed payloads dead-lettered."""

from __future__ import annotations

import uuid

import anyio
import pytest
from agentexec.backends import Lease
from agentexec.task import Envelope, Priority
from agentexec_redis.client import get_redis
from agentexec_redis.queue import RedisQueue

pytestmark = pytest.mark.anyio


def envelope(queue_name: str, n: int, priority: Priority = Priority.LOW) -> Envelope:
    return Envelope(
        agent_id=uuid.uuid4(), task_name="t", context={"n": n}, priority=priority,
        queue_name=queue_name,
    )


async def test_8_consumers_10000_tasks_exactly_once_high_first(redis_url: str, unique_name: str) -> None:
    consumers, total = 8, 10_000
    queue = RedisQueue(redis_url)
    high = {n for n in range(total) if n % 2}
    # interleaved pushes: every HIGH waits alongside LOW tasks pushed before and after it
    await queue.push_many([
        envelope(unique_name, n, Priority.HIGH if n in high else Priority.LOW) for n in range(total)
    ])
    seen: list[int] = []

    async def consume(consumer: str) -> None:
        while len(seen) < total:
            lease = await queue.reserve(unique_name, consumer, 0.2)
            if lease is None:
                return
            seen.append(int(lease.envelope.context["n"]))
            await queue.ack(lease)

    with anyio.fail_after(45):
        async with anyio.create_task_group() as tg:
            for i in range(consumers):
                tg.start_soon(consume, f"c{i}")
    assert len(seen) == total, f"{total - len(seen)} tasks lost or {len(seen) - total} duplicated"
    assert sorted(seen) == list(range(total)), "some task was delivered twice and another never"
    # replies of concurrent consumers may be read in a different order than the server moved
    # the tasks, by at most one per other consumer
    last_high = max(i for i, n in enumerate(seen) if n in high)
    first_low = min(i for i, n in enumerate(seen) if n not in high)
    assert last_high < len(high) + consumers and first_low >= len(high) - consumers, (
        f"LOW taken while HIGH waited: last HIGH at {last_high}, first LOW at {first_low}"
    )
    low_order = [n for n in seen if n not in high]
    displacement = max(abs(i - rank) for i, rank in enumerate(sorted(range(len(low_order)),
                                                                      key=low_order.__getitem__)))
    assert displacement <= 2 * consumers, f"LOW tasks are not first in, first out ({displacement})"
    stats = await queue.stats(unique_name)
    assert (stats.high, stats.low, stats.in_flight, stats.dead) == (0, 0, 0, 0)


async def test_killed_consumer_tasks_are_redelivered_then_dead_lettered(
    redis_url: str, unique_name: str
) -> None:
    """Consumers take tasks and stop heartbeating (killed): after the lease their tasks go to the
    next consumer with attempts + 1; after max_attempts they are dead letters with the reason."""
    queue = RedisQueue(redis_url)
    queue.lease_timeout, queue.max_attempts = 0.3, 3
    sent = [envelope(unique_name, n) for n in range(3)]
    await queue.push_many(sent)
    await queue.push(envelope(unique_name, 99), Priority.LOW)  # taken by nobody who dies

    async def killed_consumer(name: str) -> list[Lease]:
        leases = []
        for _ in sent:
            lease = await queue.reserve(unique_name, name, 1)
            assert lease is not None
            leases.append(lease)
        return leases  # ... and never heartbeats, acks or releases again

    for attempt in range(queue.max_attempts):
        taken = await killed_consumer(f"killed-{attempt}")
        assert sorted(lease.envelope.context["n"] for lease in taken) == [0, 1, 2]
        assert {lease.envelope.attempts for lease in taken} == {attempt}
        with anyio.fail_after(5):
            while True:  # a live reaper (any consumer or the pool) polls
                await anyio.sleep(0.1)
                report = await queue.reap(unique_name)
                if report.requeued or report.dead:
                    break
        if attempt < queue.max_attempts - 1:
            assert sorted(e.context["n"] for e in report.requeued) == [0, 1, 2]
            assert report.dead == ()
        else:
            assert report.requeued == ()
            assert sorted(d.envelope.context["n"] for d in report.dead if d.envelope) == [0, 1, 2]

    dead = await queue.dead_letters(unique_name)
    assert sorted(d.envelope.agent_id for d in dead if d.envelope) == sorted(e.agent_id for e in sent)
    for letter in dead:
        assert letter.reason == (
            "lease expired 3 times (max_attempts=3): the worker running it stopped heartbeating"
        )
        assert letter.queue_name == unique_name and letter.failed_at > 0
    survivor = await queue.reserve(unique_name, "alive", 1)
    assert survivor is not None and survivor.envelope.context["n"] == 99
    assert await queue.length(unique_name) == 0


MALFORMED = [
    b"not json at all",
    b"",
    b"{",
    b"[]",
    b"null",
    b"42",
    b'{"task_name": "t"}',
    b'{"agent_id": "not-a-uuid", "task_name": "t", "context": {}, "queue_name": "q"}',
    b"\xff\xfe\x00 binary",
    b'{"agent_id": "6c1a7d0e-0f4b-4a8e-9a53-2b0f5e4f7c11", "task_name": "t", "context": [], "queue_name": "q"}',
]


async def test_100_malformed_payloads_are_dead_lettered_and_the_consumer_goes_on(
    redis_url: str, unique_name: str
) -> None:
    r = await get_redis(redis_url)
    payloads = [MALFORMED[i % len(MALFORMED)] + (b" #%d" % i if i >= len(MALFORMED) else b"")
                for i in range(100)]
    for payload in payloads:  # what `redis-cli LPUSH <queue> <payload>` does
        await r.lpush(unique_name, payload)
    queue = RedisQueue(redis_url)
    good = envelope(unique_name, 1)
    await queue.push(good, Priority.LOW)
    with anyio.fail_after(10):
        lease = await queue.reserve(unique_name, "c1", 5)
    assert lease is not None and lease.envelope == good
    await queue.ack(lease)
    dead = await queue.dead_letters(unique_name, limit=1000)
    assert len(dead) == 100
    assert all(d.reason.startswith("malformed payload: ") and d.envelope is None for d in dead)
    assert [d.payload for d in dead[:3]] == ["not json at all", "", "{"]
    assert "not UTF-8" in dead[8].reason
    assert len({d.id for d in dead}) == 100
    # the consumer is alive: the next valid task is processed too
    await queue.push(envelope(unique_name, 2), Priority.LOW)
    nxt = await queue.reserve(unique_name, "c1", 2)
    assert nxt is not None and nxt.envelope.context["n"] == 2
    assert await queue.requeue_dead(unique_name) == 0, "malformed payloads are never requeued"
    assert await queue.purge_dead(unique_name) == 100
