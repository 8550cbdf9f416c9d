"""Redis clients: one connection pool per process (and per URL), as ``spec/core-api.md`` documents.

- ``get_redis()`` gives the process's ``redis.asyncio`` client, ``get_redis_sync()`` the blocking
  one; both read ``CONF.redis_url`` unless a URL is given, and size their pool by
  ``CONF.redis_pool_size`` connections, waiting up to ``CONF.redis_pool_timeout`` seconds for one.
- ``rediss://`` (TLS), ``unix://`` and ACL users (``redis://user:password@host``) come from the URL.
- ``redis+cluster://`` / ``rediss+cluster://`` select Redis Cluster (``RedisCluster``).
- After ``fork`` a child gets fresh pools (sockets are never shared between processes). Async
  clients belong to the event loop that created them; a new loop gets its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from agentexec.config import CONF
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

_lock = threading.Lock()
_pid = os.getpid()
#: id(loop) -> (loop, url -> client)
_async_clients: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]]] = {}
_sync_clients: dict[str, redis.Redis] = {}


def resolve_url(url: str | None) -> str:
    """``url``, else ``CONF.redis_url``, else an error that says how to configure it."""
    url = url or CONF.redis_url
    if not url:
        raise RuntimeError(
            "no Redis URL: set AGENTEXEC_REDIS_URL (e.g. redis://localhost:6379/0) or pass one"
        )
    return url


def cluster_url(url: str) -> str | None:
    """The plain ``redis(s)://`` URL when ``url`` asks for Redis Cluster, else ``None``."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}{sep}{rest}" if plain and sep else None


def is_cluster(client: Any) -> bool:
    return isinstance(client, AsyncRedisCluster | RedisCluster)


def _check_fork() -> None:
    """Forget every client inherited through ``fork``: the parent owns those sockets."""
    global _pid
    if os.getpid() != _pid:
        _pid = os.getpid()
        _async_clients.clear()
        _sync_clients.clear()


def _retry() -> Any:
    # a short retry for blips; longer outages are handled (and logged) by the backends' own loops
    return aioredis.retry.Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), 3)


def _socket_options(url: str) -> dict[str, Any]:
    # keepalive notices a peer that vanished without closing (TCP only; unix sockets refuse it)
    return {} if url.lower().startswith("unix:") else {"socket_keepalive": True}


class _AsyncCluster(AsyncRedisCluster):
    """``redis.asyncio.RedisCluster`` that learns the cluster's slots before routing a command.

    redis-py (8.1) routes a command by its key only when the client already knows a node; the
    commands issued while a fresh (or re-initializing) client has none go to an arbitrary node,
    draw MOVED replies, and the redirect handling of many such commands at once disconnects
    connections other commands are using (``'NoneType' object has no attribute 'writelines'``).
    Seen on a real cluster as 20 concurrent ``claim`` calls of a new client. ``initialize()``
    returns at once when the slots are known, so this costs one call per command.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _new_async(url: str) -> aioredis.Redis:
    plain = cluster_url(url)
    if plain is not None:
        return cast(
            aioredis.Redis,
            _AsyncCluster.from_url(
                plain, max_connections=max(CONF.redis_pool_size, 2), socket_keepalive=True
            ),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=CONF.redis_pool_size,
        timeout=CONF.redis_pool_timeout,
        health_check_interval=30,
        retry=_retry(),
        **_socket_options(url),
    )
    return aioredis.Redis.from_pool(pool)


def _new_sync(url: str) -> redis.Redis:
    plain = cluster_url(url)
    if plain is not None:
        return cast(redis.Redis, RedisCluster.from_url(plain, socket_keepalive=True))
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=CONF.redis_pool_size,
        timeout=CONF.redis_pool_timeout,
        health_check_interval=30,
        **_socket_options(url),
    )
    return redis.Redis.from_pool(pool)


def async_client(url: str | None = None) -> aioredis.Redis:
    """The async client of this process, event loop and URL (what :func:`get_redis` returns)."""
    url = resolve_url(url)
    loop = asyncio.get_running_loop()
    with _lock:
        _check_fork()
        entry = _async_clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            # a loop that is gone cannot close its sockets any more; drop them with it
            for key in [k for k, (lp, _) in _async_clients.items() if lp.is_closed()]:
                del _async_clients[key]
            entry = (loop, {})
            _async_clients[id(loop)] = entry
        client = entry[1].get(url)
        if client is None:
            client = entry[1][url] = _new_async(url)
        return client


async def get_redis(url: str | None = None) -> aioredis.Redis:
    """The process's async Redis client (``CONF.redis_url`` unless ``url`` is given).

    For a ``redis+cluster://`` URL this is a ``redis.asyncio.RedisCluster``.
    """
    return async_client(url)


def get_redis_sync(url: str | None = None) -> redis.Redis:
    """The process's blocking Redis client (``CONF.redis_url`` unless ``url`` is given)."""
    url = resolve_url(url)
    with _lock:
        _check_fork()
        client = _sync_clients.get(url)
        if client is None:
            client = _sync_clients[url] = _new_sync(url)
        return client


async def close_redis(url: str | None = None) -> None:
    """Close the connection pools of this process (only ``url``'s when given).

    Safe to call more than once; the next ``get_redis()`` opens a new pool.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    to_close: list[aioredis.Redis] = []
    sync_close: list[redis.Redis] = []
    with _lock:
        _check_fork()
        for key, (lp, clients) in list(_async_clients.items()):
            for u in [u for u in clients if url is None or u == url]:
                client = clients.pop(u)
                if lp is loop:
                    to_close.append(client)
            if not clients:
                del _async_clients[key]
        for u in [u for u in _sync_clients if url is None or u == url]:
            sync_close.append(_sync_clients.pop(u))
    for client in to_close:
        await client.aclose()
    for sync in sync_close:
        sync.close()
