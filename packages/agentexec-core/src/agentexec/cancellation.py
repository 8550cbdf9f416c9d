"""``ax.cancel``: stop a queued or running task, from any process.

A cancel is one more transition of the task's single finish path (docs/worker-pool.md):

- **queued**: the task is taken out of its queue (:class:`~agentexec.backends.RemoveQueued`),
  so it never starts; whoever removed it owns it, so ``cancel`` itself ends it: a CANCELED
  line with the reason, then a cancelled outcome (``ax.get_result`` raises
  :class:`~agentexec.results.TaskCancelledError`).
- **running** (in flight): its worker owns it, so ``cancel`` writes a "Cancel requested" line
  (the durable request: a worker that gets the task again after a crash reads it) and asks
  every worker on the ``cancel`` channel; the worker running it cancels the handler's asyncio
  task (so the cancellation reaches into an awaited agent run) and ends it CANCELED itself.
- **finished** (COMPLETE, ERROR or CANCELED): nothing to do, and the result says so.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from agentexec import task_events
from agentexec.activity.status import Status
from agentexec.backends import RemoveQueued
from agentexec.config import CONF
from agentexec.faults import clean_text
from agentexec.results import Outcome

if TYPE_CHECKING:
    from agentexec.runtime import Backends

log = logging.getLogger("agentexec")

#: the event channel every worker listens on for cancel requests (one for every queue: a
#: canceller knows the task's id, not the pool that runs it)
CANCEL_CHANNEL = "control:cancel"
#: the reason when none is given
DEFAULT_REASON = "cancelled by request"
#: the final line of a cancelled task
CANCELED_MESSAGE = "Task cancelled: {reason}"
#: the line ``cancel`` writes for a task a worker holds; the worker's CANCELED line follows
CANCEL_REQUESTED_MESSAGE = "Cancel requested: {reason}"
CANCEL_REQUESTED_PREFIX = CANCEL_REQUESTED_MESSAGE.split("{", 1)[0]

CancelState = Literal["cancelled", "requested", "finished", "unknown"]


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What :func:`cancel` did.

    ``state``: ``"cancelled"`` (it was queued: it will never start, it ends CANCELED now),
    ``"requested"`` (a worker holds it: that worker cancels it and ends it CANCELED, within a
    second), ``"finished"`` (it had already ended: nothing done), ``"unknown"`` (no task
    has this id). ``message`` says the same in words. True when the task is being cancelled."""

    agent_id: UUID
    state: CancelState
    message: str
    status: Status | None = None

    def __bool__(self) -> bool:
        return self.state in ("cancelled", "requested")


def canceled_message(reason: str) -> str:
    return clean_text(CANCELED_MESSAGE.format(reason=clean_text(reason)), None)


def cancel_message(agent_id: UUID, reason: str) -> str:
    return json.dumps({"action": "cancel", "agent_id": str(agent_id), "reason": reason})


def parse_cancel(data: str) -> tuple[UUID, str] | None:
    """``(agent_id, reason)`` of a cancel request on :data:`CANCEL_CHANNEL`; None for anything else."""
    try:
        msg: Any = json.loads(data)
        if isinstance(msg, dict) and msg.get("action") == "cancel":
            return UUID(str(msg["agent_id"])), str(msg.get("reason") or DEFAULT_REASON)
    except (ValueError, KeyError, RecursionError, TypeError):
        pass
    return None


def _agent_id(agent_id: Any) -> UUID:
    if isinstance(agent_id, UUID):
        return agent_id
    task_id = getattr(agent_id, "agent_id", None)  # an ax.Task
    if isinstance(task_id, UUID):
        return task_id
    try:
        return UUID(str(agent_id))
    except ValueError:
        raise ValueError(
            f"cancel: {agent_id!r} is not an agent id; pass the UUID ax.enqueue returned "
            f"(task.agent_id) or its text"
        ) from None


def _queues(queue_name: str | None) -> list[str]:
    from agentexec.lanes import LANES, lane_queue_name

    base = queue_name or CONF.queue_name
    return [lane_queue_name(base, lane) for lane in LANES]


