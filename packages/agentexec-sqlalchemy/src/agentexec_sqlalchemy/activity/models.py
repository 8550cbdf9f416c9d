"""``ax.Base`` and the activity tables: ``{prefix}activity`` and ``{prefix}activity_log``.

Create them once with ``ax.Base.metadata.create_all(engine)`` (``prefix`` is
``CONF.table_prefix``, read when this module is first imported), which also stamps the newest
migration; upgrade them later with ``agentexec db upgrade`` (:mod:`agentexec_sqlalchemy.migrations`).

An activity's status is the status of its latest log entry (by time, then id): the log is the
history. The activity row carries a copy (``status``, ``percentage``) that every write keeps in
the statement or transaction appending the entry, so listing by status is an index range scan.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from agentexec.activity.creates import created
from agentexec.activity.status import Status
from agentexec.backends import as_uuid as _uuid
from agentexec.backends import validate_percentage
from agentexec.config import CONF
from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    event,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    object_session,
    relationship,
)

from agentexec_sqlalchemy.types import JSONType, UTCDateTime, utcnow

PREFIX = CONF.table_prefix
ACTIVITY_TABLE = f"{PREFIX}activity"
ACTIVITY_LOG_TABLE = f"{PREFIX}activity_log"


class Base(DeclarativeBase):
    """The declarative base of every agentexec table: ``ax.Base.metadata.create_all(engine)``."""


class Activity(Base):
    """One task's activity record; its history is ``logs``, oldest first."""

    __tablename__ = ACTIVITY_TABLE

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, index=True)
    agent_type: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: free-form JSON for filtering (tenant, user ...); column "metadata", which DeclarativeBase
    #: reserves as an attribute name. Readable as ``.metadata`` on the API schemas, never
    #: serialized (see agentexec.activity.metadata for the filter's rules).
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, default=None)
    #: the latest log entry's status and the latest percentage given, kept by every write with
    #: the entry it appends (columns "status" and "percentage"; ``status`` below reads the logs)
    current_status: Mapped[Status] = mapped_column(
        "status",
        Enum(Status, native_enum=False, length=16, create_constraint=True, name=f"ck_{ACTIVITY_TABLE}_status"),
        default=Status.QUEUED, server_default=Status.QUEUED.value,
    )
    current_percentage: Mapped[int | None] = mapped_column("percentage", Integer, default=None)

    logs: Mapped[list[ActivityLog]] = relationship(
        back_populates="activity",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by=lambda: (ActivityLog.created_at, ActivityLog.id),
    )

    __table_args__ = (
        # list(): newest first, one index range scan per page
        Index(f"ix_{ACTIVITY_TABLE}_created_at_id", "created_at", "id"),
        # list(status=...): newest first among one status, one index range scan per page
        Index(f"ix_{ACTIVITY_TABLE}_status_created_at_id", "status", "created_at", "id"),
        CheckConstraint(
            "percentage IS NULL OR (percentage >= 0 AND percentage <= 100)",
            name=f"ck_{ACTIVITY_TABLE}_percentage",
        ),
        # metadata filter (tenancy): JSONB containment (@>) on PostgreSQL; jsonb_path_ops
        # indexes exactly that operator, smaller and faster than the default GIN opclass
        Index(
            f"ix_{ACTIVITY_TABLE}_metadata", "metadata", postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    def __repr__(self) -> str:
        return f"<Activity agent_id={self.agent_id} agent_type={self.agent_type!r}>"

    # -- derived from the loaded logs ------------------------------------------------------
    @property
    def status(self) -> Status:
        """The status of the latest log entry (QUEUED for an activity without logs)."""
        return self.logs[-1].status if self.logs else Status.QUEUED

    @property
    def latest_percentage(self) -> int | None:
        return next((log.percentage for log in reversed(self.logs) if log.percentage is not None), None)

    @property
    def latest_log(self) -> str | None:
        return self.logs[-1].message if self.logs else None

    # -- queries ---------------------------------------------------------------------------
    @classmethod
    def get_by_agent_id(
        cls, agent_id: str | uuid.UUID, session: Session | None = None
    ) -> Activity | None:
        """The activity of ``agent_id`` or ``None``; ``session`` defaults to the global session."""
        created(_uuid(agent_id))  # one this process's ax.enqueue has just queued
        if session is None:
            from agentexec_sqlalchemy.activity.session import get_global_session

            session = get_global_session()
        return session.scalars(select(cls).where(cls.agent_id == _uuid(agent_id))).one_or_none()

    @classmethod
    def get_list(
        cls, session: Session, page: int = 1, page_size: int = 50
    ) -> tuple[list[Activity], int]:
        """A page of activities, newest first, and the total count. Two statements."""
        created()
        from agentexec_sqlalchemy.activity import queries

        queries.check_page(page, page_size)
        total = int(session.scalar(queries.count_activities()) or 0)
        stmt = (
            select(cls)
            .order_by(*queries.NEWEST_FIRST)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        return list(session.scalars(stmt)), total

    @classmethod
    def get_pending_ids(cls, session: Session) -> list[uuid.UUID]:
        """The agent_ids of the activities whose latest status is QUEUED or RUNNING."""
        created()
        from agentexec_sqlalchemy.activity import queries

        return list(session.scalars(select(cls.agent_id).where(queries.is_pending())))

    def append_log(
        self, message: str, status: Status | None = None, percentage: int | None = None
    ) -> None:
        """Add a log entry (``status=None`` keeps the current status) and commit it.

        Like ``ax.activity.update``, the entry is committed at once when the activity belongs to
        a session, so other processes see the progress; a detached activity just gains the entry.
        """
        validate_percentage(percentage)
        # never before the previous entry, whatever this host's clock says (as the store does)
        now = max(utcnow(), self.updated_at) if self.updated_at is not None else utcnow()
        new_status = status if status is not None else self.status
        self.logs.append(
            ActivityLog(message=message, status=new_status, percentage=percentage, created_at=now)
        )
        self.updated_at = now
        self.current_status = new_status
        if percentage is not None:
            self.current_percentage = percentage
        session = object_session(self)
        if session is not None:
            try:
                session.commit()
            except BaseException:
                session.rollback()
                raise


class ActivityLog(Base):
    """One entry of an activity's history: a message, the status at that time, a percentage."""

    __tablename__ = ACTIVITY_LOG_TABLE

    # BIGINT on PostgreSQL (logs outgrow 2**31); SQLite needs INTEGER to autoincrement
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    activity_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey(f"{ACTIVITY_TABLE}.id", ondelete="CASCADE")
    )
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[Status] = mapped_column(
        Enum(Status, native_enum=False, length=16, create_constraint=True,
             name=f"{PREFIX}activity_status")
    )
    percentage: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    activity: Mapped[Activity] = relationship(back_populates="logs")

    __table_args__ = (
        # an activity's history in order, and its latest entry, are one index range scan
        Index(f"ix_{ACTIVITY_LOG_TABLE}_activity_created_id", "activity_id", "created_at", "id"),
        CheckConstraint(
            "percentage IS NULL OR (percentage >= 0 AND percentage <= 100)",
            name=f"ck_{ACTIVITY_LOG_TABLE}_percentage",
        ),
    )

    def __repr__(self) -> str:
        return f"<ActivityLog id={self.id} status={self.status} message={self.message!r}>"


#: PostgreSQL: room on each page of the activity table, so that an update changing no indexed
#: column (a progress line) is a HOT update (migration ax0003; measured in benchmarks/README.md)
ACTIVITY_FILLFACTOR = 80
event.listen(
    Activity.__table__, "after_create",
    DDL(  # type: ignore[no-untyped-call]
        f"ALTER TABLE %(table)s SET (fillfactor = {ACTIVITY_FILLFACTOR})"
    ).execute_if(dialect="postgresql"),
)


@event.listens_for(Base.metadata, "after_create")
def _stamp_head(target: Any, connection: Connection, tables: Any = (), **_: Any) -> None:
    """``create_all`` made the activity table: the schema is the newest migration's, so record
    that revision (when no version is recorded yet). Tables that existed already are left to
    ``agentexec db upgrade``, which knows what they are."""
    if Activity.__table__ not in tables:
        return
    from agentexec_sqlalchemy.migrations import HEAD, VERSION_TABLE

    version = Table(
        VERSION_TABLE, MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
    )
    version.create(connection, checkfirst=True)
    if connection.execute(select(version.c.version_num)).first() is None:
        connection.execute(version.insert().values(version_num=HEAD))


from agentexec_sqlalchemy.activity.metadata_pairs import pair_table  # noqa: E402

#: PostgreSQL: the activities' metadata pairs, kept by a trigger (see .metadata_pairs)
ActivityMetadataPair = pair_table(Base.metadata, ACTIVITY_TABLE)

from agentexec_sqlalchemy.transport import models as _transport_models  # noqa: E402,F401


@event.listens_for(ActivityLog, "after_insert")
def _carry_status(_mapper: Any, connection: Connection, target: ActivityLog) -> None:
    """A log entry added through the ORM (``session.add(ActivityLog(...))``) updates its
    activity's ``status`` and ``percentage`` in the same flush, as the store's writes do. Rows
    inserted with plain SQL must do the same themselves (docs/operations.md)."""
    values: dict[str, Any] = {"status": target.status}
    if target.percentage is not None:
        values["percentage"] = target.percentage
    table = Activity.__table__
    connection.execute(
        table.update().where(table.c.id == target.activity_id).values(**values)  # type: ignore[attr-defined]
    )
