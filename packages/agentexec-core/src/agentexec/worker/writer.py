"""A worker process's writer: group commit of activity lines, then outcomes, then acks.

Every lifecycle line of the process's tasks goes through one writer. Lines that arrive while
transactions are in progress are written together in the next one (``aappend_many``), so with
many tasks in flight the database sees one transaction per batch instead of one per line, while
a lone task pays one transaction and no added delay. Should several transactions be allowed
in flight (``MAX_COMMITS``), two lines of one activity are never in flight together, so each
activity's lines commit in the order they were written.

After a batch commits, the outcomes of its finished tasks are stored and only then are those
tasks acknowledged (in one round trip each where the backend offers ``set_many``/``ack_many``):
a crash at any point leaves a task in flight, and the queue hands it out again (at-least-once).
Nothing is dropped on shutdown: :meth:`close` returns once everything submitted is written,
stored and acknowledged.

Lines are not awaited by the task that gives them (the RUNNING line included): the writer
keeps, per activity, which lines are not written yet, so ``ax.activity`` calls in the worker can
go after them (:meth:`written`, or :meth:`WorkerSink.settle` for sync code on the loop).

A line whose activity does not exist (yet) is the task's own producer being a moment behind its
push: its batch is tried again whole after short pauses, then the line is set aside (other
batches go on) and, after ``UNKNOWN_GRACE``, the activity is created from the task.

Faults (:mod:`agentexec.faults`): a write that fails because its backend is unreachable is kept
and tried again, and meanwhile the worker takes no new task (:meth:`ActivityWriter.ready`), so
nothing runs that cannot be recorded; each outage is logged once, and once more when it ends.
A write the backend *refuses* (bad data) is split until the row at fault is alone; that row is
cleaned, or replaced by a note of what was lost (a line) or by the task's failure (an
outcome), so one bad row never holds up the others or loops.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import count
from typing import Any
from uuid import UUID

import anyio

from agentexec.activity.status import Status
from agentexec.backends import (
    ActivityStore,
    BatchAck,
    BatchResults,
    DelayedPush,
    Lease,
    LogEntry,
    QueueBackend,
    ResultBackend,
    UnknownActivityError,
)
from agentexec.config import CONF
from agentexec.faults import Outage, clean_text, describe, is_transient
from agentexec.results import NonRetryableError, Outcome, RetryAfter
from agentexec.task import Envelope, Task, TaskDefinition
from agentexec.task_events import WriterEvents
from agentexec.worker.stager import Stager

log = logging.getLogger("agentexec.worker")

#: lines per transaction, so one burst cannot make a transaction arbitrarily large
MAX_BATCH = 500
#: activity transactions in flight at once. One measured best: commits that overlap split the
#: lines into smaller batches and contend with each other (and with the event loop, for the
#: GIL) without finishing any sooner; one at a time, everything that arrives meanwhile rides
#: in the next transaction
MAX_COMMITS = 1
#: outcome/ack steps in flight at once (each holds a backend connection)
MAX_POSTS = 4
#: waits between tries of a write while its backend is unreachable
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
#: what a worker says it does while a backend it writes to is unreachable
WAITING = (
    "this worker takes no new task until it can write again (its finished tasks wait, their "
    "slots taken); retrying"
)
#: how long a line waits for its activity to appear before the worker creates it
UNKNOWN_GRACE = 1.0
#: pauses before a batch with a missing activity is tried again whole (then split)
ARRIVING = (0.001, 0.002, 0.005, 0.01, 0.02)


@dataclass(slots=True)
class _Item:
    entry: LogEntry | None
    seq: int = 0
    outcome: tuple[UUID, bytes] | None = None
    ack: Lease | None = None
    release: Lease | None = None
    #: a retry: the envelope to push again and when it is due (``DelayedPush.push_at``)
    later: tuple[Envelope, float] | None = None


class ActivityWriter:
    def __init__(self, activity: ActivityStore, results: ResultBackend, queue: QueueBackend) -> None:
        self.activity = activity
        self._results = results
        self._queue = queue
        self._pending: list[_Item] = []
        self._busy: set[UUID] = set()  # activities with a line in a transaction in flight
        #: agent_id -> task name of the tasks this worker runs (to create a missing activity)
        self.task_names: dict[UUID, str] = {}
        #: agent_id -> activity metadata of those tasks that have some (likewise)
        self.task_metadata: dict[UUID, dict[str, Any]] = {}
        #: per activity, the sequence numbers of its lines not yet committed (oldest first)
        self._unwritten: dict[UUID, deque[int]] = {}
        self._seq = count(1)
        self._committed = anyio.Event()  # set (and replaced) after every batch
        self._commits = 0
        self._wake = anyio.Event()
        self._closing = False
        self._finished = anyio.Event()
        self._posts = anyio.CapacityLimiter(MAX_POSTS)
        # optional batch capabilities, looked up once (protocol isinstance checks are slow)
        self._set_many = results.set_many if isinstance(results, BatchResults) else None
        self._ack_many = queue.ack_many if isinstance(queue, BatchAck) else None
        # backpressure: while a backend is down, or too many finished tasks wait for their
        # outcome and ack, the worker takes no new task (see ``ready``)
        self._activity_down = Outage(f"the activity store ({type(activity).__name__})", WAITING)
        self._results_down = Outage(f"the results backend ({type(results).__name__})", WAITING)
        self._queue_down = Outage(f"the queue ({type(queue).__name__})", WAITING)
        #: leases submitted (to be acknowledged or given back) and not yet ended
        self._unfinished = 0
        #: how many may wait before ``ready`` holds the worker back (None: no bound)
        self.max_unfinished: int | None = None
        self._progress = anyio.Event()
        #: lifecycle events (``task.started`` ...) of the lines committed (None: turned off)
        self.events = WriterEvents.create()

    # -- backpressure ------------------------------------------------------------------------
    @property
    def down(self) -> list[str]:
        """What this worker cannot write to right now."""
        return [o.what for o in (self._activity_down, self._results_down, self._queue_down) if o.down]

    @property
    def accepting(self) -> bool:
        """Whether the worker may take another task: every backend it writes to answers, and
        fewer than ``max_unfinished`` finished tasks wait for their outcome and ack."""
        if self._activity_down.down or self._results_down.down or self._queue_down.down:
            return False
        return self.max_unfinished is None or self._unfinished < self.max_unfinished

    async def ready(self) -> None:
        """Returns once the worker may take another task (:attr:`accepting`): nothing runs
        that cannot be recorded."""
        while not self.accepting:
            await self._progress.wait()

    def read_failed(self, exc: BaseException, results: bool = False) -> bool:
        """A read of the activity store (or of the results backend) failed, outside the
        writer: when the backend is unreachable, the worker holds back as for a failed write
        (said once) and True is returned; :meth:`read_ok` once a read succeeds again."""
        backend, outage = (self._results, self._results_down) if results else (self.activity, self._activity_down)
        if not is_transient(exc, backend):
            return False
        if outage.failed(exc):
            self._changed()
        return True

    def read_ok(self, results: bool = False) -> None:
        self._recovered(self._results_down if results else self._activity_down)

    def _changed(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    # -- producers (the worker's event loop) -------------------------------------------------
    async def written(self, agent_ids: Iterable[UUID] | None = None) -> None:
        """Returns once every line submitted so far for ``agent_ids`` (every activity when
        ``None``) is committed, or failed for good."""
        wanted = list(self._unwritten) if agent_ids is None else agent_ids
        targets = [(a, q[-1]) for a in wanted if (q := self._unwritten.get(a))]
        for agent_id, last in targets:
            while (q := self._unwritten.get(agent_id)) and q[0] <= last:
                await self._committed.wait()

    def submit(
        self,
        entry: LogEntry | None,
        *,
        outcome: tuple[UUID, bytes] | None = None,
        ack: Lease | None = None,
        release: Lease | None = None,
        later: tuple[Envelope, float] | None = None,
    ) -> None:
        """Queue a line; once committed, store ``outcome`` (or push ``later``, a retry) and
        then ack (or release) the lease."""
        self._push(_Item(entry, outcome=outcome, ack=ack, release=release, later=later))

    def steal(self, agent_id: UUID) -> list[LogEntry]:
        """Take back the unwritten lines of ``agent_id`` that no transaction has taken yet, for a caller that writes them itself at once: sync code on
        the worker's own event loop, which cannot wait for the writer. Per activity only the
        leading run of plain lines is taken, and none of an activity with a line in flight, so
        the caller writing them keeps each activity's order."""
        stolen: list[_Item] = []
        rest: list[_Item] = []
        stopped: set[UUID] = set(self._busy)
        for item in self._pending:
            entry = item.entry
            if entry is None or entry.agent_id != agent_id:
                rest.append(item)
            elif entry.agent_id in stopped or item.outcome or item.ack or item.release or item.later:
                stopped.add(entry.agent_id)
                rest.append(item)
            else:
                stolen.append(item)
        if stolen:
            self._pending = rest
            self._done(stolen)
        return [item.entry for item in stolen if item.entry is not None]

    def unwritten(self, agent_id: UUID) -> bool:
        return agent_id in self._unwritten

    def _done(self, items: list[_Item]) -> None:
        if self.events is not None:
            self.events.written([i.entry for i in items], self.task_names, self.task_metadata)
        for item in items:
            if item.entry is not None:
                agent_id = item.entry.agent_id
                unwritten = self._unwritten[agent_id]
                unwritten.remove(item.seq)
                if not unwritten:
                    del self._unwritten[agent_id]
        self._committed.set()
        self._committed = anyio.Event()

    def _push(self, item: _Item) -> None:
        if self._finished.is_set():
            raise RuntimeError("the activity writer is closed; the worker is shutting down")
        if item.entry is not None:
            item.seq = next(self._seq)
            self._unwritten.setdefault(item.entry.agent_id, deque()).append(item.seq)
        if item.ack is not None or item.release is not None:
            self._unfinished += 1
        self._pending.append(item)
        self._wake.set()

    # -- the writer task -----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    batch = self._take() if self._commits < MAX_COMMITS else []
                    if batch:
                        self._commits += 1
                        tg.start_soon(self._commit_batch, batch, tg)
                        continue
                    if self._closing and not self._pending and not self._commits:
                        break
                    await self._wake.wait()
                    self._wake = anyio.Event()
        finally:
            self._finished.set()

    async def close(self) -> None:
        """Write, store and acknowledge everything submitted so far, then stop."""
        self._closing = True
        self._wake.set()
        await self._finished.wait()
        if self.events is not None:
            await self.events.aclose()

    def _take(self) -> list[_Item]:
        """The next batch: pending items in order, skipping (for now) activities in flight."""
        batch: list[_Item] = []
        rest: list[_Item] = []
        claimed: set[UUID] = set()
        for item in self._pending:
            agent = item.entry.agent_id if item.entry is not None else None
            if len(batch) >= MAX_BATCH or (agent is not None and agent in self._busy):
                rest.append(item)
                continue
            if agent is not None:
                # a second line of the same activity stays behind its first one
                if agent in claimed:
                    rest.append(item)
                    continue
                claimed.add(agent)
            batch.append(item)
        self._pending = rest
        self._busy |= claimed
        return batch

    async def _commit_batch(self, batch: list[_Item], tg: anyio.abc.TaskGroup) -> None:
        missing: set[UUID] = set()
        try:
            missing = await self._commit([i.entry for i in batch if i.entry is not None])
        finally:
            self._commits -= 1
            # lines whose activity is missing wait aside (their activities stay busy), so the
            # next batches go on meanwhile
            later = [i for i in batch if i.entry is not None and i.entry.agent_id in missing]
            self._finish([i for i in batch if i.entry is None or i.entry.agent_id not in missing], tg)
            if later:
                tg.start_soon(self._commit_missing, later, tg)

    async def _commit_missing(self, items: list[_Item], tg: anyio.abc.TaskGroup) -> None:
        try:
            for item in items:
                assert item.entry is not None
                await self._create_missing(item.entry)
        finally:
            self._finish(items, tg)

    def _finish(self, items: list[_Item], tg: anyio.abc.TaskGroup) -> None:
        """The lines of ``items`` are written: their activities are free for the next lines,
        their outcomes and acknowledgements go out."""
        for item in items:
            if item.entry is not None:
                self._busy.discard(item.entry.agent_id)
        self._done(items)
        self._wake.set()
        posts = [i for i in items if i.outcome or i.ack or i.release or i.later]
        for item in posts:
            lease = item.ack or item.release
            if lease is not None:
                self.task_names.pop(lease.envelope.agent_id, None)
                self.task_metadata.pop(lease.envelope.agent_id, None)
        if posts:
            tg.start_soon(self._post, posts)

    async def _commit(self, entries: list[LogEntry]) -> set[UUID]:
        """Write ``entries``; returns the agent_ids of the lines left for
        :meth:`_create_missing` (tasks of this worker whose activity does not exist yet).

        While the store is unreachable the batch is kept and tried again (:meth:`_outage`:
        the worker takes no new task meanwhile). A batch the store *refuses* is split in
        halves until the line at fault is alone (:meth:`_commit_refused`), so the others land.
        """
        missing: set[UUID] = set()
        delay = FIRST_BACKOFF
        patience = list(ARRIVING)
        while entries:
            try:
                await self.activity.aappend_many(entries)
            except UnknownActivityError as exc:
                unknown = exc.agent_id if isinstance(exc.agent_id, UUID) else None
                if not any(e.agent_id == unknown for e in entries):
                    return missing | await self._split(entries, exc)
                if unknown in self.task_names and patience:
                    # most likely its producer's write is a moment behind the push (and
                    # many of this batch with it): the whole batch again, shortly
                    await anyio.sleep(patience.pop(0))
                    continue
                # set that line aside (or drop it, when it is not of a task of ours) and
                # write the rest: one more statement per missing activity, not per line
                if unknown in self.task_names:
                    missing.add(unknown)
                else:
                    log.warning("activity line for %s dropped: %s", unknown, exc)
                entries = [e for e in entries if e.agent_id != unknown]
                continue
            except Exception as exc:
                if is_transient(exc, self.activity):
                    delay = await self._outage(self._activity_down, exc, delay)
                    continue
                return missing | await self._split(entries, exc)
            self._recovered(self._activity_down)
            return missing
        return missing

    async def _split(self, entries: list[LogEntry], exc: Exception) -> set[UUID]:
        """A batch the store refused: its halves, each on its own (a batch holds one line per
        activity, so their order does not matter)."""
        if len(entries) == 1:
            return await self._commit_refused(entries[0], exc)
        half = len(entries) // 2
        return await self._commit(entries[:half]) | await self._commit(entries[half:])

    async def _commit_refused(self, entry: LogEntry, exc: Exception) -> set[UUID]:
        """One line the store refused for good (a NUL byte PostgreSQL cannot store, a lone
        surrogate no encoder takes …): written cleaned (:func:`clean_text`), or else as a
        short note of what was lost, keeping its status, so a final line still ends its
        activity. Should the store refuse even that note, the fault is the store's, not the
        line's: that is an outage, waited out like any other."""
        delay = FIRST_BACKOFF
        cleaned = replace(entry, message=clean_text(entry.message))
        note = replace(
            entry, message=f"(an activity line could not be stored: {describe(exc)})", percentage=None
        )
        candidates = [note] if cleaned.message == entry.message else [cleaned, note]
        while True:
            refused: BaseException = exc
            for candidate in candidates:
                try:
                    await self.activity.aappend_many([candidate])
                except UnknownActivityError as unknown:
                    if entry.agent_id in self.task_names:
                        return {entry.agent_id}
                    log.warning("activity line for %s dropped: %s", entry.agent_id, unknown)
                    return set()
                except Exception as error:
                    if is_transient(error, self.activity):
                        delay = await self._outage(self._activity_down, error, delay)
                        break  # from the first candidate again
                    refused = error
                    continue
                self._recovered(self._activity_down)
                log.warning(
                    "activity line of %s refused (%s); stored %s", entry.agent_id, describe(exc),
                    "as it was" if candidate is entry else "cleaned" if candidate is cleaned else "as a note",
                )
                return set()
            else:
                if isinstance(refused, ValueError | TypeError):
                    # refused before reaching the database (our own checks): the line itself
                    log.error("activity line of %s dropped: %s", entry.agent_id, describe(refused))
                    return set()
                # even a plain note is refused: the store is at fault, not the line; once it
                # writes again, the line goes as it was
                delay = await self._outage(self._activity_down, refused, delay)
                candidates = [entry, cleaned, note] if cleaned.message != entry.message else [entry, note]

    async def _outage(self, outage: Outage, exc: BaseException, delay: float) -> float:
        """A write failed because ``outage``'s backend cannot write now: say so once, stop
        taking tasks (:meth:`ready`), wait, and return the next wait."""
        if outage.failed(exc):
            self._changed()
        await anyio.sleep(delay)
        return min(delay * 2, MAX_BACKOFF)

    def _recovered(self, outage: Outage) -> None:
        if outage.down and outage.ok():
            self._changed()

    async def _create_missing(self, e: LogEntry) -> None:
        """A line of a task this worker runs, whose activity does not exist (yet): its producer
        writes activities behind the push (``agentexec.activity.creates``), or died before it
        did, or the database forgot it. Wait a little, then create it from the task itself."""
        delay, waited, backoff = 0.001, 0.0, FIRST_BACKOFF
        while True:
            try:
                await self.activity.aappend(e.agent_id, e.message, e.status, e.percentage)
                return
            except UnknownActivityError:
                if waited >= UNKNOWN_GRACE:
                    break
            except Exception as exc:
                if is_transient(exc, self.activity):
                    backoff = await self._outage(self._activity_down, exc, backoff)
                    continue
                await self._commit([e])  # refused: cleaned, or a note (see _commit_refused)
                return
            await anyio.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 0.2)
        task_name = self.task_names.get(e.agent_id, "unknown")
        metadata = self.task_metadata.get(e.agent_id)
        while True:
            try:
                if metadata is None:
                    await self.activity.acreate(task_name, CONF.activity_message_create, e.agent_id)
                else:
                    await self.activity.acreate(
                        task_name, CONF.activity_message_create, e.agent_id, metadata
                    )
                log.warning("Task %s (%s) had no activity; created it from the task", task_name, e.agent_id)
            except ValueError:
                pass  # created meanwhile
            except Exception as exc:
                if is_transient(exc, self.activity):
                    backoff = await self._outage(self._activity_down, exc, backoff)
                    continue
                log.warning("activity of %s could not be created: %s", e.agent_id, describe(exc))
                return
            break
        await self._commit([e])

    async def _post(self, items: list[_Item]) -> None:
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
                ended = sum(1 for i in items if i.ack is not None or i.release is not None)
                if ended:
                    self._unfinished -= ended
                    self._changed()

    async def _store_outcomes(self, outcomes: list[tuple[UUID, bytes]]) -> None:
        """Store them, waiting out an outage of the results backend. An outcome the backend
        refuses for good is replaced by the task's failure, saying why (the task is counted
        once: it ends, with a reason, instead of running again)."""
        delay = FIRST_BACKOFF
        while True:
            try:
                await self._set_outcomes(outcomes)
            except Exception as exc:
                if is_transient(exc, self._results):
                    delay = await self._outage(self._results_down, exc, delay)
                    continue
                if len(outcomes) > 1:
                    half = len(outcomes) // 2
                    await self._store_outcomes(outcomes[:half])
                    await self._store_outcomes(outcomes[half:])
                    return
                agent_id, data = outcomes[0]
                failure = _failure_instead(data, exc)
                if failure is None:  # the backend refuses even a failure: its fault, not ours
                    delay = await self._outage(self._results_down, exc, delay)
                    continue
                log.error("the outcome of %s could not be stored (%s); storing its failure instead",
                          agent_id, describe(exc))
                outcomes = [(agent_id, failure)]
                continue
            self._recovered(self._results_down)
            return

    async def _end_leases(
        self, what: str, leases: list[Lease], call: Callable[[Sequence[Lease]], Awaitable[None]]
    ) -> None:
        """Acknowledge (or give back) ``leases``, waiting out an outage of the queue. One the
        queue refuses for good is left to expire: the queue hands it out again, and the next
        worker finds its outcome stored (an ack) or runs it (a release)."""
        delay = FIRST_BACKOFF
        while True:
            try:
                await call(leases)
            except Exception as exc:
                if is_transient(exc, self._queue):
                    delay = await self._outage(self._queue_down, exc, delay)
                    continue
                if len(leases) > 1:
                    half = len(leases) // 2
                    await self._end_leases(what, leases[:half], call)
                    await self._end_leases(what, leases[half:], call)
                    return
                log.error(
                    "%s task %s failed (%s); its lease expires and the queue hands it out again",
                    what, leases[0].envelope.agent_id, describe(exc),
                )
                return
            self._recovered(self._queue_down)
            return

    async def _push_later(self, envelope: Envelope, due: float) -> None:
        """A retry goes back to its queue, due after its backoff, before its old lease is
        acknowledged (a crash between the two runs it twice, never zero times)."""
        delay = FIRST_BACKOFF
        while True:
            try:
                assert isinstance(self._queue, DelayedPush)
                await self._queue.push_at(envelope, due)
            except Exception as exc:
                if is_transient(exc, self._queue):
                    delay = await self._outage(self._queue_down, exc, delay)
                    continue
                log.error("the retry of %s could not be queued (%s)", envelope.agent_id, describe(exc))
                return
            self._recovered(self._queue_down)
            return

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


