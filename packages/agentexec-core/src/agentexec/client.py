"""The producer side: ``enqueue``, ``enqueue_many``, ``get_result`` and ``gather``."""

from __future__ import annotations

import difflib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload
from uuid import UUID

import anyio
from pydantic import BaseModel

from agentexec import task_events, telemetry
from agentexec.activity.creates import CREATES
from agentexec.activity.metadata import validate_metadata
from agentexec.backends import DelayedPush
from agentexec.config import CONF
from agentexec.faults import error_message
from agentexec.results import Outcome
from agentexec.runtime import get_backends
from agentexec.task import MAX_QUEUE_NAME, MAX_TASK_NAME, Priority, Task, check_name
from agentexec.worker.lanes import base_queue_name
from agentexec.worker.registry import _pools

log = logging.getLogger("agentexec")

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R")
T = TypeVar("T")
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R4 = TypeVar("R4")
R5 = TypeVar("R5")


class UnknownTaskError(LookupError):
    """``enqueue`` of a task name that no pool of this process registers on that queue."""


def default_queue_name() -> str:
    """Where a task goes when ``queue_name`` is not given: inside a handler, the queue of the pool
    running it (so a pool on a custom queue runs the children its tasks and pipelines enqueue);
    elsewhere ``CONF.queue_name``."""
    from agentexec.worker.lanes import base_queue_name
    from agentexec.worker.lifecycle import current_task

    running = current_task()
    if running is not None and running.queue_name:
        return base_queue_name(running.queue_name)
    return CONF.queue_name


def _check(task_name: str, context: Any, priority: Any) -> None:
    if not isinstance(task_name, str) or not task_name:
        raise TypeError(f"task_name must be a non-empty str, got {task_name!r}")
    check_name("task_name", task_name, MAX_TASK_NAME)
    if not isinstance(context, BaseModel):
        raise TypeError(
            f"enqueue({task_name!r}, ...): context must be a pydantic BaseModel instance, got "
            f"{type(context).__name__}. Wrap the parameters in the task's context model, e.g. "
            f"MyContext(**data)."
        )
    if not isinstance(priority, Priority):
        raise TypeError(f"priority must be ax.Priority.HIGH or ax.Priority.LOW, got {priority!r}")


def _queue_name(queue_name: str | None) -> str:
    if queue_name is None or queue_name == "":
        return default_queue_name()
    if not isinstance(queue_name, str):
        raise TypeError(f"queue_name must be a str or None, got {queue_name!r}")
    return check_name("queue_name", queue_name, MAX_QUEUE_NAME)


def _task_name(task: Any) -> str:
    """The registered name of ``task``: a name, or a ``@pool.task`` handler of this process."""
    if isinstance(task, str) or not callable(task):
        return task  # type: ignore[no-any-return]  # _check reports a non-str
    names = {
        name for pool in list(_pools) for name, d in pool.tasks.items() if d.handler is task
    }
    if len(names) == 1:
        return names.pop()
    what = getattr(task, "__qualname__", repr(task))
    if names:
        raise TypeError(
            f"{what} is registered under several names ({', '.join(sorted(names))}); "
            f"enqueue it by name, e.g. ax.enqueue({sorted(names)[0]!r}, ...)"
        )
    raise TypeError(
        f"{what} is not a task of any pool in this process: decorate it with "
        f"@pool.task('name') (and import that module here), or enqueue it by name"
    )


