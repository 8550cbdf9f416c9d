"""The batch capabilities the worker pool uses when present: ack_many, reserve_many, set_many,
publish_many, each one pipelined round trip with the same effect as the single call."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from agentexec.backends import BatchAck, BatchPublish, BatchReserve, BatchResults, Lease
from agentexec.task import Envelope, Priority
from agentexec_redis import _lua, keys
from agentexec_redis.client import get_redis
from agentexec_redis.events import RedisEvents
from agentexec_redis.keys import queue_keys
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RECHECK_INTERVAL, RedisResults

pytestmark = pytest.mark.anyio

LEASE = 0.3


def envelope(queue_name: str, n: int, priority: Priority = Priority.LOW) -> Envelope:
    return Envelope(
        agent_id=uuid.uuid4(), task_name="t", context={"n": n}, priority=priority,
        queue_name=queue_name, enqueued_at=1.5,
    )


@pytest.fixture
async def queue(redis_url: str) -> RedisQueue:
    q = RedisQueue(redis_url)
    q.lease_timeout = LEASE
    return q


class _Counting:
    """Counts the round trips of the client it wraps: pipeline executions and single commands
    (script calls among them)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, client: Any, ignore: tuple[str, ...] = ()
    ) -> None:
        self.executes = 0
        real = client.pipeline
        real_command = client.execute_command

        async def command(*args: Any, **kwargs: Any) -> Any:
            if str(args[0]).upper() not in ignore:  # e.g. the reads of concurrent waiters
                self.executes += 1
            return await real_command(*args, **kwargs)

        monkeypatch.setattr(client, "execute_command", command)

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = real(*args, **kwargs)
            execute = pipe.execute

            async def counted(*a: Any, **k: Any) -> Any:
                self.executes += 1
                return await execute(*a, **k)

            pipe.execute = counted
            return pipe

        monkeypatch.setattr(client, "pipeline", pipeline)


async def _loaded(client: Any) -> Any:
    """``client`` once every script is in the server's cache (a first EVALSHA that finds no
    script costs one more round trip: not what the counting tests count)."""
    for script in vars(_lua).values():
        if isinstance(script, _lua.Script):
            await client.script_load(script.body)
    return client


def test_the_redis_backends_offer_the_batch_capabilities() -> None:
    assert isinstance(RedisQueue("redis://x"), BatchAck)
    assert isinstance(RedisQueue("redis://x"), BatchReserve)
    assert isinstance(RedisResults("redis://x"), BatchResults)
    assert isinstance(RedisEvents("redis://x"), BatchPublish)


