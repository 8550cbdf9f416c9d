"""In-process reference event bus (keeps a bounded history so subscribers can resume)."""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from agentexec.backends import Event

HISTORY = 10_000


class MemoryEvents:
    cross_process = False

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subs: list[tuple[tuple[str, ...], asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = []

    async def publish(self, channel: str, data: str) -> str | None:
        with self._lock:
            event = Event(channel, data, str(next(self._ids)))
            self._history.append(event)
            subs = list(self._subs)
        for patterns, loop, queue in subs:
            if _matches(channel, patterns) and not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, event)
        return event.id

    async def publish_many(self, channel: str, data: Sequence[str]) -> None:
        for item in data:
            await self.publish(channel, item)

    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        pats = tuple(patterns)
        entry = (pats, asyncio.get_running_loop(), queue)
        with self._lock:
            if last_id is not None:
                for event in self._history:
                    if int(event.id or 0) > int(last_id) and _matches(event.channel, pats):
                        queue.put_nowait(event)
            self._subs.append(entry)

        async def iterate() -> AsyncIterator[Event]:
            while True:
                yield await queue.get()

        try:
            yield iterate()
        finally:
            with self._lock:
                self._subs.remove(entry)

    async def close(self) -> None:
        return None


def _matches(channel: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(channel, p) for p in patterns)
