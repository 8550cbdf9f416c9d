"""A worker process's activity writer: group commit, then outcomes, then acknowledgements.

Every lifecycle line of the process's tasks goes through one writer. Lines that arrive while a
transaction is in progress are written together in the next one (``aappend_many``), so with many
tasks in flight the database sees one transaction per batch instead of one per line, while a
lone task pays one transaction and no added delay.

After a batch commits, each finished task's outcome is stored and only then is the task
acknowledged: a crash at any point leaves the task in flight, and the queue hands it out again
(at-least-once). Nothing is dropped on shutdown: :meth:`close` returns once everything submitted
is written, stored and acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from agentexec.backends import ActivityStore, LogEntry, ResultBackend, UnknownActivityError
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.task import Task

log = logging.getLogger("agentexec.worker")

#: lines per transaction, so one burst cannot make a transaction arbitrarily large
MAX_BATCH = 500
#: outcome stores and acks in flight at once (each holds a backend connection)
POST_CONCURRENCY = 8
MAX_BACKOFF = 5.0

After = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class _Item:
    entry: LogEntry | None
    done: anyio.Event | None = None
    outcome: tuple[Task, bytes] | None = None
    after: After | None = None


class ActivityWriter:
    def __init__(self, activity: ActivityStore, results: ResultBackend) -> None:
        self._activity = activity
        self._results = results
        self._pending: list[_Item] = []
        self._wake = anyio.Event()
        self._closing = False
        self._finished = anyio.Event()
        self._limiter = anyio.CapacityLimiter(POST_CONCURRENCY)

    # -- producers (the worker's event loop thread) ------------------------------------------
    async def write(self, entry: LogEntry) -> None:
        """Write one line; returns once it is committed."""
        done = anyio.Event()
        self._push(_Item(entry, done=done))
        await done.wait()

    def submit(
        self,
        entry: LogEntry | None,
        *,
        outcome: tuple[Task, bytes] | None = None,
        after: After | None = None,
    ) -> None:
        """Queue a line; once committed, store ``outcome`` (task, encoded) and then call ``after``."""
        self._push(_Item(entry, outcome=outcome, after=after))

    def _push(self, item: _Item) -> None:
        if self._finished.is_set():
            raise RuntimeError("the activity writer is closed; the worker is shutting down")
        self._pending.append(item)
        self._wake.set()

    # -- the writer task -----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as posts:
                while True:
                    if not self._pending:
                        if self._closing:
                            break
                        await self._wake.wait()
                        self._wake = anyio.Event()
                        continue
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                    await self._commit([i.entry for i in batch if i.entry is not None])
                    for item in batch:
                        if item.done is not None:
                            item.done.set()
                        if item.outcome is not None or item.after is not None:
                            posts.start_soon(self._post, item)
        finally:
            self._finished.set()

    async def close(self) -> None:
        """Write, store and acknowledge everything submitted so far, then stop."""
        self._closing = True
        self._wake.set()
        await self._finished.wait()

    async def _commit(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        delay = 0.05
        while True:
            try:
                try:
                    await self._activity.aappend_many(entries)
                except (UnknownActivityError, ValueError):
                    # one bad line must not sink the batch: write them one by one
                    await self._commit_each(entries)
                return
            except Exception as exc:
                log.error(
                    "writing %d activity line(s) failed (%s: %s); retrying in %.2fs",
                    len(entries), type(exc).__name__, exc, delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _commit_each(self, entries: list[LogEntry]) -> None:
        while entries:
            e = entries[0]
            try:
                await self._activity.aappend(e.agent_id, e.message, e.status, e.percentage)
            except (UnknownActivityError, ValueError) as exc:
                log.warning("activity line for %s dropped: %s", e.agent_id, exc)
            entries = entries[1:]

    async def _post(self, item: _Item) -> None:
        delay = 0.05
        async with self._limiter:
            while True:
                try:
                    if item.outcome is not None:
                        task, data = item.outcome
                        await self._results.set(task.agent_id, data, CONF.result_ttl)
                        item.outcome = None  # stored: a retry of the ack must not store it again
                    if item.after is not None:
                        await item.after()
                    return
                except Exception as exc:
                    log.error(
                        "storing the outcome / acknowledging a task failed (%s: %s); retrying in %.2fs",
                        type(exc).__name__, exc, delay,
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)


class WorkerSink:
    """The :class:`~agentexec.worker.lifecycle.LifecycleSink` of a worker: lines through the
    writer, and the task's acknowledgement once its final line and outcome are stored."""

    def __init__(self, writer: ActivityWriter) -> None:
        self.writer = writer
        #: agent_id -> acknowledgement of the lease being run, claimed by ``finished``
        self.acks: dict[object, After] = {}

    async def started(self, entry: LogEntry) -> None:
        await self.writer.write(entry)

    async def finished(self, task: Task, entry: LogEntry, outcome: Outcome) -> None:
        self.writer.submit(
            entry, outcome=(task, outcome.encode()), after=self.acks.pop(task.agent_id, None)
        )
