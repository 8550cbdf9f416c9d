"""The live feed of activity changes behind the server-sent-events stream.

One :class:`ActivityFeed` per app reads the activity store's new log lines
(:class:`agentexec.backends.ActivityChanges`) every ``interval`` seconds while at least one
client listens, and hands each line to every listener. The browser never polls: one cheap
indexed query per interval serves every client of the process, and a worker's hot path pays
nothing (no extra publish per line).

Log line ids order the stream and are its SSE event ids, so a client that reconnects with
``Last-Event-ID`` is sent the lines after it straight from the store, then the live ones, with
nothing missed or sent twice. On PostgreSQL a lower id can commit after a higher one (two
workers' transactions); the feed remembers the ids it skipped over and asks for them again for
``GAP_PATIENCE`` seconds, so such a line is late, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
from agentexec.backends import ActivityChange, ActivityChanges, ActivityStore
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

log = logging.getLogger("agentexec.fastapi")

#: how long a skipped line id is asked for again before it counts as rolled back
GAP_PATIENCE = 5.0
#: most line ids asked for again after one jump
MAX_GAP = 1_000
#: lines read per query (a burst larger than this takes several intervals)
BATCH = 500
#: lines a slow client may fall behind before it is disconnected (it resumes with Last-Event-ID)
BACKLOG = 10_000


class FeedUnavailableError(RuntimeError):
    """The activity store cannot list its changes (it lacks ``achanges``)."""


@dataclass(eq=False)
class _Listener:
    send: MemoryObjectSendStream[ActivityChange]
    receive: MemoryObjectReceiveStream[ActivityChange]
    closed: bool = False


class Subscription:
    """One listener's lines: with ``after``, those after it read from the store first, then
    the live ones (those the replay gave are dropped). :meth:`next` is safe to cancel (a
    keep-alive timeout): nothing is lost, the next call goes on where it was."""

    def __init__(self, changes: ActivityChanges, listener: _Listener, after: int | None) -> None:
        self._changes = changes
        self._listener = listener
        self._after = after
        self._cursor = after
        self._replaying = after is not None
        self._buffer: deque[ActivityChange] = deque()
        self._sent: set[int] = set()

    async def next(self) -> ActivityChange:
        """The next line; ``StopAsyncIteration`` once the feed dropped this listener."""
        while True:
            if self._buffer:
                change = self._buffer.popleft()
                self._sent.add(change.id)
                return change
            if self._replaying:
                _, batch = await self._changes.achanges(self._cursor, BATCH)
                # no await from here on: a cancellation cannot lose this batch
                self._buffer.extend(batch)
                if batch:
                    self._cursor = batch[-1].id
                self._replaying = len(batch) >= BATCH
                continue
            try:
                change = await self._listener.receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise StopAsyncIteration from None
            if change.id in self._sent or (self._after is not None and change.id <= self._after):
                continue
            return change

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ActivityChange:
        return await self.next()


@dataclass
class ActivityFeed:
    """Fans out the store's new activity lines to listeners (see the module doc)."""

    store: Callable[[], ActivityStore]
    interval: float = 0.025
    _listeners: set[_Listener] = field(default_factory=set)
    _cursor: int | None = None
    _gaps: dict[int, float] = field(default_factory=dict)
    _poller: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Raise :class:`FeedUnavailableError` when the store cannot feed a stream."""
        self._changes()

    def _changes(self) -> ActivityChanges:
        store = self.store()
        if not isinstance(store, ActivityChanges):
            raise FeedUnavailableError(
                f"the activity store {type(store).__name__} cannot list its changes (it has no "
                f"achanges method), so there is no live stream; use the SQL or memory store"
            )
        return store

    @contextlib.asynccontextmanager
    async def listen(self, after: int | None = None) -> AsyncIterator[Subscription]:
        """Lines written from now on (with ``after``: every line after that id first)."""
        changes = self._changes()
        if self._cursor is None:
            # before registering: every line written once listen() returns is delivered
            self._cursor, _ = await changes.achanges(None)
        send, receive = anyio.create_memory_object_stream[ActivityChange](BACKLOG)
        listener = _Listener(send, receive)
        self._listeners.add(listener)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._run(changes))
        try:
            yield Subscription(changes, listener, after)
        finally:
            self._listeners.discard(listener)
            listener.closed = True
            send.close()
            receive.close()

    async def aclose(self) -> None:
        """Stop polling (the app is shutting down)."""
        poller, self._poller = self._poller, None
        if poller is not None and not poller.done():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _run(self, changes: ActivityChanges) -> None:
        """Poll while anyone listens."""
        try:
            while self._listeners:
                try:
                    await self._poll(changes)
                except Exception:
                    log.exception("activity feed: reading the store's changes failed; retrying")
                    await anyio.sleep(1.0)
                await anyio.sleep(self.interval)
        finally:
            if not self._listeners:
                # nobody listens: the next listener starts from what is written then
                self._cursor = None
                self._gaps.clear()

    async def _poll(self, changes: ActivityChanges) -> None:
        assert self._cursor is not None
        now = time.monotonic()
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < GAP_PATIENCE}
        _, batch = await changes.achanges(self._cursor, BATCH, sorted(self._gaps))
        cursor = self._cursor
        for change in batch:
            if change.id in self._gaps:
                del self._gaps[change.id]
            elif change.id > cursor:
                # a bounded look-back: a huge jump is a sequence reset, not lines in flight
                for missing in range(max(cursor + 1, change.id - MAX_GAP), change.id):
                    self._gaps.setdefault(missing, now)
                cursor = change.id
            self._deliver(change)
        self._cursor = cursor

    def _deliver(self, change: ActivityChange) -> None:
        for listener in list(self._listeners):
            if listener.closed:
                continue
            try:
                listener.send.send_nowait(change)
            except anyio.WouldBlock:
                log.warning("activity feed: a client fell %d lines behind; disconnecting it", BACKLOG)
                listener.closed = True
                listener.send.close()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                listener.closed = True