async def test_ack_many_acks_across_queues_and_consumers(
    queue: RedisQueue, redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = unique_name + "-b"
    await queue.push_many([envelope(name, n) for name in (unique_name, other) for n in range(3)])
    leases: list[Lease] = []
    for name in (unique_name, other):
        for consumer in ("c1", "c2"):
            lease = await queue.reserve(name, consumer, 1)
            assert lease is not None
            leases.append(lease)
    kept = await queue.reserve(unique_name, "c1", 1)
    assert kept is not None
    r = await _loaded(await get_redis(redis_url))
    counting = _Counting(monkeypatch, r)
    await queue.ack_many(leases)
    assert counting.executes == 1, "one round trip for the whole batch"
    await queue.ack_many([])
    assert counting.executes == 1
    assert await r.lrange(queue_keys(unique_name).inflight("c1"), 0, -1) == [kept.token]
    for name, consumer in ((unique_name, "c2"), (other, "c1"), (other, "c2")):
        assert await r.llen(queue_keys(name).inflight(consumer)) == 0
    # the acked tasks are gone for good: a reap after the lease hands out only the unacked one
    await anyio.sleep(LEASE + 0.15)
    report = await queue.reap(unique_name)
    assert [e.agent_id for e in report.requeued] == [kept.envelope.agent_id]
    assert (await queue.reap(other)).requeued == ()


async def test_reserve_many_takes_each_task_into_the_in_flight_list(
    queue: RedisQueue, redis_url: str, unique_name: str
) -> None:
    r = await _loaded(await get_redis(redis_url))
    with anyio.fail_after(10):
        assert await queue.reserve_many(unique_name, "c1", 4, 0.05) == []
        await queue.push_many([envelope(unique_name, n) for n in range(5)])
        await queue.push(envelope(unique_name, 99, Priority.HIGH))
        first = await queue.reserve_many(unique_name, "c1", 4, 1)
        assert [lease.envelope.context["n"] for lease in first] == [99, 0, 1, 2]
        assert all(lease.consumer_id == "c1" for lease in first)
        inflight = queue_keys(unique_name).inflight("c1")
        assert await r.llen(inflight) == 4 and await r.llen(unique_name) == 2
        # fewer waiting than asked for: what waits, without waiting
        rest = await queue.reserve_many(unique_name, "c1", 16, 1)
        assert [lease.envelope.context["n"] for lease in rest] == [3, 4]
        assert await r.llen(inflight) == 6 and await r.llen(unique_name) == 0
        await queue.ack_many(first)
        assert await r.llen(inflight) == 2
        # still leases like any other: the reaper hands out again what was never acked
        await anyio.sleep(LEASE + 0.15)
        report = await queue.reap(unique_name)
        assert sorted(e.context["n"] for e in report.requeued) == [3, 4]
        assert all(e.attempts == 1 for e in report.requeued)


async def test_reserve_many_dead_letters_a_malformed_payload_and_skips_it(
    queue: RedisQueue, unique_name: str
) -> None:
    with anyio.fail_after(10):
        await queue.push(envelope(unique_name, 1))
        await queue.push_raw(unique_name, "not json")
        await queue.push(envelope(unique_name, 2))
        leases = await queue.reserve_many(unique_name, "c1", 3, 1)
        assert [lease.envelope.context["n"] for lease in leases] == [1, 2]
        dead = await queue.dead_letters(unique_name)
        assert len(dead) == 1 and dead[0].envelope is None
        await queue.ack_many(leases)
        assert (await queue.stats(unique_name)).in_flight == 0


async def test_reserve_many_takes_a_waiting_batch_in_one_round_trip_and_buries_bad_ones(
    queue: RedisQueue, redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A started consumer takes waiting tasks with one TAKE script call; a malformed payload
    in the middle of the batch is dead-lettered, a non-canonical one rewritten, the rest run."""
    r = await _loaded(await get_redis(redis_url))
    keys_ = queue_keys(unique_name)
    with anyio.fail_after(10):
        await queue.push(envelope(unique_name, 0))
        # the first take starts the consumer (start-up reap, heartbeat)
        first = await queue.reserve_many(unique_name, "c1", 4, 1)
        assert [lease.envelope.context["n"] for lease in first] == [0]
        await queue.push(envelope(unique_name, 1))
        await queue.push_raw(unique_name, b"\xff not utf-8")
        await queue.push(envelope(unique_name, 2))
        await queue.push_raw(unique_name, "{}")
        spaced = envelope(unique_name, 3).model_dump_json().replace(",", ", ")
        await queue.push_raw(unique_name, spaced)
        await queue.push(envelope(unique_name, 4))
        counting = _Counting(monkeypatch, r)
        leases = await queue.reserve_many(unique_name, "c1", 16, 1)
        assert [lease.envelope.context["n"] for lease in leases] == [1, 2, 3, 4]
        # TAKE, a BURY per malformed payload, a CANONICALIZE for the spaced one
        assert counting.executes == 4
        assert all(lease.token == lease.envelope.model_dump_json().encode() for lease in leases)
        dead = await queue.dead_letters(unique_name)
        assert [d.envelope for d in dead] == [None, None]
        assert "not UTF-8" in dead[0].reason
        inflight = await r.lrange(keys_.inflight("c1"), 0, -1)
        assert sorted(inflight) == sorted(lease.token for lease in first + leases)
        assert await r.llen(unique_name) == 0
        await queue.ack_many(leases)
        assert await r.lrange(keys_.inflight("c1"), 0, -1) == [first[0].token]


async def test_reserve_many_never_hands_one_task_to_two_consumers(
    queue: RedisQueue, redis_url: str, unique_name: str
) -> None:
    total = 400
    taken: dict[str, list[Lease]] = {f"c{i}": [] for i in range(4)}
    r = await _loaded(await get_redis(redis_url))

    async def consume(consumer: str) -> None:
        while sum(len(v) for v in taken.values()) < total:
            got = await queue.reserve_many(unique_name, consumer, 7, 0.05)
            taken[consumer] += got
            await queue.ack_many(got)

    with anyio.fail_after(20):
        # producers keep pushing while the consumers take, in small and big batches
        async with anyio.create_task_group() as tg:
            for consumer in taken:
                tg.start_soon(consume, consumer)
            for start in range(0, total, 25):
                await queue.push_many([envelope(unique_name, n) for n in range(start, start + 25)])
                await anyio.sleep(0.005)
    ns = [lease.envelope.context["n"] for leases in taken.values() for lease in leases]
    assert sorted(ns) == list(range(total)), "every task exactly once"
    assert sum(1 for leases in taken.values() if leases) > 1, "the consumers shared the work"
    for consumer in taken:
        assert await r.llen(queue_keys(unique_name).inflight(consumer)) == 0
    assert await r.llen(unique_name) == 0


async def test_reserve_many_cut_off_midway_returns_what_it_leased_and_recovers_the_rest(
    queue: RedisQueue, redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = queue._leased
    calls = 0

    async def failing(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first of the pipelined takes
            raise RuntimeError("boom")
        return await real(*args)

    with anyio.fail_after(10):
        await queue.push_many([envelope(unique_name, n) for n in range(3)])
        monkeypatch.setattr(queue, "_leased", failing)
        leases = await queue.reserve_many(unique_name, "c1", 3, 1)
        assert [lease.envelope.context["n"] for lease in leases] == [0]
        monkeypatch.setattr(queue, "_leased", real)
        # the two moved but never leased are handed out by the consumer's next takes
        again = [await queue.reserve(unique_name, "c1", 0.05) for _ in range(3)]
        assert [lease.envelope.context["n"] if lease else None for lease in again] == [1, 2, None]
        r = await _loaded(await get_redis(redis_url))
        assert await r.llen(queue_keys(unique_name).inflight("c1")) == 3


async def test_set_many_stores_every_value_and_wakes_every_waiter(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = RedisResults(redis_url)
    ids = [uuid.uuid4() for _ in range(5)]
    got: dict[uuid.UUID, bytes] = {}

    async def waiter(agent_id: uuid.UUID) -> None:
        got[agent_id] = await results.wait(agent_id, 10)

    r = await _loaded(await get_redis(redis_url))
    try:
        async with anyio.create_task_group() as tg:
            for agent_id in ids:
                tg.start_soon(waiter, agent_id)
            await anyio.sleep(0.1)
            counting = _Counting(monkeypatch, r, ignore=("GET", "MGET", "XREAD", "XREVRANGE"))
            # woken by the wake-ups, well before the waiters' periodic re-check
            with anyio.fail_after(RECHECK_INTERVAL / 2):
                await results.set_many([(a, f"v{i}".encode()) for i, a in enumerate(ids)], 60)
                assert counting.executes == 1
                while len(got) < len(ids):
                    await anyio.sleep(0.01)
        assert got == {a: f"v{i}".encode() for i, a in enumerate(ids)}
        for agent_id in ids:
            assert 0 < await r.ttl(keys.result(agent_id)) <= 60
        await results.set_many([], 60)
    finally:
        await results.close()


async def test_set_many_writes_one_wake_up_entry_and_waiters_read_both_forms(
    redis_url: str,
) -> None:
    """A batch is one stream entry ``ids=<id>,<id>,...`` (one value: the single-id form that
    ``set`` writes); the listener wakes waiters on either form, also when written by hand."""
    results = RedisResults(redis_url)
    r = await get_redis(redis_url)
    ids = [uuid.uuid4() for _ in range(6)]
    got: dict[uuid.UUID, bytes] = {}

    async def waiter(agent_id: uuid.UUID) -> None:
        got[agent_id] = await results.wait(agent_id, 10)

    try:
        newest = await r.xrevrange(keys.RESULTS_DONE, count=1)
        start = newest[0][0] if newest else b"0-0"
        await results.set_many([(a, b"x") for a in ids[:3]], 60)
        await results.set_many([(ids[3], b"y")], 60)
        ours = {str(a).encode() for a in ids}
        entries = [  # other processes may share the stream: only the entries naming our ids
            fields for _id, fields in await r.xrange(keys.RESULTS_DONE, min=b"(" + start)
            if ours.intersection(v for f in fields.values() for v in f.split(b","))
        ]
        assert entries == [
            {b"ids": ",".join(str(a) for a in ids[:3]).encode()}, {b"id": str(ids[3]).encode()}
        ]
        await r.delete(*[keys.result(a) for a in ids[:4]])
        async with anyio.create_task_group() as tg:
            for agent_id in ids:
                tg.start_soon(waiter, agent_id)
            await anyio.sleep(0.1)
            with anyio.fail_after(RECHECK_INTERVAL / 2):  # woken, not found by the re-check
                for i, agent_id in enumerate(ids):
                    await r.set(keys.result(agent_id), f"v{i}".encode(), ex=60)
                await r.xadd(keys.RESULTS_DONE, {"id": str(ids[0])})
                await r.xadd(keys.RESULTS_DONE, {"ids": ",".join(str(a) for a in ids[1:])})
                while len(got) < len(ids):
                    await anyio.sleep(0.01)
        assert got == {a: f"v{i}".encode() for i, a in enumerate(ids)}
    finally:
        await results.close()


async def test_publish_many_delivers_in_order_on_one_channel(
    redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = RedisEvents(redis_url)
    channel = f"logs:{unique_name}"
    r = await _loaded(await get_redis(redis_url))
    with anyio.fail_after(5):
        async with events.subscribe([channel]) as stream:
            counting = _Counting(monkeypatch, r)
            await events.publish_many(channel, [f"line {i}" for i in range(20)])
            assert counting.executes == 1
            await events.publish_many(channel, [])
            received = [await anext(stream) for _ in range(20)]
    assert [(e.channel, e.data) for e in received] == [(channel, f"line {i}") for i in range(20)]
    ids = [e.id for e in received]
    assert len(set(ids)) == 20


@pytest.mark.slow
async def test_batches_on_a_cluster(cluster_url: str) -> None:
    """Queues on different slots, results spread over the nodes: each batch still lands."""
    names = [f"bq-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    queue = RedisQueue(cluster_url)
    results = RedisResults(cluster_url)
    events = RedisEvents(cluster_url)
    client = await get_redis(cluster_url)
    try:
        with anyio.fail_after(15):
            await queue.push_many([envelope(name, n) for name in names for n in range(3)])
            leases: list[Lease] = []
            for name in names:
                taken = await queue.reserve_many(name, "c1", 3, 1)
                assert [lease.envelope.context["n"] for lease in taken] == [0, 1, 2]
                leases += taken
            await queue.ack_many(leases)
            for name in names:
                assert (await queue.stats(name)).in_flight == 0

            ids = [uuid.uuid4() for _ in range(20)]
            got: list[bytes] = []

            async def waiter() -> None:
                got.append(await results.wait(ids[-1], 10))

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.1)
                await results.set_many([(a, a.bytes) for a in ids], 60)
            assert got == [ids[-1].bytes]
            assert [await client.get(keys.result(a)) for a in ids] == [a.bytes for a in ids]

            async with events.subscribe(["batch:*"]) as stream:
                await events.publish_many("batch:c", ["a", "b", "c"])
                assert [(await anext(stream)).data for _ in range(3)] == ["a", "b", "c"]
    finally:
        await results.close()


async def test_many_waiters_read_their_results_in_a_few_round_trips(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``gather`` of many tasks: the waiters' reads of one turn of the loop go out as one
    MGET, before the results exist and again once the wake-up arrives (not a GET each)."""
    results = RedisResults(redis_url)
    ids = [uuid.uuid4() for _ in range(200)]
    got: dict[uuid.UUID, bytes] = {}
    r = await get_redis(redis_url)
    reads: list[str] = []
    real_command = r.execute_command

    async def command(*args: Any, **kwargs: Any) -> Any:
        if str(args[0]).upper() in ("GET", "MGET"):
            reads.append(str(args[0]).upper())
        return await real_command(*args, **kwargs)

    monkeypatch.setattr(r, "execute_command", command)

    async def waiter(agent_id: uuid.UUID) -> None:
        got[agent_id] = await results.wait(agent_id, 10)

    try:
        with anyio.fail_after(RECHECK_INTERVAL / 2):
            async with anyio.create_task_group() as tg:
                for agent_id in ids:
                    tg.start_soon(waiter, agent_id)
                await anyio.sleep(0.1)
                before = len(reads)
                await results.set_many([(a, a.bytes) for a in ids], 60)
        assert got == {a: a.bytes for a in ids}
        assert set(reads) == {"MGET"}
        assert before <= 4 and len(reads) - before <= 4, reads
    finally:
        await results.close()


async def test_reserve_many_of_one_is_one_round_trip_and_an_empty_take_blocks_at_once(
    queue: RedisQueue, redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose slots free one at a time takes one task at a time: with tasks waiting
    that is one TAKE (reserve's PROMOTE + BLMOVE is two round trips); with none, the TAKE's
    own promotion stands for reserve's, so the BLMOVE follows it directly; a delayed task still
    ends the block when it falls due."""
    r = await _loaded(await get_redis(redis_url))
    with anyio.fail_after(10):
        await queue.push(envelope(unique_name, 0))
        first = await queue.reserve_many(unique_name, "c1", 1, 1)  # starts the consumer
        assert [lease.envelope.context["n"] for lease in first] == [0]
        await queue.push(envelope(unique_name, 1))
        await queue.push(envelope(unique_name, 2))
        counting = _Counting(monkeypatch, r)
        one = await queue.reserve_many(unique_name, "c1", 1, 1)
        assert [lease.envelope.context["n"] for lease in one] == [1]
        assert counting.executes == 1  # TAKE
        two = await queue.reserve_many(unique_name, "c1", 1, 1)
        assert [lease.envelope.context["n"] for lease in two] == [2]
        counting.executes = 0
        assert await queue.reserve_many(unique_name, "c1", 1, 0.2) == []
        assert counting.executes == 2  # TAKE, then BLMOVE until the timeout: no PROMOTE
        # a task delayed meanwhile: the block that follows an empty TAKE ends when it is due
        await queue.push_at(envelope(unique_name, 3), __import__("time").time() + 0.3)
        leases = await queue.reserve_many(unique_name, "c1", 1, 5)
        assert [lease.envelope.context["n"] for lease in leases] == [3]
        await queue.ack_many([*first, *one, *two, *leases])
