"""PostgreSQL: the transport's large columns are compressed with lz4, not pglz.

A value over ~2 KB is compressed before it is stored (TOAST). Event rows often are: a worker
sends each 50 ms window's lifecycle events of one type, or its log records, as one JSON array
of 10 KB and more. PostgreSQL's default compressor, pglz, then costs the server ~100 µs of CPU
per 10 KB row, several times what the insert costs without it; lz4 compresses about as well at
a small fraction of that, so a row of 10 KB costs about what a row of 1 byte costs (measured on
PostgreSQL 15, 2,000 rows of 32 task events: 120-145 µs of server CPU per row with pglz, 40-45
µs with lz4, 35-45 µs for a 1-byte row). Queue payloads, dead letters and results are large
when contexts and results are, and get the same.

lz4 needs PostgreSQL 14 or newer built with lz4 (Debian's, the official images' and the cloud
services' are); elsewhere the columns keep the server's default, and nothing else changes.
Values stored before keep their compression until rewritten. Migration ax0008 applies this to
an existing database; ``create_all`` applies it to the tables it makes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: (table suffix after ``CONF.table_prefix``, column): what lz4 compresses
COLUMNS: tuple[tuple[str, str], ...] = (
    ("event", "data"),
    ("queue", "payload"),
    ("queue_delayed", "payload"),
    ("queue_parked", "payload"),
    ("dead_letter", "payload"),
    ("result", "data"),
)


def lz4_available(conn: Connection) -> bool:
    """Whether this server can compress with lz4: its ``default_toast_compression`` setting
    lists the methods it was built with (PostgreSQL 14+)."""
    if conn.dialect.name != "postgresql":
        return False
    methods = conn.execute(sa.text(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
    )).scalar()
    return "lz4" in (methods or ())


def set_compression(
    conn: Connection, prefix: str, method: str = "lz4", only: Any = None,
    columns: tuple[tuple[str, str], ...] = COLUMNS,
) -> None:
    """``ALTER TABLE ... ALTER COLUMN ... SET COMPRESSION method`` on each of ``columns``
    (of the tables named in ``only``, when given) that exists; nothing where lz4 is not
    available. ``method="default"`` returns them to the server's default."""
    if not lz4_available(conn):
        return
    quote = conn.dialect.identifier_preparer.quote
    for suffix, column in columns:
        table = f"{prefix}{suffix}"
        if only is not None and table not in only:
            continue
        if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": quote(table)}).scalar() is None:
            continue
        conn.execute(sa.text(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} SET COMPRESSION {method}"))
