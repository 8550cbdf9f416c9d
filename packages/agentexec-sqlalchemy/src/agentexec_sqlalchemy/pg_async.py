"""Async psycopg connections to one PostgreSQL database, on the caller's event loop.

For the hottest writes a thread hop and SQLAlchemy's execution cost more than the statement:
the activity store's writes (:mod:`.activity.pg_writes`) and a producer's push
(:meth:`SQLQueue.push <agentexec_sqlalchemy.transport.queue.SQLQueue.push>`) run here
instead, one autocommit statement each, so a write is one round trip (no ``BEGIN``, ``SET
LOCAL`` or ``COMMIT`` of its own).

Per event loop there are two small pools: *relaxed* connections (``synchronous_commit = off``:
a commit is visible at once and survives any client crash, but a server crash may forget its
last fraction of a second) and *durable* ones (commits wait for the WAL flush). A connection
that sat idle longer than ``PING_AFTER`` is checked with a round trip before use; one cut off
mid-statement is closed, never reused; a forked child starts with pools of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

#: connections per event loop and kind: a worker's writer uses one at a time, a busy web
#: process more
POOL_SIZE = 8
#: a connection idle for longer is checked with a round trip before use (a busy one never is)
PING_AFTER = 5.0


def conninfo(url: Any) -> str:
    """A libpq connection string for a SQLAlchemy URL (``postgresql+psycopg://`` and kin)."""
    return str(url.set(drivername="postgresql").render_as_string(hide_password=False))


async def _alive(conn: Any) -> bool:
    try:
        await conn.execute("SELECT 1")
        return True
    except Exception:
        with contextlib.suppress(Exception):
            await conn.close()
        return False


class _LoopPool:
    """Idle connections of one event loop (with the time each went idle), at most
    ``POOL_SIZE`` in use at once."""

    def __init__(self) -> None:
        self.idle: list[tuple[Any, float]] = []
        self.slots = asyncio.Semaphore(POOL_SIZE)


class AsyncConnections:
    """The relaxed and durable connections of one database, per event loop."""

    def __init__(self, url: Any) -> None:
        self._conninfo = conninfo(url)
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[_LoopPool, _LoopPool]
        ] = weakref.WeakKeyDictionary()
        self._pid = os.getpid()

    @contextlib.asynccontextmanager
    async def connection(self, durable: bool = False) -> AsyncIterator[Any]:
        """An autocommit connection of this loop's pool (``durable``: its commits wait for the
        WAL flush, by the session's own setting)."""
        import psycopg

        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            self._pools = weakref.WeakKeyDictionary()
            self._pid = os.getpid()
        loop = asyncio.get_running_loop()
        pools = self._pools.get(loop)
        if pools is None:
            pools = self._pools[loop] = (_LoopPool(), _LoopPool())
        pool = pools[durable]
        async with pool.slots:
            conn = None
            while pool.idle and conn is None:
                conn, idle_since = pool.idle.pop()
                if conn.closed or (time.monotonic() - idle_since > PING_AFTER and not await _alive(conn)):
                    conn = None  # a server restart or a network cut while it sat idle
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True,
                    options=f"-c synchronous_commit={'on' if durable else 'off'}",
                )
            try:
                yield conn
            finally:
                if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    # cut off mid-statement or broken: never reuse it
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close())
                else:
                    pool.idle.append((conn, time.monotonic()))

    async def close(self) -> None:
        """Close this loop's idle connections."""
        for pool in self._pools.pop(asyncio.get_running_loop(), ()):
            for conn, _ in pool.idle:
                with contextlib.suppress(Exception):
                    await conn.close()


_shared: dict[str, AsyncConnections] = {}


def shared(url: Any) -> AsyncConnections:
    """The process's connections to the database of ``url``: the transport's queue and
    results and the activity store share them, so a worker holds one small pool per loop, not
    one per backend."""
    key = conninfo(url)
    found = _shared.get(key)
    if found is None:
        found = _shared[key] = AsyncConnections(url)
    return found
