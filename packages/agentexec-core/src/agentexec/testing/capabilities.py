"""Optional backend features. A suite test that needs one skips, naming it, when it is off."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Capabilities:
    """What a backend under test supports beyond the required protocol. Defaults: everything.

    Declare what you lack on your suite subclass::

        class TestAcmeEvents(EventsSuite):
            capabilities = Capabilities(replay=False)
    """

    #: the queue has ``push_raw(queue_name, payload: str, priority)`` (sync or async) that stores
    #: a payload as-is, so the kit can check that malformed payloads are dead-lettered
    raw_payloads: bool = True
    #: the queue implements :class:`agentexec.backends.ConsumerReaper` (``reap_consumer``), so a
    #: dead worker's tasks go back at once instead of after ``lease_timeout``
    reap_consumer: bool = True
    #: the queue implements :class:`agentexec.backends.InFlightView` (``in_flight``), so the pool
    #: writes a dead worker's QUEUED lines before its tasks can run again
    in_flight: bool = True
    #: the results backend implements :class:`agentexec.backends.StagedResults`, so a worker
    #: killed between a handler's return and its ack does not cost a second run
    staged_results: bool = True
    #: ``EventBackend.subscribe(..., last_id=...)`` replays the events published after ``last_id``
    replay: bool = True
    #: ``ActivityStore.create(metadata=...)`` stores metadata and ``list(metadata=...)`` filters by it
    activity_metadata: bool = True

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
