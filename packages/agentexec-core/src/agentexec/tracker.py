"""``ax.Tracker``: a counter shared by every process, for dynamic fan-out (the original
agentexec's ``Tracker``).

Count the tasks a step queues as it discovers them, count each down as it finishes; whoever
brings the count to zero queues the follow-up::

    tracker = ax.Tracker("research", batch_id)
    await tracker.incr()                          # the discovery itself
    for company in found:
        await tracker.incr()
        await ax.enqueue("research", ResearchContext(company=company, batch_id=batch_id))
    if await tracker.decr() == 0:                 # discovery done
        await ax.enqueue("aggregate", AggregateContext(batch_id=batch_id))

    # in each research task, when it is done:
    if await ax.Tracker("research", context.batch_id).decr() == 0:
        await ax.enqueue("aggregate", AggregateContext(batch_id=context.batch_id))

The counter lives in the process's result backend (Redis, the SQL results table, or memory),
so every pool and producer sharing that backend shares it. Each ``incr``/``decr`` keeps it for
:data:`TRACKER_TTL` more seconds. The methods are coroutines, as in the original's 0.2+ code
(its README still shows them without ``await``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TRACKER_TTL", "Tracker"]

#: seconds a counter outlives its last incr/decr
TRACKER_TTL = 7 * 24 * 3600


class Tracker:
    """An atomic counter named by ``parts`` (``Tracker("research", batch_id)``)."""

    def __init__(self, *parts: Any) -> None:
        if not parts:
            raise TypeError("Tracker needs at least one part to name it, e.g. Tracker('research', batch_id)")
        self.parts = tuple(str(part) for part in parts)
        self.key = "tracker:" + ":".join(self.parts)

    def __repr__(self) -> str:
        return f"Tracker({', '.join(repr(p) for p in self.parts)})"

    def _counters(self) -> Any:
        from agentexec.backends import Counters
        from agentexec.runtime import get_backends

        results = get_backends().results
        if not isinstance(results, Counters):
            raise TypeError(
                f"ax.Tracker needs a result backend with counters (Redis, SQL and memory have "
                f"them); {type(results).__name__} has no incr/counter"
            )
        return results

    async def incr(self, amount: int = 1) -> int:
        """Add ``amount`` (default 1); returns the new count."""
        value: int = await self._counters().incr(self.key, amount, TRACKER_TTL)
        return value

    async def decr(self, amount: int = 1) -> int:
        """Subtract ``amount`` (default 1); returns the new count."""
        value: int = await self._counters().incr(self.key, -amount, TRACKER_TTL)
        return value

    async def count(self) -> int:
        """The current count (0 for a counter never touched)."""
        value: int = await self._counters().counter(self.key)
        return value

    async def complete(self) -> bool:
        """Whether the count is zero."""
        return await self.count() == 0
