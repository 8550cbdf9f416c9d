"""Runtime schedules on SQL: ``{prefix}schedule`` (issue #23's ``ax.schedules``).

Revision ID: ax0005
Revises: ax0004
Create Date: 2026-12-07

The schedules created, changed, enabled or disabled at runtime (the HTTP API, ``ax.schedules``),
one row per queue and name; every pool reads them once a tick. Created only where absent.
"""

from __future__ import annotations

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op

revision = "ax0005"
down_revision = "ax0004"
branch_labels = None
depends_on = None

T = f"{CONF.table_prefix}schedule"


def upgrade() -> None:
    if T in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        T,
        sa.Column("queue_name", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("queue_name", "name"),
    )


def downgrade() -> None:
    op.drop_table(T)
