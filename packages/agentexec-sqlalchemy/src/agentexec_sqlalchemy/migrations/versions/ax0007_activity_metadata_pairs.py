"""The activities' metadata pairs in a table of their own, for tenant filters (issue #16).

Revision ID: ax0007
Revises: ax0006
Create Date: 2026-12-07

``{prefix}activity_metadata_pair``: one row per kept top-level pair of an activity's metadata
(see ``agentexec_sqlalchemy.activity.metadata_pairs``), indexed by ``(key, value, created_at,
activity_id)``, so that a tenant's page and its exact total are btree index scans on
PostgreSQL. There a trigger on the activity table keeps the rows, and this revision fills them
for the activities that exist. SQLite gets the (empty) table only: it filters with ``json_each``.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from agentexec.config import CONF
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ax0007"
down_revision = "ax0006"
branch_labels = None
depends_on = None

P = CONF.table_prefix
A = f"{P}activity"
PAIRS = f"{P}activity_metadata_pair"
LOOKUP = f"ix_{PAIRS}_lookup"
FUNCTION = f"{PAIRS}_sync"
INSERT_TRIGGER = f"{PAIRS}_insert"
UPDATE_TRIGGER = f"{PAIRS}_update"

# the rule of this revision (metadata_pairs.kept): keys of up to 128 characters; strings of up
# to 256; numbers below 10**18 with at most 18 decimals; true, false and null
KEPT = """length(pair.key) <= 128 AND CASE jsonb_typeof(pair.value)
        WHEN 'string' THEN length(pair.value #>> '{}') <= 256
        WHEN 'number' THEN abs(pair.value::numeric) < 1e18
            AND pair.value::numeric = round(pair.value::numeric, 18)
        WHEN 'boolean' THEN true
        WHEN 'null' THEN true
        ELSE false END"""


def _postgresql(quote: Callable[[str], str]) -> list[str]:
    """The trigger that keeps the pairs, and the pairs of the activities that exist."""
    return [
        f"""CREATE OR REPLACE FUNCTION {quote(FUNCTION)}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM {quote(PAIRS)} WHERE activity_id = OLD.id;
    END IF;
    INSERT INTO {quote(PAIRS)} (activity_id, key, value, created_at)
    SELECT NEW.id, pair.key, pair.value, NEW.created_at
    FROM jsonb_each(CASE WHEN jsonb_typeof(NEW.metadata) = 'object' THEN NEW.metadata END) AS pair
    WHERE {KEPT};
    RETURN NULL;
END
$body$""",
        f"DROP TRIGGER IF EXISTS {quote(INSERT_TRIGGER)} ON {quote(A)}",
        f"CREATE TRIGGER {quote(INSERT_TRIGGER)} AFTER INSERT ON {quote(A)} "
        f"FOR EACH ROW WHEN (jsonb_typeof(NEW.metadata) = 'object') EXECUTE FUNCTION {quote(FUNCTION)}()",
        f"DROP TRIGGER IF EXISTS {quote(UPDATE_TRIGGER)} ON {quote(A)}",
        f"CREATE TRIGGER {quote(UPDATE_TRIGGER)} AFTER UPDATE OF metadata, created_at "
        f"ON {quote(A)} FOR EACH ROW WHEN (OLD.metadata IS DISTINCT FROM NEW.metadata "
        f"OR OLD.created_at IS DISTINCT FROM NEW.created_at) EXECUTE FUNCTION {quote(FUNCTION)}()",
        # the activities that exist (the trigger sees the new ones: this transaction holds
        # the table's lock from CREATE TRIGGER on)
        f"INSERT INTO {quote(PAIRS)} (activity_id, key, value, created_at) "
        f"SELECT a.id, pair.key, pair.value, a.created_at FROM {quote(A)} AS a, "
        f"jsonb_each(a.metadata) AS pair WHERE jsonb_typeof(a.metadata) = 'object' AND {KEPT} "
        f"ON CONFLICT DO NOTHING",
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if PAIRS not in set(sa.inspect(bind).get_table_names()):
        op.create_table(
            PAIRS,
            sa.Column("activity_id", sa.Uuid(), nullable=False),
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("value", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["activity_id"], [f"{A}.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("activity_id", "key"),
        )
        op.create_index(LOOKUP, PAIRS, ["key", "value", "created_at", "activity_id"])
    if bind.dialect.name == "postgresql":
        for statement in _postgresql(bind.dialect.identifier_preparer.quote):
            bind.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        q = bind.dialect.identifier_preparer.quote
        # the triggers go with the function
        bind.execute(sa.text(f"DROP FUNCTION IF EXISTS {q(FUNCTION)}() CASCADE"))
    op.drop_index(LOOKUP, table_name=PAIRS)
    op.drop_table(PAIRS)
