"""The protocols every backend implements.

A backend is a plain class; it needs no base class, only these methods. The conformance kit
(:mod:`agentexec.testing`) is the executable form of the contracts written here.

- :class:`QueueBackend` — priority queue with leases: at-least-once delivery.
- :class:`ResultBackend` — per-task outcome bytes with a wake-up ``wait``.
- :class:`EventBackend` — publish/subscribe of small messages (worker logs, shutdown, user events).
- :class:`ActivityStore` — the activity records behind ``ax.activity``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

from agentexec.activity.status import Status
from agentexec.task import Envelope, Priority

if TYPE_CHECKING:
    from agentexec.activity.schemas import ActivityDetailSchema, ActivityListSchema


@dataclass(frozen=True, slots=True)
class Lease:
    """One task handed to one consumer. Give it back with ``ack`` (done) or ``release`` (not done)."""

    envelope: Envelope
    consumer_id: str
    queue_name: str
    #: backend-specific handle (the raw payload, a row id, a stream id ...)
    token: Any = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task the queue gave up on: too many attempts, or a payload that is not a task."""

    id: str
    queue_name: str
    reason: str
    payload: str
    envelope: Envelope | None = None
    failed_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What one ``reap`` did: tasks handed out again, and tasks moved to the dead-letter place."""

    requeued: tuple[Envelope, ...] = ()
    dead: tuple[DeadLetter, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth per priority and the dead-letter count of one queue, for ``agentexec status``."""

    queue_name: str
    high: int
    low: int
    in_flight: int
    dead: int
    consumers: dict[str, float] = field(default_factory=dict)  # consumer id -> heartbeat age (s)


@runtime_checkable
class QueueBackend(Protocol):
    """A reliable priority queue.

    Contract:
    - Spec semantics (LOW = LPUSH, HIGH = RPUSH, take = BRPOP): LOW joins the back, HIGH the
      front, consumers take from the front. So HIGH is taken before LOW and LOW is first in
      first out. Among waiting HIGH tasks the order is the backend's (Redis and memory: the
      newest first, as RPUSH gives; SQL: the oldest first); the kit checks neither.
    - ``reserve`` hands each task to exactly one consumer and records it as in flight for that
      consumer; ``ack`` forgets it; ``release`` puts it back at the front of its queue.
    - A consumer proves it is alive with ``heartbeat``. ``reap`` returns the in-flight tasks of
      consumers whose last heartbeat is older than the lease timeout to the front of their queue,
      with ``attempts`` incremented; a task whose attempts would exceed ``max_attempts`` goes to
      the dead-letter place instead, with the reason.
    - A payload that is not a valid envelope is dead-lettered by ``reserve``, which goes on to
      the next one.
    """

    lease_timeout: float
    max_attempts: int

    async def push(self, envelope: Envelope, priority: Priority | None = None) -> None:
        """Add one task to ``envelope.queue_name`` (``priority`` defaults to ``envelope.priority``)."""
        ...

    async def push_many(self, envelopes: Sequence[Envelope]) -> None:
        """Add many tasks in one round trip where the backend allows; each keeps its priority."""
        ...

    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        """Take the next task, waiting up to ``timeout`` seconds; ``None`` when nothing came."""
        ...

    async def ack(self, lease: Lease) -> None:
        """The task is finished (successfully or not): forget it."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the task back unfinished: it goes to the front of its queue, attempts unchanged."""
        ...

    async def heartbeat(self, queue_name: str, consumer_id: str) -> None:
        """The consumer is alive: its leases stay its own for another ``lease_timeout``."""
        ...

    async def reap(self, queue_name: str) -> ReapReport:
        """Hand out again the tasks of consumers that stopped heartbeating (see the class doc)."""
        ...

    async def length(self, queue_name: str) -> int:
        """Tasks waiting (not in flight) in the queue."""
        ...

    async def stats(self, queue_name: str) -> QueueStats:
        """Depth per priority, in-flight count, dead-letter count and live consumers."""
        ...

    async def dead_letters(self, queue_name: str, limit: int = 100) -> list[DeadLetter]:
        """The dead-lettered tasks of the queue, oldest first."""
        ...

    async def requeue_dead(self, queue_name: str, ids: Sequence[str] | None = None) -> int:
        """Push dead-lettered tasks (all, or the given ids) back with attempts reset; returns how many."""
        ...

    async def purge_dead(self, queue_name: str) -> int:
        """Delete the dead-lettered tasks of the queue; returns how many."""
        ...

    async def close(self) -> None:
        """Release connections. The backend may be used again afterwards (it reconnects)."""
        ...


