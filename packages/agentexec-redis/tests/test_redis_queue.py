"""RedisQueue behaviour beyond the conformance kit: key layout, the reaper's edits, recovery."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest
from agentexec.task import Envelope, Priority
from agentexec_redis.client import get_redis
from agentexec_redis.keys import queue_keys, slot_prefix
from agentexec_redis.queue import RedisQueue
from redis.crc import key_slot

pytestmark = pytest.mark.anyio

LEASE = 0.3


def envelope(queue_name: str, n: int, priority: Priority = Priority.LOW, **context: object) -> Envelope:
    return Envelope(
        agent_id=uuid.uuid4(), task_name="t", context={"n": n, **context}, priority=priority,
        queue_name=queue_name, enqueued_at=1.5,
    )


@pytest.fixture
async def queue(redis_url: str) -> RedisQueue:
    q = RedisQueue(redis_url)
    q.lease_timeout = LEASE
    return q


def test_companion_keys_share_the_queue_slot() -> None:
    for name in ("agentexec_tasks", "jobs:{tenant-1}:high", "a{b", "x.y-z"):
        keys = queue_keys(name)
        assert keys.queue == name, "the list keeps the bare queue name (spec: llen(queue_name))"
        for companion in (keys.consumers, keys.dead, keys.dead_seq, keys.inflight("w-1")):
            assert key_slot(companion.encode()) == key_slot(name.encode()), (name, companion)
    assert queue_keys("agentexec_tasks").inflight("w1") == "{agentexec_tasks}:inflight:w1"
    with pytest.raises(ValueError, match="braces"):
        slot_prefix("odd}name")


async def test_the_queue_is_the_spec_list(queue: RedisQueue, redis_url: str, unique_name: str) -> None:
    """LOW is LPUSHed, HIGH RPUSHed, and ``llen(queue_name)`` counts what waits."""
    await queue.push(envelope(unique_name, 1), Priority.LOW)
    await queue.push(envelope(unique_name, 2, Priority.HIGH), Priority.HIGH)
    r = await get_redis(redis_url)
    assert await r.llen(unique_name) == 2
    left, right = await r.lrange(unique_name, 0, -1)
    assert json.loads(left)["context"]["n"] == 1 and json.loads(right)["context"]["n"] == 2
    lease = await queue.reserve(unique_name, "c1", 1)
    assert lease is not None and lease.envelope.context["n"] == 2
    assert await r.llen(unique_name) == 1
    assert await r.llen(queue_keys(unique_name).inflight("c1")) == 1
    await queue.ack(lease)
    assert await r.llen(queue_keys(unique_name).inflight("c1")) == 0


async def test_push_many_equals_pushing_one_by_one(queue: RedisQueue, unique_name: str) -> None:
    other = unique_name + "-b"
    batch = [
        envelope(unique_name, 1), envelope(unique_name, 2), envelope(other, 3),
        envelope(unique_name, 4, Priority.HIGH), envelope(unique_name, 5, Priority.HIGH),
        envelope(unique_name, 6),
    ]
    await queue.push_many(batch)
    got = []
    while (lease := await queue.reserve(unique_name, "c1", 0.05)) is not None:
        got.append(lease.envelope.context["n"])
    # HIGH pushes go to the front one after another (RPUSH), so the later HIGH comes first
    assert got == [5, 4, 1, 2, 6]
    assert await queue.length(other) == 1


async def test_reaper_rewrites_only_the_top_level_attempts(
    queue: RedisQueue, redis_url: str, unique_name: str
) -> None:
    """A payload pushed in another JSON form, whose context holds its own ``attempts`` keys, is
    redelivered with ``attempts + 1`` and an untouched context."""
    context = {"n": 1, "attempts": 99, "nested": {"attempts": 5}, "empty": [], "s": '"attempts":7'}
    sent = envelope(unique_name, 1, **{k: v for k, v in context.items() if k != "n"})
    data = sent.model_dump(mode="json")
    foreign = json.dumps(dict(reversed(list(data.items()))), indent=1)  # other order, spaces
    await queue.push_raw(unique_name, foreign, Priority.LOW)
    lease = await queue.reserve(unique_name, "dies", 1)
    assert lease is not None and lease.envelope == sent
    await anyio.sleep(LEASE + 0.2)
    report = await queue.reap(unique_name)
    assert [e.attempts for e in report.requeued] == [1]
    again = await queue.reserve(unique_name, "c2", 1)
    assert again is not None
    assert again.envelope == sent.model_copy(update={"attempts": 1})
    assert again.envelope.context == context


async def test_task_moved_during_a_cancelled_take_is_not_lost(
    queue: RedisQueue, redis_url: str, unique_name: str
) -> None:
    """When a take is cancelled the server may still move a task into the consumer's in-flight
    list; the consumer's next take hands that task out instead of leaving it stranded."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.reserve, unique_name, "c1", 5)
        # cancelled once it is blocked in the server (its first take registered the consumer;
        # cut off before that, the next take would see a crashed predecessor and count one)
        with anyio.fail_after(5):
            while "c1" not in (await queue.stats(unique_name)).consumers:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    # what the server does when a task arrives just before it sees the client go away
    r = await get_redis(redis_url)
    sent = envelope(unique_name, 1)
    await r.lpush(queue_keys(unique_name).inflight("c1"), sent.model_dump_json())
    lease = await queue.reserve(unique_name, "c1", 0.2)
    assert lease is not None and lease.envelope == sent and lease.envelope.attempts == 0
    await queue.ack(lease)
    assert (await queue.stats(unique_name)).in_flight == 0


