"""UTCDateTime on SQLite: one canonical text per instant (SQLite compares timestamps as text),
bound in one step, exactly as SQLAlchemy's DATETIME formats the UTC value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from agentexec_sqlalchemy.types import UTCDateTime
from sqlalchemy.dialects import sqlite

VALUES = [
    datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC),
    datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 12, 8, 6, 2, 3, 5, tzinfo=timezone(timedelta(hours=5))),  # stored as UTC
    datetime(2026, 12, 8, 1, 2, 3),  # naive: taken as UTC
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
]


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_the_bound_text_is_sqlalchemys_datetime_of_the_utc_value(value: datetime) -> None:
    dialect = sqlite.dialect()
    column = UTCDateTime()
    bind = column.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    reference = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert reference is not None
    assert bind(value) == reference(column.process_bind_param(value, dialect))
    assert bind(None) is None


def test_a_round_trip_through_sqlite_compares_and_returns_utc() -> None:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("at", UTCDateTime()))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"at": v} for v in VALUES])
        later = conn.execute(
            sa.select(table.c.at).where(table.c.at > datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC))
        ).scalars().all()
    assert [v.tzinfo for v in later] == [UTC, UTC]
    assert sorted(later) == sorted([VALUES[0], VALUES[2]])