@runtime_checkable
class RawPayloads(Protocol):
    """Optional queue capability, for tests only: store ``payload`` as-is (sync or async), as if
    a foreign or corrupted producer had pushed it, so the conformance kit can check that
    ``reserve`` dead-letters what is not a task. The pool never calls it."""

    def push_raw(self, queue_name: str, payload: str, priority: Priority = Priority.LOW) -> Any: ...


@runtime_checkable
class ConsumerReaper(Protocol):
    """Optional queue capability: hand out again the tasks of one consumer known to be dead.

    The pool calls it when a worker process exits unexpectedly or is killed at shutdown, so its
    tasks go back to the queue at once instead of after ``lease_timeout``. Same rules as ``reap``
    (attempts incremented, dead-lettered past ``max_attempts``), applied to ``consumer_id`` only,
    whatever the age of its last heartbeat. A queue without it still works: the periodic ``reap``
    hands the tasks out once the lease expires.
    """

    async def reap_consumer(self, queue_name: str, consumer_id: str) -> ReapReport: ...


@runtime_checkable
class DelayedPush(Protocol):
    """Optional queue capability: a task that waits in the backend until a due time (delayed
    tasks, retries with backoff), never in a worker's or a producer's sleep.

    ``push_at`` adds the task to ``envelope.queue_name`` so that it is handed out no earlier
    than ``due`` (seconds since the epoch, ``time.time()``). Until then ``reserve`` skips it and
    ``length`` does not count it; once due it is taken like any waiting task of its priority
    (HIGH before LOW), and a consumer blocked in ``reserve`` gets it within milliseconds of
    ``due``. A due time in the past is a plain push. It survives a restart of the backend's
    clients like any queued task, and ``remove`` finds it. ``delayed`` counts the tasks of the
    queue still waiting for their time."""

    async def push_at(self, envelope: Envelope, due: float) -> None: ...

    async def delayed(self, queue_name: str) -> int: ...


@runtime_checkable
class RemoveQueued(Protocol):
    """Optional queue capability: take one waiting task out of ``queue_name`` by its agent id,
    so it never starts (``ax.cancel`` of a queued task).

    Returns the envelope removed, or ``None`` when no task of ``agent_id`` is waiting there
    (never pushed, already taken by a consumer, finished, or on another queue). Atomic with
    ``reserve``: a task is either removed or handed to one consumer, never both. A task in
    flight is never touched: its worker owns it (``ax.cancel`` asks that worker instead).
    It may scan the queue: cancelling is rare, taking is not."""

    async def remove(self, queue_name: str, agent_id: UUID) -> Envelope | None: ...


@runtime_checkable
class TaskLocks(Protocol):
    """Optional queue capability: per-key locks and counted limits (``@pool.task(name,
    lock_key=..., max_concurrency=N)``), held by a task's lease.

    A task whose envelope has ``locks`` (lock key -> how many tasks may hold it at once) runs
    only once its worker's ``acquire(lease)`` returned True. ``acquire`` is atomic: either the
    lease now holds every one of its locks (each had fewer holders than its limit), or it holds
    none and the task is *parked*: taken out of the consumer's in-flight tasks into a waiting
    place of one of its full keys, attempts unchanged, and the worker forgets the lease. Nothing
    polls a parked task: when a holder's lease ends — ``ack``, ``ack_many``, ``release``, or a
    reap of its consumer (``reap``, ``reap_consumer``) — its locks are released and, for each,
    the oldest task parked on that key goes back to the front of its queue, to be taken and
    ``acquire`` again. So a lock lives exactly as long as its holder's lease: renewed by the
    consumer's heartbeats, freed by the reap of a dead consumer, never left behind by a crash.
    Other tasks of the queue are taken meanwhile (no head-of-line blocking). A worker calls
    ``unlock`` as soon as the handler returns, so the next task of the key need not wait for
    the finish to be written; the lease's end still releases whatever is left.

    ``remove`` finds a parked task too; ``parked`` counts the queue's parked tasks (they are
    not in ``length``). Locks are per queue: every pool on the queue shares them."""

    async def acquire(self, lease: Lease) -> bool: ...

    async def unlock(self, lease: Lease) -> None:
        """The task's run is over (its finish is still being written): release its locks now,
        with the same moves of parked tasks; its later ``ack`` then releases nothing more."""
        ...

    async def parked(self, queue_name: str) -> int: ...