async def test_consumer_id_reused_after_a_crash_gets_its_old_tasks_back(
    redis_url: str, unique_name: str
) -> None:
    """A worker restarted under the same consumer id heartbeats at once, so the reaper would never
    see its predecessor's tasks: the first take of a new instance returns them to the queue."""
    crashed = RedisQueue(redis_url)
    await crashed.push(envelope(unique_name, 1), Priority.LOW)
    assert await crashed.reserve(unique_name, "worker-0", 1) is not None
    restarted = RedisQueue(redis_url)
    lease = await restarted.reserve(unique_name, "worker-0", 1)
    assert lease is not None and lease.envelope.context["n"] == 1
    assert lease.envelope.attempts == 1, "a delivery that may have crashed its worker counts"


async def test_reap_consumer_takes_back_a_live_consumers_tasks(
    queue: RedisQueue, unique_name: str
) -> None:
    await queue.push(envelope(unique_name, 1), Priority.LOW)
    assert await queue.reserve(unique_name, "killed", 1) is not None
    await queue.heartbeat(unique_name, "killed")
    assert (await queue.reap(unique_name)).requeued == ()
    report = await queue.reap_consumer(unique_name, "killed")
    assert [e.context["n"] for e in report.requeued] == [1]
    assert "killed" not in (await queue.stats(unique_name)).consumers


async def test_stats_counts_priorities_and_skips_malformed(queue: RedisQueue, unique_name: str) -> None:
    await queue.push_many([envelope(unique_name, 1, Priority.HIGH), envelope(unique_name, 2)])
    await queue.push_raw(unique_name, "garbage", Priority.LOW)
    stats = await queue.stats(unique_name)
    assert (stats.high, stats.low, stats.in_flight, stats.dead) == (1, 1, 0, 0)


async def _drain_concurrently(queue: RedisQueue, queue_name: str, consumer: str, fetchers: int) -> list[Envelope]:
    got: list[Envelope] = []

    async def fetch() -> None:
        while (lease := await queue.reserve(queue_name, consumer, 0.2)) is not None:
            got.append(lease.envelope)
            await queue.ack(lease)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(fetchers):
                tg.start_soon(fetch)
    return got


async def test_concurrent_first_takes_of_one_consumer_lose_and_repeat_nothing(
    redis_url: str, unique_name: str
) -> None:
    """A worker runs several fetchers under one consumer id: the start-up reap of that id must
    not take back the tasks its sibling fetchers have just taken."""
    queue = RedisQueue(redis_url)
    await queue.push_many([envelope(unique_name, n) for n in range(200)])
    got = await _drain_concurrently(queue, unique_name, "worker-7", fetchers=8)
    assert sorted(e.context["n"] for e in got) == list(range(200))
    assert {e.attempts for e in got} == {0}


