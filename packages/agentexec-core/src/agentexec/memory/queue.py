"""In-process reference queue: the semantics every queue backend must have, in plain Python."""

from __future__ import annotations

import asyncio
import heapq
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
        #: queue -> heap of (due, seq, payload, priority): tasks waiting for their time
        self._due: dict[str, list[tuple[float, int, str, Priority]]] = {}
        self._due_seq = 0
        #: (queue, lock key) -> holders: agent id -> consumer id (TaskLocks)
        self._holders: dict[tuple[str, str], dict[str, str]] = {}
        #: (queue, agent id) -> the lock keys its lease holds
        self._held: dict[tuple[str, str], list[str]] = {}
        #: (queue, lock key) -> agent ids parked on it, oldest first
        self._park: dict[tuple[str, str], deque[str]] = {}
        #: queue -> agent id -> its parked payload
        self._parked: dict[str, dict[str, str]] = {}
        #: (queue, enqueue key) -> the agent id holding it (EnqueueKeys)
        self._keys: dict[tuple[str, str], uuid.UUID] = {}

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

    async def push_at(self, envelope: Envelope, due: float) -> None:
        priority = envelope.priority
        if due <= time.time():
            self.push_raw(envelope.queue_name, envelope.model_dump_json(), priority)
            return
        with self._lock:
            self._due_seq += 1
            heapq.heappush(
                self._due.setdefault(envelope.queue_name, []),
                (due, self._due_seq, envelope.model_dump_json(), priority),
            )
            # a consumer blocked in reserve re-reads how long to wait
            self._waiters.setdefault(envelope.queue_name, Waiters()).wake_one()

    async def delayed(self, queue_name: str) -> int:
        with self._lock:
            return len(self._due.get(queue_name, ()))

    def _promote(self, queue_name: str) -> float | None:
        """Move the due tasks into the queue (lock held); the next due time, if any."""
        heap = self._due.get(queue_name)
        if not heap:
            return None
        now = time.time()
        while heap and heap[0][0] <= now:
            _, _, raw, priority = heapq.heappop(heap)
            if priority is Priority.HIGH:
                self._q(queue_name).append(raw)
            else:
                self._q(queue_name).appendleft(raw)
        return heap[0][0] if heap else None

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            with self._lock:
                self._beats[(queue_name, consumer_id)] = time.monotonic()
                next_due = self._promote(queue_name)
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
                if next_due is not None:
                    remaining = min(remaining, max(next_due - time.time(), 0.0) + 0.001)
                fut = self._waiters.setdefault(queue_name, Waiters()).add()
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                with self._lock:
                    self._waiters[queue_name].discard(fut)

    async def remove(self, queue_name: str, agent_id: uuid.UUID) -> Envelope | None:
        needle = str(agent_id)
        with self._lock:
            raw = self._parked.get(queue_name, {}).pop(needle, None)
            found = Envelope.model_validate_json(raw) if raw is not None else self._remove(queue_name, agent_id, needle)
            if found is not None and found.key is not None:
                self._drop_key(queue_name, found.key, agent_id)
            return found

    def _remove(self, queue_name: str, agent_id: uuid.UUID, needle: str) -> Envelope | None:
        heap = self._due.get(queue_name, [])
        for item in heap:
            if needle in item[2]:
                try:
                    env = Envelope.model_validate_json(item[2])
                except ValidationError:
                    continue
                if env.agent_id == agent_id:
                    heap.remove(item)
                    heapq.heapify(heap)
                    return env
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

    async def acquire(self, lease: Lease) -> bool:
        locks = lease.envelope.locks or {}
        queue_name, aid = lease.queue_name, str(lease.envelope.agent_id)
        with self._lock:
            full = next(
                (key for key, limit in locks.items()
                 if len([a for a in self._holders.get((queue_name, key), {}) if a != aid]) >= limit),
                None,
            )
            if full is None:
                for key in locks:
                    self._holders.setdefault((queue_name, key), {})[aid] = lease.consumer_id
                self._held[(queue_name, aid)] = list(locks)
                return True
            if self._take_inflight(lease):
                self._park.setdefault((queue_name, full), deque()).append(aid)
                self._parked.setdefault(queue_name, {})[aid] = lease.token
            return False

    async def unlock(self, lease: Lease) -> None:
        with self._lock:
            self._unlock(lease.queue_name, str(lease.envelope.agent_id))

    async def parked(self, queue_name: str) -> int:
        with self._lock:
            return len(self._parked.get(queue_name, {}))

    def _unlock(self, queue_name: str, aid: str) -> None:
        """Release the locks of ``aid`` and wake one parked task per key (lock held)."""
        for key in self._held.pop((queue_name, aid), ()):
            holders = self._holders.get((queue_name, key))
            if holders is not None:
                holders.pop(aid, None)
                if not holders:
                    del self._holders[(queue_name, key)]
            waiting = self._park.get((queue_name, key))
            parked = self._parked.get(queue_name, {})
            while waiting:
                raw = parked.pop(waiting.popleft(), None)
                if raw is not None:
                    self._q(queue_name).append(raw)  # the front: it has waited its turn
                    self._waiters.setdefault(queue_name, Waiters()).wake_one()
                    break
            if waiting is not None and not waiting:
                del self._park[(queue_name, key)]

    def _lease_ended(self, queue_name: str, env: Envelope, dead: bool = False) -> None:
        """A lease of ``env`` ended (lock held): its locks, and its enqueue key when it is done."""
        self._unlock(queue_name, str(env.agent_id))
        if env.key is not None and dead:
            self._drop_key(queue_name, env.key, env.agent_id)

    def _drop_key(self, queue_name: str, key: str, agent_id: uuid.UUID) -> None:
        if self._keys.get((queue_name, key)) == agent_id:
            del self._keys[(queue_name, key)]

    async def claim_key(
        self, queue_name: str, key: str, agent_id: uuid.UUID, replace: uuid.UUID | None = None
    ) -> uuid.UUID | None:
        with self._lock:
            holder = self._keys.get((queue_name, key))
            if holder is None or (replace is not None and holder == replace):
                self._keys[(queue_name, key)] = agent_id
                return None
            return holder

    async def release_key(self, queue_name: str, key: str, agent_id: uuid.UUID) -> None:
        with self._lock:
            self._drop_key(queue_name, key, agent_id)

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
        await self.ack_many([lease])

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        with self._lock:
            for lease in leases:
                if self._take_inflight(lease):
                    env = lease.envelope
                    if env.locks is not None:
                        self._unlock(lease.queue_name, str(env.agent_id))
                    if env.key is not None:
                        self._drop_key(lease.queue_name, env.key, env.agent_id)

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
                if lease.envelope.locks is not None:
                    self._unlock(lease.queue_name, str(lease.envelope.agent_id))

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
                self._lease_ended(queue_name, env, dead=env.attempts + 1 >= self.max_attempts)
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
