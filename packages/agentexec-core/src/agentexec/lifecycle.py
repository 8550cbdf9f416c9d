"""One task's lifecycle: RUNNING, the handler, the outcome stored, then COMPLETE or ERROR.

``Task.execute()`` calls :func:`execute_task`. Inside a worker, activity lines and outcomes go
through the worker's batching writer (a :class:`LifecycleSink` set in a context variable);
anywhere else they are written directly.

The order is what callers can rely on: the RUNNING line is given before the handler starts, and
every ``ax.activity`` call of the handler's process goes after it (:func:`lines_written`; a
worker does not wait for the commit itself), so the handler reads RUNNING and its own lines come
after it; the COMPLETE/ERROR line is durable before the outcome is stored (so once
``ax.get_result`` returns, the activity already says COMPLETE).

A handler that raises ``SystemExit`` (``sys.exit(3)``), ``KeyboardInterrupt`` or any other
``BaseException`` fails its task like an ``Exception`` does (ERROR, reason ``SystemExit: 3``);
only the event loop's cancellation passes through untouched, since it means the worker is
aborting the run and gives the task back. Inside a worker the exception is replaced by
:class:`HandlerExit` so the worker process carries on with its next task.
"""

from __future__ import annotations

import functools
import inspect
import logging
from contextvars import ContextVar
from typing import Any, Protocol
from uuid import UUID

import anyio
import anyio.from_thread
from pydantic import ValidationError

from agentexec import telemetry
from agentexec.activity.status import Status
from agentexec.backends import LogEntry
from agentexec.config import CONF
from agentexec.faults import clean_text, error_message, unstorable_result
from agentexec.results import Outcome
from agentexec.task import Task, TaskDefinition

log = logging.getLogger("agentexec.worker")
#: the per-task lines of the spec's log format (``[Worker 0] Processing task: name``); a worker
#: prints them itself where it can (:mod:`agentexec.worker.logs`), they never cross processes
PROCESSING = "Processing task: %s"
COMPLETED = "Task completed: %s"


class LifecycleSink(Protocol):
    """Where a task's activity lines and outcome go."""

    async def started(self, entry: LogEntry) -> None:
        """Write the RUNNING line (a worker's sink may return before it is committed: see
        ``written``)."""
        ...

    async def written(self, agent_id: UUID | None = None) -> None:
        """Returns once the lines given so far for ``agent_id`` (for every activity when
        ``None``) are committed, so a write or read that follows sees them."""
        ...

    def settle(self, agent_id: UUID | None, entry: LogEntry | None = None) -> bool:
        """The same for sync code on the sink's own event loop, which cannot wait: write what
        is still queued at once; True when ``entry`` was queued behind lines in flight."""
        ...

    async def finished(self, task: Task, entry: LogEntry | None, data: bytes) -> None:
        """Write the final line (if any), then store the outcome (``data``: an encoded
        :class:`Outcome`), in that order. A worker's sink may return before both are done; it
        acknowledges the task only after they are."""
        ...

    def plan_retry(self, task: Task, definition: TaskDefinition, exc: BaseException, error: str) -> bool:
        """The handler raised ``exc``: True when the task goes back to its queue for another
        attempt (the sink wrote why), False when it fails now. Only a worker retries."""
        ...


class DirectSink:
    """Writes straight to the process's backends (``Task.execute()`` outside a worker)."""

    async def started(self, entry: LogEntry) -> None:
        from agentexec.activity.creates import acreated
        from agentexec.runtime import get_backends

        # right after this process's ax.enqueue, the activity may still be on its way to the
        # database (written behind the push): wait for it, as every ax.activity call does
        await acreated(entry.agent_id)
        await get_backends().activity.aappend(entry.agent_id, entry.message, entry.status, entry.percentage)

    async def written(self, agent_id: UUID | None = None) -> None:
        return None

    def settle(self, agent_id: UUID | None, entry: LogEntry | None = None) -> bool:
        return False

    async def finished(self, task: Task, entry: LogEntry | None, data: bytes) -> None:
        from agentexec.activity.creates import acreated
        from agentexec.runtime import get_backends

        backends = get_backends()
        if entry is not None:
            await acreated(entry.agent_id)
            await backends.activity.aappend(entry.agent_id, entry.message, entry.status, entry.percentage)
        await backends.results.set(task.agent_id, data, CONF.result_ttl)

    def plan_retry(self, task: Task, definition: TaskDefinition, exc: BaseException, error: str) -> bool:
        return False  # ``Task.execute()`` outside a worker runs once; nothing could redeliver it