@runtime_checkable
class EnqueueKeys(Protocol):
    """Optional queue capability: at most one task per key (``ax.enqueue(..., key=...)``)
    queued or running at a time.

    ``claim_key`` records ``agent_id`` as the holder of ``key`` on ``queue_name`` and returns
    ``None``, or returns the agent id that already holds it (atomic: of two claims, one wins).
    With ``replace``, it takes over the key only if ``replace`` still holds it (the caller found
    that task finished). A key is let go when its task's lease is acknowledged (``ack``,
    ``ack_many``: the envelope's ``key`` field names it), when the task is removed (``remove``),
    or dead-lettered by a reap; ``release_key`` lets it go when ``agent_id`` holds it."""

    async def claim_key(
        self, queue_name: str, key: str, agent_id: UUID, replace: UUID | None = None
    ) -> UUID | None: ...

    async def release_key(self, queue_name: str, key: str, agent_id: UUID) -> None: ...


@runtime_checkable
class InFlightView(Protocol):
    """Optional queue capability: the tasks ``consumer_id`` holds right now (in flight, not
    acknowledged), oldest first, with the ``attempts`` they were handed out with.

    The pool reads them before it reaps a dead worker, to write each running task's QUEUED line
    *before* the task can be handed to another worker: that worker's RUNNING line then always
    comes after it. Without it, the line is written after the reap and can land after the next
    run's RUNNING line."""

    async def in_flight(self, queue_name: str, consumer_id: str) -> list[Envelope]: ...


@runtime_checkable
class DurabilityCheck(Protocol):
    """Optional backend capability: what would lose data if its server restarted, in words
    (``[]`` when nothing would, or when it cannot tell). A pool logs each line once at start,
    e.g. a Redis with neither AOF nor RDB persistence: a restart loses every queued task."""

    async def durability_warnings(self) -> list[str]: ...


@runtime_checkable
class BatchAck(Protocol):
    """Optional queue capability: acknowledge many leases in one round trip (same effect as
    ``ack`` on each). Workers use it to acknowledge a batch of finished tasks at once."""

    async def ack_many(self, leases: Sequence[Lease]) -> None: ...


@runtime_checkable
class BatchReserve(Protocol):
    """Optional queue capability: take up to ``max_count`` tasks in one round trip, waiting up
    to ``timeout`` seconds for the first; the same rules as ``reserve`` for each task taken.
    Returns an empty list when nothing came."""

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]: ...


@runtime_checkable
class BatchResults(Protocol):
    """Optional result capability: store many outcomes in one round trip (same effect as
    ``set`` on each, waking each one's waiters)."""

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None: ...


@runtime_checkable
class StagedResults(Protocol):
    """Optional result capability: keep a finished task's outcome where no waiter sees it yet.

    A worker stages each outcome the moment its handler returns, beside (not before) the
    final activity line; the real ``set`` still comes after that line commits, so ``get_result``
    never returns ahead of the COMPLETE line. If the worker dies in between, the worker that
    gets the task again finds the staged outcome and finishes the task from it — final line,
    outcome, ack — instead of running the handler a second time. ``staged`` returns ``None``
    for an id never staged or expired (``ttl`` seconds)."""

    async def stage_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None: ...

    async def staged(self, agent_id: UUID) -> bytes | None: ...


@runtime_checkable
class Counters(Protocol):
    """Optional result capability: named integer counters shared by every process (``ax.Tracker``).

    ``incr`` adds ``amount`` (negative to decrement) atomically and returns the new value, a
    counter that does not exist starting at 0; every ``incr`` keeps it ``ttl`` more seconds.
    ``counter`` reads it (0 when it does not exist or expired)."""

    async def incr(self, key: str, amount: int, ttl: int) -> int: ...

    async def counter(self, key: str) -> int: ...


@runtime_checkable
class ScheduleRecords(Protocol):
    """Optional result-backend capability: the runtime schedules of each queue, as JSON text by
    schedule name (``ax.schedules``; a hash on Redis, the ``{prefix}schedule`` table on SQL).
    Every pool on the queue reads them when a change notice says so
    (:mod:`agentexec.schedule.changes`), so what is written here takes effect in all of them.

    ``put_schedule_record`` writes (inserts or replaces) atomically, concurrent writers
    included; ``add_schedule_record`` writes only when the name is free (set-if-absent: of
    concurrent adds of one name exactly one returns True)."""

    async def schedule_records(self, queue_name: str) -> dict[str, str]: ...

    async def put_schedule_record(self, queue_name: str, name: str, spec: str) -> None: ...

    async def add_schedule_record(self, queue_name: str, name: str, spec: str) -> bool: ...

    async def delete_schedule_record(self, queue_name: str, name: str) -> bool: ...


