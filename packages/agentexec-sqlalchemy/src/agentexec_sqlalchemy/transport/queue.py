"""The embedded queue: a table of waiting and leased tasks (SQLite file or PostgreSQL).

One row per task. Waiting rows have ``consumer_id`` NULL and are taken in the order
``rank`` (HIGH first), ``front`` (released/reaped tasks first, latest first), ``id`` (FIFO).
``reserve`` leases the first waiting row in one short transaction: on PostgreSQL
``SELECT … FOR UPDATE SKIP LOCKED`` inside ``UPDATE … RETURNING``, so concurrent consumers
never wait for each other; on SQLite the same statement under ``BEGIN IMMEDIATE`` (SQLite has
one writer at a time anyway). Consumers heartbeat in the consumer table; ``reap`` gives the
leases of silent consumers back or dead-letters them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

import sqlalchemy as sa
from agentexec.backends import DeadLetter, Lease, QueueStats, ReapReport
from agentexec.config import CONF
from agentexec.faults import describe
from agentexec.task import Envelope, Priority
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from agentexec_sqlalchemy import driver
from agentexec_sqlalchemy.transport import statements as sql
from agentexec_sqlalchemy.transport.common import SQLTransport
from agentexec_sqlalchemy.transport.models import (
    RANK_HIGH,
    RANK_LOW,
    consumer_table,
    dead_letter_table,
    delayed_table,
    enqueue_key_table,
    lock_table,
    parked_table,
    queue_table,
)

log = logging.getLogger("agentexec.sqlalchemy")

T = TypeVar("T")
Q = queue_table
D = dead_letter_table
DL = delayed_table
C = consumer_table
LK = lock_table
PK = parked_table
EK = enqueue_key_table

#: PostgreSQL: ``reap`` vacuums the queue table once this many of its rows are dead. Each task
#: leaves two (its take's update, its ack's delete), and every take walks past the dead
#: entries at the front of the waiting index until a VACUUM clears them. Autovacuum looks at
#: most once a minute (``autovacuum_naptime``), and not at all where it is off. Measured
#: without it: a worker's drain fell from 4,077 to 1,911 tasks/s over 160,000 tasks; with a
#: VACUUM every few seconds, it held 3,700 to 4,200 (benchmarks/README.md)
VACUUM_DEAD = 10_000


def _rank(priority: Priority) -> int:
    return RANK_HIGH if priority is Priority.HIGH else RANK_LOW


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{loc}: {err.get('msg', 'invalid')}"


def _lock_key(queue_name: str) -> Any:
    return sa.func.hashtext(f"agentexec-reap:{queue_name}")


def _locks_key(queue_name: str, key: str) -> Any:
    # one advisory lock per lock key: its holders and parked tasks change under it, so work on
    # other keys never waits (several keys are locked in sorted order: no deadlock among them)
    return sa.func.hashtext(f"agentexec-locks:{queue_name}\n{key}")


def _lock_keys(conn: Connection, queue_name: str, keys: Sequence[str]) -> None:
    for key in sorted(set(keys)):
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_locks_key(queue_name, key))))


class SQLQueue(SQLTransport):
    """:class:`agentexec.backends.QueueBackend` on a SQL database.

    ``lease_timeout`` and ``max_attempts`` follow ``CONF`` until assigned; each operation reads
    them afresh, so tests can shorten them.
    """

    def __init__(self, url: str | Engine) -> None:
        super().__init__(url)
        self._lease_timeout: float | None = None
        self._max_attempts: int | None = None
        #: (queue, consumer) -> monotonic time of this process's last heartbeat write for it
        self._beaten: dict[tuple[str, str], float] = {}
        #: queue -> the earliest due time of its delayed tasks, as this process's last take saw
        self._next_due: dict[str, float | None] = {}
        #: queues a lock release moved a parked task back to, to wake after the commit
        self._moved: set[str] = set()

    @property
    def lease_timeout(self) -> float:
        return CONF.lease_timeout if self._lease_timeout is None else self._lease_timeout

    @lease_timeout.setter
    def lease_timeout(self, value: float) -> None:
        self._lease_timeout = value

    @property
    def max_attempts(self) -> int:
        return CONF.max_attempts if self._max_attempts is None else self._max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        self._max_attempts = value

    # -- push ----------------------------------------------------------------------------
    async def push(self, envelope: Envelope, priority: Priority | None = None) -> None:
        row = self._row(envelope, priority)
        if self.pg_ready:
            # most of ax.enqueue's time, and of the enqueue-to-start latency, was the writer's
            # transaction around this one statement
            await self.pg_execute(sql.PUSH_ONE_PG, self._push_params(row), durable=True)
        else:
            await self.run_write(self._push_one, row)
        self.wake_local("queue", envelope.queue_name)

    async def push_many(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        await self.run_write(self._push_rows, [self._row(env, None) for env in envelopes])
        for name in {env.queue_name for env in envelopes}:
            self.wake_local("queue", name)

    def push_raw(self, queue_name: str, payload: str, priority: Priority = Priority.LOW) -> None:
        """Push a payload as-is (tests use it to push malformed data). Blocking."""
        row = {
            "queue_name": queue_name,
            "rank": _rank(priority),
            "front": 0,
            "payload": payload,
            "attempts": 0,
            "enqueued_at": time.time(),
        }
        self.run_write_sync(self._push_one, row)
        self.wake_local("queue", queue_name)

    @staticmethod
    def _row(envelope: Envelope, priority: Priority | None) -> dict[str, Any]:
        return {
            "queue_name": envelope.queue_name,
            "rank": _rank(priority or envelope.priority),
            "front": 0,
            "payload": envelope.model_dump_json(),
            "attempts": envelope.attempts,
            "enqueued_at": envelope.enqueued_at or time.time(),
        }

    def _push_params(self, row: dict[str, Any]) -> dict[str, Any]:
        params = {
            "qn": row["queue_name"], "rank": row["rank"], "body": row["payload"],
            "att": row["attempts"], "ts": row["enqueued_at"],
        }
        if not self.is_sqlite:
            params.update(self.note("queue", row["queue_name"]))
        return params

    def _push_one(self, conn: Connection, row: dict[str, Any]) -> None:
        if self.is_sqlite:
            conn.execute(sql.PUSH_ONE, self._push_params(row))
        else:
            driver.run_raw(conn, sql.PUSH_ONE_PG, self._push_params(row))

    def _push_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Many rows in one transaction: all or none."""
        conn.execute(sql.PUSH, rows)
        for name in sorted({row["queue_name"] for row in rows}):
            self.notify(conn, "queue", name)

    # -- delayed -------------------------------------------------------------------------
    async def push_at(self, envelope: Envelope, due: float) -> None:
        if due <= time.time():
            await self.push(envelope)
            return
        row = {
            "queue_name": envelope.queue_name,
            "rank": _rank(envelope.priority),
            "payload": envelope.model_dump_json(),
            "attempts": envelope.attempts,
            "due": due,
            "enqueued_at": envelope.enqueued_at or time.time(),
        }
        await self.run_write(self._push_delayed, row)
        # blocked consumers re-read how long to wait
        self.wake_local("queue", envelope.queue_name)

    def _push_delayed(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(DL.insert(), row)
        self.notify(conn, "queue", row["queue_name"])

    async def delayed(self, queue_name: str) -> int:
        def read() -> int:
            with self.read() as conn:
                return int(conn.execute(
                    sa.select(sa.func.count()).select_from(DL).where(DL.c.queue_name == queue_name)
                ).scalar_one())

        return await self.run(read)

    def _promote(self, conn: Connection, queue_name: str, now: float) -> None:
        """Inside a take's transaction: move the queue's due tasks into the queue table (in due
        order, so FIFO among them), and note the next due time."""
        first = self._next_due_of(conn, queue_name)
        if first is not None and first <= now:
            due = sa.and_(DL.c.queue_name == queue_name, DL.c.due <= now)
            rows = conn.execute(
                sa.select(DL.c.id, DL.c.rank, DL.c.payload, DL.c.attempts, DL.c.enqueued_at)
                .where(due).order_by(DL.c.due, DL.c.id)
            ).all()
            conn.execute(Q.insert(), [
                {"queue_name": queue_name, "rank": r.rank, "front": 0, "payload": r.payload,
                 "attempts": r.attempts, "enqueued_at": r.enqueued_at}
                for r in rows
            ])
            conn.execute(DL.delete().where(DL.c.id.in_([r.id for r in rows])))
            first = self._next_due_of(conn, queue_name)
        self._next_due[queue_name] = first

    @staticmethod
    def _next_due_of(conn: Connection, queue_name: str) -> float | None:
        return cast("float | None", driver.fetch(conn, sql.NEXT_DUE, {"qn": queue_name})[0][0])

    # -- reserve -------------------------------------------------------------------------
    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        async def take() -> Lease | None:
            taken = await self._take_now(queue_name, consumer_id, 1)
            if taken is not None:
                return taken[0] if taken else None
            lease: Lease | None = await self.run_write(self._take, queue_name, consumer_id, durable=False, first=True)
            return lease

        return await self._taking(queue_name, take, timeout)

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]:
        """:class:`agentexec.backends.BatchReserve`: up to ``max_count`` leases in one write
        transaction, each taken by :meth:`_take` (the same statement, the same rules), waiting
        up to ``timeout`` for the first. A worker with free slots takes them all in one commit
        instead of one commit and one writer-thread round trip each (issue #18: on SQLite the
        one-at-a-time take held a 32-slot worker near 200 tasks/s)."""
        if max_count <= 1:
            lease = await self.reserve(queue_name, consumer_id, timeout)
            return [] if lease is None else [lease]
        async def take() -> list[Lease]:
            taken = await self._take_now(queue_name, consumer_id, max_count)
            if taken is not None:
                return taken
            leases: list[Lease] = await self.run_write(
                self._take_many, queue_name, consumer_id, max_count, durable=False, first=True
            )
            return leases

        return await self._taking(queue_name, take, timeout) or []

    async def _taking(self, queue_name: str, take: Callable[[], Awaitable[T]], timeout: float) -> T | None:
        """``take()`` until it gives something (a lease, a non-empty batch) or ``timeout``
        passes, sleeping between tries until a push wakes this queue — or until the earliest
        delayed task falls due, whichever comes first."""
        wait_until = 0.0  # the end of the current wait (epoch seconds)

        async def attempt() -> T | _Recheck | None:
            got = await take()
            if got:
                return got
            next_due = self._next_due.get(queue_name)
            if next_due is not None and next_due < wait_until - 0.002:
                return _Recheck()  # a task falls due before this wait ends: wait less
            return None

        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            next_due = self._next_due.get(queue_name)
            wait = remaining if next_due is None else min(remaining, max(next_due - time.time(), 0.0) + 0.001)
            wait_until = time.time() + wait
            got = await self.wait_for("queue", queue_name, attempt, wait)
            if isinstance(got, _Recheck) or got is None:
                if time.monotonic() >= deadline:
                    return None
                continue
            return cast("T", got)

    async def _take_now(self, queue_name: str, consumer_id: str, count: int) -> list[Lease] | None:
        """PostgreSQL: ``TAKE_PG`` through :meth:`pg_execute` (relaxed). ``None`` when the take
        must go through the writer instead: a heartbeat is due, or a delayed task is due
        (promoted there first). A malformed row it took is dead-lettered through the writer."""
        if not self.pg_ready or self._beat_due(queue_name, consumer_id):
            return None
        now = time.time()
        rows = await self.pg_execute(sql.TAKE_PG, {"qn": queue_name, "cid": consumer_id, "ts": now, "n": count})
        next_due = rows[0].next_due
        if next_due is not None and next_due <= now:
            return None  # it took nothing: the writer's take promotes the due tasks first
        self._next_due[queue_name] = next_due
        leases: list[Lease] = []
        malformed: list[tuple[int, str, str]] = []
        for row in _in_take_order(rows):
            lease = self._lease(row, consumer_id, queue_name)
            if isinstance(lease, str):
                malformed.append((row.id, row.payload, lease))
            else:
                leases.append(lease)
        if malformed:
            await self.run_write(self._bury_taken, queue_name, malformed, now)
        return leases

    def _bury_taken(self, conn: Connection, queue_name: str, rows: list[tuple[int, str, str]], now: float) -> None:
        for row_id, payload, reason in rows:
            self._bury_row(conn, queue_name, row_id, payload, reason, now)

    def _bury_row(self, conn: Connection, queue_name: str, row_id: int, payload: str, reason: str, now: float) -> None:
        """A taken row whose payload is not a task: out of the queue, into its dead letters."""
        conn.execute(sql.DELETE_TASK, {"row_id": row_id})
        self._bury(conn, queue_name, payload, reason, now)

    def _take_many(self, conn: Connection, queue_name: str, consumer_id: str, max_count: int) -> list[Lease]:
        """The first task as :meth:`_take` leases it (heartbeat, due delayed tasks, one row),
        then up to ``max_count - 1`` more in ONE statement (``TAKE_MANY``: the same order, the
        same ``FOR UPDATE SKIP LOCKED``), handed out in queue order. Keep the per-row handling
        in :meth:`_lease_of` the same as :meth:`_take`'s. PostgreSQL: all in one ``TAKE_PG``."""
        if not self.is_sqlite:
            now = self._reserving(conn, queue_name, consumer_id)
            return self._take_pg(conn, queue_name, consumer_id, max_count, now)
        first = self._take(conn, queue_name, consumer_id)
        if first is None or max_count <= 1:
            return [] if first is None else [first]
        now = time.time()
        params = {"qn": queue_name, "cid": consumer_id, "ts": now, "n": max_count - 1}
        rows = _in_take_order(driver.fetch(conn, sql.TAKE_MANY, params))
        leases = [first]
        for row in rows:
            lease = self._lease_of(conn, queue_name, consumer_id, row, now)
            if lease is not None:
                leases.append(lease)
        return leases

    def _lease_of(self, conn: Connection, queue_name: str, consumer_id: str, row: Any, now: float) -> Lease | None:
        """A taken row's lease; a malformed payload is dead-lettered instead (``None``)."""
        lease = self._lease(row, consumer_id, queue_name)
        if isinstance(lease, str):
            self._bury_row(conn, queue_name, row.id, row.payload, lease, now)
            return None
        return lease

    @staticmethod
    def _lease(row: Any, consumer_id: str, queue_name: str) -> Lease | str:
        """A taken row's lease, or why its payload is not a task."""
        try:
            env = Envelope.model_validate_json(row.payload)
        except ValidationError as exc:
            return f"malformed payload: {_first_error(exc)}"
        if env.attempts != row.attempts:
            env = env.model_copy(update={"attempts": row.attempts})
        return Lease(env, consumer_id, queue_name, (row.id, row.attempts))

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        """:class:`agentexec.backends.BatchAck`: every ack in one write operation; a lease
        that holds locks or an enqueue key is acknowledged as :meth:`ack` does it (its locks
        in a transaction of their own on PostgreSQL)."""
        plain, whole = _by_ending(leases)
        for lease in whole:
            await self.ack(lease)
        if not plain:
            return
        if self.pg_ready:
            await self.pg_execute(sql.ACK_MANY_PG, self._acks(plain))
            return
        await self.run_write(self._ack_plain, plain, durable=False)

    def _ack_many(self, conn: Connection, leases: list[Lease]) -> None:
        """The acks of ``leases`` in ``conn``'s transaction (the activity store's joint finish
        on SQLite runs it too, so each lease ends whole: locks and key included)."""
        plain, whole = _by_ending(leases)
        for lease in whole:
            self._ack(conn, lease)
        self._ack_plain(conn, plain)

    def _ack_plain(self, conn: Connection, leases: list[Lease]) -> None:
        """The acks of leases that release nothing else, as one statement."""
        if not leases:
            return
        if self.is_sqlite:
            driver.run_many(conn, sql.ACK, [self._mine(lease) for lease in leases])
        else:
            driver.run_raw(conn, sql.ACK_MANY_PG, self._acks(leases))

    @staticmethod
    def _acks(leases: Sequence[Lease]) -> dict[str, list[Any]]:
        """``ACK_MANY_PG``'s arrays."""
        tokens = [lease.token for lease in leases]
        return {
            "ids": [row_id for row_id, _ in tokens],
            "cids": [lease.consumer_id for lease in leases],
            "atts": [attempts for _, attempts in tokens],
        }

    def _take(self, conn: Connection, queue_name: str, consumer_id: str) -> Lease | None:
        """Lease the next task: ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)
        RETURNING``, one statement, in a transaction that need not be durable (lost in a crash,
        the task is simply still waiting)."""
        now = self._reserving(conn, queue_name, consumer_id)
        if not self.is_sqlite:
            taken = self._take_pg(conn, queue_name, consumer_id, 1, now)
            return taken[0] if taken else None
        params = {"qn": queue_name, "cid": consumer_id, "ts": now}
        self._promote(conn, queue_name, now)
        while True:
            found = driver.fetch(conn, sql.TAKE, params)
            row = found[0] if found else None
            if row is None:
                return None
            lease = self._lease_of(conn, queue_name, consumer_id, row, now)
            if lease is not None:  # else dead-lettered: the next row takes its place
                return lease

    def _reserving(self, conn: Connection, queue_name: str, consumer_id: str) -> float:
        """The time of a take; reserving counts as a heartbeat, written at most every
        ``lease_timeout / 4``."""
        now = time.time()
        if self._beat_due(queue_name, consumer_id):
            self._beat(conn, queue_name, consumer_id, now)
        return now

    def _beat_due(self, queue_name: str, consumer_id: str) -> bool:
        last = self._beaten.get((queue_name, consumer_id))
        return last is None or time.monotonic() - last > self.lease_timeout / 4

    def _take_pg(self, conn: Connection, queue_name: str, consumer_id: str, count: int, now: float) -> list[Lease]:
        """PostgreSQL: up to ``count`` leases, in queue order, by ``TAKE_PG`` (one statement
        that also reads the next due time): due delayed tasks are promoted first (then it runs
        again), and a malformed row, dead-lettered, leaves its place to the next."""
        leases: list[Lease] = []
        promoted = False
        while len(leases) < count:
            params = {"qn": queue_name, "cid": consumer_id, "ts": now, "n": count - len(leases)}
            rows = driver.run_raw(conn, sql.TAKE_PG, params)
            next_due = rows[0].next_due
            if next_due is not None and next_due <= now and not promoted:
                self._promote(conn, queue_name, now)
                promoted = True  # once: a task due meanwhile waits for the next take
                continue
            self._next_due[queue_name] = next_due
            taken = _in_take_order(rows)
            if not taken:
                break
            for row in taken:
                lease = self._lease_of(conn, queue_name, consumer_id, row, now)
                if lease is not None:
                    leases.append(lease)
        return leases

    def _beat(self, conn: Connection, queue_name: str, consumer_id: str, now: float) -> None:
        conn.execute(self.dialect_sql(sql.BEAT), {"qn": queue_name, "cid": consumer_id, "ts": now})
        self._beaten[(queue_name, consumer_id)] = time.monotonic()

    def _bury(self, conn: Connection, queue_name: str, payload: str, reason: str, now: float) -> int:
        params = {"qn": queue_name, "reason": reason, "payload": payload, "ts": now}
        return int(conn.execute(sql.BURY, params).scalar_one())

    async def remove(self, queue_name: str, agent_id: UUID) -> Envelope | None:
        """Delete a waiting row by its agent id (``ax.cancel``). The payload is searched as
        text (cancelling is rare, so no column or index for it); the delete re-checks that
        the row is still waiting, so a consumer's take and this never both win."""
        return await self.run_write(self._remove, queue_name, agent_id)

    def _remove(self, conn: Connection, queue_name: str, agent_id: UUID) -> Envelope | None:
        env = self._remove_waiting(conn, queue_name, agent_id)
        if env is not None and env.key is not None:
            self._drop_key(conn, queue_name, env.key, agent_id)
        return env

    def _remove_waiting(self, conn: Connection, queue_name: str, agent_id: UUID) -> Envelope | None:
        parked = conn.execute(
            PK.delete().where(PK.c.queue_name == queue_name, PK.c.agent_id == str(agent_id))
            .returning(PK.c.payload)
        ).first()
        if parked is not None:
            return _envelope(parked.payload)
        for row in conn.execute(
            sa.select(DL.c.id, DL.c.payload).where(
                DL.c.queue_name == queue_name, DL.c.payload.contains(str(agent_id), autoescape=True)
            )
        ).all():
            env = _envelope(row.payload)
            if env is not None and env.agent_id == agent_id:
                conn.execute(DL.delete().where(DL.c.id == row.id))
                return env
        rows = conn.execute(
            sa.select(Q.c.id, Q.c.payload)
            .where(
                Q.c.queue_name == queue_name,
                Q.c.consumer_id.is_(None),
                Q.c.payload.contains(str(agent_id), autoescape=True),
            )
            .order_by(Q.c.id)
        ).all()
        for row in rows:
            env = _envelope(row.payload)
            if env is None or env.agent_id != agent_id:
                continue
            deleted = conn.execute(
                Q.delete().where(Q.c.id == row.id, Q.c.consumer_id.is_(None))
            ).rowcount
            return env if deleted else None
        return None

    # -- ack / release / heartbeat -------------------------------------------------------
    @staticmethod
    def _mine(lease: Lease) -> dict[str, Any]:
        """Parameters matching the row only while it is still this lease's."""
        row_id, attempts = lease.token
        return {"row_id": row_id, "cid": lease.consumer_id, "att": attempts}

    async def ack(self, lease: Lease) -> None:
        if lease.envelope.locks is not None:
            await self._lock_write(self._ack, lease)
        else:
            await self.run_write(self._ack, lease, durable=False)
        self._wake_moved()

    def _wake_moved(self) -> None:
        """After a commit: wake this process's consumers of queues a lock release refilled."""
        while self._moved:
            self.wake_local("queue", self._moved.pop())

    def _ack(self, conn: Connection, lease: Lease) -> None:
        # relaxed: an ack lost in a crash means one more delivery, which at-least-once allows
        acked = conn.execute(sql.ACK, self._mine(lease)).rowcount
        env = lease.envelope
        if acked and env.locks is not None:
            self._unlock(conn, lease.queue_name, str(env.agent_id))
        if acked and env.key is not None:
            self._drop_key(conn, lease.queue_name, env.key, env.agent_id)

    # -- locks (TaskLocks) and enqueue keys (EnqueueKeys) ---------------------------------
    async def acquire(self, lease: Lease) -> bool:
        return await self._lock_write(self._acquire, lease)

    async def _lock_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in a write transaction of its own on PostgreSQL (the batching
        writer would put other writes around it: row locks taken after the task-lock advisory
        lock in one process and before it in another deadlock), retried if PostgreSQL still
        picks it as a deadlock victim. SQLite has one writer at a time: the batch is fine."""
        if self.is_sqlite:
            return await self.run_write(fn, *args)

        def own() -> T:
            for attempt in range(5):
                try:
                    # not durable: lost in a crash, a lock and its lease go together
                    with self.write(durable=False) as conn:
                        return fn(conn, *args)
                except sa.exc.OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == 4:
                        raise
            raise AssertionError("unreachable")

        return await self.run(own)

    def _acquire(self, conn: Connection, lease: Lease) -> bool:
        env = lease.envelope
        locks = env.locks or {}
        queue_name, aid = lease.queue_name, str(env.agent_id)
        mine = self._mine(lease)
        row = conn.execute(
            sa.select(Q.c.id, Q.c.rank, Q.c.payload, Q.c.attempts, Q.c.enqueued_at)
            .where(Q.c.id == mine["row_id"], Q.c.consumer_id == mine["cid"], Q.c.attempts == mine["att"])
            .with_for_update()
        ).first()
        if row is None:
            return False  # no longer this lease's (reaped): nothing to run
        if not self.is_sqlite:
            _lock_keys(conn, queue_name, list(locks))
        cutoff = time.time() - self.lease_timeout
        live = sa.select(C.c.consumer_id).where(C.c.queue_name == queue_name, C.c.heartbeat_at >= cutoff)
        full = None
        for key, limit in locks.items():
            held = conn.execute(
                sa.select(sa.func.count()).select_from(LK).where(
                    LK.c.queue_name == queue_name, LK.c.lock_key == key, LK.c.agent_id != aid,
                    LK.c.consumer_id.in_(live),  # a holder whose consumer is gone holds nothing
                )
            ).scalar_one()
            if held >= limit:
                full = key
                break
        if full is None:
            conn.execute(LK.delete().where(LK.c.queue_name == queue_name, LK.c.agent_id == aid))
            conn.execute(
                LK.delete().where(
                    LK.c.queue_name == queue_name, LK.c.lock_key.in_(list(locks)),
                    LK.c.consumer_id.not_in(live),
                )
            )
            conn.execute(LK.insert(), [
                {"queue_name": queue_name, "lock_key": key, "agent_id": aid, "consumer_id": lease.consumer_id}
                for key in locks
            ])
            return True
        conn.execute(sql.DELETE_TASK, {"row_id": row.id})
        conn.execute(PK.insert().values(
            queue_name=queue_name, lock_key=full, agent_id=aid, rank=row.rank,
            payload=row.payload, attempts=row.attempts, enqueued_at=row.enqueued_at,
        ))
        return False

    async def unlock(self, lease: Lease) -> None:
        await self._lock_write(self._unlock, lease.queue_name, str(lease.envelope.agent_id))
        self._wake_moved()

    async def parked(self, queue_name: str) -> int:
        def read() -> int:
            with self.read() as conn:
                return int(conn.execute(
                    sa.select(sa.func.count()).select_from(PK).where(PK.c.queue_name == queue_name)
                ).scalar_one())

        return await self.run(read)

    def _unlock(self, conn: Connection, queue_name: str, aid: str) -> None:
        """Inside a write: release the locks ``aid`` holds, and move the oldest task parked on
        each back to the front of the queue."""
        held = conn.execute(
            sa.select(LK.c.lock_key).where(LK.c.queue_name == queue_name, LK.c.agent_id == aid)
        ).scalars().all()
        if not held:
            return  # it holds no lock (most reaped tasks): no advisory lock taken
        if not self.is_sqlite:
            _lock_keys(conn, queue_name, held)  # only this task's own lease adds to them
        keys = conn.execute(
            LK.delete().where(LK.c.queue_name == queue_name, LK.c.agent_id == aid).returning(LK.c.lock_key)
        ).scalars().all()
        moved = False
        for key in keys:
            row = conn.execute(
                sa.select(PK).where(PK.c.queue_name == queue_name, PK.c.lock_key == key)
                .order_by(PK.c.id).limit(1)
            ).first()
            if row is None:
                continue
            conn.execute(PK.delete().where(PK.c.id == row.id))
            conn.execute(Q.insert().values(
                queue_name=queue_name, rank=row.rank, front=time.time_ns(), payload=row.payload,
                attempts=row.attempts, enqueued_at=row.enqueued_at,
            ))
            moved = True
        if moved:
            self.notify(conn, "queue", queue_name)
            self._moved.add(queue_name)

    def _drop_key(self, conn: Connection, queue_name: str, key: str, agent_id: UUID) -> None:
        conn.execute(EK.delete().where(EK.c.queue_name == queue_name, EK.c.key == key, EK.c.agent_id == str(agent_id)))

    async def claim_key(
        self, queue_name: str, key: str, agent_id: UUID, replace: UUID | None = None
    ) -> UUID | None:
        return await self._lock_write(self._claim_key, queue_name, key, agent_id, replace)

    def _claim_key(
        self, conn: Connection, queue_name: str, key: str, agent_id: UUID, replace: UUID | None
    ) -> UUID | None:
        if not self.is_sqlite:
            _lock_keys(conn, queue_name, ["enqueue-key:" + key])
        holder = conn.execute(
            sa.select(EK.c.agent_id).where(EK.c.queue_name == queue_name, EK.c.key == key)
        ).scalar_one_or_none()
        if holder is None:
            conn.execute(EK.insert().values(queue_name=queue_name, key=key, agent_id=str(agent_id)))
            return None
        if replace is not None and holder == str(replace):
            conn.execute(
                EK.update().where(EK.c.queue_name == queue_name, EK.c.key == key)
                .values(agent_id=str(agent_id))
            )
            return None
        return UUID(holder)

    async def release_key(self, queue_name: str, key: str, agent_id: UUID) -> None:
        await self.run_write(self._drop_key, queue_name, key, agent_id)

    async def release(self, lease: Lease) -> None:
        if lease.envelope.locks is not None:
            released = await self._lock_write(self._release, lease)
        else:
            released = await self.run_write(self._release, lease, durable=False)
        if released:
            self.wake_local("queue", lease.queue_name)
        self._wake_moved()

    def _release(self, conn: Connection, lease: Lease) -> bool:
        params = {**self._mine(lease), "front": time.time_ns()}
        if not self.is_sqlite:
            params.update(self.note("queue", lease.queue_name))
        released = conn.execute(self.dialect_sql(sql.RELEASE), params).first() is not None
        if released and lease.envelope.locks is not None:
            self._unlock(conn, lease.queue_name, str(lease.envelope.agent_id))
        return released

    async def heartbeat(self, queue_name: str, consumer_id: str) -> None:
        await self.run_write(self._heartbeat, queue_name, consumer_id, durable=False)

    def _heartbeat(self, conn: Connection, queue_name: str, consumer_id: str) -> None:
        self._beat(conn, queue_name, consumer_id, time.time())

    # -- reap ----------------------------------------------------------------------------
    async def reap(self, queue_name: str) -> ReapReport:
        report = await self._reaped(queue_name, None)
        try:
            await self.vacuum()
        except Exception as exc:  # housekeeping: the reap's report must still reach the pool
            log.warning("VACUUM of the queue table %s failed: %s", Q.name, describe(exc))
        return report

    async def vacuum(self) -> bool:
        """PostgreSQL: ``VACUUM`` the queue table when :data:`VACUUM_DEAD` or more of its rows
        are dead (the server's statistics say so); True when it ran. ``SKIP_LOCKED``: another
        pool's (or autovacuum's) VACUUM of the table already in progress is left to finish.
        Where the role may not vacuum the table, the server skips it with a notice."""
        if not self.pg_ready:
            return False
        rows = await self.pg_execute(sql.QUEUE_DEAD_ROWS_PG, {"table": f'"{Q.name}"'})
        if not rows or (rows[0].dead or 0) < VACUUM_DEAD:
            return False
        assert self._pg is not None
        async with self._pg.connection() as conn:
            await conn.execute(sql.VACUUM_QUEUE_PG, prepare=False)  # a utility statement
        return True

    async def in_flight(self, queue_name: str, consumer_id: str) -> list[Envelope]:
        def read() -> list[Envelope]:
            with self.read() as conn:
                rows = conn.execute(
                    sa.select(Q.c.payload, Q.c.attempts)
                    .where(Q.c.queue_name == queue_name, Q.c.consumer_id == consumer_id)
                    .order_by(Q.c.id)
                ).all()
            found = []
            for row in rows:
                parsed = _envelope(row.payload)
                if parsed is not None:
                    found.append(parsed.model_copy(update={"attempts": row.attempts}))
            return found

        return await self.run(read)

    async def reap_consumer(self, queue_name: str, consumer_id: str) -> ReapReport:
        """Hand out again the tasks of one consumer known to be dead, whatever its last
        heartbeat (the pool calls it when a worker process dies), with ``reap``'s rules."""
        return await self._reaped(queue_name, consumer_id)

    async def _reaped(self, queue_name: str, consumer_id: str | None) -> ReapReport:
        if consumer_id is not None:
            self._beaten.pop((queue_name, consumer_id), None)
        report = await self.run_write(
            self._reap, queue_name, consumer_id, self.lease_timeout, self.max_attempts
        )
        if report.requeued:
            self.wake_local("queue", queue_name)
        self._wake_moved()
        return report

    def _reap(
        self,
        conn: Connection,
        queue_name: str,
        consumer_id: str | None,
        lease_timeout: float,
        max_attempts: int,
    ) -> ReapReport:
        now = time.time()
        cutoff = now - lease_timeout
        if consumer_id is None:
            stale = sa.select(C.c.consumer_id).where(
                C.c.queue_name == queue_name, C.c.heartbeat_at < cutoff
            )
            known = sa.select(C.c.consumer_id).where(C.c.queue_name == queue_name)
            expired: Any = sa.or_(
                Q.c.consumer_id.in_(stale),
                # a lease whose consumer row is gone: judge it by its own age
                sa.and_(Q.c.consumer_id.not_in(known), Q.c.leased_at < cutoff),
            )
            gone: Any = sa.and_(C.c.queue_name == queue_name, C.c.heartbeat_at < cutoff)
        else:
            expired = Q.c.consumer_id == consumer_id
            gone = sa.and_(C.c.queue_name == queue_name, C.c.consumer_id == consumer_id)
        if not self.is_sqlite:  # one reaper per queue at a time
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(queue_name))))
        rows = conn.execute(
            sa.select(Q.c.id, Q.c.payload, Q.c.attempts)
            .where(Q.c.queue_name == queue_name, Q.c.consumer_id.is_not(None), expired)
            .order_by(Q.c.id)
            .with_for_update()  # an ack racing this reap waits, then finds the row moved
        ).all()
        conn.execute(C.delete().where(gone))
        requeued: list[Envelope] = []
        dead: list[DeadLetter] = []
        for row in rows:
            parsed = _envelope(row.payload)
            if parsed is None:  # leased by a consumer that died before burying it
                conn.execute(sql.DELETE_TASK, {"row_id": row.id})
                reason = "malformed payload: not a task envelope"
                dl_id = self._bury(conn, queue_name, row.payload, reason, now)
                dead.append(DeadLetter(str(dl_id), queue_name, reason, row.payload, None, now))
                continue
            env = parsed.model_copy(update={"attempts": row.attempts})
            self._unlock(conn, queue_name, str(env.agent_id))
            if env.key is not None and row.attempts + 1 >= max_attempts:
                self._drop_key(conn, queue_name, env.key, env.agent_id)
            if row.attempts + 1 >= max_attempts:
                reason = (
                    f"lease expired {row.attempts + 1} times (max_attempts={max_attempts}): "
                    f"the worker running it stopped heartbeating"
                )
                payload = env.model_dump_json()
                conn.execute(sql.DELETE_TASK, {"row_id": row.id})
                dl_id = self._bury(conn, queue_name, payload, reason, now)
                dead.append(DeadLetter(str(dl_id), queue_name, reason, payload, env, now))
            else:
                conn.execute(
                    Q.update()
                    .where(Q.c.id == row.id)
                    .values(
                        consumer_id=None,
                        leased_at=None,
                        attempts=row.attempts + 1,
                        front=time.time_ns(),
                    )
                )
                requeued.append(env.next_attempt())
        if requeued:
            self.notify(conn, "queue", queue_name)
        return ReapReport(tuple(requeued), tuple(dead))

    # -- inspection ----------------------------------------------------------------------
    async def length(self, queue_name: str) -> int:
        return await self.run(self._length, queue_name)

    def _length(self, queue_name: str) -> int:
        with self.read() as conn:
            return int(conn.execute(sql.LENGTH, {"qn": queue_name}).scalar_one())

    async def stats(self, queue_name: str) -> QueueStats:
        return await self.run(self._stats, queue_name)

    def _stats(self, queue_name: str) -> QueueStats:
        waiting = sa.case((Q.c.consumer_id.is_(None), Q.c.rank), else_=-1)
        with self.read() as conn:
            counts: dict[int, int] = {
                int(kind): int(n)
                for kind, n in conn.execute(
                    sa.select(waiting, sa.func.count())
                    .where(Q.c.queue_name == queue_name)
                    .group_by(waiting)
                )
            }
            dead = conn.execute(
                sa.select(sa.func.count()).where(D.c.queue_name == queue_name)
            ).scalar_one()
            beats = conn.execute(
                sa.select(C.c.consumer_id, C.c.heartbeat_at).where(C.c.queue_name == queue_name)
            )
            now = time.time()
            consumers = {cid: max(0.0, now - beat) for cid, beat in beats}
        return QueueStats(
            queue_name,
            high=int(counts.get(RANK_HIGH, 0)),
            low=int(counts.get(RANK_LOW, 0)),
            in_flight=int(counts.get(-1, 0)),
            dead=int(dead),
            consumers=consumers,
        )

    # -- dead letters --------------------------------------------------------------------
    async def dead_letters(self, queue_name: str, limit: int = 100) -> list[DeadLetter]:
        return await self.run(self._dead_letters, queue_name, limit)

    def _dead_letters(self, queue_name: str, limit: int) -> list[DeadLetter]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(D).where(D.c.queue_name == queue_name).order_by(D.c.id).limit(limit)
            ).all()
        return [
            DeadLetter(str(r.id), r.queue_name, r.reason, r.payload, _envelope(r.payload), r.failed_at)
            for r in rows
        ]

    async def requeue_dead(self, queue_name: str, ids: Sequence[str] | None = None) -> int:
        count = await self.run_write(self._requeue_dead, queue_name, ids)
        if count:
            self.wake_local("queue", queue_name)
        return count

    def _requeue_dead(self, conn: Connection, queue_name: str, ids: Sequence[str] | None) -> int:
        query = sa.select(D.c.id, D.c.payload).where(D.c.queue_name == queue_name)
        if ids is not None:
            wanted = [int(i) for i in ids if str(i).isdigit()]
            query = query.where(D.c.id.in_(wanted))
        rows = conn.execute(query.order_by(D.c.id)).all()
        moved: list[int] = []
        for row in rows:
            env = _envelope(row.payload)
            if env is None:  # not a task: nothing to run, it stays for inspection
                continue
            env = env.model_copy(update={"attempts": 0})
            conn.execute(
                Q.insert().values(
                    queue_name=queue_name,
                    rank=_rank(env.priority),
                    front=time.time_ns(),  # back at the front, as the reference does
                    payload=env.model_dump_json(),
                    attempts=0,
                    enqueued_at=time.time(),
                )
            )
            moved.append(row.id)
        if moved:
            conn.execute(D.delete().where(D.c.id.in_(moved)))
            self.notify(conn, "queue", queue_name)
        return len(moved)

    async def purge_dead(self, queue_name: str) -> int:
        return await self.run_write(self._purge_dead, queue_name)

    def _purge_dead(self, conn: Connection, queue_name: str) -> int:
        return int(conn.execute(D.delete().where(D.c.queue_name == queue_name)).rowcount)

    async def close(self) -> None:
        """This loop's async push connections; the engine is the process's, shared with the
        activity store."""
        if self._pg is not None:
            await self._pg.close()


def _in_take_order(rows: Sequence[Any]) -> list[Any]:
    """Taken rows (``id`` NULL: none) in the queue's order: RETURNING gives no order."""
    return sorted((r for r in rows if r.id is not None), key=lambda r: (r.rank, -r.front, r.id))


class _Recheck:
    """A take found no task, but learnt of a delayed one due sooner than the wait in progress."""


def ends_more(lease: Lease) -> bool:
    """Whether acknowledging ``lease`` also releases locks or an enqueue key."""
    return lease.envelope.locks is not None or lease.envelope.key is not None


def _by_ending(leases: Sequence[Lease]) -> tuple[list[Lease], list[Lease]]:
    """``leases`` split: those whose ack deletes their row only, and those that
    :func:`ends_more`."""
    plain: list[Lease] = []
    whole: list[Lease] = []
    for lease in leases:
        (whole if ends_more(lease) else plain).append(lease)
    return plain, whole


def _envelope(payload: str) -> Envelope | None:
    try:
        return Envelope.model_validate_json(payload)
    except ValidationError:
        return None
