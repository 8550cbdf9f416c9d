"""In-process reference result store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from uuid import UUID

from agentexec.memory._wakeup import Waiters


class MemoryResults:
    cross_process = False

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._values: dict[UUID, tuple[bytes, float]] = {}
        self._staged: dict[UUID, tuple[bytes, float]] = {}
        self._waiters: dict[UUID, Waiters] = {}
        self._claims: dict[str, float] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._schedules: dict[str, dict[str, str]] = {}

    def _live(self, agent_id: UUID) -> bytes | None:
        item = self._values.get(agent_id)
        if item is None:
            return None
        if item[1] < time.monotonic():
            del self._values[agent_id]
            return None
        return item[0]

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        with self._lock:
            self._values[agent_id] = (bytes(data), time.monotonic() + ttl)
            waiters = self._waiters.pop(agent_id, None)
        if waiters:
            waiters.wake_all()

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        for agent_id, data in items:
            await self.set(agent_id, data, ttl)

    async def stage_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        expires = time.monotonic() + ttl
        with self._lock:
            for agent_id, data in items:
                self._staged[agent_id] = (bytes(data), expires)

    async def staged(self, agent_id: UUID) -> bytes | None:
        with self._lock:
            item = self._staged.get(agent_id)
            if item is None or item[1] <= time.monotonic():
                self._staged.pop(agent_id, None)
                return None
            return item[0]

    async def get(self, agent_id: UUID) -> bytes | None:
        with self._lock:
            return self._live(agent_id)

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                value = self._live(agent_id)
                if value is not None:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no result for {agent_id} within {timeout}s")
                fut = self._waiters.setdefault(agent_id, Waiters()).add()
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                with self._lock:
                    w = self._waiters.get(agent_id)
                    if w:
                        w.discard(fut)

    async def delete(self, agent_id: UUID) -> None:
        with self._lock:
            self._values.pop(agent_id, None)

    async def schedule_records(self, queue_name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._schedules.get(queue_name, {}))

    async def put_schedule_record(self, queue_name: str, name: str, spec: str) -> None:
        with self._lock:
            self._schedules.setdefault(queue_name, {})[name] = spec

    async def add_schedule_record(self, queue_name: str, name: str, spec: str) -> bool:
        with self._lock:
            records = self._schedules.setdefault(queue_name, {})
            if name in records:
                return False
            records[name] = spec
            return True

    async def delete_schedule_record(self, queue_name: str, name: str) -> bool:
        with self._lock:
            return self._schedules.get(queue_name, {}).pop(name, None) is not None

    async def claim(self, key: str, ttl: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._claims.get(key, 0.0) > now:
                return False
            self._claims[key] = now + ttl
            return True

    async def incr(self, key: str, amount: int, ttl: int) -> int:
        """:class:`agentexec.backends.Counters`."""
        now = time.monotonic()
        with self._lock:
            value, expires = self._counters.get(key, (0, now))
            value = (value if expires > now else 0) + amount
            self._counters[key] = (value, now + ttl)
            return value

    async def counter(self, key: str) -> int:
        with self._lock:
            value, expires = self._counters.get(key, (0, 0.0))
            return value if expires > time.monotonic() else 0

    async def close(self) -> None:
        return None
