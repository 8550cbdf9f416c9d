"""An event backend that subscribes lazily, on the first ``__anext__``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from agentexec.backends import Event
from agentexec.memory.events import MemoryEvents


class LazySubscribeEvents(MemoryEvents):
    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        outer = self

        async def iterate() -> AsyncIterator[Event]:
            async with MemoryEvents.subscribe(outer, patterns, last_id=last_id) as stream:
                async for event in stream:
                    yield event

        yield iterate()
        await asyncio.sleep(0)
