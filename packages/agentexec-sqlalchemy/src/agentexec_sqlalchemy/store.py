"""``SQLActivityStore``: the activity records behind ``ax.activity``, on SQLite or PostgreSQL.

Each call is one transaction. Writers to one activity are serialised by a row lock (PostgreSQL
``FOR NO KEY UPDATE``; SQLite's single writer lock), and take their timestamp only once they
hold it, so an activity's log order is the order its writes committed in.

The async twins run the same sync code in a worker thread (``anyio.to_thread``): one code path
for both databases and drivers, the thread hop costs microseconds next to a database round
trip, and a cancelled caller still lets the transaction finish or roll back whole.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio.to_thread
from agentexec.activity.schemas import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
    ActivityLogSchema,
)
from agentexec.activity.status import Status
from agentexec.backends import LogEntry, UnknownActivityError, validate_percentage
from sqlalchemy import exc, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agentexec_sqlalchemy import queries
from agentexec_sqlalchemy.engine import get_engine
from agentexec_sqlalchemy.errors import is_unique_violation
from agentexec_sqlalchemy.models import Activity, ActivityLog
from agentexec_sqlalchemy.types import utcnow
from agentexec_sqlalchemy.unit_of_work import UnitOfWork

T = TypeVar("T")

CANCELED_MESSAGE = "Canceled."
#: bound parameters per IN (...) list, well under SQLite's and PostgreSQL's limits
_CHUNK = 500
_TICK = timedelta(microseconds=1)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class SQLActivityStore:
    """The :class:`agentexec.backends.ActivityStore` on SQLAlchemy (``source``: a URL or an Engine).

    The tables must exist: ``ax.Base.metadata.create_all(engine)``. A call on a database
    without them raises :class:`~agentexec_sqlalchemy.errors.MissingTablesError`, saying so.
    """

    def __init__(self, source: str | Engine) -> None:
        self.engine = get_engine(source)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self._uow = UnitOfWork(self.engine)
        #: an in-memory SQLite database is invisible to other processes
        self.cross_process = not self._uow.in_memory

    def __repr__(self) -> str:
        return f"SQLActivityStore({self.url!r})"

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
        with self._uow(session, write=True) as s:
            self._insert_activities(s, [(agent_id, task_name, message, metadata)])
        return agent_id

    def append(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
        session: Any = None,
    ) -> None:
        validate_percentage(percentage)  # before the session: a caller's session stays untouched
        entries = [LogEntry(_uuid(agent_id), message, status, percentage)]
        with self._uow(session, write=True) as s:
            self._append_in(s, entries)

    def cancel_pending(self, session: Any = None) -> int:
        with self._uow(session, write=True) as s:
            ids = [pk for (pk,) in self._lock(s, queries.is_pending(Activity.id))]
            if ids:
                now = utcnow()
                s.execute(
                    insert(ActivityLog),
                    [
                        {"activity_id": pk, "message": CANCELED_MESSAGE,
                         "status": Status.CANCELED, "percentage": None, "created_at": now}
                        for pk in ids
                    ],
                )
                for chunk in _chunks(ids):
                    s.execute(
                        update(Activity)
                        .where(Activity.id.in_(chunk))
                        .values(updated_at=now)
                        .execution_options(synchronize_session=False)
                    )
        return len(ids)

    def list(
        self,
        session: Any = None,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ActivityListSchema:
        queries.check_page(page, page_size)
        with self._uow(session, write=False) as s:
            conditions = queries.filters(status, metadata, s.get_bind().dialect)
            total = int(s.scalar(queries.count_activities(*conditions)) or 0)
            rows = s.execute(queries.list_page(page, page_size, *conditions)).all()
        items = [
            ActivityListItemSchema(
                agent_id=row.agent_id,
                agent_type=row.agent_type,
                created_at=row.created_at,
                updated_at=row.updated_at,
                status=row.status if row.status is not None else Status.QUEUED,
                latest_log=row.latest_log,
                latest_percentage=row.latest_percentage,
            )
            for row in rows
        ]
        return ActivityListSchema(
            items=items,
            total=total,
            page=page,
            page_size=page_size,
            pages=ActivityListSchema.page_count(total, page_size),
        )

    def detail(self, agent_id: UUID, session: Any = None) -> ActivityDetailSchema | None:
        log = ActivityLog
        stmt = (
            select(
                Activity.agent_id, Activity.agent_type, Activity.created_at, Activity.updated_at,
                log.id, log.message, log.status, log.percentage,
                log.created_at.label("log_created_at"),
            )
            .outerjoin(log, log.activity_id == Activity.id)
            .where(Activity.agent_id == _uuid(agent_id))
            .order_by(log.created_at, log.id)
        )
        with self._uow(session, write=False) as s:
            rows = s.execute(stmt).all()
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
        )

    # -- async twins -----------------------------------------------------------------------
    async def acreate(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID:
        agent_id = _uuid(agent_id) if agent_id is not None else uuid.uuid4()
        items = [(agent_id, task_name, message, metadata)]
        await self._in_thread(lambda s: self._insert_activities(s, items))
        return agent_id

    async def acreate_many(self, items: Sequence[tuple[UUID, str, str]]) -> None:
        rows = [(_uuid(agent_id), task_name, message, None) for agent_id, task_name, message in items]
        if rows:
            await self._in_thread(lambda s: self._insert_activities(s, rows))

    async def aappend(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
    ) -> None:
        entries = [LogEntry(_uuid(agent_id), message, status, percentage)]
        await self._in_thread(lambda s: self._append_in(s, entries))

    async def aappend_many(self, entries: Sequence[LogEntry]) -> None:
        batch = builtins.list(entries)
        if batch:
            await self._in_thread(lambda s: self._append_in(s, batch))

    async def adetail(self, agent_id: UUID) -> ActivityDetailSchema | None:
        return await self._in_thread(lambda s: self.detail(agent_id, s))

    async def alist(
        self, page: int = 1, page_size: int = 50, status: Status | None = None
    ) -> ActivityListSchema:
        return await self._in_thread(lambda s: self.list(s, page, page_size, status))

    async def acancel_pending(self) -> int:
        return await self._in_thread(self.cancel_pending)

    async def aclose(self) -> None:
        """Nothing to release: the engine is shared per URL (``engine.get_engine``)."""
        return None

    # -- internals -------------------------------------------------------------------------
    async def _in_thread(self, call: Callable[[Session], T]) -> T:
        """Run ``call`` in a worker thread on a short-lived session (never a thread's global one)."""

        def run() -> T:
            with self._uow.own(write=True, engine=self._uow.engine_for_background()) as s:
                return call(s)

        return await anyio.to_thread.run_sync(run)

    def _insert_activities(
        self, s: Session, items: Sequence[tuple[UUID, str, str, dict[str, Any] | None]]
    ) -> None:
        now = utcnow()
        activities: builtins.list[dict[str, Any]] = []
        logs: builtins.list[dict[str, Any]] = []
        for agent_id, task_name, message, metadata in items:
            pk = uuid.uuid4()
            activities.append({"id": pk, "agent_id": agent_id, "agent_type": task_name,
                               "created_at": now, "updated_at": now, "metadata_": metadata})
            logs.append({"activity_id": pk, "message": message, "status": Status.QUEUED,
                         "percentage": 0, "created_at": now})
        try:
            s.execute(insert(Activity), activities)
        except exc.IntegrityError as error:
            if not is_unique_violation(error):
                raise
            raise ValueError(
                f"an activity with agent_id {self._duplicate(s, [a['agent_id'] for a in activities])} "
                f"already exists"
            ) from error
        s.execute(insert(ActivityLog), logs)

    @staticmethod
    def _duplicate(s: Session, agent_ids: builtins.list[UUID]) -> UUID:
        """The agent_id that broke the unique index (for the error message)."""
        seen: set[UUID] = set()
        for agent_id in agent_ids:
            if agent_id in seen:
                return agent_id
            seen.add(agent_id)
        s.rollback()
        for chunk in _chunks(agent_ids):
            found = s.scalar(select(Activity.agent_id).where(Activity.agent_id.in_(chunk)))
            if found is not None:
                return found
        return agent_ids[0]

    def _append_in(self, s: Session, entries: Sequence[LogEntry]) -> None:
        """Append ``entries`` in order, all or nothing."""
        for entry in entries:
            validate_percentage(entry.percentage)
        agent_ids = sorted({_uuid(e.agent_id) for e in entries})
        # lock in one global order (sorted agent_ids), so two batches never deadlock
        pks: dict[UUID, UUID] = {}
        for chunk in _chunks(agent_ids):
            pks.update(self._lock_by_agent_id(s, chunk))
        for entry in entries:
            if _uuid(entry.agent_id) not in pks:
                raise UnknownActivityError(entry.agent_id)
        # the status an entry without one inherits: the latest, as of now that we hold the lock
        current: dict[UUID, Status] = {}
        if any(e.status is None for e in entries):
            for chunk in _chunks(builtins.list(pks.values())):
                stmt = select(Activity.id, queries.latest_status(Activity.id)).where(
                    Activity.id.in_(chunk)
                )
                current.update({pk: st or Status.QUEUED for pk, st in s.execute(stmt)})
        rows: builtins.list[dict[str, Any]] = []
        last: dict[UUID, datetime] = {}
        for entry in entries:
            pk = pks[_uuid(entry.agent_id)]
            status = Status(entry.status) if entry.status is not None else current[pk]
            current[pk] = status
            # strictly increasing within an activity, even when the clock does not tick
            now = utcnow()
            if pk in last and now <= last[pk]:
                now = last[pk] + _TICK
            last[pk] = now
            rows.append({"activity_id": pk, "message": entry.message, "status": status,
                         "percentage": entry.percentage, "created_at": now})
        s.execute(insert(ActivityLog), rows)
        s.execute(update(Activity), [{"id": pk, "updated_at": ts} for pk, ts in last.items()])

    def _lock_by_agent_id(self, s: Session, agent_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        """Lock the activities of ``agent_ids``: agent_id -> primary key of those that exist."""
        rows = self._lock(s, Activity.agent_id.in_(agent_ids), Activity.agent_id)
        return {agent_id: pk for agent_id, pk in rows}

    def _lock(self, s: Session, condition: Any, *columns: Any) -> builtins.list[Any]:
        """Lock the activities matching ``condition``, returning ``(*columns, id)`` of each."""
        if s.get_bind().dialect.name == "sqlite":
            # a write first takes SQLite's writer lock, before anything is read
            stmt: Any = (
                update(Activity)
                .where(condition)
                .values(updated_at=Activity.updated_at)
                .returning(*columns, Activity.id)
                .execution_options(synchronize_session=False)
            )
        else:
            # sorted, so two transactions locking overlapping sets never deadlock
            stmt = (
                select(*columns, Activity.id)
                .where(condition)
                .order_by(Activity.agent_id)
                .with_for_update(of=Activity, key_share=True)
            )
        return builtins.list(s.execute(stmt))


__all__ = ["CANCELED_MESSAGE", "SQLActivityStore"]
