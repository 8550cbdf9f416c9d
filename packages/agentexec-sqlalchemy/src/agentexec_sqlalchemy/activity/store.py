"""``SQLActivityStore``: the activity records behind ``ax.activity``, on SQLite or PostgreSQL.

Each call is one transaction of a few Core statements (see :mod:`agentexec_sqlalchemy.activity.writes`
for how concurrent writers to one activity are ordered, and :mod:`agentexec_sqlalchemy.activity.queries`
for the reads).

The async twins run the same sync code in a worker thread (``anyio.to_thread``): one code path
for both databases, the thread hop costs microseconds next to a database round trip, and a
cancelled caller still lets the transaction commit or roll back whole. Their writes to a SQLite
file run on the transport's batching writer instead (``SQLActivityStore._batched``), in one
transaction with the queue's, results' and events' writes of the moment.
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

import anyio.to_thread
import sqlalchemy as sa
from agentexec.activity.metadata import validate_metadata, validate_metadata_filter
from agentexec.activity.schemas import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
    ActivityLogSchema,
)
from agentexec.activity.status import Status
from agentexec.backends import (
    ActivityChange,
    ActivityItem,
    Finish,
    Lease,
    LogEntry,
    QueueBackend,
    ResultBackend,
    UnknownActivityError,
    activity_item_metadata,
    validate_percentage,
)
from agentexec.backends import as_uuid as _uuid
from sqlalchemy import exc, select
from sqlalchemy.engine import Connection, Engine

from agentexec_sqlalchemy import driver, schema_once
from agentexec_sqlalchemy.activity import queries, writes
from agentexec_sqlalchemy.activity.models import (
    ACTIVITY_LOG_TABLE,
    ACTIVITY_TABLE,
    Activity,
    ActivityLog,
)
from agentexec_sqlalchemy.activity.pg_writes import PgWriter
from agentexec_sqlalchemy.activity.unit_of_work import UnitOfWork
from agentexec_sqlalchemy.engine import get_engine
from agentexec_sqlalchemy.errors import (
    MissingTablesError,
    SchemaOutdatedError,
    explain_missing_tables,
    is_transient,
    is_unique_violation,
)
from agentexec_sqlalchemy.types import utcnow

if TYPE_CHECKING:
    from agentexec_sqlalchemy.transport.queue import SQLQueue
    from agentexec_sqlalchemy.transport.results import SQLResults

#: the start of a runner's token-usage line (``agentexec.runners.TokenUsage.PREFIX``)
USAGE_PREFIX = "Token usage:"

T = TypeVar("T")

CANCELED_MESSAGE = "Canceled."
#: bound parameters per IN (...) list, well under SQLite's and PostgreSQL's limits
_CHUNK = 500
_TICK = timedelta(microseconds=1)
_ActivityRow = tuple[UUID, str, str, "dict[str, Any] | None"]


class NotJoint(Exception):
    """A batch the joint finish does not take: the worker writes it step by step."""


def _with_uuids(entries: Sequence[LogEntry]) -> builtins.list[LogEntry]:
    """``entries`` with every ``agent_id`` a UUID (psycopg binds them as ``uuid[]``)."""
    return [e if isinstance(e.agent_id, UUID) else replace(e, agent_id=_uuid(e.agent_id)) for e in entries]


def _checked(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if metadata is None else validate_metadata(metadata)


def _chunks(items: Sequence[T]) -> Iterable[builtins.list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield builtins.list(items[start : start + _CHUNK])


class SQLActivityStore:
    """The :class:`agentexec.backends.ActivityStore` on SQLAlchemy (``source``: a URL or an Engine).

    The tables must exist: ``ax.Base.metadata.create_all(engine)``. A call on a database
    without them raises :class:`~agentexec_sqlalchemy.errors.MissingTablesError`, saying so.
    """

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """:class:`agentexec.backends.TransientErrors`: the database unreachable or unable to
        write for now (a worker waits), as opposed to refusing the data."""
        return is_transient(exc)

    def __init__(self, source: str | Engine) -> None:
        self.engine = get_engine(source)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self._uow = UnitOfWork(self.engine)
        #: an in-memory SQLite database is invisible to other processes
        self.cross_process = not self._uow.in_memory
        #: PostgreSQL through psycopg: the hot async writes skip the thread (see pg_writes)
        self._pg = (
            PgWriter(self.engine.url)
            if self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg"
            else None
        )

    def __repr__(self) -> str:
        return f"SQLActivityStore({self.url!r})"

    def rebind_global_session(self) -> None:
        """When the process-global session (``set_global_session``) is bound to another
        database, bind it to this store's engine instead. ``ax.Pool(engine=...)`` calls it, as
        the original agentexec's ``Pool`` binds the global session to the engine it is given;
        without it, ``ax.activity`` kept writing to the earlier engine. A process that never
        set a global session keeps none (this store uses its own engine)."""
        from agentexec_sqlalchemy.activity import session as global_session

        bound = global_session.global_engine()
        if bound is not None and bound is not self.engine:
            global_session.set_global_session(self.engine)

    def ensure_schema(self) -> None:
        """Create the activity tables that are missing, and upgrade them when an earlier
        release made them (the embedded default calls this; with your own database, prefer
        ``ax.Base.metadata.create_all(engine)`` and ``agentexec db upgrade``). Once per
        database, for this process and the workers it forks (:mod:`.schema_once`)."""
        schema_once.once(schema_once.database_key(self.engine, "activity"), self._create_tables)

    def _create_tables(self) -> None:
        from agentexec_sqlalchemy import migrations
        from agentexec_sqlalchemy.activity.models import Activity, ActivityLog, ActivityMetadataPair

        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x61676578)))
            Activity.metadata.create_all(conn, tables=[
                Activity.__table__, ActivityLog.__table__, ActivityMetadataPair,  # type: ignore[list-item]
            ])
            if migrations.recorded(conn) in (None, *migrations.REVISIONS[:-1]):
                migrations.upgrade(conn)

    def missing_tables(self) -> builtins.list[str]:
        """The activity tables that do not exist yet (``agentexec run`` refuses to start
        without them). Connects: raises the driver's error when the database is down."""
        inspector = sa.inspect(self.engine)
        names = [ACTIVITY_TABLE, ACTIVITY_LOG_TABLE]
        return [name for name in names if not inspector.has_table(name)]

    def schema_problem(self) -> str | None:
        """Why this database's agentexec schema is not this release's, with the command that
        upgrades it (``agentexec run`` refuses to start then), or ``None``. Connects."""
        from agentexec_sqlalchemy import migrations

        return migrations.problem(self.engine)

    async def afind_prefix(self, prefix: str, limit: int = 2) -> builtins.list[UUID]:
        """Up to ``limit`` agent ids that start with ``prefix`` (hex digits, dashes as printed),
        for the CLI's short ids."""
        text = prefix.lower()

        def find(conn: Connection) -> builtins.list[UUID]:
            column: sa.ColumnElement[str]
            if conn.dialect.name == "postgresql":  # a native uuid: compare its text form
                column = sa.cast(Activity.agent_id, sa.String)
                pattern = text
            else:  # stored as 32 hex digits
                column = sa.type_coerce(Activity.agent_id, sa.String)
                pattern = text.replace("-", "")
            rows = conn.execute(
                select(Activity.agent_id).where(column.like(pattern + "%")).limit(limit)
            ).scalars()
            return builtins.list(rows)

        return await self._in_thread(find, write=False)

    # -- sync: the spec's API --------------------------------------------------------------
    def create(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        session: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID:
        agent_id = _uuid(agent_id) if agent_id is not None else uuid.uuid4()
        metadata = validate_metadata(metadata)
        with self._uow(session, write=True) as conn:
            self._insert_activities(conn, [(agent_id, task_name, message, metadata)])
        return agent_id

    def append(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
        session: Any = None,
    ) -> None:
        # checked before the transaction: a caller's session is left untouched
        validate_percentage(percentage)
        entry = LogEntry(_uuid(agent_id), message, Status(status) if status is not None else None, percentage)
        with self._uow(session, write=True) as conn:
            self._append_entries(conn, [entry])

    def cancel_pending(self, session: Any = None) -> int:
        with self._uow(session, write=True) as conn:
            return self._cancel_pending(conn)

    def list(
        self,
        session: Any = None,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ActivityListSchema:
        queries.check_page(page, page_size)
        found = validate_metadata_filter(metadata)
        with self._uow(session, write=False) as conn:
            return self._list(conn, page, page_size, status, found)

    def detail(
        self, agent_id: UUID, session: Any = None, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None:
        found = validate_metadata_filter(metadata)
        with self._uow(session, write=False) as conn:
            return self._detail(conn, _uuid(agent_id), found)

    def count_active(self, session: Any = None, metadata: dict[str, Any] | None = None) -> int:
        """QUEUED or RUNNING activities (matching the ``metadata`` filter, when given)."""
        found = validate_metadata_filter(metadata)
        with self._uow(session, write=False) as conn:
            return self._count_active(conn, found)

    # -- async twins -----------------------------------------------------------------------
    async def acreate(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID:
        agent_id = _uuid(agent_id) if agent_id is not None else uuid.uuid4()
        metadata = validate_metadata(metadata)
        if self._pg is not None:
            await self._fast(self._pg.create([(agent_id, task_name, message, metadata)]))
            return agent_id
        rows: builtins.list[_ActivityRow] = [(agent_id, task_name, message, metadata)]
        await self._in_thread(lambda conn: self._insert_activities(conn, rows))
        return agent_id

    async def acreate_many(self, items: Sequence[ActivityItem]) -> None:
        rows: builtins.list[_ActivityRow] = [
            (_uuid(item[0]), item[1], item[2], _checked(activity_item_metadata(item)))
            for item in items
        ]
        if not rows:
            return
        if self._pg is not None:
            await self._fast(self._pg.create(rows))
            return
        await self._in_thread(lambda conn: self._insert_activities(conn, rows))

    async def aappend(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
    ) -> None:
        await self.aappend_many([LogEntry(_uuid(agent_id), message, status, percentage)])

    async def aappend_many(self, entries: Sequence[LogEntry]) -> None:
        batch = builtins.list(entries)
        for entry in batch:
            validate_percentage(entry.percentage)
        if not batch:
            return
        if self._pg is not None:
            await self._fast(self._pg.append(_with_uuids(batch)))
            return
        await self._in_thread(lambda conn: self._append_entries(conn, batch))

    async def arequeue(self, agent_id: UUID, message: str) -> bool:
        """:class:`agentexec.backends.RequeueLine`: one transaction, the status checked by the
        UPDATE that locks the activity."""
        return await self._in_thread(lambda conn: self._requeue(conn, _uuid(agent_id), message))

    def _requeue(self, conn: Connection, agent_id: UUID, message: str) -> bool:
        locked = conn.execute(writes.REQUEUE_ONE, {"p_agent_id": agent_id, "p_now": utcnow()}).one_or_none()
        if locked is None:
            return False
        conn.execute(writes.INSERT_ONE, {
            "p_activity_id": locked.id, "p_message": message, "p_status": Status.QUEUED,
            "p_percentage": None, "p_created_at": locked.updated_at,
        })
        return True

    async def adetail(
        self, agent_id: UUID, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None:
        found = validate_metadata_filter(metadata)
        return await self._in_thread(
            lambda conn: self._detail(conn, _uuid(agent_id), found), write=False
        )

    async def alist(
        self,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        task_name: str | None = None,
    ) -> ActivityListSchema:
        """``task_name``: only that task's activities (an extra of the SQL and memory stores)."""
        queries.check_page(page, page_size)
        found = validate_metadata_filter(metadata)
        return await self._in_thread(
            lambda conn: self._list(conn, page, page_size, status, found, task_name), write=False
        )

    async def acount_active(self, metadata: dict[str, Any] | None = None) -> int:
        found = validate_metadata_filter(metadata)
        return await self._in_thread(lambda conn: self._count_active(conn, found), write=False)

    async def ausage_messages(
        self, task_name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> builtins.list[str]:
        """The token-usage lines of the matching activities, in one query (see
        ``ax.activity.usage``)."""
        found = validate_metadata_filter(metadata)

        def read(conn: Connection) -> builtins.list[str]:
            conditions = [ActivityLog.message.startswith(USAGE_PREFIX, autoescape=True)]
            if task_name is not None:
                conditions.append(Activity.agent_type == task_name)
            conditions += queries.filters(None, found, conn.dialect)
            stmt = (
                select(ActivityLog.message)
                .join(Activity, ActivityLog.activity_id == Activity.id)
                .where(*conditions)
            )
            return [str(message) for message in conn.scalars(stmt)]

        return await self._in_thread(read, write=False)

    async def acancel_pending(self) -> int:
        return await self._in_thread(self._cancel_pending)

    async def achanges(
        self, after: int | None, limit: int = 500, also: Sequence[int] = ()
    ) -> tuple[int, builtins.list[ActivityChange]]:
        return await self._in_thread(lambda conn: self._changes(conn, after, limit, also), write=False)

    async def aclose(self) -> None:
        """Close this event loop's async connections (the engine is shared per URL:
        ``engine.get_engine``)."""
        if self._pg is not None:
            await self._pg.close()

    def joint_finish(self, results: ResultBackend, queue: QueueBackend) -> Finish | None:
        """:class:`agentexec.backends.JointFinish`, where the transport (``results``,
        ``queue``) is this store's database: a worker's lines, outcomes and acks in one commit
        instead of three (and one wake-up of the worker's loop instead of three). On a SQLite
        file, ONE savepoint of the batching writer's transaction (:meth:`_batched`); on
        PostgreSQL through psycopg, ONE statement (:meth:`_pg_finish`). Elsewhere ``None``."""
        from agentexec_sqlalchemy.transport.queue import SQLQueue
        from agentexec_sqlalchemy.transport.results import SQLResults
        from agentexec_sqlalchemy.transport.sqlite_lock import database_key as writer_key

        if not isinstance(results, SQLResults) or not isinstance(queue, SQLQueue):
            return None
        if self._pg is not None:
            return self._pg_finish(results, queue) if self._pg.shares(results._pg) and self._pg.shares(queue._pg) else None
        engine = self._uow.engine_for_background()
        if engine.dialect.name != "sqlite" or schema_once.database_key(engine, "") is None:
            return None  # PostgreSQL, or an in-memory database: no batching writer
        key = writer_key(engine)
        if writer_key(results.engine) != key or writer_key(queue.engine) != key:
            return None

        async def finish(
            entries: Sequence[LogEntry], outcomes: Sequence[tuple[UUID, bytes]], ttl: int,
            acks: Sequence[Lease],
        ) -> None:
            lines, leases = builtins.list(entries), builtins.list(acks)
            for entry in lines:
                validate_percentage(entry.percentage)
            now = self._uow.engine_for_background()
            if writer_key(now) != key:  # the global session was bound elsewhere meanwhile
                raise RuntimeError("the activity store no longer writes to its transport's database")
            rows = results.outcome_rows(outcomes)

            def call(conn: Connection) -> None:
                if lines:
                    self._append_entries(conn, lines)
                if rows:
                    results._set_rows(conn, rows, ttl)
                if leases:
                    queue._ack_many(conn, leases)

            await self._batched(now, call)
            results.woken(rows)
            queue._wake_moved()  # a lock its acks released refilled a queue

        return finish

    def _pg_finish(self, results: SQLResults, queue: SQLQueue) -> Finish:
        """The joint finish on PostgreSQL: lines, outcomes and acks in ONE autocommit statement
        (``pg_writes.FINISH``). A batch it does not take raises :class:`NotJoint` before
        anything is sent (the worker then writes it step by step): a line without a status, a
        lease whose ack also releases locks or a key (those take advisory locks in a
        transaction of their own), or tables not made yet."""
        from agentexec_sqlalchemy.transport.queue import ends_more

        assert self._pg is not None
        pg = self._pg

        async def finish(
            entries: Sequence[LogEntry], outcomes: Sequence[tuple[UUID, bytes]], ttl: int,
            acks: Sequence[Lease],
        ) -> None:
            lines = _with_uuids(entries)
            for entry in lines:
                validate_percentage(entry.percentage)
            if not outcomes and not acks:
                if lines:
                    await self._fast(pg.append(lines))
                return
            if not lines or any(e.status is None for e in lines):
                raise NotJoint("a line without a status, or no line")
            if any(ends_more(lease) for lease in acks):
                raise NotJoint("an ack that releases locks or an enqueue key")
            if not (results.pg_ready and queue.pg_ready):
                raise NotJoint("the transport's tables are not made yet")
            rows = results.outcome_rows(outcomes)
            if any(purge for _, _, purge in rows):
                await results.purge_expired()
            stored = results._upsert_params([(key, data) for key, data, _ in rows], time.time() + ttl, notify=True)
            await self._fast(pg.finish(lines, stored, queue._acks(acks)))
            results.woken(rows)

        return finish

    # -- internals -------------------------------------------------------------------------
    async def _fast(self, write: Awaitable[None]) -> None:
        import psycopg

        try:
            await write
        except psycopg.errors.UndefinedTable as error:
            raise MissingTablesError(self.engine) from error
        except psycopg.errors.UndefinedColumn as error:
            raise SchemaOutdatedError(self.engine) from error

    async def _in_thread(self, call: Callable[[Connection], T], *, write: bool = True) -> T:
        """``call`` in a worker thread, on a connection of its own (never a thread's global
        session), one transaction. A write to a SQLite file goes to the process's batching
        writer instead (:meth:`_batched`)."""
        engine = self._uow.engine_for_background()
        # a SQLite file (one other connections can name: not in-memory) has a batching writer
        if write and engine.dialect.name == "sqlite" and schema_once.database_key(engine, "") is not None:
            return await self._batched(engine, call)

        def run() -> T:
            with self._uow.own(engine, write=write) as conn:
                return call(conn)

        return await anyio.to_thread.run_sync(run)

    async def _batched(self, engine: Engine, call: Callable[[Connection], T]) -> T:
        """``call`` on the process's batching writer of this SQLite file (:mod:`agentexec_sqlalchemy.transport.batching`),
        the one the queue, results and events write through: a worker's lines commit in the
        same transactions as its leases, outcomes and acks, on one connection, instead of a
        second connection contending for SQLite's single write lock (a collision sleeps in
        the busy handler) and committing on its own.

        ``call`` runs inside a savepoint: one that raises anything but a transient error (an
        unknown activity, data refused, missing tables) is undone alone, and its caller gets
        the error, while the batch's other writes commit. A transient error (locked, disk full,
        I/O) fails the whole batch, which its callers wait out as before."""
        from agentexec_sqlalchemy.transport.batching import get_writer

        def op(conn: Connection) -> tuple[bool, Any]:
            # the savepoint on the driver's cursor: SQLAlchemy's begin_nested() costs several
            # times the statements themselves, and the writer's transaction is SQLite's own
            # (BEGIN IMMEDIATE on the driver) anyway
            raw = driver.raw(conn)
            raw.execute("SAVEPOINT agentexec_activity")
            try:
                with explain_missing_tables(engine):
                    value = call(conn)
            except Exception as error:
                if is_transient(error):
                    raise  # the writer rolls the whole transaction back
                raw.execute("ROLLBACK TO agentexec_activity")
                raw.execute("RELEASE agentexec_activity")
                return False, error
            raw.execute("RELEASE agentexec_activity")
            return True, value

        fut = get_writer(engine).submit(op)
        # the write happens even if the caller is cancelled meanwhile (as a thread's would):
        # wait for it, so a cancelled caller still sees the transaction commit or roll back whole
        with anyio.CancelScope(shield=True):
            ok, value = await fut
        if not ok:
            raise value
        return cast(T, value)

    # -- the calls, inside one transaction on ``conn`` ---------------------------------------
    def _cancel_pending(self, conn: Connection) -> int:
        locked = conn.execute(writes.LOCK_PENDING, {"p_now": utcnow()}).all()
        if locked:
            conn.execute(writes.INSERT_LOG, [
                {"activity_id": row.id, "message": CANCELED_MESSAGE, "status": Status.CANCELED,
                 "percentage": None, "created_at": row.updated_at}
                for row in locked
            ])
        return len(locked)

    def _list(
        self,
        conn: Connection,
        page: int,
        page_size: int,
        status: Status | None,
        metadata: dict[str, Any] | None,
        task_name: str | None = None,
    ) -> ActivityListSchema:
        selected = queries.selection(
            metadata, conn.dialect, *queries.filters(status, None, conn.dialect, task_name)
        )
        rows = conn.execute(queries.list_page(page, page_size, selected)).all()
        if rows:
            total = int(rows[0].total)
        elif page == 1:
            total = 0
        else:  # past the last page: the total still counts
            total = int(conn.scalar(queries.count_selected(selected)) or 0)
        items = [
            ActivityListItemSchema(
                agent_id=row.agent_id,
                agent_type=row.agent_type,
                created_at=row.created_at,
                updated_at=row.updated_at,
                status=row.status if row.status is not None else Status.QUEUED,
                latest_log=row.latest_log,
                latest_percentage=row.latest_percentage,
            ).with_metadata(row.activity_metadata)
            for row in rows
        ]
        return ActivityListSchema(
            items=items,
            total=total,
            page=page,
            page_size=page_size,
            pages=ActivityListSchema.page_count(total, page_size),
        )

    def _changes(
        self, conn: Connection, after: int | None, limit: int, also: Sequence[int]
    ) -> tuple[int, builtins.list[ActivityChange]]:
        log = ActivityLog
        top = int(conn.scalar(select(sa.func.max(log.id))) or 0)
        if after is None:
            return top, []
        wanted = log.id > after
        if also:
            wanted = sa.or_(wanted, log.id.in_(builtins.list(also)[:_CHUNK]))
        rows = conn.execute(
            select(
                log.id, Activity.agent_id, Activity.agent_type,
                Activity.metadata_.label("activity_metadata"), log.message, log.status,
                log.percentage, log.created_at,
            )
            .join(Activity, log.activity_id == Activity.id)
            .where(wanted)
            .order_by(log.id)
            .limit(limit)
        ).all()
        changes = [
            ActivityChange(
                int(row.id), row.agent_id, row.agent_type, row.message, Status(row.status),
                row.percentage, row.created_at,
                None if row.activity_metadata is None else dict(row.activity_metadata),
            )
            for row in rows
        ]
        return max(top, after), changes

    def _count_active(self, conn: Connection, metadata: dict[str, Any] | None) -> int:
        selected = queries.selection(metadata, conn.dialect, queries.is_pending())
        return int(conn.scalar(queries.count_selected(selected)) or 0)

    def _detail(
        self, conn: Connection, agent_id: UUID, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None:
        log = ActivityLog
        stmt = (
            select(
                Activity.agent_id, Activity.agent_type, Activity.created_at, Activity.updated_at,
                Activity.metadata_.label("activity_metadata"),
                log.id, log.message, log.status, log.percentage,
                log.created_at.label("log_created_at"),
            )
            .outerjoin(log, log.activity_id == Activity.id)
            .where(Activity.agent_id == agent_id, *queries.filters(None, metadata, conn.dialect))
            .order_by(log.created_at, log.id)
        )
        rows = conn.execute(stmt).all()
        if not rows:
            return None
        logs = [
            ActivityLogSchema(
                id=row.id, message=row.message, status=row.status,
                percentage=row.percentage, created_at=row.log_created_at,
            )
            for row in rows
            if row.id is not None
        ]
        first = rows[0]
        return ActivityDetailSchema(
            agent_id=first.agent_id,
            agent_type=first.agent_type,
            created_at=first.created_at,
            updated_at=first.updated_at,
            status=logs[-1].status if logs else Status.QUEUED,
            latest_percentage=next(
                (entry.percentage for entry in reversed(logs) if entry.percentage is not None), None
            ),
            logs=logs,
        ).with_metadata(first.activity_metadata)

    def _insert_activities(self, conn: Connection, items: Sequence[_ActivityRow]) -> None:
        if len(items) > 1:
            taken = {
                agent_id for chunk in _chunks([item[0] for item in items])
                for agent_id in conn.scalars(writes.EXISTING, {"p_agent_ids": chunk})
            }
            seen: set[UUID] = set()
            for agent_id, *_ in items:
                if agent_id in seen or agent_id in taken:
                    raise ValueError(f"an activity with agent_id {agent_id} already exists")
                seen.add(agent_id)
        now = utcnow()
        activities: builtins.list[dict[str, Any]] = []
        logs: builtins.list[dict[str, Any]] = []
        for agent_id, task_name, message, metadata in items:
            pk = uuid.uuid4()
            activities.append({"id": pk, "agent_id": agent_id, "agent_type": task_name,
                               "created_at": now, "updated_at": now, "metadata": metadata,
                               "status": Status.QUEUED, "percentage": 0})
            logs.append({"activity_id": pk, "message": message, "status": Status.QUEUED,
                         "percentage": 0, "created_at": now})
        try:
            conn.execute(writes.INSERT_ACTIVITY, activities)
        except exc.IntegrityError as error:
            if not is_unique_violation(error):
                raise
            which = items[0][0] if len(items) == 1 else "of this batch"
            raise ValueError(f"an activity with agent_id {which} already exists") from error
        conn.execute(writes.INSERT_LOG, logs)

    def _append_entries(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Append ``entries`` in order, all or nothing (see :mod:`agentexec_sqlalchemy.activity.writes`)."""
        statuses = [Status(e.status) if e.status is not None else None for e in entries]
        if len(entries) == 1:
            (entry,) = entries
            locked = conn.execute(writes.LOCK_ONE, {
                "p_agent_id": _uuid(entry.agent_id), "p_now": utcnow(),
                "p_status": statuses[0], "p_percentage": entry.percentage,
            }).one_or_none()
            if locked is None:
                raise UnknownActivityError(entry.agent_id)
            conn.execute(writes.INSERT_ONE, {
                "p_activity_id": locked.id, "p_message": entry.message, "p_status": locked.status,
                "p_percentage": entry.percentage, "p_created_at": locked.updated_at,
            })
            return
        # lock in one global order (sorted agent_ids), so two batches never deadlock
        now = utcnow()
        pks: dict[UUID, UUID] = {}  # agent_id -> activity id
        locked_at: dict[UUID, datetime] = {}  # activity id -> updated_at set by the lock
        # the status an entry without one inherits: the activity's, read under the lock
        current: dict[UUID, Status] = {}
        for chunk in _chunks(sorted({_uuid(e.agent_id) for e in entries})):
            params = {"p_agent_ids": chunk, "p_now": now}
            for row in driver.fetch(conn, writes.LOCK_MANY, params, writes.LOCK_MANY_TYPES):
                pks[row.agent_id], locked_at[row.id] = row.id, row.updated_at
                current[row.id] = row.status or Status.QUEUED
        for entry in entries:
            if _uuid(entry.agent_id) not in pks:
                raise UnknownActivityError(entry.agent_id)
        times: dict[UUID, datetime] = {}
        percentages: dict[UUID, int | None] = {}
        logs: builtins.list[dict[str, Any]] = []
        for entry, status in zip(entries, statuses, strict=True):
            pk = pks[_uuid(entry.agent_id)]
            # strictly increasing within the batch, from the time the lock gave
            times[pk] = times[pk] + _TICK if pk in times else locked_at[pk]
            current[pk] = status if status is not None else current[pk]
            if entry.percentage is not None:
                percentages[pk] = entry.percentage
            else:  # None: the activity keeps the percentage it had
                percentages.setdefault(pk, None)
            logs.append({"activity_id": pk, "message": entry.message, "status": current[pk],
                         "percentage": entry.percentage, "created_at": times[pk]})
        current_rows = [
            {"p_id": pk, "p_updated_at": at, "p_status": current[pk], "p_percentage": percentages[pk]}
            for pk, at in times.items()
        ]
        writes.insert_log_rows(conn, logs)
        writes.set_current_rows(conn, current_rows)


__all__ = ["CANCELED_MESSAGE", "SQLActivityStore"]