def _check_registered(task_name: str, queue_name: str) -> None:
    """When this process has pools on ``queue_name``, ``task_name`` must be one of their tasks:
    a misspelled name fails here instead of ending ERROR on a worker. A producer without pools
    (a web app that only enqueues) is not checked."""
    if not _pools:
        return
    base = base_queue_name(queue_name)
    pools = [pool for pool in list(_pools) if getattr(pool, "queue_name", None) == base]
    if not pools or any(task_name in pool.tasks for pool in pools):
        return
    names = sorted({name for pool in pools for name in pool.tasks})
    close = difflib.get_close_matches(task_name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownTaskError(
        f"unknown task {task_name!r}: no pool of this process registers it on queue "
        f"{base!r}.{hint} Registered tasks: {', '.join(names) or 'none'}. Register it with "
        f"@pool.task({task_name!r}), or enqueue the handler itself: ax.enqueue(handler, context)"
    )


@overload
async def enqueue(
    task_name: Callable[[UUID, C], Coroutine[Any, Any, R]],
    context: C,
    priority: Priority = Priority.LOW,
    queue_name: str | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
) -> Task[R]: ...
@overload
async def enqueue(
    task_name: Callable[[UUID, C], R],
    context: C,
    priority: Priority = Priority.LOW,
    queue_name: str | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
) -> Task[R]: ...
@overload
async def enqueue(
    task_name: str,
    context: BaseModel,
    priority: Priority = Priority.LOW,
    queue_name: str | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
) -> Task[Any]: ...
async def enqueue(
    task_name: str | Callable[..., Any],
    context: BaseModel,
    priority: Priority = Priority.LOW,
    queue_name: str | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
) -> Task[Any]:
    """Queue a task; its activity is QUEUED when this returns (for this process at once; for
    others within milliseconds: see :mod:`agentexec.activity.creates`).

    ``delay`` (seconds or a ``timedelta``) or ``at`` (a timezone-aware ``datetime``): the task
    waits in the queue backend until then (its QUEUED line says when), then runs in priority
    order with the others. See docs/execution-control.md.

    ``metadata`` is stored on the activity, for ``ax.activity.list(metadata_filter=...)`` (e.g.
    ``{"organization_id": "org-123"}``; rules in :mod:`agentexec.activity.metadata`).

    ``task_name`` is the registered name, or the ``@pool.task`` handler itself: then the
    returned ``Task`` is typed with the handler's return type, so ``await ax.get_result(task)``
    is too, and a type checker checks ``context`` against the handler's context model. When
    this process has a pool on the queue, an unregistered name raises :class:`UnknownTaskError`.
    """
    task_name = _task_name(task_name)
    _check(task_name, context, priority)
    queue_name = _queue_name(queue_name)
    _check_registered(task_name, queue_name)
    if metadata is not None:
        metadata = validate_metadata(metadata)
    due = _due(delay, at)
    task = Task.queued(task_name, context, priority, queue_name, metadata)
    backends = get_backends()
    if due is not None and not isinstance(backends.queue, DelayedPush):
        raise TypeError(
            f"enqueue(..., delay=/at=): the queue backend {type(backends.queue).__name__} cannot "
            f"delay a task (it lacks DelayedPush.push_at); use the memory, Redis or SQL queue"
        )
    message = CONF.activity_message_create
    if due is not None:
        when = datetime.fromtimestamp(due, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message = f"{message} Due at {when}."
    store = backends.activity
    announce = False  # CREATES announces what it creates; the first one, written here, is ours
    if CREATES.checked(store):
        # written behind the push, read-your-writes in this process (activity.creates)
        CREATES.submit(store, task.agent_id, task_name, message, metadata)
    else:
        announce = True
        if metadata is None:
            await store.acreate(task_name, message, task.agent_id)
        else:
            await store.acreate(task_name, message, task.agent_id, metadata)
        if backends.cross_process:  # in-process stores gain nothing from a writer thread
            CREATES.mark_checked(store)
    try:
        if telemetry.on():
            await _send_observed([task], queue_name, priority, due)
        elif due is not None:
            await backends.queue.push_at(task.to_envelope(queue_name), due)  # type: ignore[attr-defined]
        else:
            await backends.queue.push(task.to_envelope(queue_name), priority)
    except Exception as exc:
        await _not_queued([task], exc)
        raise
    if announce:
        await task_events.publish_now(task_events.queued([(task.agent_id, task_name, metadata)]))
    return task


def _due(delay: float | timedelta | None, at: datetime | None) -> float | None:
    """When a delayed task is due (seconds since the epoch), or ``None`` for a plain push."""
    if delay is not None and at is not None:
        raise TypeError("enqueue: give delay= or at=, not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise TypeError(f"enqueue: at must be a datetime, got {at!r}")
        if at.tzinfo is None:
            raise ValueError(
                f"enqueue: at={at!r} has no timezone; give an aware datetime, e.g. "
                f"datetime.now(UTC) + timedelta(minutes=5)"
            )
        return at.timestamp()
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        raise ValueError(f"enqueue: delay must be seconds >= 0 or a timedelta, got {delay!r}")
    return time.time() + delay


async def enqueue_many(
    items: Sequence[
        tuple[str, BaseModel]
        | tuple[str, BaseModel, Priority]
        | tuple[str, BaseModel, Priority, dict[str, Any] | None]
    ],
    queue_name: str | None = None,
    *,
    metadata: dict[str, Any] | None = None,
) -> list[Task[Any]]:
    """Queue many tasks with one activity transaction and one queue round trip.

    ``metadata`` goes on every task's activity; an item's own fourth element
    ``(name, context, priority, metadata)`` replaces it for that task."""
    tasks: list[Task[Any]] = []
    queue_name = _queue_name(queue_name)
    shared = validate_metadata(metadata)
    for item in items:
        task_name, context = _task_name(item[0]), item[1]
        priority = item[2] if len(item) > 2 else Priority.LOW  # type: ignore[misc]
        _check(task_name, context, priority)
        _check_registered(task_name, queue_name)
        own = validate_metadata(item[3]) if len(item) > 3 else shared  # type: ignore[misc]
        tasks.append(Task.queued(task_name, context, priority, queue_name, own))
    if not tasks:
        return tasks
    backends = get_backends()
    await backends.activity.acreate_many([
        (t.agent_id, t.task_name, CONF.activity_message_create) if t.metadata is None
        else (t.agent_id, t.task_name, CONF.activity_message_create, t.metadata)
        for t in tasks
    ])
    try:
        if telemetry.on():
            await _send_observed(tasks, queue_name, None)
        else:
            await backends.queue.push_many([t.to_envelope(queue_name) for t in tasks])
    except Exception as exc:
        await _not_queued(tasks, exc)
        raise
    await task_events.publish_now(task_events.queued((t.agent_id, t.task_name, t.metadata) for t in tasks))
    return tasks


async def _send_observed(
    tasks: Sequence[Task[Any]], queue_name: str, priority: Priority | None, due: float | None = None
) -> None:
    """The push, observed (:func:`agentexec.telemetry.sending`): each envelope carries the
    trace context of its ``send`` span to the worker (a delayed one too)."""
    queue = get_backends().queue
    with telemetry.sending(queue_name, tasks) as trace:
        if due is not None:
            await queue.push_at(tasks[0].to_envelope(queue_name, trace), due)  # type: ignore[attr-defined]
        elif priority is not None:
            await queue.push(tasks[0].to_envelope(queue_name, trace), priority)
        else:
            await queue.push_many([t.to_envelope(queue_name, trace) for t in tasks])


async def _not_queued(tasks: Sequence[Task[Any]], exc: Exception) -> None:
    """The push failed (the caller gets the error): their activities say so instead of
    QUEUED forever."""
    from agentexec import activity

    message = error_message(f"not queued: {exc}")
    for task in tasks:
        try:
            await activity.aerror(task.agent_id, message)
        except Exception as error:  # the database may be down too; the caller knows
            log.warning("could not mark %s as not queued: %s", task.agent_id, error)


@overload
async def get_result(task: Task[R], timeout: float = 300, result_type: None = None) -> R: ...
@overload
async def get_result(task: UUID | str, timeout: float = 300, result_type: None = None) -> Any: ...
@overload
async def get_result(task: Task[Any] | UUID | str, timeout: float, result_type: type[T]) -> T: ...
@overload
async def get_result(
    task: Task[Any] | UUID | str, timeout: float = 300, *, result_type: type[T]
) -> T: ...
async def get_result(
    task: Task[Any] | UUID | str, timeout: float = 300, result_type: type[Any] | None = None
) -> Any:
    """The task's return value once it finishes, typed as its handler's return type when the
    task came from ``ax.enqueue(handler, ...)`` (or as ``result_type``, which also rebuilds it).

    Raises ``TimeoutError`` after ``timeout`` seconds, and :class:`agentexec.TaskFailedError` as
    soon as the task has failed for good.
    """
    agent_id = task.agent_id if isinstance(task, Task) else UUID(str(task))
    data = await get_backends().results.wait(agent_id, timeout)
    outcome = Outcome.decode(data)
    return outcome.unwrap(agent_id, result_type, _registered_result_type(outcome.task_name))


def _registered_result_type(task_name: str) -> type[BaseModel] | None:
    """The ``result_type`` a pool of this process declares for ``task_name`` (one, or none)."""
    found = {
        d.result_type for pool in list(_pools)
        if (d := pool.tasks.get(task_name)) is not None and d.result_type is not None
    }
    return found.pop() if len(found) == 1 else None


@overload
async def gather(t1: Task[R1], /, *, timeout: float = 300) -> tuple[R1]: ...
@overload
async def gather(t1: Task[R1], t2: Task[R2], /, *, timeout: float = 300) -> tuple[R1, R2]: ...
@overload
async def gather(
    t1: Task[R1], t2: Task[R2], t3: Task[R3], /, *, timeout: float = 300
) -> tuple[R1, R2, R3]: ...
@overload
async def gather(
    t1: Task[R1], t2: Task[R2], t3: Task[R3], t4: Task[R4], /, *, timeout: float = 300
) -> tuple[R1, R2, R3, R4]: ...
@overload
async def gather(
    t1: Task[R1], t2: Task[R2], t3: Task[R3], t4: Task[R4], t5: Task[R5], /, *,
    timeout: float = 300,
) -> tuple[R1, R2, R3, R4, R5]: ...
@overload
async def gather(*tasks: Task[R], timeout: float = 300) -> tuple[R, ...]: ...
async def gather(*tasks: Task[Any], timeout: float = 300) -> tuple[Any, ...]:
    """The results of ``tasks``, in order (each typed as its task's). The first failure is
    raised."""
    results: list[Any] = [None] * len(tasks)

    async def one(i: int, t: Task[Any]) -> None:
        results[i] = await get_result(t, timeout)

    try:
        async with anyio.create_task_group() as tg:
            for i, t in enumerate(tasks):
                tg.start_soon(one, i, t)
    except BaseExceptionGroup as group:  # surface the task's own error, not anyio's wrapper
        raise group.exceptions[0] from None
    return tuple(results)
