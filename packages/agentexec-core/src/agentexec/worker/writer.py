"""A worker process's line writer: group commit of activity lines, each activity's in order.

Every lifecycle line of the process's tasks goes through one writer. Lines that arrive while
transactions are in progress are written together in the next one (``aappend_many``), so with
many tasks in flight the database sees one transaction per batch instead of one per line, while
a lone task's final line pays no added delay. A RUNNING line waits a few milliseconds for its
task's next line (``RUNNING_HOLD``), so a task that ends meanwhile updates its activity once.
Should several transactions be allowed in flight (``MAX_COMMITS``), two lines of one activity
are never in flight together, so each activity's lines commit in the order they were written.

After a batch commits, what follows its lines goes to the :mod:`outbox <.outbox>` (outcomes
stored, then tasks acknowledged). Nothing is dropped on shutdown: :meth:`close` returns once
everything submitted is written, stored and acknowledged.

Lines are not awaited by the task that gives them (the RUNNING line included): the writer
keeps, per activity, which lines are not written yet, so ``ax.activity`` calls in the worker can
go after them (:meth:`written`, or :meth:`WorkerSink.settle <.sink.WorkerSink.settle>` for sync
code on the loop).

A line whose activity does not exist (yet) is the task's own producer being a moment behind its
push: its batch is tried again whole after short pauses, then the line is set aside (other
batches go on) and, after ``UNKNOWN_GRACE``, the activity is created from the task
(:class:`.own.OwnTasks`).

Faults (:mod:`.health`): a write that fails because its backend is unreachable is kept and tried
again, and meanwhile the worker takes no new task. A write the backend *refuses* (bad data) is
split until the row at fault is alone; that row is cleaned, or replaced by a note of what was
lost, so one bad row never holds up the others or loops.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from itertools import count
from uuid import UUID

import anyio

from agentexec.activity.status import Status
from agentexec.backends import (
    ActivityStore,
    JointFinish,
    Lease,
    LogEntry,
    QueueBackend,
    ResultBackend,
    UnknownActivityError,
)
from agentexec.backoff import Backoff
from agentexec.config import CONF
from agentexec.faults import clean_text, describe, is_transient
from agentexec.task import Envelope
from agentexec.task_events import WriterEvents
from agentexec.worker.health import Health, write_backoff
from agentexec.worker.outbox import Item, Outbox
from agentexec.worker.own import OwnTasks

log = logging.getLogger("agentexec.worker")

#: lines per transaction, so one burst cannot make a transaction arbitrarily large
MAX_BATCH = 500
#: activity transactions in flight at once. One measured best: commits that overlap split the
#: lines into smaller batches and contend with each other (and with the event loop, for the
#: GIL) without finishing any sooner; one at a time, everything that arrives meanwhile rides
#: in the next transaction
MAX_COMMITS = 1
#: a batch smaller than this, in a streak of batches each started within GATHER_WINDOW seconds
#: of the previous one, waits GATHER_LINGER seconds for more lines first: under a steady stream of short tasks that
#: await, a batch per task cost each task a write of its lines, of its outcome and of its ack
#: (measured on PostgreSQL with a handler awaiting a Redis INCR: 2-3x the worker's CPU per
#: task); a lone task, or a slow store, never waits
GATHER_MIN = 16
GATHER_WINDOW = 0.004
GATHER_LINGER = 0.002
#: how long a line waits for its activity to appear before the worker creates it
UNKNOWN_GRACE = 1.0
#: pauses before a batch with a missing activity is tried again whole (then split)
ARRIVING = (0.001, 0.002, 0.005, 0.01, 0.02)
#: a RUNNING line waits up to this long for its task's next line, so that a task which ends
#: meanwhile has its activity row updated once, not twice (its two lines in one batch); measured
#: on the PostgreSQL-only stack, 32 slots, a handler awaiting a Redis INCR: the worker's CPU per
#: task 16 % lower in 2 of 3 pairs. Nobody waits for it: a caller of ``written`` has its lines
#: written at once, and the handler started before the line was submitted
RUNNING_HOLD = 0.005


class ActivityWriter:
    def __init__(self, activity: ActivityStore, results: ResultBackend, queue: QueueBackend) -> None:
        self.activity = activity
        #: whether the worker may take another task (every backend answers, few leases wait)
        self.health = Health(activity, results, queue)
        #: what follows each committed line: outcome, retry, ack
        self.outbox = Outbox(results, queue, self.health)
        #: the tasks this worker runs, to create an activity their producer has not (yet)
        self.own = OwnTasks()
        self._pending: list[Item] = []
        self._busy: set[UUID] = set()  # activities with a line in a transaction in flight
        #: per activity, the sequence numbers of its lines not yet committed (oldest first)
        self._unwritten: dict[UUID, deque[int]] = {}
        self._seq = count(1)
        self._committed = anyio.Event()  # set (and replaced) after every batch
        self._commits = 0
        #: when the last batch started (monotonic seconds), and how many batches before it
        #: started within GATHER_WINDOW of the one before (a lone task's RUNNING then final
        #: line make a streak of 1: it never waits)
        self._last_batch = 0.0
        self._streak = 0
        self._wake = anyio.Event()
        #: activities whose lines a caller of ``written`` waits for: none of them is held back
        self._wanted: set[UUID] = set()
        #: when the earliest RUNNING line held back by the last ``_take`` is due (None: none)
        self._held_until: float | None = None
        self._closing = False
        self._finished = anyio.Event()
        #: lifecycle events (``task.started`` ...) of the lines committed (None: turned off)
        self.events = WriterEvents.create()
        #: lines, outcomes and acks of a batch in one transaction, where the store offers it
        #: for these backends (:class:`agentexec.backends.JointFinish`)
        self._joint = activity.joint_finish(results, queue) if isinstance(activity, JointFinish) else None

    @property
    def joint(self) -> bool:
        """Whether a batch's lines, outcomes and acks commit together (the store's joint finish)."""
        return self._joint is not None

    # -- producers (the worker's event loop) -------------------------------------------------
    async def written(self, agent_ids: Iterable[UUID] | None = None) -> None:
        """Returns once every line submitted so far for ``agent_ids`` (every activity when
        ``None``) is committed, or failed for good."""
        wanted = list(self._unwritten) if agent_ids is None else agent_ids
        targets = [(a, q[-1]) for a in wanted if (q := self._unwritten.get(a))]
        if targets:
            self._wanted.update(a for a, _ in targets)
            self._wake.set()
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
        self._push(Item(entry, outcome=outcome, ack=ack, release=release, later=later))

    def steal(self, agent_id: UUID) -> list[LogEntry]:
        """Take back the unwritten lines of ``agent_id`` that no transaction has taken yet, for a caller that writes them itself at once: sync code on
        the worker's own event loop, which cannot wait for the writer. Per activity only the
        leading run of plain lines is taken, and none of an activity with a line in flight, so
        the caller writing them keeps each activity's order."""
        stolen: list[Item] = []
        rest: list[Item] = []
        stopped: set[UUID] = set(self._busy)
        for item in self._pending:
            entry = item.entry
            if entry is None or entry.agent_id != agent_id:
                rest.append(item)
            elif entry.agent_id in stopped or item.posts:
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

    def _done(self, items: list[Item]) -> None:
        if self.events is not None:
            self.events.written([i.entry for i in items], self.own.names, self.own.metadata)
        for item in items:
            if item.entry is not None:
                agent_id = item.entry.agent_id
                unwritten = self._unwritten[agent_id]
                unwritten.remove(item.seq)
                if not unwritten:
                    del self._unwritten[agent_id]
                    self._wanted.discard(agent_id)
        self._committed.set()
        self._committed = anyio.Event()

    def _push(self, item: Item) -> None:
        if self._finished.is_set():
            raise RuntimeError("the activity writer is closed; the worker is shutting down")
        if item.entry is not None:
            item.seq = next(self._seq)
            self._unwritten.setdefault(item.entry.agent_id, deque()).append(item.seq)
        if item.lease is not None:
            self.health.unfinished += 1
        item.at = time.monotonic()
        self._pending.append(item)
        if self._commits < MAX_COMMITS:
            # else the commit in flight wakes the writer when it ends (``_finish``): a wake-up
            # per line while it is in flight only made the writer look and find nothing to do
            self._wake.set()

    # -- the writer task -----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    if (
                        self._commits < MAX_COMMITS and 0 < len(self._pending) < GATHER_MIN
                        and not self._closing and self._streak >= 2
                        and time.monotonic() - self._last_batch < GATHER_WINDOW
                    ):
                        # batches go back to back but stay small (handlers that await end one
                        # at a time): let a few more lines join, rather than pay a write, its
                        # outcomes' write and its acks' write for every one or two tasks
                        await anyio.sleep(GATHER_LINGER)
                    batch = self._take() if self._commits < MAX_COMMITS else []
                    if batch:
                        now = time.monotonic()
                        self._streak = self._streak + 1 if now - self._last_batch < GATHER_WINDOW else 0
                        self._last_batch = now
                        self._commits += 1
                        tg.start_soon(self._commit_batch, batch, tg)
                        continue
                    if self._closing and not self._pending and not self._commits:
                        break
                    if self._held_until is not None and self._commits < MAX_COMMITS:
                        with anyio.move_on_after(max(self._held_until - time.monotonic(), 0.0)):
                            await self._wake.wait()
                    else:
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

    def _take(self) -> list[Item]:
        """The next batch: pending items in order, skipping (for now) activities in flight."""
        batch: list[Item] = []
        rest: list[Item] = []
        claimed: set[UUID] = set()
        held = self._held()
        for item in self._pending:
            agent = item.entry.agent_id if item.entry is not None else None
            if agent is not None and agent in held:
                rest.append(item)
                continue
            if len(batch) >= MAX_BATCH or (agent is not None and agent in self._busy):
                rest.append(item)
                continue
            if agent is not None:
                # one transaction at a time writes an activity's lines in order, a batch's
                # included (``aappend_many`` keeps their order: the kit checks it), so a fast
                # task's RUNNING and final lines share one batch and its activity row is
                # updated once instead of twice; only overlapping transactions could reorder
                # them, so then a second line waits for the next batch
                if agent in claimed and MAX_COMMITS > 1:
                    rest.append(item)
                    continue
                claimed.add(agent)
            batch.append(item)
        self._pending = rest
        self._busy |= claimed
        return batch

    def _held(self) -> set[UUID]:
        """The activities whose RUNNING line waits for the task's next line (``RUNNING_HOLD``):
        the line alone of its activity here, younger than the hold, and nobody waiting for it;
        sets :attr:`_held_until` to when the first of them is due."""
        self._held_until = None
        if self._closing:
            return set()
        now = time.monotonic()
        seen: set[UUID] = set()
        again: set[UUID] = set()  # activities with more than one line pending
        young: list[tuple[UUID, float]] = []  # RUNNING lines that may be held: activity, submitted
        for item in self._pending:
            entry = item.entry
            if entry is None:
                continue
            agent_id = entry.agent_id
            if agent_id in seen:
                again.add(agent_id)
            seen.add(agent_id)
            if entry.status == Status.RUNNING and not item.posts and now - item.at < RUNNING_HOLD:
                young.append((agent_id, item.at))
        held: set[UUID] = set()
        for agent_id, at in young:
            if agent_id not in again and agent_id not in self._wanted:
                held.add(agent_id)
                due = at + RUNNING_HOLD
                self._held_until = due if self._held_until is None else min(self._held_until, due)
        return held

    async def _commit_batch(self, batch: list[Item], tg: anyio.abc.TaskGroup) -> None:
        missing: set[UUID] = set()
        if self._joint is not None and await self._commit_joint(batch):
            self._commits -= 1
            self._finish(batch, tg, posted=True)
            return
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

    async def _commit_missing(self, items: list[Item], tg: anyio.abc.TaskGroup) -> None:
        try:
            for item in items:
                assert item.entry is not None
                await self._create_missing(item.entry)
        finally:
            self._finish(items, tg)

    async def _commit_joint(self, batch: list[Item]) -> bool:
        """The batch's lines, outcomes and acks in one transaction (:attr:`_joint`); whether
        it committed. A batch with a retry or a give-back, or one the store refuses or cannot
        write now, goes the usual way instead (:meth:`_commit`, then the outbox), whose fault
        handling applies: the joint transaction wrote nothing."""
        assert self._joint is not None
        entries: list[LogEntry] = []
        outcomes: list[tuple[UUID, bytes]] = []
        acks: list[Lease] = []
        for item in batch:
            if item.later is not None or item.release is not None:
                return False
            if item.entry is not None:
                entries.append(item.entry)
            if item.outcome is not None:
                outcomes.append(item.outcome)
            if item.ack is not None:
                acks.append(item.ack)
        try:
            await self._joint(entries, outcomes, CONF.result_ttl, acks)
        except Exception as exc:
            log.debug("joint finish of %d line(s) failed (%s); writing them step by step",
                      len(entries), describe(exc))
            return False
        self.health.recovered(self.health.activity_down)
        return True

    def _finish(self, items: list[Item], tg: anyio.abc.TaskGroup, posted: bool = False) -> None:
        """The lines of ``items`` are written: their activities are free for the next lines,
        their outcomes and acknowledgements go out (``posted``: they are written already, in
        the lines' own transaction)."""
        for item in items:
            if item.entry is not None:
                self._busy.discard(item.entry.agent_id)
        self._done(items)
        self._wake.set()
        posts = [i for i in items if i.posts]
        for item in posts:
            if item.lease is not None:
                self.own.forget(item.lease.envelope.agent_id)
        if posted:
            self.outbox.ended(posts)
        elif posts:
            tg.start_soon(self.outbox.post, posts)

    async def _commit(self, entries: list[LogEntry]) -> set[UUID]:
        """Write ``entries``; returns the agent_ids of the lines left for
        :meth:`_create_missing` (tasks of this worker whose activity does not exist yet).

        While the store is unreachable the batch is kept and tried again (:meth:`_outage`:
        the worker takes no new task meanwhile). A batch the store *refuses* is split in
        halves until the line at fault is alone (:meth:`_commit_refused`), so the others land.
        """
        missing: set[UUID] = set()
        health, wait = self.health, write_backoff()
        patience = list(ARRIVING)
        while entries:
            try:
                await self.activity.aappend_many(entries)
            except UnknownActivityError as exc:
                unknown = exc.agent_id if isinstance(exc.agent_id, UUID) else None
                if not any(e.agent_id == unknown for e in entries):
                    return missing | await self._split(entries, exc)
                if unknown in self.own and patience:
                    # most likely its producer's write is a moment behind the push (and
                    # many of this batch with it): the whole batch again, shortly
                    await anyio.sleep(patience.pop(0))
                    continue
                # set that line aside (or drop it, when it is not of a task of ours) and
                # write the rest: one more statement per missing activity, not per line
                if unknown is not None and unknown in self.own:
                    missing.add(unknown)
                else:
                    log.warning("activity line for %s dropped: %s", unknown, exc)
                entries = [e for e in entries if e.agent_id != unknown]
                continue
            except Exception as exc:
                if is_transient(exc, self.activity):
                    await health.outage(health.activity_down, exc, wait)
                    continue
                return missing | await self._split(entries, exc)
            health.recovered(health.activity_down)
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
        health, wait = self.health, write_backoff()
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
                    if entry.agent_id in self.own:
                        return {entry.agent_id}
                    log.warning("activity line for %s dropped: %s", entry.agent_id, unknown)
                    return set()
                except Exception as error:
                    if is_transient(error, self.activity):
                        await health.outage(health.activity_down, error, wait)
                        break  # from the first candidate again
                    refused = error
                    continue
                health.recovered(health.activity_down)
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
                await health.outage(health.activity_down, refused, wait)
                candidates = [entry, cleaned, note] if cleaned.message != entry.message else [entry, note]

    async def _create_missing(self, e: LogEntry) -> None:
        """A line of a task this worker runs, whose activity does not exist (yet): its producer
        writes activities behind the push (``agentexec.activity.creates``), or died before it
        did, or the database forgot it. Wait a little, then create it from the task itself."""
        health, wait, arriving, waited = self.health, write_backoff(), Backoff(0.001, 0.2), 0.0
        while True:
            try:
                await self.activity.aappend(e.agent_id, e.message, e.status, e.percentage)
                return
            except UnknownActivityError:
                if waited >= UNKNOWN_GRACE:
                    break
            except Exception as exc:
                if is_transient(exc, self.activity):
                    await health.outage(health.activity_down, exc, wait)
                    continue
                await self._commit([e])  # refused: cleaned, or a note (see _commit_refused)
                return
            waited += await arriving.sleep()
        while True:
            try:
                await self.own.acreate(self.activity, e.agent_id)
            except Exception as exc:
                if is_transient(exc, self.activity):
                    await health.outage(health.activity_down, exc, wait)
                    continue
                log.warning("activity of %s could not be created: %s", e.agent_id, describe(exc))
                return
            break
        await self._commit([e])
