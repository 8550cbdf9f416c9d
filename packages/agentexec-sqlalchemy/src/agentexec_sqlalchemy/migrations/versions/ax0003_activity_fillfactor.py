"""PostgreSQL: the activity table keeps a fifth of each page free (``fillfactor = 80``).

Revision ID: ax0003
Revises: ax0002
Create Date: 2026-12-07

Every log entry updates its activity row (``updated_at``, and the status or percentage). With
room left on the row's page, an update that changes no indexed column (a progress line: only
``updated_at`` and ``percentage``) is a HOT update: no new entry in any of the table's five
indexes. Measured in benchmarks/README.md (issue #20). Pages written before this revision keep
their fill until rewritten (``VACUUM FULL`` or ``CLUSTER``, if wanted); new ones get the room.
SQLite has no such setting: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op

revision = "ax0003"
down_revision = "ax0002"
branch_labels = None
depends_on = None

A = f"{CONF.table_prefix}activity"
FILLFACTOR = 80


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        quoted = bind.dialect.identifier_preparer.quote(A)
        bind.execute(sa.text(f"ALTER TABLE {quoted} SET (fillfactor = {FILLFACTOR})"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        quoted = bind.dialect.identifier_preparer.quote(A)
        bind.execute(sa.text(f"ALTER TABLE {quoted} RESET (fillfactor)"))
