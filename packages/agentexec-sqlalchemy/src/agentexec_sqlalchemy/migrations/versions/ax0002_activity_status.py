"""The activity row carries its current status and percentage.

Revision ID: ax0002
Revises: ax0001
Create Date: 2026-12-07

``status`` (the latest log entry's) and ``percentage`` (the latest one given) become columns of
the activity, filled here from the log, and kept by every write in the statement or transaction
that appends the log entry. Listing by status is then one index range scan on
``(status, created_at, id)`` instead of a latest-log lookup per activity.
"""

from __future__ import annotations

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op

revision = "ax0002"
down_revision = "ax0001"
branch_labels = None
depends_on = None

P = CONF.table_prefix
A, L = f"{P}activity", f"{P}activity_log"
STATUSES = ("QUEUED", "RUNNING", "COMPLETE", "ERROR", "CANCELED")
STATUS_CHECK = f"ck_{A}_status"
PERCENTAGE_CHECK = f"ck_{A}_percentage"
STATUS_INDEX = f"ix_{A}_status_created_at_id"


def upgrade() -> None:
    bind = op.get_bind()
    q = bind.dialect.identifier_preparer.quote
    allowed = ", ".join(f"'{s}'" for s in STATUSES)
    # plain ALTER TABLE ... ADD COLUMN on both databases: no table rebuild (SQLite's batch mode
    # would copy the table, and dropping the old copy cascades to the log), and on PostgreSQL
    # a constant default is a catalog change, not a rewrite
    bind.execute(sa.text(
        f"ALTER TABLE {q(A)} ADD COLUMN status VARCHAR(16) DEFAULT 'QUEUED' NOT NULL "
        f"CONSTRAINT {q(STATUS_CHECK)} CHECK (status IN ({allowed}))"
    ))
    bind.execute(sa.text(
        f"ALTER TABLE {q(A)} ADD COLUMN percentage INTEGER CONSTRAINT {q(PERCENTAGE_CHECK)} "
        f"CHECK (percentage IS NULL OR (percentage >= 0 AND percentage <= 100))"
    ))
    latest = (
        f"SELECT l.{{col}} FROM {q(L)} l WHERE l.activity_id = {q(A)}.id {{extra}}"
        f"ORDER BY l.created_at DESC, l.id DESC LIMIT 1"
    )
    bind.execute(sa.text(
        f"UPDATE {q(A)} SET "
        f"status = COALESCE(({latest.format(col='status', extra='')}), 'QUEUED'), "
        f"percentage = ({latest.format(col='percentage', extra='AND l.percentage IS NOT NULL ')})"
    ))
    op.create_index(STATUS_INDEX, A, ["status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index(STATUS_INDEX, table_name=A)
    # SQLite (3.35+) drops a column whose CHECK is its own column constraint, as here
    op.drop_column(A, "percentage")
    op.drop_column(A, "status")