@runtime_checkable
class TransientErrors(Protocol):
    """Optional capability of any backend: which of its errors mean "not now" rather than
    "never" (:mod:`agentexec.faults`).

    A worker whose write fails with a *transient* error (the server unreachable, restarting,
    out of disk or memory, a timeout) keeps the write, takes no new task and tries again until
    it succeeds; one that fails with a *permanent* error (the backend refuses this data: a NUL
    byte, an encoding error, a value too long) isolates the row at fault and ends its task
    ERROR, so it never loops. Without this method only ``OSError`` (``ConnectionError``,
    ``TimeoutError`` …) counts as transient."""

    def is_transient(self, exc: BaseException) -> bool: ...


@runtime_checkable
class ResultBackend(Protocol):
    """Per-task outcomes, stored as opaque bytes (core encodes them) with a time to live."""

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        """Store the outcome and wake every waiter of ``agent_id``."""
        ...

    async def get(self, agent_id: UUID) -> bytes | None:
        """The stored outcome, or ``None``."""
        ...

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        """The outcome as soon as it is set (immediately if it already is).

        Wakes on the ``set`` (no fixed-interval polling as the main path); raises ``TimeoutError``
        after ``timeout`` seconds.
        """
        ...

    async def delete(self, agent_id: UUID) -> None:
        """Forget the outcome."""
        ...

    async def claim(self, key: str, ttl: int) -> bool:
        """Set-if-absent: True for exactly one caller per ``key`` within ``ttl`` seconds.

        Schedulers in several pools use it so that each due firing is enqueued once.
        """
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One message received on a channel. ``id`` lets a stream-backed subscriber resume."""

    channel: str
    data: str
    id: str | None = None


class EventGapError(LookupError):
    """``subscribe(last_id=...)`` whose resume point was trimmed away: events published after
    ``last_id`` are no longer kept (``CONF.events_retention`` / ``CONF.logs_retention``), so a
    replay would silently miss them. ``resume_id`` is the point to resume from to get
    everything still kept (a caller that accepts the gap subscribes again with it)."""

    def __init__(self, last_id: str, resume_id: str, stream: str = "events") -> None:
        self.last_id = last_id
        self.resume_id = resume_id
        self.stream = stream
        setting = "logs_retention" if stream == "logs" else "events_retention"
        super().__init__(
            f"events after {last_id} were trimmed from the {stream} stream: its oldest event "
            f"kept is newer (it keeps the newest CONF.{setting}); resume with "
            f"last_id={resume_id!r} to accept the gap"
        )


@runtime_checkable
class EventBackend(Protocol):
    """Publish/subscribe of small text messages on named channels.

    Channel patterns use ``*`` as a wildcard (``"agentexec:logs:*"``).

    Channels are kept in three streams (:mod:`agentexec.limits`): ``logs:*`` channels,
    ``control:*`` channels, and every other channel, each trimmed to its own retention, so logs
    never evict events, nor events control messages (and a ``control:*`` subscriber reads only
    the control stream). ``subscribe(last_id=...)`` raises :class:`EventGapError` when events after
    ``last_id`` were trimmed away.
    """

    async def publish(self, channel: str, data: str) -> str | None:
        """Deliver ``data`` to every current subscriber of ``channel``; returns the event id if any."""
        ...

    def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """An async context manager; once entered, every later publish to a matching channel is
        yielded by the iterator it gives. Backends that keep history replay events after
        ``last_id``."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BatchPublish(Protocol):
    """Optional event capability: publish many messages to one channel in one round trip, in
    order (same effect as ``publish`` on each). Worker log forwarding uses it."""

    async def publish_many(self, channel: str, data: Sequence[str]) -> None: ...


