"""The SQL transport's per-key locks, parked tasks and enqueue keys (issue #15).

Revision ID: ax0006
Revises: ax0005
Create Date: 2026-12-07

``{prefix}queue_lock``: the locks running tasks hold (``lock_key=``, ``max_concurrency=``);
``{prefix}queue_parked``: tasks waiting for a lock, per key; ``{prefix}queue_key``: the task
holding each ``ax.enqueue(..., key=...)`` key. Created only where absent.
"""

from __future__ import annotations

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op

revision = "ax0006"
down_revision = "ax0005"
branch_labels = None
depends_on = None

P = CONF.table_prefix
LOCK = f"{P}queue_lock"
PARKED = f"{P}queue_parked"
KEY = f"{P}queue_key"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if LOCK not in present:
        op.create_table(
            LOCK,
            sa.Column("queue_name", sa.String(length=255), nullable=False),
            sa.Column("lock_key", sa.String(length=512), nullable=False),
            sa.Column("agent_id", sa.String(length=36), nullable=False),
            sa.Column("consumer_id", sa.String(length=255), nullable=False),
            sa.PrimaryKeyConstraint("queue_name", "lock_key", "agent_id"),
        )
        op.create_index(f"ix_{LOCK}_holder", LOCK, ["queue_name", "agent_id"])
    if PARKED not in present:
        op.create_table(
            PARKED,
            sa.Column("id", _ID, autoincrement=True, nullable=False),
            sa.Column("queue_name", sa.String(length=255), nullable=False),
            sa.Column("lock_key", sa.String(length=512), nullable=False),
            sa.Column("agent_id", sa.String(length=36), nullable=False),
            sa.Column("rank", sa.SmallInteger(), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
            sa.Column("enqueued_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sqlite_autoincrement=True,
        )
        op.create_index(f"ix_{PARKED}_key", PARKED, ["queue_name", "lock_key", "id"])
        op.create_index(f"ix_{PARKED}_agent", PARKED, ["queue_name", "agent_id"])
    if KEY not in present:
        op.create_table(
            KEY,
            sa.Column("queue_name", sa.String(length=255), nullable=False),
            sa.Column("key", sa.String(length=512), nullable=False),
            sa.Column("agent_id", sa.String(length=36), nullable=False),
            sa.PrimaryKeyConstraint("queue_name", "key"),
        )


def downgrade() -> None:
    op.drop_table(KEY)
    op.drop_index(f"ix_{PARKED}_agent", table_name=PARKED)
    op.drop_index(f"ix_{PARKED}_key", table_name=PARKED)
    op.drop_table(PARKED)
    op.drop_index(f"ix_{LOCK}_holder", table_name=LOCK)
    op.drop_table(LOCK)
