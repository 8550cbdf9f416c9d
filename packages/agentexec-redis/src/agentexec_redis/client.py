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
import inspect
import os
import threading
from contextvars import ContextVar, Token
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from agentexec.config import CONF
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from agentexec_redis._connection import direct_send

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


def _default_socket_timeout() -> float | None:
    from redis.asyncio.connection import AbstractConnection

    default = inspect.signature(AbstractConnection.__init__).parameters["socket_timeout"].default
    return None if default in (None, inspect.Parameter.empty) else float(default)


#: redis-py's own default read timeout (5 s in redis-py 8, none before)
DEFAULT_SOCKET_TIMEOUT = _default_socket_timeout()


def socket_timeout(client: Any) -> float | None:
    """How long ``client`` waits for a reply before it gives up on the connection (``None``:
    forever): ``?socket_timeout=`` of the URL, else redis-py's default."""
    kwargs: Any = None
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        kwargs = getattr(pool, "connection_kwargs", None)
    elif callable(getattr(client, "get_connection_kwargs", None)):  # a cluster client
        kwargs = client.get_connection_kwargs()
    if isinstance(kwargs, dict) and "socket_timeout" in kwargs:
        value = kwargs["socket_timeout"]
        return None if value is None else float(value)
    return DEFAULT_SOCKET_TIMEOUT


def block_for(client: Any, wanted: float) -> float:
    """How long a blocking read (``XREAD BLOCK``, ``BLMOVE``) may block on ``client``: at most
    ``wanted`` seconds, and at most half the client's socket timeout, so the server always
    answers well before the client would give up on it. A block as long as the socket timeout
    (5 s each, once) made every idle subscriber report ``Timeout reading from ...`` as a Redis
    outage."""
    timeout = socket_timeout(client)
    if timeout is None or timeout <= 0:
        return wanted
    return min(wanted, max(timeout / 2, 0.01))


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


#: the cluster clients whose connection permit the running task holds (its nested commands,
#: such as a pipeline's redirected retries, do not wait for a second one)
_permits_held: ContextVar[tuple[object, ...]] = ContextVar("agentexec_redis_permits", default=())


class _AsyncCluster(AsyncRedisCluster):
    """``redis.asyncio.RedisCluster`` made to behave like the single-server client. Both were
    found on a real cluster (``tests/test_redis_cluster.py``):

    - It learns the slots before routing a command. redis-py (8.1) routes by key only once it
      knows a node; the commands a new (or re-initializing) client issues at once went to an
      arbitrary node, drew MOVED, and the redirect handling of many at once disconnected
      connections other commands were using (``'NoneType' object has no attribute
      'writelines'``: 20 concurrent ``claim`` calls). ``initialize()`` returns at once when the
      slots are known.
    - At most ``CONF.redis_pool_size`` commands and pipelines of the process run at once; the
      next waits up to ``CONF.redis_pool_timeout`` s for one to finish (then ``ConnectionError:
      No connection available``), as with the single-server blocking pool. redis-py's cluster
      nodes raise ``MaxConnectionsError`` at once instead, which the backends took for an
      outage. Each command or pipeline uses at most one connection per node, so no node gets
      more than the pool size (its own limit, twice that, leaves room for connections being
      recycled after a topology change).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.permits = asyncio.Semaphore(CONF.redis_pool_size)
        self.permit_timeout = float(CONF.redis_pool_timeout)

    def holds_permit(self) -> bool:
        return any(client is self for client in _permits_held.get())

    async def acquire_permit(self) -> Token[tuple[object, ...]]:
        if self.permits.locked():
            try:
                async with asyncio.timeout(self.permit_timeout):
                    await self.permits.acquire()
            except TimeoutError:
                raise RedisConnectionError("No connection available.") from None
        else:
            await self.permits.acquire()  # free: returns without waiting
        return _permits_held.set((*_permits_held.get(), self))

    def release_permit(self, token: Token[tuple[object, ...]]) -> None:
        _permits_held.reset(token)
        self.permits.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self.holds_permit():
            await self.initialize()
            return await super().execute_command(*args, **kwargs)
        token = await self.acquire_permit()
        try:
            await self.initialize()
            return await super().execute_command(*args, **kwargs)
        finally:
            self.release_permit(token)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction or shard_hint:  # as redis-py decides (the adapter never asks for these)
            return super().pipeline(transaction, shard_hint)
        return _ClusterPipeline(self)  # type: ignore[abstract]  # as redis-py does


class _ClusterPipeline(AsyncClusterPipeline):
    """A cluster pipeline whose ``execute`` holds one of its client's permits."""

    def __init__(self, client: _AsyncCluster) -> None:
        super().__init__(client)
        self.permit_client = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        client = self.permit_client
        if client.holds_permit():
            return await super().execute(raise_on_error, allow_redirections)
        token = await client.acquire_permit()
        try:
            return await super().execute(raise_on_error, allow_redirections)
        finally:
            client.release_permit(token)


def _new_async(url: str) -> aioredis.Redis:
    plain = cluster_url(url)
    if plain is not None:
        return cast(
            aioredis.Redis,
            _AsyncCluster.from_url(
                plain, max_connections=2 * CONF.redis_pool_size, socket_keepalive=True
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
    return aioredis.Redis.from_pool(direct_send(pool))


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
        _close_sync(sync)


def _close_sync(client: redis.Redis) -> None:
    client.close()
    if isinstance(client, RedisCluster):
        # the cluster's close() leaves each node's pool connected (its node clients were given
        # their pools, so they do not own them): disconnect them here
        for node in client.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