@runtime_checkable
class MixedPublish(Protocol):
    """Optional event capability: publish ``(channel, data)`` messages to any channels in one
    write, in order (same effect as ``publish`` on each, all or none). A worker's lifecycle
    events then cost one write per window (:mod:`agentexec.task_events`), not one per event
    type and window, each joining the writes the backend already makes."""

    async def publish_mixed(self, messages: Sequence[tuple[str, str]]) -> None: ...


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One activity log line to write (used by batched writers). A message longer than
    ``CONF.max_activity_message_bytes`` is cut to it, and says so."""

    agent_id: UUID
    message: str
    status: Status | None = None
    percentage: int | None = None

    def __post_init__(self) -> None:
        message = self.message
        if isinstance(message, str) and len(message) > 64:  # short lines cost one comparison
            from agentexec.config import CONF
            from agentexec.limits import truncate

            cut = truncate(message, CONF.max_activity_message_bytes)
            if cut is not message:
                object.__setattr__(self, "message", cut)


#: one activity for ``acreate_many``: ``(agent_id, task_name, message)``, or with its metadata
ActivityItem = tuple[UUID, str, str] | tuple[UUID, str, str, dict[str, Any] | None]


def activity_item_metadata(item: ActivityItem) -> dict[str, Any] | None:
    """The metadata of an ``acreate_many`` item (``None`` for a three-element item)."""
    return item[3] if len(item) > 3 else None  # type: ignore[misc]


@runtime_checkable
class ActivityStore(Protocol):
    """The activity records behind ``ax.activity``.

    Status is derived from the latest log entry; ``latest_percentage`` is the latest non-null
    percentage. ``append`` on an unknown ``agent_id`` raises :class:`UnknownActivityError`;
    a percentage outside 0-100 raises ``ValueError``. Every call is one transaction.

    Metadata (``create(metadata=...)``, the optional fourth item of ``acreate_many``) and the
    ``metadata`` filter of ``list``/``detail``/``alist``/``adetail`` follow the rules of
    :mod:`agentexec.activity.metadata`: every pair of the filter must match, JSON-typed; the
    list items and details carry the activity's metadata (``.metadata``). Core passes the
    ``metadata`` arguments only when the caller gave one, so a store without metadata support
    still serves every other call.

    The sync methods take an optional backend-specific ``session`` (a SQLAlchemy ``Session`` for
    the SQL store); the async twins are what workers use so a handler never blocks its loop.
    """

    # -- sync (the spec's API) -------------------------------------------------------------
    def create(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        session: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID: ...

    def append(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
        session: Any = None,
    ) -> None: ...

    def cancel_pending(self, session: Any = None) -> int: ...

    def list(
        self,
        session: Any = None,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ActivityListSchema: ...

    def detail(
        self, agent_id: UUID, session: Any = None, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None:
        """The activity with its whole log; ``None`` when there is none, or when ``metadata``
        (a filter) does not match it."""
        ...

    # -- async twins -----------------------------------------------------------------------
    async def acreate(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID: ...

    async def acreate_many(self, items: Sequence[ActivityItem]) -> None:
        """Create many activities ``(agent_id, task_name, message)`` in one transaction; an item
        may carry a fourth element, the activity's metadata (a dict or ``None``)."""
        ...

    async def aappend(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
    ) -> None: ...

    async def aappend_many(self, entries: Sequence[LogEntry]) -> None:
        """Append many log lines in one transaction (all or nothing). An unknown agent_id
        raises ``UnknownActivityError(that agent_id)`` having written nothing: a worker then
        sets that line aside and writes the rest in one more call."""
        ...

    async def adetail(
        self, agent_id: UUID, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None: ...

    async def alist(
        self,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ActivityListSchema: ...

    async def acancel_pending(self) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ActiveCount(Protocol):
    """Optional activity-store capability: how many activities are QUEUED or RUNNING (of those
    matching ``metadata``, a filter, when given), in one query. Without it
    ``ax.activity.count_active`` adds up the totals of two filtered ``list`` calls."""

    def count_active(self, session: Any = None, metadata: dict[str, Any] | None = None) -> int: ...

    async def acount_active(self, metadata: dict[str, Any] | None = None) -> int: ...


@runtime_checkable
class ActivityPrefixLookup(Protocol):
    """Optional activity-store capability: up to ``limit`` agent ids whose printed form starts
    with ``prefix`` (case-insensitive, dashes included). ``agentexec activity show 3f2a``
    uses it whenever the store has it; without it, the CLI pages through the newest activities."""

    async def afind_prefix(self, prefix: str, limit: int = 2) -> list[UUID]: ...


#: ``finish(entries, outcomes, ttl, acks)``: see :class:`JointFinish`
Finish = Callable[
    [Sequence[LogEntry], Sequence[tuple[UUID, bytes]], int, Sequence[Lease]], Awaitable[None]
]


@runtime_checkable
class JointFinish(Protocol):
    """Optional activity-store capability: a worker's finished tasks in ONE transaction.

    ``joint_finish(results, queue)`` returns ``finish(entries, outcomes, ttl, acks)`` when
    ``results`` and ``queue`` write to the store's own database through one writer, else
    ``None``. ``finish`` appends the lines (as ``aappend_many``), stores the outcomes (as the
    results' ``set_many``, waking their waiters) and acknowledges the leases (as the queue's
    ``ack_many``) all together or not at all: a line, its outcome and its ack commit at once,
    so "acknowledged only after its final line and outcome are stored" holds as in the three
    steps. On any error nothing is written and the error is raised; the worker then does the
    three steps in order (their own fault handling applies).

    For the embedded SQLite stack a window of finished tasks is then one transaction instead of
    three (lines, outcomes, acks); for the PostgreSQL-only stack one statement. A batch
    ``finish`` does not take (say, an ack that must release locks in a transaction of its own)
    raises before writing anything, and goes the three steps. Used by the worker's line writer
    when present; not part of the conformance kit (it concerns three backends of one database
    together)."""

    def joint_finish(self, results: ResultBackend, queue: QueueBackend) -> Finish | None: ...


@runtime_checkable
class RequeueLine(Protocol):
    """Optional activity-store capability: a reaped task's QUEUED line, written only while its
    activity reads RUNNING, decided under the activity's lock.

    ``arequeue(agent_id, message)`` appends ``message`` with status QUEUED and returns True when
    the activity reads RUNNING at that moment, and writes nothing and returns False otherwise
    (a final line already there, or no such activity). A check with ``adetail`` followed by
    ``aappend`` cannot promise that: the last statement a killed worker sent (its COMPLETE line)
    may still commit on a database server after the check, and the QUEUED line would land after
    it. The reaper uses it when present."""

    async def arequeue(self, agent_id: UUID, message: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class ActivityChange:
    """One activity log line as a change feed hands it out (``ActivityChanges``): the line, and
    the activity it belongs to (task name, metadata), so a reader can filter without a lookup."""

    id: int
    agent_id: UUID
    task_name: str
    message: str
    status: Status
    percentage: int | None
    created_at: datetime
    metadata: dict[str, Any] | None = None


@runtime_checkable
class ActivityChanges(Protocol):
    """Optional activity-store capability: the log lines written after a point, in id order.

    A change feed (the HTTP API's live stream) reads it: ``after`` is the highest line id it has
    seen (``None``: only learn the current highest id, read no line), ``also`` asks again for
    ids it found missing before (on PostgreSQL a lower id can commit after a higher one).
    Returns the highest id now stored (at least ``after``) and up to ``limit`` lines with an id
    above ``after`` or in ``also``, oldest first."""

    async def achanges(
        self, after: int | None, limit: int = 500, also: Sequence[int] = ()
    ) -> tuple[int, list[ActivityChange]]: ...


class UnknownActivityError(LookupError, ValueError):
    """``update``/``complete``/``error`` named an ``agent_id`` that has no activity.

    Also a ``ValueError``: an unknown agent_id is a bad argument, and code written for the
    original agentexec catches ``ValueError`` for it.
    """

    def __init__(self, agent_id: UUID | str) -> None:
        self.agent_id = agent_id
        super().__init__(
            f"no activity with agent_id {agent_id}: create it first with ax.activity.create(...) "
            f"or ax.enqueue(...), and check that this process uses the same database"
        )


def as_uuid(agent_id: UUID | str) -> UUID:
    """An agent_id as a UUID (its string form accepted), or a ValueError that says what it got."""
    if isinstance(agent_id, UUID):
        return agent_id
    try:
        return UUID(str(agent_id))
    except ValueError:
        raise ValueError(f"agent_id must be a UUID or its string form, got {agent_id!r}") from None


def validate_percentage(percentage: int | None) -> int | None:
    """Shared check for every store: ``None`` or an int in 0..100."""
    if percentage is None:
        return None
    if isinstance(percentage, bool) or not isinstance(percentage, int):
        raise ValueError(f"percentage must be an int from 0 to 100 or None, got {percentage!r}")
    if not 0 <= percentage <= 100:
        raise ValueError(f"percentage must be between 0 and 100, got {percentage}")
    return percentage
