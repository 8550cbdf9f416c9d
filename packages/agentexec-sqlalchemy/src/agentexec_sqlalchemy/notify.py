"""Wake-ups for idle consumers, result waiters and event subscribers.

Two layers:

- :class:`Hub` — process-local: a writer in this process wakes waiters of this process at once,
  whatever event loop or thread they run on.
- :class:`PgListener` — PostgreSQL only: one daemon thread per process and database holds one
  connection that ``LISTEN``s on three channels (queue, result, event; the payload names the
  queue, agent id or event channel) and forwards every ``NOTIFY`` to the hub. One fixed set of
  channels means no ``LISTEN``/``UNLISTEN`` round trip per waiter, and queue names need not be
  valid identifiers. A thread (not an async connection) because waiters live on many event loops
  (one per test, several per worker process) and a connection belongs to one loop.

SQLite has no cross-process signal: waiters there poll with a back-off (see :func:`wait_woken`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator

import sqlalchemy as sa
from agentexec.config import CONF

log = logging.getLogger("agentexec.sqlalchemy")

KINDS = ("queue", "result", "event")

#: SQLite poll back-off: first re-check after 5 ms, doubling up to 200 ms
POLL_MIN = 0.005
POLL_MAX = 0.2
#: PostgreSQL: re-check this often even without a NOTIFY (a connection can die silently)
SAFETY_RECHECK = 5.0


def channel(kind: str) -> str:
    """The PostgreSQL NOTIFY channel of one kind of wake-up."""
    return f"{CONF.table_prefix}{kind}"


Key = tuple[str, str, str]  # (database, kind, name)


class Hub:
    """asyncio futures keyed by (database, kind, name), woken from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._waiters: dict[Key, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def register(self, key: Key) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's loops are not ours
                self._pid = os.getpid()
                self._waiters.clear()
            self._waiters.setdefault(key, []).append((loop, fut))
        return fut

    def discard(self, key: Key, fut: asyncio.Future[None]) -> None:
        with self._lock:
            items = self._waiters.get(key)
            if items is None:
                return
            items[:] = [item for item in items if item[1] is not fut]
            if not items:
                del self._waiters[key]

    def wake(self, key: Key) -> None:
        with self._lock:
            items = self._waiters.pop(key, [])
        _resolve_all(items)

    def has_waiters(self, database: str) -> bool:
        with self._lock:
            return any(k[0] == database for k in self._waiters)

    def wake_database(self, database: str) -> None:
        """Wake every waiter of one database (the listener reconnected: they must re-check)."""
        with self._lock:
            keys = [k for k in self._waiters if k[0] == database]
            items = [item for k in keys for item in self._waiters.pop(k)]
        _resolve_all(items)


def _resolve_all(items: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, fut in items:
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # loop closed meanwhile
                pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


HUB = Hub()


async def wait_woken(fut: asyncio.Future[None], delay: float) -> bool:
    """Wait up to ``delay`` seconds for ``fut``; True when it was woken."""
    if delay <= 0:
        return fut.done()
    done, _ = await asyncio.wait({fut}, timeout=delay)
    return bool(done)


class PgListener:
    """One ``LISTEN`` connection per process and database, forwarding NOTIFYs to :data:`HUB`."""

    def __init__(self, url: sa.URL, database: str) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.database = database
        self._channels = {channel(kind): kind for kind in KINDS}
        self._ready = threading.Event()
        self._failed: str | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"agentexec-pg-listen-{database}", daemon=True
        )
        self._thread.start()

    @property
    def healthy(self) -> bool:
        """LISTEN is in place: a waiter may sleep until a NOTIFY instead of polling."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    for name in self._channels:
                        conn.execute(f'LISTEN "{name}"')  # type: ignore[arg-type]
                    self._ready.set()
                    backoff = 0.1
                    # anything sent while we were not listening is lost: make everyone re-check
                    HUB.wake_database(self.database)
                    while True:
                        for note in conn.notifies(timeout=1.0):
                            kind = self._channels.get(note.channel)
                            if kind is not None:
                                HUB.wake((self.database, kind, note.payload))
            except Exception as exc:  # the server went away: poll until we are back
                self._ready.clear()
                if not HUB.has_waiters(self.database):
                    # nobody is waiting (a dropped test database, a server restart at night):
                    # stop; the next waiter starts a new listener
                    _forget(self)
                    return
                HUB.wake_database(self.database)  # they fall back to polling meanwhile
                if self._failed != str(exc):
                    self._failed = str(exc)
                    log.warning("agentexec: PostgreSQL LISTEN connection lost (%s); retrying", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


_listeners: dict[tuple[int, str], PgListener] = {}
_listeners_lock = threading.Lock()


def _forget(listener: PgListener) -> None:
    with _listeners_lock:
        key = (os.getpid(), listener.database)
        if _listeners.get(key) is listener:
            del _listeners[key]


def get_listener(url: sa.URL, database: str) -> PgListener:
    """The process's listener for ``database`` (started on first use; a fork starts its own)."""
    key = (os.getpid(), database)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = PgListener(url, database)
        return listener


def poll_delays() -> Iterator[float]:
    """The SQLite back-off sequence: 5 ms, 10 ms, ... 200 ms, 200 ms ..."""
    delay = POLL_MIN
    while True:
        yield delay
        delay = min(delay * 2, POLL_MAX)