async def test_stranded_task_is_recovered_once_with_concurrent_fetchers(
    redis_url: str, unique_name: str
) -> None:
    """After a take was cut off (here: its effect, a task in the in-flight list without a lease),
    sibling fetchers recover the stranded task exactly once, while new takes are in flight."""
    queue = RedisQueue(redis_url)
    await queue.push_many([envelope(unique_name, n) for n in range(1, 101)])
    r = await get_redis(redis_url)
    stranded = envelope(unique_name, 0)
    await r.lpush(queue_keys(unique_name).inflight("w"), stranded.model_dump_json())
    state = queue._consumer((unique_name, "w"))
    state.started, state.dirty = True, True
    got = await _drain_concurrently(queue, unique_name, "w", fetchers=6)
    assert sorted(e.context["n"] for e in got) == list(range(101))
    assert {e.attempts for e in got} == {0}


def test_companion_keys_differ_for_every_queue_name() -> None:
    """``a`` and ``{a}`` once shared ``{a}:inflight:...``: reaping one moved the other's tasks."""
    names = ["a", "{a}", "{a}:x", "{a}#3", "a:pipelines", "{a}:pipelines", "{{a}", "a{b", "b{a}", "{a}b"]
    seen: dict[str, str] = {}
    for name in names:
        keys = queue_keys(name)
        for companion in (keys.consumers, keys.dead, keys.dead_seq, keys.inflight("w-1"), keys.inflight("w")):
            assert companion not in names, (name, companion)
            assert seen.setdefault(companion, name) == name, f"{name!r} and {seen[companion]!r} share {companion!r}"
            assert key_slot(companion.encode()) == key_slot(name.encode()), (name, companion)
    assert queue_keys("{a}").inflight("w1") == "{a}#3:{a}:inflight:w1"
    for taken in ("{a}:inflight:w1", "{a}:consumers", "{a}#3:{a}", "agentexec:events", "agentexec:result:1"):
        with pytest.raises(ValueError, match="agentexec's own Redis keys"):
            slot_prefix(taken)


async def test_queues_a_and_braced_a_keep_their_tasks_apart(queue: RedisQueue, redis_url: str) -> None:
    """Reaping a consumer on ``a`` leaves a task of the same consumer id on ``{a}`` in flight."""
    base = f"q{uuid.uuid4().hex[:8]}"
    plain, braced = base, "{" + base + "}"
    for name in (plain, braced):
        await queue.push(envelope(name, 1))
        assert await queue.reserve(name, "c1", 1) is not None
    report = await queue.reap_consumer(plain, "c1")
    assert [e.queue_name for e in report.requeued] == [plain]
    assert await queue.length(braced) == 0, "the {a} task stays in flight"
    assert [e.queue_name for e in await queue.in_flight(braced, "c1")] == [braced]


async def test_a_redis_without_persistence_is_reported(redis_process: Any) -> None:
    """Redis with neither AOF nor RDB lost 411 of 600 queued tasks on a restart, unflagged."""
    bare = redis_process("--save", "", "--appendonly", "no")
    (warning,) = await RedisQueue(bare.url).durability_warnings()
    assert "neither AOF nor RDB persistence" in warning and "a Redis restart loses queued tasks" in warning
    for args in (("--save", "", "--appendonly", "yes"), ("--save", "3600 1", "--appendonly", "no")):
        assert await RedisQueue(redis_process(*args).url).durability_warnings() == []


async def test_the_first_take_leaves_the_consumer_registered(queue: RedisQueue, redis_url: str, unique_name: str) -> None:
    """A worker's heartbeat may come before its first take, whose start-up reap of the
    consumer id unregistered it: a worker killed before its next heartbeat then left its task
    where no reaper looks (found by the ``a``/``{a}`` end-to-end test)."""
    await queue.heartbeat(unique_name, "c1")
    await queue.push(envelope(unique_name, 1))
    assert await queue.reserve(unique_name, "c1", 1) is not None
    r = await get_redis(redis_url)
    assert await r.zscore(queue_keys(unique_name).consumers, "c1") is not None