async def cancel(
    agent_id: UUID | str | Any, reason: str = DEFAULT_REASON, *, queue_name: str | None = None
) -> CancelResult:
    """Cancel the task ``agent_id``: a queued one never starts, a running one's handler is
    cancelled inside its worker; either ends CANCELED with ``reason``, and ``ax.get_result``
    raises :class:`~agentexec.results.TaskCancelledError`. A finished task is left alone
    (``state == "finished"``). ``queue_name``: where it was queued (default ``CONF.queue_name``)."""
    from agentexec.runtime import get_backends

    return await cancel_with(get_backends(), agent_id, reason, queue_name=queue_name)


async def cancel_with(
    backends: Backends, agent_id: UUID | str | Any, reason: str = DEFAULT_REASON, *, queue_name: str | None = None
) -> CancelResult:
    """:func:`cancel` on the given backends (the CLI's own)."""
    from agentexec.activity.creates import acreated

    aid = _agent_id(agent_id)
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("cancel: reason must be a non-empty str saying why, e.g. reason='user aborted'")
    reason = clean_text(reason, 2000)
    await acreated(aid)  # an activity this process enqueued may still be on its way
    detail = await backends.activity.adetail(aid)
    status = None if detail is None else detail.status
    if status is not None and status not in Status.pending():
        message = f"task {aid} already ended {status.value}; nothing to cancel"
        log.info("%s", message)
        return CancelResult(aid, "finished", message, status)
    queue = backends.queue
    if isinstance(queue, RemoveQueued):
        for name in _queues(queue_name):
            env = await queue.remove(name, aid)
            if env is None:
                continue
            # removed from its queue: no worker can take it, so this call owns its finish
            if detail is not None:
                await backends.activity.aappend(aid, canceled_message(reason), Status.CANCELED)
            else:
                await _create_canceled(backends, env.task_name, aid, reason, env.metadata)
            outcome = Outcome.cancelled(env.task_name, reason, env.attempts)
            await backends.results.set(aid, outcome.encode(), CONF.result_ttl)
            await _announce(backends, env.task_name, aid, reason, env.metadata)
            message = f"task {aid} ({env.task_name}) was queued; cancelled, it will not start"
            log.info("%s", message)
            return CancelResult(aid, "cancelled", message, Status.CANCELED)
    if detail is None:
        message = f"no task with agent id {aid}: nothing to cancel"
        return CancelResult(aid, "unknown", message, None)
    # a worker holds it (or is taking it): that worker ends it; the line is the durable request
    await backends.activity.aappend(aid, clean_text(CANCEL_REQUESTED_MESSAGE.format(reason=reason), None))
    await backends.events.publish(CANCEL_CHANNEL, cancel_message(aid, reason))
    message = f"task {aid} is {status.value if status else 'running'}; its worker was asked to cancel it"
    log.info("%s", message)
    return CancelResult(aid, "requested", message, status)


async def _announce(
    backends: Backends, task_name: str, aid: UUID, reason: str, metadata: dict[str, Any] | None
) -> None:
    """``task.cancelled`` for a task no worker will ever see (lifecycle events)."""
    if CONF.lifecycle_events:
        row = task_events.encode_task(aid, task_name, Status.CANCELED, metadata, canceled_message(reason))
        await task_events.publish_now([("task.cancelled", row)], backends.events)


async def _create_canceled(
    backends: Backends, task_name: str, aid: UUID, reason: str, metadata: dict[str, Any] | None
) -> None:
    try:
        await backends.activity.acreate(task_name, CONF.activity_message_create, aid, metadata=metadata)
    except ValueError:
        pass  # its producer wrote it meanwhile
    await backends.activity.aappend(aid, canceled_message(reason), Status.CANCELED)


def cancel_sync(
    agent_id: UUID | str | Any, reason: str = DEFAULT_REASON, *, queue_name: str | None = None
) -> CancelResult:
    """:func:`cancel` for synchronous code (a script, a WSGI view, a sync handler)."""
    import asyncio

    import anyio.from_thread

    from agentexec.events import _SYNC, _in_worker_thread

    call = functools.partial(cancel, agent_id, reason, queue_name=queue_name)
    if _in_worker_thread():  # a sync handler: on its worker's loop
        result: CancelResult = anyio.from_thread.run(call)
        return result
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _SYNC.portal().call(call)
    raise RuntimeError("ax.cancel_sync() blocks, and this thread runs an event loop: use await ax.cancel(...) here")
