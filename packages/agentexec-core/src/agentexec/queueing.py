"""The one route every task takes into a queue: its QUEUED activity, and the push.

``ax.enqueue``, ``ax.enqueue_many``, ``Pipeline.enqueue`` and the scheduler all call
:func:`submit`, so they share one ordering and one failure rule:

1. **The activity is given with the push.** The first task per store and batches are
   committed before the push. A lone task from a process that has already written to this
   store goes *behind* the push: handed to the writer thread of
   :mod:`agentexec.activity.creates` once the push is answered (committed in the background,
   read-your-writes in this process). Handed over before the push, that thread's start on the
   write kept the push's reply waiting (for the GIL, most likely): ``ax.enqueue`` every 10 ms
   took 1.2-1.4 ms (p50), the push alone 0.9-1.1 ms, against 0.7-1.0 and 0.4-0.7 ms now
   (benchmarks/README.md). Either way, a worker that takes the task before its activity exists
   creates it from the task (:mod:`agentexec.worker.own`), so a line is never lost to the race.
2. **A push that fails ends the tasks it did not queue**: their activities get an ERROR line
   ``not queued: <error>`` (instead of QUEUED forever) and the error reaches the caller.
3. **Observed when telemetry is on**: one ``send`` span for the push, whose context rides in
   each envelope to the worker.
4. **Announced**: ``task.queued`` on the event bus once the push succeeded
   (:mod:`agentexec.task_events`; a write behind the push announces itself once committed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agentexec import task_events, telemetry
from agentexec.activity.creates import CREATES, acreated
from agentexec.activity.status import Status
from agentexec.backends import DelayedPush
from agentexec.config import CONF
from agentexec.faults import error_message
from agentexec.runtime import Backends
from agentexec.task import Envelope, Task

log = logging.getLogger("agentexec")


def due_message(due: float | None) -> str:
    """The QUEUED line of a task: the configured message, with its due time when delayed."""
    message = CONF.activity_message_create
    if due is None:
        return message
    when = datetime.fromtimestamp(due, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{message} Due at {when}."


async def submit(
    tasks: Sequence[Task[Any]],
    backends: Backends,
    *,
    due: float | None = None,
    kind: str | None = None,
    behind: bool = True,
    announce: bool = True,
) -> None:
    """Queue ``tasks`` (each carries its queue name, priority and metadata) on ``backends``.

    ``due`` (seconds since the epoch) delays them (the queue must offer ``DelayedPush``);
    ``kind`` marks their envelopes (a pipeline's run). ``behind=False`` commits the activity
    before the push even when it could go behind; ``announce=False`` leaves ``task.queued`` to
    the caller (the scheduler sends it after ``schedule.fired``). Raises what the push raised,
    after the tasks' activities say they were not queued.
    """
    if not tasks:
        return
    queue = backends.queue
    if due is not None and not isinstance(queue, DelayedPush):
        raise TypeError(
            f"enqueue(..., delay=/at=): the queue backend {type(queue).__name__} cannot "
            f"delay a task (it lacks DelayedPush.push_at); use the memory, Redis or SQL queue"
        )
    message = due_message(due)
    went_behind = len(tasks) == 1 and behind and CREATES.checked(backends.activity)  # see 1. above
    if not went_behind:
        await _create(tasks, backends, message)
    try:
        if telemetry.on():
            with telemetry.sending(tasks[0].queue_name or "", tasks) as trace:
                await _push(tasks, backends, due, kind, trace)
        else:
            await _push(tasks, backends, due, kind, None)
    except Exception as exc:
        if went_behind:
            _create_behind(tasks[0], backends, message)
        await _not_queued(tasks, backends, exc)
        raise
    if went_behind:
        _create_behind(tasks[0], backends, message)
    if announce and not went_behind:
        await task_events.publish_now(
            task_events.queued((t.agent_id, t.task_name, t.metadata) for t in tasks), backends.events
        )


async def _create(tasks: Sequence[Task[Any]], backends: Backends, message: str) -> None:
    """Give the activities of ``tasks`` before their push."""
    store = backends.activity
    if len(tasks) == 1:
        task = tasks[0]
        if task.metadata is None:
            await store.acreate(task.task_name, message, task.agent_id)
        else:
            await store.acreate(task.task_name, message, task.agent_id, task.metadata)
        if backends.cross_process:  # in-process stores gain nothing from a writer thread
            CREATES.mark_checked(store)
        return
    await store.acreate_many([
        (t.agent_id, t.task_name, message) if t.metadata is None
        else (t.agent_id, t.task_name, message, t.metadata)
        for t in tasks
    ])


def _create_behind(task: Task[Any], backends: Backends, message: str) -> None:
    CREATES.submit(backends.activity, task.agent_id, task.task_name, message, task.metadata)


def _envelope(task: Task[Any], kind: str | None, trace: dict[str, str] | None) -> Envelope:
    envelope = task.to_envelope(task.queue_name or "", trace)
    return envelope if kind is None else envelope.model_copy(update={"kind": kind})


async def _push(
    tasks: Sequence[Task[Any]],
    backends: Backends,
    due: float | None,
    kind: str | None,
    trace: dict[str, str] | None,
) -> None:
    queue = backends.queue
    if due is not None:
        for task in tasks:
            await queue.push_at(_envelope(task, kind, trace), due)  # type: ignore[attr-defined]
    elif len(tasks) == 1:
        await queue.push(_envelope(tasks[0], kind, trace), tasks[0].priority)
    else:
        await queue.push_many([_envelope(t, kind, trace) for t in tasks])


async def _not_queued(tasks: Sequence[Task[Any]], backends: Backends, exc: Exception) -> None:
    """The push failed (the caller gets the error): the activities say so instead of QUEUED
    forever. Best effort: the database may be down too, and the caller knows already."""
    message = error_message(f"not queued: {exc}")
    for task in tasks:
        try:
            await acreated(task.agent_id)  # a write behind the push lands first
            await backends.activity.aappend(task.agent_id, message, Status.ERROR, None)
        except Exception as error:
            log.warning("agentexec: could not mark %s as not queued: %s", task.agent_id, error)
