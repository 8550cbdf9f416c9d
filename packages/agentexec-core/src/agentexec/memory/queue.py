"""In-process reference queue: the semantics every queue backend must have, in plain Python."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence

from pydantic import ValidationError

from agentexec.backends import DeadLetter, Lease, QueueStats, ReapReport
from agentexec.config import CONF
from agentexec.memory._wakeup import Waiters
from agentexec.task import Envelope, Priority


class MemoryQueue:
    """Lists per queue (front = right end, like the Redis list), in-flight lists per consumer."""

    cross_process = False

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.lease_timeout: float = CONF.lease_timeout
        self.max_attempts: int = CONF.max_attempts
        self._lock = threading.Lock()
        self._queues: dict[str, deque[str]] = {}
        self._inflight: dict[tuple[str, str], list[str]] = {}
        self._beats: dict[tuple[str, str], float] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._waiters: dict[str, Waiters] = {}

    def _q(self, name: str) -> deque[str]:
        return self._queues.setdefault(name, deque())

    async def push(self, envelope: Envelope, priority: Priority | None = None) -> None:
        self.push_raw(envelope.queue_name, envelope.model_dump_json(), priority or envelope.priority)

    async def push_many(self, envelopes: Sequence[Envelope]) -> None:
        for env in envelopes:
            self.push_raw(env.queue_name, env.model_dump_json(), env.priority)

    def push_raw(self, queue_name: str, payload: str, priority: Priority = Priority.LOW) -> None:
        """Push a payload as-is (tests use it to push malformed data)."""
        with self._lock:
            if priority is Priority.HIGH:
                self._q(queue_name).append(payload)
            else:
                self._q(queue_name).appendleft(payload)
            self._waiters.setdefault(queue_name, Waiters()).wake_one()

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            with self._lock:
                self._beats[(queue_name, consumer_id)] = time.monotonic()
                q = self._q(queue_name)
                while q:
                    raw = q.pop()
                    try:
                        env = Envelope.model_validate_json(raw)
                    except ValidationError as exc:
                        self._bury(queue_name, raw, f"malformed payload: {_first_error(exc)}")
                        continue
                    self._inflight.setdefault((queue_name, consumer_id), []).append(raw)
                    return Lease(env, consumer_id, queue_name, raw)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                fut = self._waiters.setdefault(queue_name, Waiters()).add()
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                with self._lock:
                    self._waiters[queue_name].discard(fut)

    async def remove(self, queue_name: str, agent_id: uuid.UUID) -> Envelope | None:
        needle = str(agent_id)
        with self._lock:
            q = self._q(queue_name)
            for raw in q:
                if needle not in raw:  # cheap filter before decoding
                    continue
                try:
                    env = Envelope.model_validate_json(raw)
                except ValidationError:
                    continue
                if env.agent_id == agent_id:
                    q.remove(raw)
                    return env
        return None

    def _bury(self, queue_name: str, raw: str, reason: str, env: Envelope | None = None) -> DeadLetter:
        dl = DeadLetter(uuid.uuid4().hex, queue_name, reason, raw, env, time.time())
        self._dead.setdefault(queue_name, []).append(dl)
        return dl

    def _take_inflight(self, lease: Lease) -> bool:
        items = self._inflight.get((lease.queue_name, lease.consumer_id), [])
        try:
            items.remove(lease.token)
        except ValueError:
            return False
        return True

    async def ack(self, lease: Lease) -> None:
        with self._lock:
            self._take_inflight(lease)

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        with self._lock:
            for lease in leases:
                self._take_inflight(lease)

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]:
        first = await self.reserve(queue_name, consumer_id, timeout)
        if first is None:
            return []
        leases = [first]
        while len(leases) < max_count:
            more = await self.reserve(queue_name, consumer_id, 0)
            if more is None:
                break
            leases.append(more)
        return leases

    async def release(self, lease: Lease) -> None:
        with self._lock:
            if self._take_inflight(lease):
                self._q(lease.queue_name).append(lease.token)
                self._waiters.setdefault(lease.queue_name, Waiters()).wake_one()

    async def heartbeat(self, queue_name: str, consumer_id: str) -> None:
        with self._lock:
            self._beats[(queue_name, consumer_id)] = time.monotonic()

    async def reap(self, queue_name: str) -> ReapReport:
        now = time.monotonic()
        with self._lock:
            expired = [
                key for key, beat in self._beats.items()
                if key[0] == queue_name and now - beat > self.lease_timeout
            ]
            return self._reap_locked(queue_name, expired)

    async def in_flight(self, queue_name: str, consumer_id: str) -> list[Envelope]:
        with self._lock:
            items = list(self._inflight.get((queue_name, consumer_id), []))
        return [Envelope.model_validate_json(raw) for raw in items]

    async def reap_consumer(self, queue_name: str, consumer_id: str) -> ReapReport:
        with self._lock:
            return self._reap_locked(queue_name, [(queue_name, consumer_id)])

    def _reap_locked(self, queue_name: str, keys: list[tuple[str, str]]) -> ReapReport:
        requeued: list[Envelope] = []
        dead: list[DeadLetter] = []
        for key in keys:
            items = self._inflight.pop(key, [])
            self._beats.pop(key, None)
            for raw in items:
                env = Envelope.model_validate_json(raw)
                if env.attempts + 1 >= self.max_attempts:
                    dead.append(self._bury(
                        queue_name, raw,
                        f"lease expired {env.attempts + 1} times (max_attempts={self.max_attempts}): "
                        f"the worker running it stopped heartbeating",
                        env,
                    ))
                else:
                    nxt = env.next_attempt()
                    self._q(queue_name).append(nxt.model_dump_json())
                    requeued.append(nxt)
        if requeued:
            self._waiters.setdefault(queue_name, Waiters()).wake_all()
        return ReapReport(tuple(requeued), tuple(dead))

    async def length(self, queue_name: str) -> int:
        with self._lock:
            return len(self._q(queue_name))

    async def stats(self, queue_name: str) -> QueueStats:
        now = time.monotonic()
        with self._lock:
            high = low = 0
            for raw in self._q(queue_name):
                try:
                    env = Envelope.model_validate_json(raw)
                except ValidationError:
                    continue
                if env.priority is Priority.HIGH:
                    high += 1
                else:
                    low += 1
            inflight = sum(len(v) for k, v in self._inflight.items() if k[0] == queue_name)
            consumers = {k[1]: now - b for k, b in self._beats.items() if k[0] == queue_name}
            return QueueStats(queue_name, high, low, inflight, len(self._dead.get(queue_name, [])), consumers)

    async def dead_letters(self, queue_name: str, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead.get(queue_name, []))[:limit]

    async def requeue_dead(self, queue_name: str, ids: Sequence[str] | None = None) -> int:
        with self._lock:
            keep: list[DeadLetter] = []
            count = 0
            for dl in self._dead.get(queue_name, []):
                if (ids is None or dl.id in ids) and dl.envelope is not None:
                    env = dl.envelope.model_copy(update={"attempts": 0})
                    self._q(queue_name).append(env.model_dump_json())
                    count += 1
                else:
                    keep.append(dl)
            self._dead[queue_name] = keep
            if count:
                self._waiters.setdefault(queue_name, Waiters()).wake_all()
            return count

    async def purge_dead(self, queue_name: str) -> int:
        with self._lock:
            return len(self._dead.pop(queue_name, []))

    async def close(self) -> None:
        return None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{loc}: {err.get('msg', 'invalid')}"
