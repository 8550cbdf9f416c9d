"""Optional backend features, and how a suite decides whether to test one.

Two kinds:

- **Methods** of an optional protocol in :mod:`agentexec.backends` (``reserve_many``,
  ``ack_many``, ``set_many``, ``publish_many``, ...). The pool switches each on by itself
  whenever a backend has the method (an ``isinstance`` check against the runtime-checkable
  protocol), so the kit does the same: the default ``None`` means "test it if the backend has
  it". ``True`` demands it (the test fails, saying what to add, when it is missing). ``False``
  declares it absent: its tests skip, naming it, unless agentexec would call the method anyway
  (the backend has it), which fails instead — an untested method the pool calls is exactly
  what this kit exists to prevent.
- **Behaviours** a required method may or may not have (``replay``, ``activity_metadata``).
  Nothing can detect them, so they default to off: declare them ``True`` to have them tested.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from agentexec.backends import (
    ActivityChanges,
    ActivityPrefixLookup,
    BatchAck,
    BatchPublish,
    BatchReserve,
    BatchResults,
    ConsumerReaper,
    DelayedPush,
    EnqueueKeys,
    InFlightView,
    MixedPublish,
    RawPayloads,
    RemoveQueued,
    ScheduleRecords,
    StagedResults,
    TaskLocks,
)


@dataclass(frozen=True)
class MethodCapability:
    """A capability that is the presence of an optional protocol's methods."""

    protocol: type[Any]
    methods: tuple[str, ...]
    #: whether agentexec (the pool, the CLI) calls these methods whenever the backend has them
    used_when_present: bool = True

    def present(self, backend: Any) -> bool:
        return all(callable(getattr(backend, m, None)) for m in self.methods)


#: every method capability, by ``Capabilities`` field name
METHOD_CAPABILITIES: dict[str, MethodCapability] = {
    "raw_payloads": MethodCapability(RawPayloads, ("push_raw",), used_when_present=False),
    "reap_consumer": MethodCapability(ConsumerReaper, ("reap_consumer",)),
    "in_flight": MethodCapability(InFlightView, ("in_flight",)),
    "remove_queued": MethodCapability(RemoveQueued, ("remove",)),
    "delayed_push": MethodCapability(DelayedPush, ("push_at", "delayed")),
    "task_locks": MethodCapability(TaskLocks, ("acquire", "unlock", "parked")),
    "enqueue_keys": MethodCapability(EnqueueKeys, ("claim_key", "release_key")),
    "reserve_many": MethodCapability(BatchReserve, ("reserve_many",)),
    "ack_many": MethodCapability(BatchAck, ("ack_many",)),
    "staged_results": MethodCapability(StagedResults, ("stage_many", "staged")),
    "set_many": MethodCapability(BatchResults, ("set_many",)),
    "publish_many": MethodCapability(BatchPublish, ("publish_many",)),
    "publish_mixed": MethodCapability(MixedPublish, ("publish_mixed",)),
    "find_prefix": MethodCapability(ActivityPrefixLookup, ("afind_prefix",)),
    "changes": MethodCapability(ActivityChanges, ("achanges",)),
    "schedule_records": MethodCapability(
        ScheduleRecords,
        ("schedule_records", "put_schedule_record", "add_schedule_record", "delete_schedule_record"),
    ),
}


@dataclass(frozen=True)
class Capabilities:
    """What the backend under test supports beyond the required protocol.

    Method capabilities default to ``None`` (tested when the backend has the method, as the pool
    uses it when it has it); behaviours default to ``False``. Declare on your suite subclass::

        class TestAcmeEvents(EventsSuite):
            capabilities = Capabilities(replay=True)
    """

    # -- queue --------------------------------------------------------------------------------
    #: :class:`agentexec.backends.RawPayloads` ``push_raw(queue_name, payload, priority)`` (sync
    #: or async) stores a payload as-is, so the kit can check malformed payloads are dead-lettered
    raw_payloads: bool | None = None
    #: :class:`agentexec.backends.ConsumerReaper` ``reap_consumer``: a dead worker's tasks go back
    #: at once instead of after ``lease_timeout``
    reap_consumer: bool | None = None
    #: :class:`agentexec.backends.InFlightView` ``in_flight``: the pool writes a dead worker's
    #: QUEUED lines before its tasks can run again
    in_flight: bool | None = None
    #: :class:`agentexec.backends.RemoveQueued` ``remove``: ``ax.cancel`` takes a queued task
    #: out of its queue, so it never starts (without it, a queued task is cancelled by the
    #: worker that takes it only if that worker heard the request)
    remove_queued: bool | None = None
    #: :class:`agentexec.backends.DelayedPush` ``push_at``/``delayed``: delayed tasks and
    #: retries wait in the backend until their due time
    delayed_push: bool | None = None
    #: :class:`agentexec.backends.TaskLocks` ``acquire``/``unlock``/``parked``: ``lock_key=`` and
    #: ``max_concurrency=`` (a task whose lock is full is parked per key until a holder ends)
    task_locks: bool | None = None
    #: :class:`agentexec.backends.EnqueueKeys` ``claim_key``/``release_key``:
    #: ``ax.enqueue(..., key=...)`` returns the task already queued or running under the key
    enqueue_keys: bool | None = None
    #: :class:`agentexec.backends.BatchReserve` ``reserve_many``: a worker fills its free slots
    #: in one round trip
    reserve_many: bool | None = None
    #: :class:`agentexec.backends.BatchAck` ``ack_many``: a worker acknowledges a batch at once
    ack_many: bool | None = None
    # -- results ------------------------------------------------------------------------------
    #: :class:`agentexec.backends.StagedResults` ``stage_many``/``staged``: a worker killed
    #: between a handler's return and its ack does not cost a second run
    staged_results: bool | None = None
    #: :class:`agentexec.backends.BatchResults` ``set_many``: a worker stores a batch of outcomes
    #: (waking each one's waiters) in one round trip
    set_many: bool | None = None
    #: :class:`agentexec.backends.ScheduleRecords` ``schedule_records``/``put_schedule_record``/
    #: ``add_schedule_record``/``delete_schedule_record``: runtime schedules (``ax.schedules``,
    #: the HTTP API's ``/schedules``) kept per queue
    schedule_records: bool | None = None
    # -- events -------------------------------------------------------------------------------
    #: :class:`agentexec.backends.BatchPublish` ``publish_many``: worker log forwarding
    publish_many: bool | None = None
    #: :class:`agentexec.backends.MixedPublish` ``publish_mixed``: a worker's lifecycle events
    #: of a window, whatever their types, in one write
    publish_mixed: bool | None = None
    #: ``EventBackend.subscribe(..., last_id=...)`` replays the events published after ``last_id``
    replay: bool = False
    # -- activity -----------------------------------------------------------------------------
    #: ``ActivityStore.create(metadata=...)``/``acreate(metadata=...)`` store metadata and
    #: ``list(metadata=...)`` returns the activities matching every given pair
    activity_metadata: bool = False
    #: :class:`agentexec.backends.ActivityPrefixLookup` ``afind_prefix``: the CLI finds an
    #: activity by the first digits of its id
    find_prefix: bool | None = None
    #: :class:`agentexec.backends.ActivityChanges` ``achanges``: the change feed the HTTP API's
    #: live stream (server-sent events) reads
    changes: bool | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
