"""PostgreSQL: the transport's large columns compress with lz4 (issue #23).

Revision ID: ax0008
Revises: ax0007
Create Date: 2026-12-07

Event rows (a window's lifecycle events or log records as one JSON array), queue payloads,
dead letters and results over ~2 KB were compressed with pglz, which cost the server several
times the insert itself; lz4 costs a fraction (``agentexec_sqlalchemy.transport.compression``
has the figures). Only on a server with lz4 (PostgreSQL 14+ built with it); elsewhere, and on
SQLite, nothing changes. Values stored before keep their compression until rewritten.
"""

from __future__ import annotations

from agentexec.config import CONF
from agentexec_sqlalchemy.transport.compression import COLUMNS, set_compression
from alembic import op

revision = "ax0008"
down_revision = "ax0007"
branch_labels = None
depends_on = None

# COLUMNS is this revision's list: a column added to it later needs a revision of its own
# (running this one again only repeats a harmless ALTER)


def upgrade() -> None:
    set_compression(op.get_bind(), CONF.table_prefix, "lz4", columns=COLUMNS)


def downgrade() -> None:
    set_compression(op.get_bind(), CONF.table_prefix, "default", columns=COLUMNS)