class WorkerSink:
    """The :class:`~agentexec.worker.lifecycle.LifecycleSink` of a worker: lines through the
    writer, and the task's acknowledgement once its final line and outcome are stored."""

    def __init__(self, writer: ActivityWriter, stager: Stager | None = None) -> None:
        self.writer = writer
        self.stager = stager
        #: agent_id -> the lease being run, claimed (acknowledged) by ``finished``
        self.leases: dict[UUID, Lease] = {}

    async def started(self, entry: LogEntry) -> None:
        # not awaited: the handler starts at once, and every later line of the activity, the
        # handler's own ones included (see ``written``), is committed after this one
        self.writer.submit(entry)

    async def written(self, agent_id: UUID | None = None) -> None:
        await self.writer.written(None if agent_id is None else (agent_id,))

    def settle(self, agent_id: UUID | None, entry: LogEntry | None = None) -> bool:
        """For sync code on the worker's event loop (which cannot wait): write the lines of
        ``agent_id`` that are still queued right here; should some be in flight, hand ``entry``
        to the writer behind them (returns True: the caller must not write it).

        Without an ``agent_id`` (``list``, ``cancel_pending``) nothing is written here: a view
        of every activity may lag this worker's other tasks by one transaction, which beats
        writing hundreds of queued lines one by one on the loop."""
        if agent_id is None:
            return False
        for line in self.writer.steal(agent_id):
            self._write_now(line)
        if entry is not None and self.writer.unwritten(entry.agent_id):
            self.writer.submit(entry)
            return True
        return False

    def _write_now(self, line: LogEntry) -> None:
        store = self.writer.activity
        try:
            try:
                store.append(line.agent_id, line.message, line.status, line.percentage)
                return
            except UnknownActivityError:
                task_name = self.writer.task_names.get(line.agent_id)
                if task_name is None:
                    raise
            # the producer's write is behind its push, and nothing here can wait for it: create
            # the activity from the task (the producer's write then finds it and skips it)
            try:
                store.create(
                    task_name, CONF.activity_message_create, line.agent_id,
                    metadata=self.writer.task_metadata.get(line.agent_id),
                )
            except ValueError:
                pass  # it arrived meanwhile
            store.append(line.agent_id, line.message, line.status, line.percentage)
        except (UnknownActivityError, ValueError) as exc:
            log.warning("activity line for %s dropped: %s", line.agent_id, exc)

    def plan_retry(self, task: Task, definition: TaskDefinition, exc: BaseException, error: str) -> bool:
        """The handler of ``task`` raised ``exc``: when it has a retry left for it, write its
        QUEUED line (``Retrying in 4.2 s (attempt 2 of 4): <error>``), push it again due after
        its backoff (it waits in the queue backend, never in this worker) and acknowledge this
        run, then return True; else False (the task fails as usual)."""
        lease = self.leases.get(task.agent_id)
        if lease is None or isinstance(exc, NonRetryableError):
            return False
        allowed = definition.retries if definition.retries is not None else CONF.task_retries
        done = lease.envelope.retries
        if done >= allowed:
            return False
        if isinstance(exc, RetryAfter):
            delay = exc.seconds
        elif isinstance(exc, definition.retry_on):
            delay = backoff_delay(definition, done + 1)
        else:
            return False
        if not isinstance(self.writer._queue, DelayedPush):
            log.warning("task %s is not retried: its queue backend cannot delay a task (DelayedPush)", task.agent_id)
            return False
        message = f"Retrying in {delay:.1f} s (attempt {done + 2} of {allowed + 1}): {error}"
        log.warning("Task %s (%s) failed; %s", task.task_name, task.agent_id, message)
        again = lease.envelope.model_copy(update={"retries": done + 1})
        self.writer.submit(
            LogEntry(task.agent_id, clean_text(message, None), Status.QUEUED),
            later=(again, time.time() + delay),
            ack=self.leases.pop(task.agent_id),
        )
        return True

    async def finished(self, task: Task, entry: LogEntry | None, data: bytes) -> None:
        if entry is not None and self.stager is not None:
            self.stager.add(task.agent_id, data)
        self.writer.submit(entry, outcome=(task.agent_id, data), ack=self.leases.pop(task.agent_id, None))


def backoff_delay(definition: TaskDefinition, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1 for the first): the definition's
    ``backoff(attempt)``, or exponential from its base (``CONF.retry_backoff``) with jitter
    between half and all of it, so waits grow and retries of many tasks failing together spread
    out; at most ``CONF.retry_backoff_max``."""
    backoff = definition.backoff
    if callable(backoff):
        return max(0.0, float(backoff(attempt)))
    base = float(backoff) if backoff is not None else CONF.retry_backoff
    full = min(base * 2.0 ** (attempt - 1), CONF.retry_backoff_max)
    return float(full * (0.5 + random.random() / 2))
