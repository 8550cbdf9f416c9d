"""Result stores with one bug each, built on the memory reference store."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
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


class TtlInMillisecondsResults(MemoryResults):
    """``set`` passes ``ttl`` as milliseconds (PX instead of EX): results vanish at once."""

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        await super().set(agent_id, data, ttl / 1000)  # type: ignore[arg-type]


class NeverExpiresResults(MemoryResults):
    """``set`` stores without an expiry: results pile up forever."""

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        await super().set(agent_id, data, 10**9)


class ClaimTtlInMillisecondsResults(MemoryResults):
    """``claim`` passes ``ttl`` as milliseconds: a schedule's firing is claimed again by the next
    pool a moment later, and runs twice."""

    async def claim(self, key: str, ttl: int) -> bool:
        return await super().claim(key, ttl / 1000)  # type: ignore[arg-type]


class SetManyWakesNobodyResults(MemoryResults):
    """``set_many`` (the worker's batched path) stores the values but sends no wake-up:
    ``ax.get_result`` waits until its timeout although the result is there."""

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        with self._lock:
            for agent_id, data in items:
                self._values[agent_id] = (bytes(data), time.monotonic() + ttl)


class SetManyFirstOnlyResults(MemoryResults):
    """``set_many`` stores the first item of the batch only."""

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        await super().set_many(list(items)[:1], ttl)


class SetManyFirstValueWinsResults(MemoryResults):
    """``set_many`` keeps the first value of an id the batch gives twice (a batched upsert that
    keeps a row's first version): ``get_result`` returns a value the task replaced."""

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        await super().set_many(list(reversed(items)), ttl)


class StagedNeverExpiresResults(MemoryResults):
    """``stage_many`` ignores ``ttl``: staged outcomes of finished tasks are never cleaned up."""

    async def stage_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        await super().stage_many(items, 10**9)


class GetFallsBackToStagedResults(MemoryResults):
    """``get`` returns a staged outcome when no result is set: ``get_result`` sees a value before
    the COMPLETE line is written."""

    async def get(self, agent_id: UUID) -> bytes | None:
        return await super().get(agent_id) or await self.staged(agent_id)


class WakesOneWaiterResults(MemoryResults):
    """``set`` wakes one waiter (LPUSH/BRPOP-style hand-off) instead of all of them."""

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        with self._lock:
            self._values[agent_id] = (bytes(data), time.monotonic() + ttl)
            waiters = self._waiters.get(agent_id)
        if waiters:
            waiters.wake_one()


class PollingWaitResults(MemoryResults):
    """``wait`` polls every 0.4 s instead of waking on ``set``."""

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.get(agent_id)
            if value is not None:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no result for {agent_id}")
            await asyncio.sleep(min(0.4, remaining))


class WholeSecondWaitResults(MemoryResults):
    """``wait`` rounds its timeout up to whole seconds (XREAD BLOCK given seconds, not ms):
    a 0.2 s wait takes a second."""

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        return await super().wait(agent_id, float(math.ceil(timeout)))


class DeleteForgetsNothingResults(MemoryResults):
    """``delete`` deletes the staged key instead of the result's."""

    async def delete(self, agent_id: UUID) -> None:
        with self._lock:
            self._staged.pop(agent_id, None)


class GivingUpDropsOthersResults(MemoryResults):
    """A ``wait`` that times out unregisters every waiter of its id (``UNSUBSCRIBE`` of the
    shared channel): the other callers of ``get_result`` then wait until their own timeout."""

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        try:
            return await super().wait(agent_id, timeout)
        except TimeoutError:
            with self._lock:
                self._waiters.pop(agent_id, None)
            raise


class ClosedForGoodResults(MemoryResults):
    """After ``close`` the backend refuses every call (its client is dropped, never recreated)."""

    closed = False

    async def close(self) -> None:
        self.closed = True

    async def get(self, agent_id: UUID) -> bytes | None:
        if self.closed:
            raise RuntimeError("connection closed")
        return await super().get(agent_id)


class ScheduleAddReadsThenWritesResults(MemoryResults):
    """``add_schedule_record`` reads, yields, then writes: concurrent adds of one name all win."""

    async def add_schedule_record(self, queue_name: str, name: str, spec: str) -> bool:
        taken = name in self._schedules.get(queue_name, {})
        await asyncio.sleep(0)
        if taken:
            return False
        await self.put_schedule_record(queue_name, name, spec)
        return True


class ScheduleRecordsOneHashResults(MemoryResults):
    """Keeps every queue's schedule records in one hash: queues see each other's schedules."""

    async def schedule_records(self, queue_name: str) -> dict[str, str]:
        return await super().schedule_records("")

    async def put_schedule_record(self, queue_name: str, name: str, spec: str) -> None:
        await super().put_schedule_record("", name, spec)

    async def add_schedule_record(self, queue_name: str, name: str, spec: str) -> bool:
        return await super().add_schedule_record("", name, spec)

    async def delete_schedule_record(self, queue_name: str, name: str) -> bool:
        return await super().delete_schedule_record("", name)