_sink: ContextVar[LifecycleSink | None] = ContextVar("agentexec_lifecycle_sink", default=None)
_current: ContextVar[Task | None] = ContextVar("agentexec_current_task", default=None)
#: the activity whose lines the running handler must not write: it is already final (see
#: ``execute_task(quiet=True)``)
_quiet: ContextVar[UUID | None] = ContextVar("agentexec_quiet_activity", default=None)


def set_sink(sink: LifecycleSink | None) -> None:
    """Route the lifecycle writes of tasks run in this context (and its children) to ``sink``."""
    _sink.set(sink)


def current_task() -> Task | None:
    """The task whose handler is running in this context, if any."""
    return _current.get()


def silenced(agent_id: UUID | None) -> bool:
    """True inside a quiet re-run of the task owning ``agent_id``: its activity already ended,
    so nothing may be written after its final line."""
    quiet = _quiet.get()
    return quiet is not None and quiet == agent_id


async def lines_written(agent_id: UUID | None = None) -> None:
    """Inside a worker, wait until the lifecycle lines it gave for ``agent_id`` (every activity
    when ``None``) are committed; anywhere else, return at once.

    The worker starts a handler without waiting for its RUNNING line to commit; the activity
    API calls this first, so a handler's own updates come after that line and its reads see it.
    """
    sink = _sink.get()
    if sink is not None:
        await sink.written(agent_id)


def lines_written_sync(agent_id: UUID | None = None, entry: LogEntry | None = None) -> bool:
    """:func:`lines_written` for sync code, which is about to write ``entry`` (or read).

    From a worker thread of the worker's loop (a sync handler) it waits for the lines. On the
    loop itself (sync calls in an async handler) nothing can wait: the lines still queued are
    written right here, and when a line of the activity is in flight, ``entry`` is queued
    behind it instead; returns True then (the caller must not write ``entry`` itself).
    """
    sink = _sink.get()
    if sink is None:
        return False
    try:
        anyio.from_thread.run(sink.written, agent_id)
        return False
    except RuntimeError:  # not in a worker thread: on the loop itself
        return sink.settle(agent_id, entry)


def error_text(exc: BaseException) -> str:
    """What ``{error}`` becomes in ``CONF.activity_message_error``: the error's text, cleaned
    so that any backend can store it (:func:`agentexec.faults.clean_text`)."""
    return clean_text(_str(exc) or type(exc).__name__)


def exit_text(exc: BaseException) -> str:
    """The reason a task fails with when its handler raised a ``BaseException`` that is not an
    ``Exception``: ``SystemExit: 3``, ``KeyboardInterrupt``."""
    detail = _str(exc)
    return clean_text(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)


def _str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ raises
        return ""


def failure(task: Task, error: str, attempts: int, *, line: bool = True) -> tuple[LogEntry | None, bytes]:
    """The ERROR line (unless ``line`` is False) and the encoded failed outcome of ``task``,
    both storable whatever ``error`` holds (cleaned, capped; the template cannot fail)."""
    error = clean_text(error)
    entry = LogEntry(task.agent_id, error_message(error), Status.ERROR) if line else None
    return entry, Outcome.failed(task.task_name, error, attempts).encode()


class ResultNotStorableError(ValueError):
    """The handler returned a value that cannot be stored (its task failed with the reason)."""


class HandlerExit(Exception):
    """A handler raised ``SystemExit``, ``KeyboardInterrupt`` or another ``BaseException`` that is
    not cancellation, inside a worker: the task failed with it; the original is ``__cause__``."""


def unknown_task_error(task_name: str, registered: list[str], queue_name: str | None = None) -> str:
    where = f" on queue {queue_name!r}" if queue_name else ""
    return (
        f"unknown task {task_name!r}: no handler is registered under that name{where}. "
        f"Registered tasks: {', '.join(registered) if registered else 'none'}. Register it with "
        f"@pool.task({task_name!r}) in the module the workers run."
    )


def invalid_context_error(definition: TaskDefinition, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'context'}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return (
        f"the context of task {definition.name!r} is not a valid "
        f"{definition.context_class.__qualname__}: {problems}"
    )


async def reject(task: Task, error: str, sink: LifecycleSink | None = None) -> None:
    """End a task that cannot run (unknown name, invalid context, or a worker that could not
    finish it) as ERROR with a failed outcome."""
    entry, data = failure(task, error, task.attempts + 1)
    log.error("Task rejected: %s", clean_text(error))
    await (sink or _sink.get() or DirectSink()).finished(task, entry, data)


class TaskTimeoutError(TimeoutError):
    """The handler ran past its timeout (``@pool.task(name, timeout=...)`` or
    ``CONF.task_timeout``) and was cancelled; its task fails with this message."""


def handler_timeout(definition: TaskDefinition) -> float | None:
    return definition.timeout if definition.timeout is not None else CONF.task_timeout


