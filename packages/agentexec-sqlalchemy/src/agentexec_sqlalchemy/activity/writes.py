"""The write statements of the activity store, built once (their compiled form is cached).

Appending to an activity is two statements:

1. ``UPDATE activity SET updated_at = max(updated_at, :now) WHERE agent_id = ... RETURNING id,
   updated_at``. The UPDATE takes the row lock (PostgreSQL) or the writer lock (SQLite) before
   anything is read, so writers to one activity queue up here. The returned ``updated_at`` is the
   new entry's time: never earlier than the previous entry, even when a writer that read the
   clock earlier got the lock later. Entries are ordered by ``(created_at, id)`` and ids are
   drawn after the lock, so the log order is the order in which writes took the lock.
   The same UPDATE sets the activity's ``status`` (the entry's, or the one it had) and
   ``percentage`` (the entry's when it has one), and returns them.
2. ``INSERT`` the entry, with the status the UPDATE returned.

Batches and ``cancel_pending`` lock their activities the same way, in ``agent_id`` order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agentexec.activity.status import Status
from sqlalchemy import Integer, Table, bindparam, case, func, insert, select, update
from sqlalchemy.engine import Connection

from agentexec_sqlalchemy import driver
from agentexec_sqlalchemy.activity.models import Activity, ActivityLog
from agentexec_sqlalchemy.types import UTCDateTime

activity: Table = Activity.__table__  # type: ignore[assignment]
log: Table = ActivityLog.__table__  # type: ignore[assignment]

_NOW = bindparam("p_now", type_=UTCDateTime())
_STATUS_TYPE = log.c.status.type


def _move_updated_at(stmt: Any, **values: Any) -> Any:
    return stmt.values(
        updated_at=case((activity.c.updated_at < _NOW, _NOW), else_=activity.c.updated_at),
        **values,
    )


def lock_sorted(condition: Callable[[Any], Any], **values: Any) -> Any:
    """UPDATE that locks the activities matching ``condition(table)`` and moves ``updated_at``
    up to ``:p_now``. The rows are locked in ``agent_id`` order first (PostgreSQL ``FOR NO KEY
    UPDATE`` in a sorted subquery), so transactions locking overlapping sets queue up instead
    of deadlocking."""
    target = activity.alias("target")
    ordered = (
        select(target.c.id)
        .where(condition(target))
        .order_by(target.c.agent_id)
        .with_for_update(key_share=True)
    )
    return _move_updated_at(update(activity).where(activity.c.id.in_(ordered)), **values)


#: lock one activity by agent_id, setting its status (a NULL :p_status keeps it) and percentage
#: (a NULL keeps it) -> (id, updated_at, status)
LOCK_ONE = _move_updated_at(
    update(activity).where(activity.c.agent_id == bindparam("p_agent_id")),
    status=func.coalesce(
        bindparam("p_status", type_=_STATUS_TYPE), activity.c.status, type_=_STATUS_TYPE
    ),
    percentage=func.coalesce(bindparam("p_percentage", type_=Integer()), activity.c.percentage),
).returning(
    activity.c.id, activity.c.updated_at, activity.c.status
)
#: lock one activity by agent_id only while it reads RUNNING, setting it QUEUED -> (id,
#: updated_at); no row otherwise. On PostgreSQL an UPDATE that waited for a row lock checks its
#: WHERE again on the row as the other transaction left it: a COMPLETE committed meanwhile wins
REQUEUE_ONE = _move_updated_at(
    update(activity).where(
        activity.c.agent_id == bindparam("p_agent_id"), activity.c.status == Status.RUNNING
    ),
    status=Status.QUEUED,
).returning(activity.c.id, activity.c.updated_at)
#: lock many activities by agent_id -> (agent_id, id, updated_at, status)
LOCK_MANY = lock_sorted(
    lambda table: table.c.agent_id.in_(bindparam("p_agent_ids", expanding=True))
).returning(
    activity.c.agent_id, activity.c.id, activity.c.updated_at, activity.c.status
)

#: the types of LOCK_MANY's returned columns, for its rows on the driver (agentexec_sqlalchemy.driver)
LOCK_MANY_TYPES = (activity.c.agent_id.type, activity.c.id.type, activity.c.updated_at.type, activity.c.status.type)

#: one entry, with the status LOCK_ONE returned
INSERT_ONE = insert(log).values(
    activity_id=bindparam("p_activity_id"),
    message=bindparam("p_message"),
    status=bindparam("p_status", type_=_STATUS_TYPE),
    percentage=bindparam("p_percentage"),
    created_at=bindparam("p_created_at", type_=UTCDateTime()),
)

#: the pending activities, locked and marked CANCELED -> (id, updated_at)
LOCK_PENDING = lock_sorted(
    lambda table: table.c.status.in_(Status.pending()), status=Status.CANCELED
).returning(
    activity.c.id, activity.c.updated_at
)
EXISTING = select(activity.c.agent_id).where(
    activity.c.agent_id.in_(bindparam("p_agent_ids", expanding=True))
)
INSERT_ACTIVITY = insert(activity)
INSERT_LOG = insert(log)
#: after a batch: each activity's time of its last new entry, its status and percentage
SET_CURRENT = (
    update(activity)
    .where(activity.c.id == bindparam("p_id"))
    .values(
        updated_at=bindparam("p_updated_at", type_=UTCDateTime()),
        status=bindparam("p_status", type_=_STATUS_TYPE),
        percentage=func.coalesce(bindparam("p_percentage", type_=Integer()), activity.c.percentage),
    )
)

#: the columns of INSERT_LOG's rows
_LOG_COLUMNS = ("activity_id", "message", "status", "percentage", "created_at")


def insert_log_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT_LOG of each row; on SQLite on the driver (:mod:`agentexec_sqlalchemy.driver`):
    SQLAlchemy's ``executemany`` costs tens of µs per row in Python there, more than SQLite
    takes to store it."""
    driver.run_many(conn, INSERT_LOG, rows, _LOG_COLUMNS)


def set_current_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """SET_CURRENT of each row (see :func:`insert_log_rows`)."""
    driver.run_many(conn, SET_CURRENT, rows)
