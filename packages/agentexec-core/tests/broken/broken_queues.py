"""Queues with one bug each, built on the memory reference queue."""

from __future__ import annotations

import asyncio
import time

from agentexec.backends import Lease, ReapReport
from agentexec.memory.queue import MemoryQueue
from agentexec.task import Envelope, Priority


class LosesHighPriorityQueue(MemoryQueue):
    """Pushes every task to the back, as if it were LOW."""

    def push_raw(self, queue_name: str, payload: str, priority: Priority = Priority.LOW) -> None:
        super().push_raw(queue_name, payload, Priority.LOW)


class DoubleLeaseQueue(MemoryQueue):
    """Looks at the next task, yields to the loop, then takes it: two consumers can get it."""

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        queue = self._q(queue_name)
        if not queue:
            return await super().reserve(queue_name, consumer_id, timeout)
        raw = queue[-1]
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValueError:  # leave malformed payloads to the reference code
            return await super().reserve(queue_name, consumer_id, timeout)
        await asyncio.sleep(0)
        if raw in queue:
            queue.remove(raw)
        self._beats[(queue_name, consumer_id)] = time.monotonic()
        self._inflight.setdefault((queue_name, consumer_id), []).append(raw)
        return Lease(envelope, consumer_id, queue_name, raw)


class NeverRedeliversQueue(MemoryQueue):
    """Forgets that leases expire."""

    async def reap(self, queue_name: str) -> ReapReport:
        return ReapReport()
