"""The adapter's connections write without a task per command (``agentexec_redis._connection``)
and keep redis-py's behaviour: commands, pipelines, reconnects, and the write timeout."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from agentexec_redis import _connection, client
from redis.exceptions import TimeoutError as RedisTimeoutError

FAKE_URL = "redis://fakeredis.invalid:6379/0"  # conftest.py's fallback

pytestmark = pytest.mark.anyio


@pytest.fixture
def real_url(redis_url: str) -> str:
    if redis_url == FAKE_URL:
        pytest.skip("needs a real Redis (the fallback's connections are fakeredis's)")
    return redis_url


async def test_the_clients_connections_write_directly(real_url: str) -> None:
    name = f"ax-direct-{uuid.uuid4().hex[:8]}"
    url = f"{real_url}?socket_timeout=5&client_name={name}"
    r = client.async_client(url)
    try:
        assert r.connection_pool.connection_class is _connection.Connection
        await r.set("ax-direct:k", "v")
        assert await r.get("ax-direct:k") == b"v"
        async with r.pipeline(transaction=False) as pipe:
            for _ in range(50):
                pipe.incr("ax-direct:n")
            assert (await pipe.execute())[-1] == 50
        # 200 commands at once over the pool's connections
        assert len(await asyncio.gather(*(r.get("ax-direct:k") for _ in range(200)))) == 200
        # a connection the server closed is dropped and the command retried on a new one
        ids = [c["id"] for c in await r.client_list() if c.get("name") == name]  # ours only
        assert ids
        killer = aioredis.Redis.from_url(real_url)
        for cid in ids:
            await killer.client_kill_filter(_id=cid)
        await killer.aclose()
        assert await r.get("ax-direct:k") == b"v"
    finally:
        await r.delete("ax-direct:k", "ax-direct:n")
        await client.close_redis(url)


async def test_a_write_held_back_past_the_socket_timeout_fails_and_drops_the_connection(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = _connection.direct_send(
        aioredis.ConnectionPool.from_url(real_url, socket_timeout=0.2)
    )
    r = aioredis.Redis.from_pool(pool)
    try:
        await r.ping()
        conn: Any = pool.make_connection()
        await conn.connect()
        writer = conn._writer

        async def stuck() -> None:
            await asyncio.sleep(10)

        # the transport holds bytes back (over its high-water mark): drain would block
        monkeypatch.setattr(writer.transport, "get_write_buffer_size", lambda: 1 << 20)
        monkeypatch.setattr(writer, "drain", stuck)
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
            await conn.send_command("PING")
        assert not conn.is_connected
    finally:
        await r.aclose()
