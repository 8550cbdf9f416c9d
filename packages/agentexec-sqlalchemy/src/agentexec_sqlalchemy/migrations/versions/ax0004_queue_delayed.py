"""The SQL transport's delayed tasks: ``{prefix}queue_delayed`` (issue #15).

Revision ID: ax0004
Revises: ax0003
Create Date: 2026-12-07

Tasks enqueued with ``delay=`` / ``at=``, and retries waiting out their backoff, wait here until
their due time; a take moves the due ones into ``{prefix}queue``. Created only where absent (a
database made by ``create_all`` of this release already has it).
"""

from __future__ import annotations

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op

revision = "ax0004"
down_revision = "ax0003"
branch_labels = None
depends_on = None

P = CONF.table_prefix
T = f"{P}queue_delayed"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if T in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        T,
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("queue_name", sa.String(length=255), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("due", sa.Float(), nullable=False),
        sa.Column("enqueued_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index(f"ix_{T}_due", T, ["queue_name", "due"])


def downgrade() -> None:
    op.drop_index(f"ix_{T}_due", table_name=T)
    op.drop_table(T)
