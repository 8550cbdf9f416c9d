"""The lifecycle sink of a worker: a task's lines through the writer, and its acknowledgement
once its final line and outcome are stored (:mod:`.outbox`)."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from uuid import UUID

from agentexec.activity.status import Status
from agentexec.backends import Lease, LogEntry, UnknownActivityError
from agentexec.backoff import retry_delay
from agentexec.config import CONF
from agentexec.faults import clean_text
from agentexec.results import NonRetryableError, RetryAfter
from agentexec.task import Task, TaskDefinition
from agentexec.worker.locking import without_key
from agentexec.worker.stager import Stager
from agentexec.worker.writer import ActivityWriter

log = logging.getLogger("agentexec.worker")

#: when the running task's handler started (monotonic seconds); each task runs in an asyncio
#: task of its own, whose context ``started`` and ``finished`` share
_began: ContextVar[float | None] = ContextVar("agentexec_handler_began", default=None)


class WorkerSink:
    """The :class:`~agentexec.lifecycle.LifecycleSink` of a worker: lines through the
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
        _began.set(time.monotonic())

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
                if line.agent_id not in self.writer.own:
                    raise
            # the producer's write is behind its push, and nothing here can wait for it: create
            # the activity from the task (the producer's write then finds it and skips it)
            self.writer.own.create(store, line.agent_id)
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
            delay = retry_delay(definition, done + 1)
        else:
            return False
        if not self.writer.outbox.can_delay:
            log.warning("task %s is not retried: its queue backend cannot delay a task (DelayedPush)", task.agent_id)
            return False
        message = f"Retrying in {delay:.1f} s (attempt {done + 2} of {allowed + 1}): {error}"
        log.warning("Task %s (%s) failed; %s", task.task_name, task.agent_id, message)
        again = lease.envelope.model_copy(update={"retries": done + 1})
        self.writer.submit(
            LogEntry(task.agent_id, clean_text(message, None), Status.QUEUED),
            later=(again, time.time() + delay),
            ack=without_key(self.leases.pop(task.agent_id)),  # the retry keeps its enqueue key
        )
        return True

    async def finished(self, task: Task, entry: LogEntry | None, data: bytes) -> None:
        if entry is not None and self.stager is not None:
            self.stager.add(task.agent_id, data, _began.get())
        self.writer.submit(entry, outcome=(task.agent_id, data), ack=self.leases.pop(task.agent_id, None))