async def call_handler(definition: TaskDefinition, agent_id: Any, context: Any) -> Any:
    timeout = handler_timeout(definition)
    if timeout is None:
        return await _call_handler(definition, agent_id, context, abandon=False)
    with anyio.move_on_after(timeout) as scope:
        return await _call_handler(definition, agent_id, context, abandon=True)
    assert scope.cancelled_caught
    raise TaskTimeoutError(f"timed out after {timeout:g} s")


async def _call_handler(definition: TaskDefinition, agent_id: Any, context: Any, *, abandon: bool) -> Any:
    if definition.is_async:
        return await definition.handler(agent_id, context)  # type: ignore[misc]
    # a sync handler runs in a thread so it cannot stall heartbeats and the other slots; one
    # with a timeout is abandoned at the deadline (Python cannot stop a thread): its slot is
    # free at once, the thread finishes on its own and its value is dropped
    result = await anyio.to_thread.run_sync(
        functools.partial(definition.handler, agent_id, context), abandon_on_cancel=abandon
    )
    if inspect.isawaitable(result):
        result = await result
    return result


async def execute_task(task: Task, *, quiet: bool = False, definition: TaskDefinition | None = None) -> Any:
    """Run ``task`` through its whole lifecycle; return the handler's value or raise its error.
    ``definition``: the task's, when the caller has it (a worker does), else looked up by name.

    Observed (:mod:`agentexec.telemetry`: a span, counts, a duration) when instruments are on."""
    if not telemetry.on():
        return await _execute_task(task, quiet=quiet, definition=definition)
    with telemetry.task_run(task):
        return await _execute_task(task, quiet=quiet, definition=definition)


async def _execute_task(task: Task, *, quiet: bool = False, definition: TaskDefinition | None = None) -> Any:
    """Run ``task`` through its whole lifecycle; return the handler's value or raise its error.

    ``quiet``: the task's activity already says COMPLETE but its value was never stored (its
    worker died between the two): run the handler again for the value only. No line is written,
    the handler's own ``ax.activity`` calls included, so the log never shows a second run."""
    from agentexec.registry import find_definition, registered_names

    in_worker = _sink.get() is not None
    sink = _sink.get() or DirectSink()
    definition = definition or find_definition(task.task_name)
    if definition is None:
        error = unknown_task_error(task.task_name, registered_names(), task.queue_name)
        await reject(task, error, sink)
        raise LookupError(error)
    try:
        context = definition.validate_context(task.context)
    except ValidationError as exc:
        await reject(task, invalid_context_error(definition, exc), sink)
        raise
    attempts = task.attempts + 1
    token = _current.set(task)
    quiet_token = _quiet.set(task.agent_id if quiet else None)
    try:
        if not quiet:
            await sink.started(LogEntry(task.agent_id, CONF.activity_message_started, Status.RUNNING))
        log.info(PROCESSING, task.task_name)
        try:
            value = await call_handler(definition, task.agent_id, context)
            outcome = Outcome.ok(task.task_name, value, attempts)
        except Exception as exc:
            error = error_text(exc)
            if not quiet and sink.plan_retry(task, definition, exc, error):
                raise  # queued again, after its backoff: the worker's sink wrote why
            log.error("Task failed: %s: %s", type(exc).__name__, error, exc_info=True)
            await sink.finished(task, *failure(task, error, attempts, line=not quiet))
            raise
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise  # the worker's abort or shutdown, not the handler's failure: the task goes back
            # sys.exit(), KeyboardInterrupt and the like are the handler's doing, not a request to
            # stop the process it happens to run in: they fail this task and nothing else
            error = exit_text(exc)
            log.error("Task failed: %s", error, exc_info=True)
            await sink.finished(task, *failure(task, error, attempts, line=not quiet))
            if in_worker:
                # an Exception, so the worker loop treats it as any failed task; a SystemExit
                # leaving an asyncio task would stop the worker's event loop
                raise HandlerExit(error) from exc
            raise  # Task.execute() in the caller's own code: Ctrl+C and sys.exit() still act
        try:
            data = outcome.encode()
        except Exception as exc:
            # the handler returned, but what it returned cannot be stored (text that is not
            # valid Unicode): the task fails, saying why, and is not run again
            error = unstorable_result(exc, value)
            log.error("Task failed: %s", error)
            await sink.finished(task, *failure(task, error, attempts, line=not quiet))
            raise ResultNotStorableError(error) from exc
        await sink.finished(
            task,
            None if quiet else LogEntry(task.agent_id, CONF.activity_message_complete, Status.COMPLETE, 100),
            data,
        )
        log.info(COMPLETED, task.task_name)
        return value
    finally:
        _quiet.reset(quiet_token)
        _current.reset(token)
