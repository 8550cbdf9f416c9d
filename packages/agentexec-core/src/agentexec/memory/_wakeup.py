"""Wake asyncio waiters that may sit on other threads' event loops (memory backends only)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Waiters:
    _items: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(default_factory=list)

    def add(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._items.append((loop, fut))
        return fut

    def discard(self, fut: asyncio.Future[None]) -> None:
        self._items = [(lp, f) for lp, f in self._items if f is not fut]

    def wake_one(self) -> None:
        while self._items:
            loop, fut = self._items.pop(0)
            if not fut.done() and not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)
                return

    def wake_all(self) -> None:
        items, self._items = self._items, []
        for loop, fut in items:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
