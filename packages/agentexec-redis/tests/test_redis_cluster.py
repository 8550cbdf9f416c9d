"""The adapter on the session's 3-master Redis Cluster (``redis+cluster://`` URLs; the cluster
is started once per session by ``redis_cluster_url`` in the root conftest)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import anyio
import pytest
from agentexec.config import CONF
from agentexec.task import Envelope, Priority
from agentexec_redis.client import close_redis, get_redis, get_redis_sync
from agentexec_redis.events import RedisEvents
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RedisResults
from redis import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def envelope(queue_name: str, n: int, priority: Priority = Priority.LOW) -> Envelope:
    return Envelope(
        agent_id=uuid.uuid4(), task_name="t", context={"n": n}, priority=priority, queue_name=queue_name
    )


async def test_queue_results_and_events_on_a_cluster(cluster_url: str) -> None:
    client = await get_redis(cluster_url)
    assert isinstance(client, RedisCluster)
    # queue names chosen to land on different slots (and so, most likely, different nodes)
    names = [f"cq-{i}" for i in range(3)]
    assert len({key_slot(n.encode()) for n in names}) == 3
    queue = RedisQueue(cluster_url)
    queue.lease_timeout, queue.max_attempts = 0.3, 2
    with anyio.fail_after(15):
        # push_many across slots: the cluster pipeline splits it per node
        await queue.push_many([envelope(name, n, Priority.HIGH if n == 2 else Priority.LOW)
                               for name in names for n in range(3)])
        assert [await client.llen(name) for name in names] == [3, 3, 3]
        for name in names:
            # take + ack (BLMOVE and LREM in the queue's slot), HIGH first
            first = await queue.reserve(name, "c1", 1)
            assert first is not None and first.envelope.context["n"] == 2
            await queue.ack(first)
            # reap: a consumer that dies; its task comes back with attempts + 1 ...
            dying = await queue.reserve(name, "dies", 1)
            assert dying is not None
            await anyio.sleep(0.45)
            report = await queue.reap(name)
            assert [e.agent_id for e in report.requeued] == [dying.envelope.agent_id]
            # ... and is dead-lettered once it reaches max_attempts
            again = await queue.reserve(name, "dies-too", 1)
            assert again is not None and again.envelope.attempts == 1
            await anyio.sleep(0.45)
            assert len((await queue.reap(name)).dead) == 1
            assert len(await queue.dead_letters(name)) == 1
            # malformed payloads are dead-lettered by the take (Lua BURY in the slot)
            await queue.push_raw(name, "garbage", Priority.HIGH)
            last = await queue.reserve(name, "c1", 1)
            assert last is not None and last.envelope.context["n"] == 1
            await queue.release(last)
            stats = await queue.stats(name)
            assert (stats.low, stats.in_flight, stats.dead) == (1, 0, 2)
            assert await queue.requeue_dead(name) == 1
            assert await queue.purge_dead(name) == 1

        results = RedisResults(cluster_url)
        agent_id = uuid.uuid4()
        got: list[bytes] = []

        async def waiter() -> None:
            got.append(await results.wait(agent_id, 10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.1)
            await results.set(agent_id, b"from the cluster", 60)
        assert got == [b"from the cluster"]
        assert await results.claim("cluster-fire", 10) is True
        assert await results.claim("cluster-fire", 10) is False

        events = RedisEvents(cluster_url)
        async with events.subscribe(["logs:*"]) as stream:
            event_id = await events.publish("logs:cq", "hello")
            event = await anext(stream)
        assert (event.channel, event.data, event.id) == ("logs:cq", "hello", event_id)


async def test_a_new_client_routes_its_first_concurrent_commands_by_key(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first commands of a new cluster client, issued at once, reach their keys' nodes.
    redis-py sent the ones issued before it knew the slots to an arbitrary node; the MOVED
    storm that followed broke connections in use (``AttributeError: 'NoneType' object has no
    attribute 'writelines'``)."""
    monkeypatch.setattr(CONF, "redis_pool_size", 64)  # this test is about routing, not pool size
    client = await get_redis(cluster_url)
    moved: list[str] = []
    real = ClusterNode.execute_command

    async def execute_command(self: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        try:
            return await real(self, *args, **kwargs)
        except MovedError as e:
            moved.append(str(e))
            raise

    monkeypatch.setattr(ClusterNode, "execute_command", execute_command)
    prefix = uuid.uuid4().hex
    with anyio.fail_after(10):
        done = await asyncio.gather(*(client.set(f"{prefix}:{i}", i, ex=60) for i in range(40)))
    assert done == [True] * 40
    assert moved == []


async def test_more_commands_than_the_pool_size_wait_for_a_connection(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on one server (a blocking pool of ``redis_pool_size``), commands beyond the pool size
    wait for a connection instead of failing: redis-py's cluster client raised
    ``MaxConnectionsError`` at once, which the backends took for an outage."""
    monkeypatch.setattr(CONF, "redis_pool_size", 3)
    client = await get_redis(cluster_url)
    tag = "{" + uuid.uuid4().hex + "}"  # one slot, so one node: the per-node limit is what counts

    async def piped(i: int) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(f"{tag}:p{i}", i)
            pipe.get(f"{tag}:p{i}")
            return list(await pipe.execute())

    with anyio.fail_after(10):
        blocked = asyncio.gather(*(client.blpop([f"{tag}:empty{i}"], 0.2) for i in range(9)))
        await anyio.sleep(0.05)  # the first three hold every connection
        sets = asyncio.gather(*(client.set(f"{tag}:s{i}", i) for i in range(20)), *(piped(i) for i in range(5)))
        assert await blocked == [None] * 9
        assert await sets == [True] * 20 + [[True, str(i).encode()] for i in range(5)]


async def test_a_command_waits_at_most_the_pool_timeout_for_a_connection(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CONF, "redis_pool_size", 1)
    monkeypatch.setattr(CONF, "redis_pool_timeout", 1)
    client = await get_redis(cluster_url)
    key = uuid.uuid4().hex
    with anyio.fail_after(10):
        holder = asyncio.ensure_future(client.blpop([key], 1.6))
        await anyio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.get(key)
        assert 0.9 < time.monotonic() - started < 1.55
        assert await holder is None


async def test_many_waiters_on_a_cluster_read_their_results_by_slot(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``gather`` of many tasks on a cluster: the waiters' reads go out as one pipeline of
    MGETs per slot (not a GET each, which the pool size would serialize)."""
    results = RedisResults(cluster_url)
    ids = [uuid.uuid4() for _ in range(300)]
    r = await get_redis(cluster_url)
    commands: list[str] = []
    real = r.execute_command

    async def command(*args: Any, **kwargs: Any) -> Any:
        commands.append(str(args[0]).upper())
        return await real(*args, **kwargs)

    monkeypatch.setattr(r, "execute_command", command)
    got: dict[uuid.UUID, bytes] = {}

    async def waiter(agent_id: uuid.UUID) -> None:
        got[agent_id] = await results.wait(agent_id, 10)

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for agent_id in ids:
                    tg.start_soon(waiter, agent_id)
                await anyio.sleep(0.2)
                await results.set_many([(a, a.bytes) for a in ids], 60)
        assert got == {a: a.bytes for a in ids}
        assert "GET" not in commands
    finally:
        await results.close()


async def test_close_redis_closes_every_connection_to_the_cluster(cluster_url: str) -> None:
    """``close_redis`` leaves no connection open on any node, async or blocking client (the
    blocking cluster client's ``close()`` left its nodes' pools connected)."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    url = f"{cluster_url}?client_name={name}"
    ports = [node.port for node in (await (await get_redis(cluster_url)).initialize()).get_nodes()]
    assert len(ports) == 3

    def connections() -> int:
        count = 0
        for port in ports:
            with Redis(host="127.0.0.1", port=port) as probe:
                count += sum(c.get("name") == name for c in probe.client_list())
        return count

    client = await get_redis(url)
    await asyncio.gather(*(client.set(f"{name}:{i}", i, ex=60) for i in range(30)))
    sync = get_redis_sync(url)
    assert [sync.get(f"{name}:{i}") for i in range(30)] == [str(i).encode() for i in range(30)]
    assert connections() >= 3
    await close_redis(url)
    assert connections() == 0
