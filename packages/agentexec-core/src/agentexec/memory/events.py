"""In-process reference event bus: a bounded history per stream (events, logs, control: see
:mod:`agentexec.limits`) so subscribers can resume, and are told when they cannot."""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from agentexec.backends import Event, EventGapError
from agentexec.limits import STREAMS, Stream, retention, stream_of, streams_for


class MemoryEvents:
    cross_process = False

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._history: dict[Stream, deque[Event]] = {stream: deque() for stream in STREAMS}
        #: the newest id dropped from each stream's history
        self._dropped: dict[Stream, int] = dict.fromkeys(STREAMS, 0)
        self._subs: list[tuple[tuple[str, ...], asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = []

    async def publish(self, channel: str, data: str) -> str | None:
        stream = stream_of(channel)
        keep = retention(stream)
        with self._lock:
            event = Event(channel, data, str(next(self._ids)))
            history = self._history[stream]
            history.append(event)
            while len(history) > keep:
                self._dropped[stream] = int(history.popleft().id or 0)
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
                if not str(last_id).isdigit():
                    raise ValueError(f"last_id={last_id!r} is not an id of this event backend")
                after = int(last_id)
                replay: list[Event] = []
                for stream in sorted(streams_for(pats)):
                    if self._dropped[stream] > after:
                        raise EventGapError(str(last_id), str(self._dropped[stream]), stream)
                    replay += [
                        e for e in self._history[stream]
                        if int(e.id or 0) > after and _matches(e.channel, pats)
                    ]
                for event in sorted(replay, key=lambda e: int(e.id or 0)):
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
