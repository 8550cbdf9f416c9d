"""Baseline: agentexec 0.4's tables (activity, activity log, the embedded transport's).

Revision ID: ax0001
Revises:
Create Date: 2026-12-07

Adopts what it finds instead of failing on it:

- tables that ``ax.Base.metadata.create_all`` made before migrations existed are kept as they
  are (a missing table or index is created; a PostgreSQL metadata index without the
  ``jsonb_path_ops`` opclass is rebuilt with it);
- the original agentexec's tables (0.1.x and 0.3: a UUID log id, status as a native enum on
  PostgreSQL holding the enum *names*, ``metadata`` as JSON or absent) are converted: every
  activity and log entry is copied into this schema, the log entries numbered in their time
  order, then the original tables are dropped.

Downgrading drops every agentexec table (there is nothing before the baseline).
"""

from __future__ import annotations

from typing import Any, TypedDict

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ax0001"
down_revision = None
branch_labels = None
depends_on = None

P = CONF.table_prefix
A, L = f"{P}activity", f"{P}activity_log"
STATUSES = ("QUEUED", "RUNNING", "COMPLETE", "ERROR", "CANCELED")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


class _Spec(TypedDict):
    items: list[Any]  # columns and constraints
    kw: dict[str, Any]  # table options
    indexes: list[tuple[str, list[Any], dict[str, Any]]]


