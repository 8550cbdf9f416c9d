"""PostgreSQL: ``{prefix}activity_metadata_pair``, one row per top-level metadata pair of an
activity, so that a tenant's ``list()`` page *and* its exact ``total`` are btree index scans.

A filter answered by the GIN index of ``metadata`` must still visit every matching activity row
(GIN is lossy, and has no index-only scans): counting a tenant of 33,000 rows took 20-30 ms.
Here the count is an index-only scan of ``(key, value, created_at, activity_id)`` and the page
a backward scan of the same index (benchmarks/README.md, issue #16).

The rows are written by a trigger on the activity table, so every writer keeps them (the
store, its psycopg fast path, the ORM, plain SQL), and deleted by the foreign key's cascade.
Values compare as ``jsonb``, typed as the filter's rules say (1 = 1.0, 1 != true != "1").

Not every pair is kept: a btree entry must stay small. :func:`kept` says which pairs are, in
Python for the filter and in SQL (:data:`KEPT_SQL`) for the trigger; the two must agree on every
value a filter can hold (tests/test_activity_metadata_pairs.py checks them against each
other). The rule depends only on the key and on the JSON value (never on how a number was
spelled), so every row equal to a kept filter pair is kept too. Only a filter of exactly one
kept pair reads this table (``queries.selection``); a pair not kept (a list, an object, a long
string, a number with more than 18 digits on either side of the point), or several pairs (which
the GIN index intersects before visiting any row), go through the GIN index as before. SQLite
has the table (the schema is the same on both) but no trigger: it filters with ``json_each``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

from agentexec.config import CONF
from sqlalchemy import DDL, Column, ForeignKey, Index, Table, Text, Uuid, event

from agentexec_sqlalchemy.types import JSONType, UTCDateTime

PAIR_TABLE = f"{CONF.table_prefix}activity_metadata_pair"
#: the longest key and string value kept, in characters (4 bytes each at most in UTF-8: an
#: index entry stays well under PostgreSQL's ~2,700-byte limit)
KEY_CHARS = 128
STRING_CHARS = 256
#: numbers kept: |n| < 10**18 with at most 18 decimals (at most 36 digits)
NUMBER_DIGITS = 18


def kept(key: str, value: Any) -> bool:
    """Whether the pair table holds the pair ``key: value`` of an activity's metadata."""
    if len(key) > KEY_CHARS:
        return False
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return bool(len(value) <= STRING_CHARS)
    if isinstance(value, int):
        return bool(abs(value) < 10**NUMBER_DIGITS)
    if isinstance(value, float):
        # the number PostgreSQL reads from the JSON text it is sent (repr), exactly
        exact = Fraction(Decimal(json.dumps(value)))
        return bool(abs(exact) < 10**NUMBER_DIGITS) and (exact * 10**NUMBER_DIGITS).denominator == 1
    return False


#: :func:`kept` in SQL, on a pair ``pair.key`` / ``pair.value`` (from ``jsonb_each``)
KEPT_SQL = f"""length(pair.key) <= {KEY_CHARS} AND CASE jsonb_typeof(pair.value)
        WHEN 'string' THEN length(pair.value #>> '{{}}') <= {STRING_CHARS}
        WHEN 'number' THEN abs(pair.value::numeric) < 1e{NUMBER_DIGITS}
            AND pair.value::numeric = round(pair.value::numeric, {NUMBER_DIGITS})
        WHEN 'boolean' THEN true
        WHEN 'null' THEN true
        ELSE false END"""


def trigger_ddl(activity: str, pairs: str, quote: Any) -> list[str]:
    """The function and triggers that keep ``pairs`` (table name) equal to the kept pairs of
    every row of ``activity``, and the pairs of the rows that exist. ``quote``: the dialect's
    identifier quoting. Migration ax0007 runs the same (its own copy: a migration is frozen;
    tests/test_migrations.py compares the two)."""
    function = quote(f"{pairs}_sync")
    return [
        f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM {quote(pairs)} WHERE activity_id = OLD.id;
    END IF;
    INSERT INTO {quote(pairs)} (activity_id, key, value, created_at)
    SELECT NEW.id, pair.key, pair.value, NEW.created_at
    FROM jsonb_each(CASE WHEN jsonb_typeof(NEW.metadata) = 'object' THEN NEW.metadata END) AS pair
    WHERE {KEPT_SQL};
    RETURN NULL;
END
$body$""",
        # an activity without metadata (NULL, or a JSON null) costs no call
        f"CREATE TRIGGER {quote(f'{pairs}_insert')} AFTER INSERT ON {quote(activity)} "
        f"FOR EACH ROW WHEN (jsonb_typeof(NEW.metadata) = 'object') EXECUTE FUNCTION {function}()",
        # for other writers: agentexec's own updates never set these columns, so never fire it
        f"CREATE TRIGGER {quote(f'{pairs}_update')} AFTER UPDATE OF metadata, created_at "
        f"ON {quote(activity)} FOR EACH ROW WHEN (OLD.metadata IS DISTINCT FROM NEW.metadata "
        f"OR OLD.created_at IS DISTINCT FROM NEW.created_at) EXECUTE FUNCTION {function}()",
        # the activities that exist already: create_all on an older database makes a complete
        # table too (the trigger sees every later row: CREATE TRIGGER locks out writers until
        # this transaction ends)
        f"INSERT INTO {quote(pairs)} (activity_id, key, value, created_at) "
        f"SELECT activity.id, pair.key, pair.value, activity.created_at "
        f"FROM {quote(activity)} AS activity, jsonb_each(activity.metadata) AS pair "
        f"WHERE jsonb_typeof(activity.metadata) = 'object' AND {KEPT_SQL} ON CONFLICT DO NOTHING",
    ]


def pair_table(metadata: Any, activity_table: str) -> Table:
    """The pair table on ``metadata`` (``ax.Base.metadata``), with its trigger on PostgreSQL."""
    table = Table(
        PAIR_TABLE,
        metadata,
        Column("activity_id", Uuid, ForeignKey(f"{activity_table}.id", ondelete="CASCADE"),
               primary_key=True),
        Column("key", Text, primary_key=True),
        Column("value", JSONType, nullable=False),
        # the activity's, so that the page is cut in the same order as list()'s
        Column("created_at", UTCDateTime, nullable=False),
    )
    # one tenant's activities newest first, and their count, without visiting the table
    Index(f"ix_{PAIR_TABLE}_lookup", table.c.key, table.c.value, table.c.created_at,
          table.c.activity_id)

    @event.listens_for(table, "after_create")
    def _create_trigger(target: Table, connection: Any, **_: Any) -> None:
        if connection.dialect.name != "postgresql":
            return
        quote = connection.dialect.identifier_preparer.quote
        for statement in trigger_ddl(activity_table, PAIR_TABLE, quote):
            connection.execute(DDL(statement.replace("%", "%%")))  # type: ignore[no-untyped-call]

    @event.listens_for(table, "after_drop")
    def _drop_function(target: Table, connection: Any, **_: Any) -> None:
        if connection.dialect.name != "postgresql":
            return
        quote = connection.dialect.identifier_preparer.quote
        connection.execute(DDL(  # type: ignore[no-untyped-call]
            f"DROP FUNCTION IF EXISTS {quote(f'{PAIR_TABLE}_sync')}() CASCADE"
        ))

    return table


__all__ = ["KEPT_SQL", "PAIR_TABLE", "kept", "pair_table", "trigger_ddl"]
