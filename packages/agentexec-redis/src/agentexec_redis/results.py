"""``RedisResults``: per-task outcomes with ``CONF.result_ttl``, and a ``wait`` woken by ``set``.

``set`` stores the bytes (``SET ... EX ttl``) and then appends the agent id to the
``agentexec:results:done`` stream (``set_many``: every value, then ONE entry naming every id).
Every waiting coroutine of a process shares ONE listener that
tails that stream (``XREAD BLOCK``) and wakes the waiters of each id it reads, so a
``gather`` of a thousand tasks uses one connection, not a thousand. No race: the listener's
starting position is taken before the waiter's first ``GET``, so a ``set`` that lands after
that ``GET`` is always read. After a connection error every waiter re-checks with ``GET``, and
each also re-checks every few seconds as a safety net (never the main path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from agentexec._redact import mask_url
from agentexec.config import CONF

from agentexec_redis import _lua, _streams, keys
from agentexec_redis._resilience import TRANSIENT, is_transient, outage, redis_backoff, retrying
from agentexec_redis.client import async_client, block_for, close_redis, is_cluster, resolve_url

#: how often a waiter re-reads its key even without a wake-up (lost-notification safety net)
RECHECK_INTERVAL = 2.0
#: how long the listener blocks per XREAD before checking whether anyone still waits
_BLOCK_MS = 1000
_MGET_CHUNK = 1000


class _DoneListener:
    """Tails the results-done stream for the waiters of one event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.get_running_loop()
        self.waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.cursor = "0-0"
        self.task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        #: reads asked for in this turn of the loop, sent together as one MGET
        self._reads: dict[str, list[asyncio.Future[bytes | None]]] = {}

    def register(self, agent_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiters.setdefault(agent_id, set()).add(fut)
        return fut

    def unregister(self, agent_id: str, fut: asyncio.Future[None]) -> None:
        futs = self.waiters.get(agent_id)
        if futs is not None:
            futs.discard(fut)
            if not futs:
                del self.waiters[agent_id]

    async def ensure_running(self) -> None:
        """Start tailing (from the stream's current end) unless already tailing. Concurrent
        callers share one start and all resume together (their next reads then share an MGET)."""
        while self.task is None:
            starting = self._starting
            if starting is None:
                starting = self._starting = self.loop.create_task(self._start())
            try:
                await asyncio.shield(starting)
            finally:
                if self._starting is starting and starting.done():
                    self._starting = None

    async def _start(self) -> None:
        r = async_client(self.url)
        self.cursor = await retrying(
            "wait", lambda: _streams.last_id(r, keys.RESULTS_DONE), float(CONF.redis_pool_timeout)
        )
        self.task = self.loop.create_task(self._run())

    def read(self, agent_id: str) -> asyncio.Future[bytes | None]:
        """The stored value of ``agent_id`` (or None). The reads of every waiter of this loop
        asked for in one turn of the loop go out as one MGET: a ``gather`` of 500 tasks checks
        (and, once woken, fetches) its results in a round trip or two, not 500 GETs each."""
        fut: asyncio.Future[bytes | None] = self.loop.create_future()
        if not self._reads:
            self.loop.call_soon(lambda: self.loop.create_task(self._read_now()))
        self._reads.setdefault(agent_id, []).append(fut)
        return fut

    async def _read_now(self) -> None:
        reads, self._reads = self._reads, {}
        names = list(reads)
        try:
            window = float(max(CONF.redis_pool_timeout, 1))
            values = await retrying("result get", lambda: self._mget(names), window)
        except Exception as exc:
            for futs in reads.values():
                for fut in futs:
                    if not fut.done():
                        fut.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are the reads
            for futs in reads.values():
                for fut in futs:
                    fut.cancel()
            raise
        for name, value in zip(names, values, strict=True):
            for fut in reads[name]:
                if not fut.done():
                    fut.set_result(None if value is None else bytes(value))

    async def _mget(self, names: list[str]) -> list[Any]:
        r = async_client(self.url)
        result_keys = [keys.result(name) for name in names]
        if is_cluster(r):  # the keys live on many nodes: one MGET per slot, one pipeline
            return list(await r.mget_nonatomic(result_keys))  # type: ignore[attr-defined]
        values: list[Any] = []
        for start in range(0, len(result_keys), _MGET_CHUNK):
            values += await r.mget(result_keys[start : start + _MGET_CHUNK])
        return values

    def _wake(self, agent_id: str) -> None:
        for fut in self.waiters.get(agent_id, ()):
            if not fut.done():
                fut.set_result(None)

    def _wake_all(self) -> None:
        for agent_id in list(self.waiters):
            self._wake(agent_id)

    async def _run(self) -> None:
        backoff = redis_backoff()
        try:
            while self.waiters:
                try:
                    client = async_client(self.url)
                    block_ms = int(block_for(client, _BLOCK_MS / 1000) * 1000)
                    entries = await _streams.read_after(client, keys.RESULTS_DONE, self.cursor, block_ms)
                except TRANSIENT as exc:
                    outage.failed("result wait", exc)
                    self._wake_all()  # notifications may have been missed: everyone re-reads
                    await backoff.sleep()
                    continue
                backoff.reset()
                for entry_id, fields in entries:
                    self.cursor = entry_id
                    agent_id = fields.get(b"id")
                    if agent_id is not None:
                        self._wake(agent_id.decode())
                    batch = fields.get(b"ids")  # `set_many`: one entry for the whole batch
                    if batch is not None and self.waiters:
                        for name in batch.decode().split(","):
                            self._wake(name)
        finally:
            # no await between the last `while` check and this: a waiter registering now sees
            # `task is None` and starts a new listener
            if self.task is asyncio.current_task():
                self.task = None

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._wake_all()


class RedisResults:
    """Outcome bytes under ``agentexec:result:<agent_id>``; ``RedisResults(url)``."""

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """:class:`agentexec.backends.TransientErrors`: Redis unreachable or not serving
        writes for now (a worker waits), as opposed to a reply refusing the data."""
        return is_transient(exc)

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self._listener: _DoneListener | None = None

    def __repr__(self) -> str:
        return f"RedisResults({mask_url(self.url)!r})"

    def _listener_for_loop(self) -> _DoneListener:
        listener = self._listener
        if listener is None or listener.loop is not asyncio.get_running_loop():
            listener = self._listener = _DoneListener(self.url)
        return listener

    @staticmethod
    def _window() -> float:
        return float(max(CONF.redis_pool_timeout, 1))

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        """Store the value, then append its wake-up ``id=<agent_id>`` (one script call; on a
        cluster the SET, then the XADD: the two keys live on different nodes)."""
        await self.set_many([(agent_id, data)], ttl)

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        """``set`` of each item in one round trip: the ``SET_RESULTS`` script stores every value,
        then appends ONE wake-up entry naming every id (``ids=<id>,<id>,...``; ``id=<id>`` for
        a single item). On a cluster the values live on other nodes than the stream and must be
        stored before their wake-up is read: one pipeline of the values, then the XADD."""
        if not items:
            return
        names = [str(agent_id) for agent_id, _ in items]
        field, value = ("id", names[0]) if len(names) == 1 else ("ids", ",".join(names))

        async def store() -> None:
            r = async_client(self.url)
            if is_cluster(r):
                async with r.pipeline(transaction=False) as pipe:
                    for name, (_, data) in zip(names, items, strict=True):
                        pipe.set(keys.result(name), data, ex=ttl)
                    await pipe.execute()
                await _streams.append(r, keys.RESULTS_DONE, {field: value})
                return
            await _lua.SET_RESULTS(
                r,
                [keys.RESULTS_DONE, *[keys.result(name) for name in names]],
                [ttl, keys.STREAM_MAXLEN, field, value, *[data for _, data in items]],
            )

        await retrying("result set", store, self._window())

    async def stage_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        """:class:`agentexec.backends.StagedResults`: ``SET staged:<id> EX`` of each, in one
        ``STAGE`` script call (a pipeline of them on a cluster, where the keys live apart). A
        worker stages on every turn of its loop that finished tasks (0.13 calls per task with
        handlers that await, batches of ~7), and a pipeline costs the client twice the
        script's CPU."""
        if not items:
            return

        async def store() -> None:
            r = async_client(self.url)
            if is_cluster(r):
                async with r.pipeline(transaction=False) as pipe:
                    for agent_id, data in items:
                        pipe.set(keys.staged(agent_id), data, ex=ttl)
                    await pipe.execute()
                return
            await _lua.STAGE(r, [keys.staged(agent_id) for agent_id, _ in items], [ttl, *[data for _, data in items]])

        await retrying("result stage", store, self._window())

    async def staged(self, agent_id: UUID) -> bytes | None:
        key = keys.staged(agent_id)
        value: Any = await retrying("result staged", lambda: async_client(self.url).get(key), self._window())
        return None if value is None else bytes(value)

    async def get(self, agent_id: UUID) -> bytes | None:
        key = keys.result(agent_id)
        value: Any = await retrying(
            "result get", lambda: async_client(self.url).get(key), self._window()
        )
        return None if value is None else bytes(value)

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        listener = self._listener_for_loop()
        name = str(agent_id)
        value = await listener.read(name)  # already finished: no listener needed
        if value is not None:
            return value
        # registered, and the listener's position taken, before the next read: a set that
        # lands after that read is always seen
        fut = listener.register(name)
        try:
            await listener.ensure_running()
            while True:
                value = await listener.read(name)
                if value is not None:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no result for {agent_id} within {timeout}s")
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(remaining, RECHECK_INTERVAL))
                except TimeoutError:
                    pass
                if fut.done():
                    listener.unregister(name, fut)
                    fut = listener.register(name)
                    await listener.ensure_running()
        finally:
            listener.unregister(name, fut)

    async def delete(self, agent_id: UUID) -> None:
        key = keys.result(agent_id)
        await retrying("result delete", lambda: async_client(self.url).delete(key), self._window())

    async def schedule_records(self, queue_name: str) -> dict[str, str]:
        """:class:`agentexec.backends.ScheduleRecords`: one HGETALL."""
        raw = await retrying(
            "schedules", lambda: async_client(self.url).hgetall(keys.schedules(queue_name)), self._window()
        )
        return {_text(k): _text(v) for k, v in raw.items()}

    async def put_schedule_record(self, queue_name: str, name: str, spec: str) -> None:
        await retrying(
            "schedules", lambda: async_client(self.url).hset(keys.schedules(queue_name), name, spec),
            self._window(),
        )

    async def add_schedule_record(self, queue_name: str, name: str, spec: str) -> bool:
        added = await retrying(
            "schedules", lambda: async_client(self.url).hsetnx(keys.schedules(queue_name), name, spec),
            self._window(),
        )
        return bool(added)

    async def delete_schedule_record(self, queue_name: str, name: str) -> bool:
        done = await retrying(
            "schedules", lambda: async_client(self.url).hdel(keys.schedules(queue_name), name), self._window()
        )
        return bool(done)

    async def claim(self, key: str, ttl: int) -> bool:
        name = keys.claim(key)
        done = await retrying(
            "claim", lambda: async_client(self.url).set(name, b"1", nx=True, ex=ttl), self._window()
        )
        return bool(done)

    async def incr(self, key: str, amount: int, ttl: int) -> int:
        """:class:`agentexec.backends.Counters`: INCRBY and EXPIRE in one round trip (MULTI)."""
        name = keys.counter(key)

        async def step() -> int:
            async with async_client(self.url).pipeline(transaction=True) as pipe:
                pipe.incrby(name, amount)
                pipe.expire(name, ttl)
                value, _ = await pipe.execute()
            return int(value)

        # not retried: an INCRBY that reached Redis before the connection broke would count twice
        return await step()

    async def counter(self, key: str) -> int:
        name = keys.counter(key)
        value = await retrying("counter", lambda: async_client(self.url).get(name), self._window())
        return int(value) if value is not None else 0

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and listener.loop is asyncio.get_running_loop():
            await listener.stop()
        await close_redis(self.url)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