def _tables() -> dict[str, _Spec]:
    """name -> its definition, in creation order."""
    return {
        A: {
            "items": [
                sa.Column("id", sa.Uuid(), nullable=False),
                sa.Column("agent_id", sa.Uuid(), nullable=False),
                sa.Column("agent_type", sa.String(length=255), nullable=False),
                sa.Column("created_at", _TIME, nullable=False),
                sa.Column("updated_at", _TIME, nullable=False),
                sa.Column("metadata", _JSON, nullable=True),
                sa.PrimaryKeyConstraint("id"),
            ],
            "kw": {},
            "indexes": [
                (f"ix_{A}_agent_id", ["agent_id"], {"unique": True}),
                (f"ix_{A}_created_at_id", ["created_at", "id"], {}),
                (f"ix_{A}_metadata", ["metadata"], {
                    "postgresql_using": "gin", "postgresql_ops": {"metadata": "jsonb_path_ops"},
                    "_postgresql_only": True,
                }),
            ],
        },
        L: {
            "items": [
                sa.Column("id", _ID, autoincrement=True, nullable=False),
                sa.Column("activity_id", sa.Uuid(), nullable=False),
                sa.Column("message", sa.Text(), nullable=False),
                sa.Column("status", sa.Enum(
                    *STATUSES, name=f"{P}activity_status", native_enum=False,
                    create_constraint=True, length=16,
                ), nullable=False),
                sa.Column("percentage", sa.Integer(), nullable=True),
                sa.Column("created_at", _TIME, nullable=False),
                sa.CheckConstraint(
                    "percentage IS NULL OR (percentage >= 0 AND percentage <= 100)",
                    name=f"ck_{L}_percentage",
                ),
                sa.ForeignKeyConstraint(["activity_id"], [f"{A}.id"], ondelete="CASCADE"),
                sa.PrimaryKeyConstraint("id"),
            ],
            "kw": {},
            "indexes": [(f"ix_{L}_activity_created_id", ["activity_id", "created_at", "id"], {})],
        },
        f"{P}queue": {
            "items": [
                sa.Column("id", _ID, autoincrement=True, nullable=False),
                sa.Column("queue_name", sa.String(length=255), nullable=False),
                sa.Column("rank", sa.SmallInteger(), nullable=False),
                sa.Column("front", sa.BigInteger(), server_default="0", nullable=False),
                sa.Column("payload", sa.Text(), nullable=False),
                sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
                sa.Column("consumer_id", sa.String(length=255), nullable=True),
                sa.Column("leased_at", sa.Float(), nullable=True),
                sa.Column("enqueued_at", sa.Float(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            "kw": {"sqlite_autoincrement": True},
            "indexes": [
                (f"ix_{P}queue_leased", ["queue_name", "consumer_id"], {
                    "postgresql_where": sa.text("consumer_id IS NOT NULL"),
                    "sqlite_where": sa.text("consumer_id IS NOT NULL"),
                }),
                (f"ix_{P}queue_waiting",
                 ["queue_name", "rank", sa.literal_column("front DESC"), "id"], {
                    "postgresql_where": sa.text("consumer_id IS NULL"),
                    "sqlite_where": sa.text("consumer_id IS NULL"),
                }),
            ],
        },
        f"{P}dead_letter": {
            "items": [
                sa.Column("id", _ID, autoincrement=True, nullable=False),
                sa.Column("queue_name", sa.String(length=255), nullable=False),
                sa.Column("reason", sa.Text(), nullable=False),
                sa.Column("payload", sa.Text(), nullable=False),
                sa.Column("failed_at", sa.Float(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            "kw": {"sqlite_autoincrement": True},
            "indexes": [(f"ix_{P}dead_letter_queue_name", ["queue_name"], {})],
        },
        f"{P}consumer": {
            "items": [
                sa.Column("queue_name", sa.String(length=255), nullable=False),
                sa.Column("consumer_id", sa.String(length=255), nullable=False),
                sa.Column("heartbeat_at", sa.Float(), nullable=False),
                sa.PrimaryKeyConstraint("queue_name", "consumer_id"),
            ],
            "kw": {},
            "indexes": [],
        },
        f"{P}result": {
            "items": [
                sa.Column("id", _ID, autoincrement=True, nullable=False),
                sa.Column("key", sa.String(length=255), nullable=False),
                sa.Column("data", sa.LargeBinary(), nullable=False),
                sa.Column("expires_at", sa.Float(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
                sa.UniqueConstraint("key"),
            ],
            "kw": {"sqlite_autoincrement": True},
            "indexes": [(f"ix_{P}result_expires_at", ["expires_at"], {})],
        },
        f"{P}event": {
            "items": [
                sa.Column("id", _ID, autoincrement=True, nullable=False),
                sa.Column("channel", sa.String(length=255), nullable=False),
                sa.Column("data", sa.Text(), nullable=False),
                sa.Column("created_at", sa.Float(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            "kw": {"sqlite_autoincrement": True},
            "indexes": [],
        },
    }


def _is_original(inspector: sa.Inspector) -> bool:
    """The original agentexec's tables: its log entries have UUID ids (ours count up)."""
    if not inspector.has_table(L):
        return False
    id_type = next(c["type"] for c in inspector.get_columns(L) if c["name"] == "id")
    return not isinstance(id_type, sa.Integer)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    inspector = sa.inspect(bind)
    original = _is_original(inspector)
    if original:
        _set_original_aside(bind, inspector)
        inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for name, spec in _tables().items():
        if name not in existing:
            op.create_table(name, *spec["items"], **spec["kw"])
            have: dict[str, str] = {}
        else:
            have = _index_definitions(bind, inspector, name)
        for index_name, columns, kw in spec["indexes"]:
            kw = dict(kw)
            if kw.pop("_postgresql_only", False) and not postgres:
                continue
            if index_name in have and postgres and "postgresql_ops" in kw \
                    and "jsonb_path_ops" not in have[index_name]:
                op.drop_index(index_name, table_name=name)  # the default opclass (before #16)
                del have[index_name]
            if index_name not in have:
                op.create_index(index_name, name, columns, **kw)
    if original:
        _copy_original(bind)


def _index_definitions(bind: sa.Connection, inspector: sa.Inspector, table: str) -> dict[str, str]:
    if bind.dialect.name == "postgresql":
        rows = bind.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t "
                    "AND schemaname = current_schema()"), {"t": table},
        )
        return {row[0]: row[1] for row in rows}
    return {str(ix["name"]): "" for ix in inspector.get_indexes(table)}


_OLD_A, _OLD_L = f"{P}original_activity", f"{P}original_activity_log"


def _set_original_aside(bind: sa.Connection, inspector: sa.Inspector) -> None:
    """Copy the original's rows into plain tables (no constraint or index names that would
    clash with ours), then drop the original's tables (and, on PostgreSQL, its enum type when
    nothing else uses it)."""
    columns = {c["name"] for c in inspector.get_columns(A)}
    metadata = "metadata" if "metadata" in columns else "NULL"
    q = bind.dialect.identifier_preparer.quote
    status = "CAST(status AS VARCHAR(16))"
    bind.execute(sa.text(
        f"CREATE TABLE {q(_OLD_A)} AS SELECT id, agent_id, agent_type, created_at, updated_at, "
        f"{metadata} AS {q('metadata')} FROM {q(A)}"
    ))
    bind.execute(sa.text(
        f"CREATE TABLE {q(_OLD_L)} AS SELECT id, activity_id, message, {status} AS status, "
        f"percentage, created_at FROM {q(L)}"
    ))
    enum_type = next(
        (c["type"] for c in inspector.get_columns(L) if c["name"] == "status"), None
    )
    op.drop_table(L)
    op.drop_table(A)
    type_name = getattr(enum_type, "name", None)
    if bind.dialect.name == "postgresql" and isinstance(enum_type, sa.Enum) and type_name:
        used = bind.execute(sa.text(
            "SELECT count(*) FROM pg_attribute a JOIN pg_type t ON a.atttypid = t.oid "
            "WHERE t.typname = :n AND a.attnum > 0 AND NOT a.attisdropped"
        ), {"n": type_name}).scalar()
        if not used:
            bind.execute(sa.text(f"DROP TYPE IF EXISTS {q(type_name)}"))


def _copy_original(bind: sa.Connection) -> None:
    q = bind.dialect.identifier_preparer.quote
    postgres = bind.dialect.name == "postgresql"
    metadata = "CAST(metadata AS JSONB)" if postgres else "metadata"
    bind.execute(sa.text(
        f"INSERT INTO {q(A)} (id, agent_id, agent_type, created_at, updated_at, metadata) "
        f"SELECT id, agent_id, COALESCE(agent_type, ''), created_at, updated_at, {metadata} "
        f"FROM {q(_OLD_A)}"
    ))
    # enum names as the original stored them ('QUEUED' ...); a value form ('queued') too.
    # Ids count up in time order (ties broken by the original's id), as our log order needs.
    bind.execute(sa.text(
        f"INSERT INTO {q(L)} (activity_id, message, status, percentage, created_at) "
        f"SELECT activity_id, message, UPPER(status), "
        f"CASE WHEN percentage < 0 THEN 0 WHEN percentage > 100 THEN 100 ELSE percentage END, "
        f"created_at FROM {q(_OLD_L)} ORDER BY created_at, id"
    ))
    op.drop_table(_OLD_L)
    op.drop_table(_OLD_A)


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
