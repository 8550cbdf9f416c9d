"""Per-key locks and counted limits on the worker side (``lock_key=``, ``max_concurrency=``).

The queue backend does the locking (:class:`agentexec.backends.TaskLocks`): a taken task
whose locks are held elsewhere is parked there, per key, and comes back to the queue when a
holder's lease ends. The worker only asks, once per taken task that has locks, and forgets a
parked task's lease; the take itself is unchanged, so tasks without locks pay nothing.
"""

from __future__ import annotations

import dataclasses
import logging

from agentexec.backends import Lease, QueueBackend, TaskLocks
from agentexec.task import TaskDefinition

log = logging.getLogger("agentexec")


class LocksUnsupported(RuntimeError):
    """The task needs locks and the queue backend cannot hold them."""


def locks_of(lease: Lease, definition: TaskDefinition | None) -> dict[str, int] | None:
    """The locks the task of ``lease`` must hold: its envelope's (filled at enqueue), or, when
    its producer did not know the task, its definition's, filled from the context here."""
    if lease.envelope.locks is not None:
        return lease.envelope.locks
    if definition is None or (definition.lock_key is None and definition.max_concurrency is None):
        return None
    try:
        # the context as the handler will see it (defaults filled in), as a producer that
        # knows the task evaluates the template
        context = definition.validate_context(lease.envelope.context).model_dump(mode="json")
        return definition.locks_for(context)
    except ValueError:  # pydantic's ValidationError too
        return None  # the context is not the task's: the lifecycle rejects it, lock-free


async def hold_locks(lease: Lease, definition: TaskDefinition | None, queue: QueueBackend) -> Lease | None:
    """The lease to run the task under (carrying its locks, so its ``ack`` releases them), or
    ``None`` when the task was parked (its lease has ended in the backend)."""
    locks = locks_of(lease, definition)
    if not locks:
        return lease
    if not isinstance(queue, TaskLocks):
        raise LocksUnsupported(
            f"task {lease.envelope.task_name!r} has lock_key/max_concurrency, and the queue backend "
            f"{type(queue).__name__} cannot hold locks (it lacks TaskLocks.acquire); use the "
            f"memory, Redis or SQL queue"
        )
    if lease.envelope.locks is None:
        lease = dataclasses.replace(lease, envelope=lease.envelope.model_copy(update={"locks": locks}))
    return lease if await queue.acquire(lease) else None


def without_key(lease: Lease) -> Lease:
    """``lease`` acknowledged without letting its enqueue key go (a retry: the task is queued
    again under the same agent id, and keeps its key until it ends)."""
    if lease.envelope.key is None:
        return lease
    return dataclasses.replace(lease, envelope=lease.envelope.model_copy(update={"key": None}))


async def unlock_early(lease: Lease, queue: QueueBackend) -> None:
    """The handler is done: its locks go now, not after the finish is written (line, outcome,
    ack: several commits on a SQL queue), so the next task of its key starts sooner. Safe: a
    crash before the ack redelivers a task whose outcome is staged or stored, which is not run
    again; one that must run again takes its locks again first."""
    if not isinstance(queue, TaskLocks):
        return
    try:
        await queue.unlock(lease)
    except Exception as exc:  # the ack releases them
        log.debug("early unlock of %s failed (%r); its ack releases its locks", lease.envelope.agent_id, exc)
