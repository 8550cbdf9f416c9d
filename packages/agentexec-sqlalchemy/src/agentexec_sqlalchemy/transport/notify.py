"""Wake-ups for idle consumers, result waiters and event subscribers: the process-local hub.

:class:`Hub` holds asyncio futures keyed by ``(database, kind, name)`` — kind ``queue`` (name: the
queue), ``result`` (the agent id) or ``event`` (name: the subscription's patterns, see
:func:`event_key`; an event wakes only the subscriptions whose patterns match its channel,
:meth:`Hub.wake_events`). It is woken

- by a writer in this process, right after its commit, whatever loop or thread waits;
- by the process's *watcher* of that database, for writes of other processes:
  :class:`~agentexec_sqlalchemy.transport.watch_pg.PgListener` (LISTEN/NOTIFY) on PostgreSQL,
  :class:`~agentexec_sqlalchemy.transport.watch_sqlite.SqlitePoller` (one batched poll) on SQLite.

Waiters register *before* checking the database, so a wake-up between check and sleep is kept.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence

from agentexec.backoff import Backoff
from agentexec.config import CONF

KINDS = ("queue", "result", "event")
#: the PostgreSQL channel kind of a batch of stored results: the payload is a JSON array of
#: their keys, or empty for "every result waiter" (``statements.NOTIFY_KEYS_PG``); ``result``
#: carries one key (``set``)
RESULTS = "results"

#: poll back-off: first re-check after 5 ms, doubling up to 100 ms
POLL_MIN = 0.005
POLL_MAX = 0.1
#: with a healthy watcher, a waiter still re-checks this often (a connection can die silently)
SAFETY_RECHECK = 5.0


def channel(kind: str) -> str:
    """The PostgreSQL NOTIFY channel of one kind of wake-up."""
    return f"{CONF.table_prefix}{kind}"


Key = tuple[str, str, str]  # (database, kind, name)

#: the event name of a wake-up for any channel (a peer of an older version NOTIFYs it)
ANY_EVENT = ""


def event_key(patterns: Sequence[str]) -> str:
    """The hub name an event subscription waits under: its patterns (never :data:`ANY_EVENT`)."""
    return json.dumps(list(patterns))


@functools.lru_cache(maxsize=1024)
def _event_matcher(name: str) -> re.Pattern[str] | None:
    """One regex for a subscription's patterns (``fnmatch`` syntax); None: it waits for any."""
    if name == ANY_EVENT:
        return None
    patterns = json.loads(name)
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class Hub:
    """asyncio futures keyed by (database, kind, name), woken from any thread."""

    def __init__(self) -> None:
        self.reset()
        # a forked child starts empty: the parent's loops are not its own (waking one would write
        # to a self-pipe the parent shares), and a lock held by another thread at the fork
        # would stay held forever
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[Key, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def register(self, key: Key) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
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

    def wake_names(self, database: str, kind: str, names: Iterable[str] | None) -> None:
        """Wake the waiters of ``names`` of one kind in one database; None: every one of that kind."""
        with self._lock:
            if names is None:
                keys = [k for k in self._waiters if k[0] == database and k[1] == kind]
            else:
                keys = [(database, kind, name) for name in names]
            items = [item for k in keys for item in self._waiters.pop(k, ())]
        _resolve_all(items)

    def wake_events(self, database: str, channels: Iterable[str]) -> None:
        """Wake the event subscriptions of one database whose patterns match one of ``channels``
        (:data:`ANY_EVENT` among them: every one). Every publish used to wake every subscriber
        of every process, each then querying: each worker's ``control:cancel`` listener, the
        pool's log relay and schedule watch, for every lifecycle event."""
        names = set(channels)
        if not names:
            return
        wake_all = ANY_EVENT in names
        with self._lock:
            keys = [
                k
                for k in self._waiters
                if k[0] == database and k[1] == "event" and (wake_all or _matches(k[2], names))
            ]
            items = [item for k in keys for item in self._waiters.pop(k)]
        _resolve_all(items)

    def has_waiters(self, database: str) -> bool:
        with self._lock:
            return any(k[0] == database for k in self._waiters)

    def waiting(self, database: str) -> dict[str, list[str]]:
        """The names waited on in one database, per kind (a snapshot)."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for db, kind, name in self._waiters:
                if db == database:
                    out.setdefault(kind, []).append(name)
        return out

    def wake_database(self, database: str) -> None:
        """Wake every waiter of one database (the listener reconnected: they must re-check)."""
        with self._lock:
            keys = [k for k in self._waiters if k[0] == database]
            items = [item for k in keys for item in self._waiters.pop(k)]
        _resolve_all(items)


def _matches(name: str, channels: set[str]) -> bool:
    matcher = _event_matcher(name)
    return matcher is None or any(matcher.match(c) for c in channels)


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


def poll_delays() -> Iterator[float]:
    """The back-off of a waiter polling on its own (its watcher is down): 5 ms doubling to 100 ms."""
    wait = Backoff(POLL_MIN, POLL_MAX)
    while True:
        yield wait.next()
