"""The producer side: ``enqueue``, ``enqueue_many``, ``get_result`` and ``gather``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import anyio
from pydantic import BaseModel

from agentexec.activity.creates import CREATES
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.runtime import get_backends
from agentexec.task import Priority, Task

log = logging.getLogger("agentexec")

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
    if not isinstance(context, BaseModel):
        raise TypeError(
            f"enqueue({task_name!r}, ...): context must be a pydantic BaseModel instance, got "
            f"{type(context).__name__}. Wrap the parameters in the task's context model, e.g. "
            f"MyContext(**data)."
        )
    if not isinstance(priority, Priority):
        raise TypeError(f"priority must be ax.Priority.HIGH or ax.Priority.LOW, got {priority!r}")


async def enqueue(
    task_name: str,
    context: BaseModel,
    priority: Priority = Priority.LOW,
    queue_name: str | None = None,
) -> Task:
    """Queue a task; its activity is QUEUED when this returns (for this process at once; for
    others within milliseconds: see :mod:`agentexec.activity.creates`)."""
    _check(task_name, context, priority)
    queue_name = queue_name or default_queue_name()
    task = Task.queued(task_name, context, priority, queue_name)
    backends = get_backends()
    store = backends.activity
    if CREATES.checked(store):
        # written behind the push, read-your-writes in this process (activity.creates)
        CREATES.submit(store, task.agent_id, task_name, CONF.activity_message_create)
    else:
        await store.acreate(task_name, CONF.activity_message_create, task.agent_id)
        if backends.cross_process:  # in-process stores gain nothing from a writer thread
            CREATES.mark_checked(store)
    try:
        await backends.queue.push(task.to_envelope(queue_name), priority)
    except Exception as exc:
        await _not_queued([task], exc)
        raise
    return task


async def enqueue_many(
    items: Sequence[tuple[str, BaseModel] | tuple[str, BaseModel, Priority]],
    queue_name: str | None = None,
) -> list[Task]:
    """Queue many tasks with one activity transaction and one queue round trip."""
    tasks: list[Task] = []
    queue_name = queue_name or default_queue_name()
    for item in items:
        task_name, context = item[0], item[1]
        priority = item[2] if len(item) > 2 else Priority.LOW  # type: ignore[misc]
        _check(task_name, context, priority)
        tasks.append(Task.queued(task_name, context, priority, queue_name))
    if not tasks:
        return tasks
    backends = get_backends()
    await backends.activity.acreate_many(
        [(t.agent_id, t.task_name, CONF.activity_message_create) for t in tasks]
    )
    try:
        await backends.queue.push_many([t.to_envelope(queue_name) for t in tasks])
    except Exception as exc:
        await _not_queued(tasks, exc)
        raise
    return tasks


async def _not_queued(tasks: Sequence[Task], exc: Exception) -> None:
    """The push failed (the caller gets the error): their activities say so instead of
    QUEUED forever."""
    from agentexec import activity

    message = CONF.activity_message_error.format(error=f"not queued: {exc}")
    for task in tasks:
        try:
            await activity.aerror(task.agent_id, message)
        except Exception as error:  # the database may be down too; the caller knows
            log.warning("could not mark %s as not queued: %s", task.agent_id, error)


async def get_result(
    task: Task | UUID | str, timeout: float = 300, result_type: type[Any] | None = None
) -> Any:
    """The task's return value once it finishes.

    Raises ``TimeoutError`` after ``timeout`` seconds, and :class:`agentexec.TaskFailedError` as
    soon as the task has failed for good.
    """
    agent_id = task.agent_id if isinstance(task, Task) else UUID(str(task))
    data = await get_backends().results.wait(agent_id, timeout)
    return Outcome.decode(data).unwrap(agent_id, result_type)


async def gather(*tasks: Task, timeout: float = 300) -> tuple[Any, ...]:
    """The results of ``tasks``, in order. The first failure is raised."""
    results: list[Any] = [None] * len(tasks)

    async def one(i: int, t: Task) -> None:
        results[i] = await get_result(t, timeout)

    try:
        async with anyio.create_task_group() as tg:
            for i, t in enumerate(tasks):
                tg.start_soon(one, i, t)
    except BaseExceptionGroup as group:  # surface the task's own error, not anyio's wrapper
        raise group.exceptions[0] from None
    return tuple(results)
