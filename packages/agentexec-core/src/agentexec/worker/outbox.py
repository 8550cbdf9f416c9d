"""What follows a task's final line, in this order: its outcome stored (or its retry pushed),
then its lease acknowledged (or given back).

The line writer (:mod:`.writer`) hands the outbox each batch of items whose lines are committed;
a crash at any point leaves the task in flight, and the queue hands it out again
(at-least-once). Outcomes and acks go in one round trip each where the backend offers
``set_many``/``ack_many``. While a backend is unreachable the outbox waits (:mod:`.health` holds
the worker back meanwhile); an outcome the backend refuses for good is replaced by the task's
failure, saying why, so the task ends once instead of running again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from uuid import UUID

import anyio

from agentexec.backends import (
    BatchAck,
    BatchResults,
    DelayedPush,
    Lease,
    LogEntry,
    QueueBackend,
    ResultBackend,
)
from agentexec.config import CONF
from agentexec.faults import describe
from agentexec.results import Outcome
from agentexec.task import Envelope
from agentexec.worker.health import Health, write_backoff

log = logging.getLogger("agentexec.worker")

#: outcome/ack steps in flight at once (each holds a backend connection)
MAX_POSTS = 4


@dataclass(slots=True)
class Item:
    """A line for the writer, and what follows it once it is committed."""

    entry: LogEntry | None
    seq: int = 0
    outcome: tuple[UUID, bytes] | None = None
    ack: Lease | None = None
    release: Lease | None = None
    #: a retry: the envelope to push again and when it is due (``DelayedPush.push_at``)
    later: tuple[Envelope, float] | None = None
    #: when it was submitted (monotonic seconds)
    at: float = 0.0

    @property
    def posts(self) -> bool:
        """Whether anything follows the line."""
        return bool(self.outcome or self.ack or self.release or self.later)

    @property
    def lease(self) -> Lease | None:
        return self.ack or self.release


class Outbox:
    def __init__(self, results: ResultBackend, queue: QueueBackend, health: Health) -> None:
        self._results = results
        self._queue = queue
        self._health = health
        self._posts = anyio.CapacityLimiter(MAX_POSTS)
        # optional batch capabilities, looked up once (protocol isinstance checks are slow)
        self._set_many = results.set_many if isinstance(results, BatchResults) else None
        self._ack_many = queue.ack_many if isinstance(queue, BatchAck) else None

    @property
    def can_delay(self) -> bool:
        """Whether a retry can wait in the queue backend (``DelayedPush``)."""
        return isinstance(self._queue, DelayedPush)

    def ended(self, items: list[Item]) -> None:
        """The leases of ``items`` are acknowledged or given back (here, or with their lines:
        the store's joint finish): the worker may take more."""
        ended = sum(1 for i in items if i.lease is not None)
        if ended:
            self._health.unfinished -= ended
            self._health.changed()

    async def post(self, items: list[Item]) -> None:
        """Outcomes, then retries, then acks, then give-backs, of ``items`` (lines written)."""
        async with self._posts:
            try:
                outcomes = [i.outcome for i in items if i.outcome is not None]
                if outcomes:
                    await self._store_outcomes(outcomes)
                for item in items:
                    if item.later is not None:
                        await self._push_later(*item.later)
                acks = [i.ack for i in items if i.ack is not None]
                if acks:
                    await self._end_leases("acknowledging", acks, self._ack)
                releases = [i.release for i in items if i.release is not None]
                if releases:
                    await self._end_leases("giving back", releases, self._release)
            finally:
                self.ended(items)

    async def _store_outcomes(self, outcomes: list[tuple[UUID, bytes]]) -> None:
        """Store them, waiting out an outage of the results backend. An outcome the backend
        refuses for good is replaced by the task's failure, saying why (the task is counted
        once: it ends, with a reason, instead of running again)."""
        health, refused_wait = self._health, write_backoff()
        while True:
            exc = await health.write(partial(self._set_outcomes, outcomes), self._results, health.results_down)
            if exc is None:
                return
            if len(outcomes) > 1:
                half = len(outcomes) // 2
                await self._store_outcomes(outcomes[:half])
                await self._store_outcomes(outcomes[half:])
                return
            agent_id, data = outcomes[0]
            failure = _failure_instead(data, exc)
            if failure is None:  # the backend refuses even a failure: its fault, not ours
                await health.outage(health.results_down, exc, refused_wait)
                continue
            log.error("the outcome of %s could not be stored (%s); storing its failure instead",
                      agent_id, describe(exc))
            outcomes = [(agent_id, failure)]

    async def _end_leases(
        self, what: str, leases: list[Lease], call: Callable[[Sequence[Lease]], Awaitable[None]]
    ) -> None:
        """Acknowledge (or give back) ``leases``, waiting out an outage of the queue. One the
        queue refuses for good is left to expire: the queue hands it out again, and the next
        worker finds its outcome stored (an ack) or runs it (a release)."""
        exc = await self._health.write(lambda: call(leases), self._queue, self._health.queue_down)
        if exc is None:
            return
        if len(leases) > 1:
            half = len(leases) // 2
            await self._end_leases(what, leases[:half], call)
            await self._end_leases(what, leases[half:], call)
            return
        log.error(
            "%s task %s failed (%s); its lease expires and the queue hands it out again",
            what, leases[0].envelope.agent_id, describe(exc),
        )

    async def _push_later(self, envelope: Envelope, due: float) -> None:
        """A retry goes back to its queue, due after its backoff, before its old lease is
        acknowledged (a crash between the two runs it twice, never zero times)."""
        assert isinstance(self._queue, DelayedPush)
        queue = self._queue
        exc = await self._health.write(lambda: queue.push_at(envelope, due), queue, self._health.queue_down)
        if exc is not None:
            log.error("the retry of %s could not be queued (%s)", envelope.agent_id, describe(exc))

    async def _set_outcomes(self, outcomes: Sequence[tuple[UUID, bytes]]) -> None:
        ttl = CONF.result_ttl
        if self._set_many is not None:
            await self._set_many(outcomes, ttl)
            return
        # one at a time: the concurrency is across posts (MAX_POSTS), which bounds how many
        # backend connections outcomes and acks can hold, leaving some for the rest
        for agent_id, data in outcomes:
            await self._results.set(agent_id, data, ttl)

    async def _ack(self, leases: Sequence[Lease]) -> None:
        if self._ack_many is not None:
            await self._ack_many(leases)
            return
        for lease in leases:
            await self._queue.ack(lease)

    async def _release(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            await self._queue.release(lease)


def _failure_instead(data: bytes, exc: BaseException) -> bytes | None:
    """The failed outcome to store in place of ``data`` that the results backend refused;
    ``None`` when ``data`` already is such a failure."""
    try:
        refused = Outcome.decode(data)
    except ValueError:
        refused = Outcome.failed("", "")
    reason = f"its outcome could not be stored: {describe(exc)}"
    if refused.status == "error" and refused.error and refused.error.startswith("its outcome could not"):
        return None
    return Outcome.failed(refused.task_name, reason, refused.attempts).encode()
