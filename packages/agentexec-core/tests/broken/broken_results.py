"""Result stores with one bug each, built on the memory reference store."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from agentexec.memory._wakeup import Waiters
from agentexec.memory.results import MemoryResults


class WaitMissesEarlyValueResults(MemoryResults):
    """``wait`` only listens for the next ``set``; a value stored before the wait is missed."""

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        with self._lock:
            fut = self._waiters.setdefault(agent_id, Waiters()).add()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"no result for {agent_id}") from None
        value = await self.get(agent_id)
        assert value is not None
        return value


class RacyClaimResults(MemoryResults):
    """``claim`` checks, yields, then sets: several callers win."""

    async def claim(self, key: str, ttl: int) -> bool:
        taken = self._claims.get(key, 0.0) > time.monotonic()
        await asyncio.sleep(0)
        if taken:
            return False
        self._claims[key] = time.monotonic() + ttl
        return True
