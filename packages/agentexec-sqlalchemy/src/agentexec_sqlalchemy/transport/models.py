"""Tables of the embedded SQL transport: queue, dead letters, consumers, results, events.

They live on the activity tables' ``Base`` (same ``CONF.table_prefix``), so
``ax.Base.metadata.create_all(engine)`` creates everything agentexec needs. Plain Core tables:
the backends speak SQL expressions, not ORM objects, to keep each round trip one statement.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from agentexec.config import CONF
from sqlalchemy.engine import Connection

from agentexec_sqlalchemy.activity.models import Base

P = CONF.table_prefix
_META = Base.metadata

# SQLite needs INTEGER (not BIGINT) for an autoincrementing rowid primary key
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: rank of each priority: lower is taken first
RANK_HIGH = 0
RANK_LOW = 1

queue_table = sa.Table(
    f"{P}queue",
    _META,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("queue_name", sa.String(255), nullable=False),
    sa.Column("rank", sa.SmallInteger, nullable=False),
    # 0 for a normal push (FIFO by id); a nanosecond stamp when released or reaped, so the task
    # goes back to the front of its priority, the latest first
    sa.Column("front", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("payload", sa.Text, nullable=False),
    # deliveries before this one; authoritative over the payload's own ``attempts``
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("consumer_id", sa.String(255), nullable=True),  # NULL while waiting
    sa.Column("leased_at", sa.Float, nullable=True),
    sa.Column("enqueued_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)
# the reserve query walks this index: waiting rows of one queue in take order
sa.Index(
    f"ix_{P}queue_waiting",
    queue_table.c.queue_name,
    queue_table.c.rank,
    queue_table.c.front.desc(),
    queue_table.c.id,
    postgresql_where=queue_table.c.consumer_id.is_(None),
    sqlite_where=queue_table.c.consumer_id.is_(None),
)
sa.Index(
    f"ix_{P}queue_leased",
    queue_table.c.queue_name,
    queue_table.c.consumer_id,
    postgresql_where=queue_table.c.consumer_id.is_not(None),
    sqlite_where=queue_table.c.consumer_id.is_not(None),
)

#: tasks waiting for their due time (``push_at``: delayed tasks, retries with backoff); a take
#: moves the due ones into the queue table, so the reserve query itself is unchanged
delayed_table = sa.Table(
    f"{P}queue_delayed",
    _META,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("queue_name", sa.String(255), nullable=False),
    sa.Column("rank", sa.SmallInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due", sa.Float, nullable=False),
    sa.Column("enqueued_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)
sa.Index(f"ix_{P}queue_delayed_due", delayed_table.c.queue_name, delayed_table.c.due)

#: locks held by running tasks (``lock_key=``, ``max_concurrency=``): one row per lock key and
#: holder; a holder's row goes when its lease ends (ack, release, reap)
lock_table = sa.Table(
    f"{P}queue_lock",
    _META,
    sa.Column("queue_name", sa.String(255), primary_key=True),
    sa.Column("lock_key", sa.String(512), primary_key=True),
    sa.Column("agent_id", sa.String(36), primary_key=True),
    sa.Column("consumer_id", sa.String(255), nullable=False),
)
sa.Index(f"ix_{P}queue_lock_holder", lock_table.c.queue_name, lock_table.c.agent_id)

#: tasks taken while a lock they need was full: parked per key, oldest first, until a holder's
#: lease ends and moves one back to the queue (nothing polls them)
parked_table = sa.Table(
    f"{P}queue_parked",
    _META,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("queue_name", sa.String(255), nullable=False),
    sa.Column("lock_key", sa.String(512), nullable=False),
    sa.Column("agent_id", sa.String(36), nullable=False),
    sa.Column("rank", sa.SmallInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("enqueued_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)
sa.Index(f"ix_{P}queue_parked_key", parked_table.c.queue_name, parked_table.c.lock_key, parked_table.c.id)
sa.Index(f"ix_{P}queue_parked_agent", parked_table.c.queue_name, parked_table.c.agent_id)

#: ``ax.enqueue(..., key=...)``: the task holding each key while it is queued or running
enqueue_key_table = sa.Table(
    f"{P}queue_key",
    _META,
    sa.Column("queue_name", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("agent_id", sa.String(36), nullable=False),
)

dead_letter_table = sa.Table(
    f"{P}dead_letter",
    _META,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("queue_name", sa.String(255), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("failed_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)

consumer_table = sa.Table(
    f"{P}consumer",
    _META,
    sa.Column("queue_name", sa.String(255), primary_key=True),
    sa.Column("consumer_id", sa.String(255), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

result_table = sa.Table(
    f"{P}result",
    _META,
    # a new id at every set, never reused (SQLite replaces the row): SQLite waiters' shared poll
    # reads only the rows set since its last look
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    # str(agent_id) for results, "claim:<key>" for claims
    sa.Column("key", sa.String(255), nullable=False, unique=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sqlite_autoincrement=True,
)

event_table = sa.Table(
    f"{P}event",
    _META,
    # never reused (AUTOINCREMENT on SQLite): subscribers resume after an id
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(255), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)

schedule_table = sa.Table(
    f"{P}schedule",
    _META,
    # the runtime schedules of each queue (ax.schedules); pools read them on a change notice
    sa.Column("queue_name", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

TRANSPORT_TABLES = (
    queue_table, delayed_table, dead_letter_table, consumer_table, result_table, event_table, schedule_table,
    lock_table, parked_table, enqueue_key_table,
)


@sa.event.listens_for(_META, "after_create")
def _compress_with_lz4(target: Any, connection: Connection, tables: Any = (), **_: Any) -> None:
    """PostgreSQL: the large columns of the tables just made compress with lz4 (see
    :mod:`.compression`)."""
    from agentexec_sqlalchemy.transport.compression import set_compression

    made = {t.name for t in tables}
    if made & {t.name for t in TRANSPORT_TABLES}:
        set_compression(connection, P, only=made)
