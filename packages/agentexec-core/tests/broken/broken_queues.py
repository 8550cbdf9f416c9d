"""Queues with one bug each, built on the memory reference queue.

Each is the kind of one-line slip a backend author makes; the docstring says what it breaks
for users. ``test_kit_catches_broken_backends.py`` names the kit test that must catch each.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Sequence

from agentexec.backends import DeadLetter, Lease, ReapReport
from agentexec.memory._wakeup import Waiters
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


class AckRemovesOldestQueue(MemoryQueue):
    """``ack`` pops the consumer's oldest in-flight task (LPOP of the processing list) instead
    of removing the one acknowledged: a worker with several slots that finishes out of order
    forgets a running task, and loses the finished one when it dies."""

    def _take_inflight(self, lease: Lease) -> bool:
        items = self._inflight.get((lease.queue_name, lease.consumer_id), [])
        return bool(items) and items.pop(0) is not None


class ReapCrossesQueuesQueue(MemoryQueue):
    """``reap`` expires silent consumers of every queue (the key pattern lost its queue name),
    and hands their tasks to the queue being reaped: a worker's pipeline-lane task lands on
    its default lane."""

    async def reap(self, queue_name: str) -> ReapReport:
        now = time.monotonic()
        with self._lock:
            expired = [key for key, beat in self._beats.items() if now - beat > self.lease_timeout]
            return self._reap_locked(queue_name, expired)


class ReserveKeepsFirstBeatQueue(MemoryQueue):
    """``reserve`` records a consumer's liveness only the first time it is seen (SET NX): a
    worker idle for longer than the lease loses the next task it takes to the reaper at once."""

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        first = self._beats.get((queue_name, consumer_id))
        lease = await super().reserve(queue_name, consumer_id, timeout)
        if first is not None:
            self._beats[(queue_name, consumer_id)] = first
        return lease


class WholeSecondTimeoutQueue(MemoryQueue):
    """``reserve`` rounds its timeout up to whole seconds (old BLMOVE took integers): an idle
    worker answers a shutdown a second late, and every poll interval is a second."""

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        return await super().reserve(queue_name, consumer_id, float(math.ceil(timeout)))


class WholeSecondLeaseQueue(MemoryQueue):
    """``reap`` rounds ``lease_timeout`` to whole seconds: a 0.3 s lease becomes 0, so even a
    consumer that just took its task loses it."""

    async def reap(self, queue_name: str) -> ReapReport:
        now = time.monotonic()
        with self._lock:
            expired = [
                key for key, beat in self._beats.items()
                if key[0] == queue_name and now - beat > round(self.lease_timeout)
            ]
            return self._reap_locked(queue_name, expired)


class ReapToTheBackQueue(MemoryQueue):
    """Redelivered tasks join the back of the queue: a task whose worker died waits behind
    everything queued since."""

    def _reap_locked(self, queue_name: str, keys: list[tuple[str, str]]) -> ReapReport:
        report = super()._reap_locked(queue_name, keys)
        q = self._q(queue_name)
        for env in report.requeued:
            raw = env.model_dump_json()
            q.remove(raw)
            q.appendleft(raw)
        return report


class OffByOneDeadLetterQueue(MemoryQueue):
    """Dead-letters when attempts exceed ``max_attempts`` (``>``) rather than reach it: one
    delivery more than configured."""

    def _reap_locked(self, queue_name: str, keys: list[tuple[str, str]]) -> ReapReport:
        self.max_attempts += 1
        try:
            return super()._reap_locked(queue_name, keys)
        finally:
            self.max_attempts -= 1


class ReapConsumerNeverDeadLettersQueue(MemoryQueue):
    """``reap_consumer`` (the pool's path for a killed worker) always requeues: a task that
    kills its worker every time (OOM) is run forever instead of dead-lettered."""

    async def reap_consumer(self, queue_name: str, consumer_id: str) -> ReapReport:
        saved, self.max_attempts = self.max_attempts, 1 << 30
        try:
            return await super().reap_consumer(queue_name, consumer_id)
        finally:
            self.max_attempts = saved


class ReleaseToTheBackQueue(MemoryQueue):
    """``release`` puts the task at the back (LPUSH) instead of the front."""

    async def release(self, lease: Lease) -> None:
        with self._lock:
            if self._take_inflight(lease):
                self._q(lease.queue_name).appendleft(lease.token)


class ReleaseCountsAnAttemptQueue(MemoryQueue):
    """``release`` increments ``attempts``: a pool restarted a few times dead-letters tasks
    that never failed."""

    async def release(self, lease: Lease) -> None:
        with self._lock:
            if self._take_inflight(lease):
                self._q(lease.queue_name).append(lease.envelope.next_attempt().model_dump_json())


class DeadLettersNewestFirstQueue(MemoryQueue):
    """``dead_letters`` lists newest first (LRANGE of an LPUSHed list): ``agentexec dead
    --limit`` shows the wrong ones."""

    async def dead_letters(self, queue_name: str, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            return list(reversed(self._dead.get(queue_name, [])))[:limit]


class MalformedStopsReserveQueue(MemoryQueue):
    """A payload that is not a task makes ``reserve`` return ``None`` (after burying it) instead
    of going on to the next task."""

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        with self._lock:
            q = self._q(queue_name)
            if q:
                try:
                    Envelope.model_validate_json(q[-1])
                except ValueError:
                    self._bury(queue_name, q.pop(), "malformed payload")
                    return None
        return await super().reserve(queue_name, consumer_id, timeout)


class ReserveManyOverTakesQueue(MemoryQueue):
    """``reserve_many`` takes one task more than ``max_count`` (``<=`` in its loop): a worker
    holds a task no slot will run until another finishes."""

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]:
        return await super().reserve_many(queue_name, consumer_id, max_count + 1, timeout)


class ReserveManyNotInFlightQueue(MemoryQueue):
    """``reserve_many`` takes the extra tasks with a plain pop, not recording them in flight:
    if the worker dies they are lost, never redelivered."""

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]:
        leases = await super().reserve_many(queue_name, consumer_id, max_count, timeout)
        with self._lock:
            held = self._inflight.get((queue_name, consumer_id), [])
            for lease in leases[1:]:
                held.remove(lease.token)
        return leases


class ReserveManyDoesNotWaitQueue(MemoryQueue):
    """``reserve_many`` returns at once when the queue is empty (a non-blocking pop in the batch
    path): idle workers spin."""

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]:
        return await super().reserve_many(queue_name, consumer_id, max_count, 0)


class AckManyAcksFirstOnlyQueue(MemoryQueue):
    """``ack_many`` acknowledges only the first lease of the batch (a script that reads
    ``ARGV[1]``): the others are redelivered after the worker stops, and run twice."""

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        await super().ack_many(list(leases)[:1])


class AckManyTokensOnlyQueue(MemoryQueue):
    """``ack_many`` removes the leases' tokens and nothing more (one batch ``DELETE``): ``ack``
    releases a lease's locks and enqueue key, ``ack_many`` leaves them, so a parked task of the
    lock's key waits forever and the key outlives its task."""

    async def ack(self, lease: Lease) -> None:
        await super().ack_many([lease])

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        with self._lock:
            for lease in leases:
                self._take_inflight(lease)


class InFlightAcrossConsumersQueue(MemoryQueue):
    """``in_flight`` lists the in-flight tasks of every consumer of the queue."""

    async def in_flight(self, queue_name: str, consumer_id: str) -> list[Envelope]:
        with self._lock:
            items = [raw for (q, _c), raws in self._inflight.items() if q == queue_name for raw in raws]
        return [Envelope.model_validate_json(raw) for raw in items]


class ClosedForGoodQueue(MemoryQueue):
    """After ``close`` the backend refuses every call (its connection pool is dropped, never
    recreated): a pool restarted in the same process cannot use it."""

    closed = False

    async def close(self) -> None:
        self.closed = True

    async def length(self, queue_name: str) -> int:
        if self.closed:
            raise RuntimeError("connection closed")
        return await super().length(queue_name)

    async def push(self, envelope: Envelope, priority: Priority | None = None) -> None:
        if self.closed:
            raise RuntimeError("connection closed")
        await super().push(envelope, priority)


class WakesNobodyQueue(MemoryQueue):
    """``push`` wakes no blocked ``reserve``; consumers find the task on their next poll (every
    half second)."""

    def push_raw(self, queue_name: str, payload: str, priority: Priority = Priority.LOW) -> None:
        with self._lock:
            if priority is Priority.HIGH:
                self._q(queue_name).append(payload)
            else:
                self._q(queue_name).appendleft(payload)

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        deadline = time.monotonic() + timeout
        while True:
            lease = await super().reserve(queue_name, consumer_id, 0)
            remaining = deadline - time.monotonic()
            if lease is not None or remaining <= 0:
                return lease
            await asyncio.sleep(min(0.5, remaining))



class LateReleaseRequeuesQueue(MemoryQueue):
    """``release`` pushes the lease's task back without checking it is still in flight (RPUSH
    after an LREM whose count it ignores): a worker that stalled past its lease and then gives
    its task back queues it a second time — it runs twice."""

    async def release(self, lease: Lease) -> None:
        with self._lock:
            self._take_inflight(lease)
            self._q(lease.queue_name).append(lease.token)
            self._waiters.setdefault(lease.queue_name, Waiters()).wake_one()


class ReleaseWakesNobodyQueue(MemoryQueue):
    """``release`` puts the task back without a wake-up: an idle worker blocked in ``reserve``
    sleeps through it until its poll timeout."""

    async def release(self, lease: Lease) -> None:
        with self._lock:
            if self._take_inflight(lease):
                self._q(lease.queue_name).append(lease.token)


class GivingUpDropsOthersQueue(MemoryQueue):
    """A ``reserve`` that times out clears the queue's waiter list (``DEL`` of a shared key
    instead of ``SREM`` of its own entry): the other idle workers miss the next push."""

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        lease = await super().reserve(queue_name, consumer_id, timeout)
        if lease is None:
            with self._lock:
                self._waiters[queue_name] = Waiters()
        return lease


class DeadLettersShortDefaultQueue(MemoryQueue):
    """``dead_letters`` defaults to ``limit=10`` (the CLI's page size) instead of the protocol's
    100: ``agentexec dead`` shows a tenth of what it should."""

    async def dead_letters(self, queue_name: str, limit: int = 10) -> list[DeadLetter]:
        return await super().dead_letters(queue_name, limit)


class ClampedAttemptsQueue(MemoryQueue):
    """Reads ``attempts`` out of the raw JSON and clamps it into range instead of refusing the
    payload: a forged negative count becomes a runnable task (it would never reach
    ``max_attempts`` with a backend that does not clamp the same way)."""

    def push_raw(self, queue_name: str, payload: str, priority: Priority = Priority.LOW) -> None:
        super().push_raw(queue_name, re.sub(r'"attempts":-?\d+', '"attempts":0', payload), priority)


class RemoveBySubstringQueue(MemoryQueue):
    """``remove`` drops the first waiting payload that merely mentions the id (a substring
    match, no decoding): ``ax.cancel`` of one task can silently delete another whose context
    quotes that id (a parent's id in a child task)."""

    async def remove(self, queue_name: str, agent_id: uuid.UUID) -> Envelope | None:
        with self._lock:
            q = self._q(queue_name)
            for raw in q:
                if str(agent_id) in raw:
                    q.remove(raw)
                    return Envelope.model_validate_json(raw)
        return None


class RemoveTakesInFlightQueue(MemoryQueue):
    """``remove`` also deletes a task a consumer holds (it searches the in-flight lists too):
    cancelling a running task takes it from its worker, whose ack and reap then miss it, and
    the task is never ended CANCELED by its worker."""

    async def remove(self, queue_name: str, agent_id: uuid.UUID) -> Envelope | None:
        found = await super().remove(queue_name, agent_id)
        if found is not None:
            return found
        with self._lock:
            for (name, _consumer), items in self._inflight.items():
                for raw in items:
                    if name == queue_name and str(agent_id) in raw:
                        items.remove(raw)
                        return Envelope.model_validate_json(raw)
        return None


class DelayIgnoredQueue(MemoryQueue):
    """``push_at`` pushes at once (the due time dropped on the way): a retry's backoff and a
    delayed task run immediately."""

    async def push_at(self, envelope: Envelope, due: float) -> None:
        await super().push_at(envelope, 0.0)


class DueWaitsForTimeoutQueue(MemoryQueue):
    """A blocked ``reserve`` sleeps its whole timeout instead of waking at the next due time
    (the due tasks are only seen by the next call): delayed tasks start up to a poll late."""

    def _promote(self, queue_name: str) -> float | None:
        super()._promote(queue_name)
        return None

    async def push_at(self, envelope: Envelope, due: float) -> None:
        if due <= time.time():
            await super().push_at(envelope, due)
            return
        with self._lock:
            self._due_seq += 1
            import heapq

            heapq.heappush(
                self._due.setdefault(envelope.queue_name, []),
                (due, self._due_seq, envelope.model_dump_json(), envelope.priority),
            )


class LockIgnoredQueue(MemoryQueue):
    """``acquire`` grants every lock without counting its holders: two tasks of one
    ``lock_key`` run at once (``max_concurrency`` is not enforced either)."""

    async def acquire(self, lease: Lease) -> bool:
        with self._lock:
            self._held[(lease.queue_name, str(lease.envelope.agent_id))] = list(lease.envelope.locks or {})
        return True


class UnlockWakesNobodyQueue(MemoryQueue):
    """A holder's end frees its lock but leaves the tasks parked on it parked: they wait
    forever (until some other task of the key happens to run and end)."""

    def _unlock(self, queue_name: str, aid: str) -> None:
        for key in self._held.pop((queue_name, aid), ()):
            self._holders.get((queue_name, key), {}).pop(aid, None)


class ReapKeepsLocksQueue(MemoryQueue):
    """A reap hands a dead worker's task back but keeps its locks: its key stays locked by a
    holder that no longer runs, and the tasks parked on it never start."""

    def _lease_ended(self, queue_name: str, env: Envelope, dead: bool = False) -> None:
        if env.key is not None and dead:
            self._drop_key(queue_name, env.key, env.agent_id)


class KeyNeverReleasedQueue(MemoryQueue):
    """An enqueue key outlives its task: after the first task of a key finished, every later
    ``ax.enqueue(..., key=...)`` returns that finished task instead of queuing a new one."""

    def _drop_key(self, queue_name: str, key: str, agent_id: uuid.UUID) -> None:
        return None
