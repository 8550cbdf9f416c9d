"""RedisEvents: one bounded stream, channel patterns, stream ids as event ids."""

from __future__ import annotations

import anyio
import pytest
from agentexec_redis import keys
from agentexec_redis.client import get_redis
from agentexec_redis.events import RedisEvents

pytestmark = pytest.mark.anyio


async def test_events_are_stream_entries_and_ids_resume(redis_url: str, unique_name: str) -> None:
    events = RedisEvents(redis_url)
    first = await events.publish(f"logs:{unique_name}", "[Worker 0] hello")
    r = await get_redis(redis_url)
    entry = await r.xrange(keys.EVENTS, min=first, max=first)
    assert entry and entry[0][1] == {b"channel": f"logs:{unique_name}".encode(), b"data": b"[Worker 0] hello"}
    second = await events.publish(f"control:{unique_name}", "shutdown")
    await events.publish(f"events:{unique_name}:done", "{}")
    with anyio.fail_after(5):
        async with events.subscribe([f"control:{unique_name}", f"events:{unique_name}:*"],
                                    last_id=first) as stream:
            got = [await anext(stream), await anext(stream)]
    assert (got[0].channel, got[0].id) == (f"control:{unique_name}", second)
    assert got[1].channel == f"events:{unique_name}:done"


async def test_the_stream_is_bounded(redis_url: str) -> None:
    events = RedisEvents(redis_url)
    r = await get_redis(redis_url)
    async with r.pipeline(transaction=False) as pipe:
        for i in range(keys.STREAM_MAXLEN + 500):
            pipe.xadd(keys.EVENTS, {"channel": "bench:fill", "data": str(i)},
                      maxlen=keys.STREAM_MAXLEN, approximate=True)
        await pipe.execute()
    await events.publish("bench:fill", "last")
    # MAXLEN ~ trims whole macro nodes (100 entries by default), never far past the bound
    assert await r.xlen(keys.EVENTS) <= keys.STREAM_MAXLEN + 200


async def test_a_subscriber_survives_its_connection_being_dropped(redis_url: str, unique_name: str) -> None:
    events = RedisEvents(redis_url)
    channel = f"logs:{unique_name}"
    r = await get_redis(redis_url)
    got: list[str] = []
    with anyio.fail_after(10):
        async with events.subscribe([channel]) as stream:

            async def read_two() -> None:
                for _ in range(2):
                    got.append((await anext(stream)).data)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_two)
                await events.publish(channel, "before")
                while not got:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.05)  # the reader is blocked in XREAD again
                # drop every connection of the pool, the blocked one included (as a restart would)
                await r.connection_pool.disconnect()
                await events.publish(channel, "after")
    assert got == ["before", "after"]
