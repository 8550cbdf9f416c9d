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
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any
from uuid import UUID

import anyio

from agentexec.backends import (
    ActivityStore,
    BatchAck,
    BatchResults,
    Lease,
    LogEntry,
    QueueBackend,
    ResultBackend,
    UnknownActivityError,
)
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.task import Task
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
MAX_BACKOFF = 5.0
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
    ) -> None:
        """Queue a line; once committed, store ``outcome`` and then ack (or release) the lease."""
        self._push(_Item(entry, outcome=outcome, ack=ack, release=release))

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
            elif entry.agent_id in stopped or item.outcome or item.ack or item.release:
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
        posts = [i for i in items if i.outcome or i.ack or i.release]
        for item in posts:
            lease = item.ack or item.release
            if lease is not None:
                self.task_names.pop(lease.envelope.agent_id, None)
                self.task_metadata.pop(lease.envelope.agent_id, None)
        if posts:
            tg.start_soon(self._post, posts)

    async def _commit(self, entries: list[LogEntry]) -> set[UUID]:
        """Write ``entries``; returns the agent_ids of the lines left for
        :meth:`_create_missing` (tasks of this worker whose activity does not exist yet)."""
        missing: set[UUID] = set()
        delay = 0.05
        patience = list(ARRIVING)
        while entries:
            try:
                try:
                    await self.activity.aappend_many(entries)
                except UnknownActivityError as exc:
                    unknown = exc.agent_id if isinstance(exc.agent_id, UUID) else None
                    if not any(e.agent_id == unknown for e in entries):
                        return missing | await self._commit_each(entries)
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
                except ValueError:
                    # one bad line must not sink the batch: write them one by one
                    return missing | await self._commit_each(entries)
                return missing
            except Exception as exc:
                log.error(
                    "writing %d activity line(s) failed (%s: %s); retrying in %.2fs",
                    len(entries), type(exc).__name__, exc, delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        return missing

    async def _commit_each(self, entries: list[LogEntry]) -> set[UUID]:
        missing: set[UUID] = set()
        for e in entries:
            try:
                await self.activity.aappend(e.agent_id, e.message, e.status, e.percentage)
            except UnknownActivityError as exc:
                if e.agent_id in self.task_names:
                    missing.add(e.agent_id)
                else:
                    log.warning("activity line for %s dropped: %s", e.agent_id, exc)
            except ValueError as exc:
                log.warning("activity line for %s dropped: %s", e.agent_id, exc)
        return missing

    async def _create_missing(self, e: LogEntry) -> None:
        """A line of a task this worker runs, whose activity does not exist (yet): its producer
        writes activities behind the push (``agentexec.activity.creates``), or died before it
        did, or the database forgot it. Wait a little, then create it from the task itself."""
        delay, waited = 0.001, 0.0
        while True:
            try:
                await self.activity.aappend(e.agent_id, e.message, e.status, e.percentage)
                return
            except UnknownActivityError:
                if waited >= UNKNOWN_GRACE:
                    break
            except Exception as exc:
                log.warning("activity line for %s not written: %s", e.agent_id, exc)
                return
            await anyio.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 0.2)
        task_name = self.task_names.get(e.agent_id, "unknown")
        try:
            metadata = self.task_metadata.get(e.agent_id)
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
            log.warning("activity of %s could not be created: %s", e.agent_id, exc)
            return
        try:
            await self.activity.aappend(e.agent_id, e.message, e.status, e.percentage)
        except Exception as exc:
            log.warning("activity line for %s dropped: %s", e.agent_id, exc)

    async def _post(self, items: list[_Item]) -> None:
        async with self._posts:
            outcomes = [i.outcome for i in items if i.outcome is not None]
            if outcomes:
                await _retrying("storing outcomes", lambda: self._set_outcomes(outcomes))
            acks = [i.ack for i in items if i.ack is not None]
            if acks:
                await _retrying("acknowledging tasks", lambda: self._ack(acks))
            for item in items:
                if item.release is not None:
                    release = item.release
                    await _retrying("giving a task back", lambda: self._queue.release(release))  # noqa: B023

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


async def _retrying(what: str, call: Callable[[], Awaitable[None]]) -> None:
    """Until it works: the outcome and the ack of a finished task must not be lost (both are
    idempotent, so a retry after a partial failure is harmless)."""
    delay = 0.05
    while True:
        try:
            await call()
            return
        except Exception as exc:
            log.error("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


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

    async def finished(self, task: Task, entry: LogEntry | None, outcome: Outcome) -> None:
        data = outcome.encode()
        if entry is not None and self.stager is not None:
            self.stager.add(task.agent_id, data)
        self.writer.submit(entry, outcome=(task.agent_id, data), ack=self.leases.pop(task.agent_id, None))
