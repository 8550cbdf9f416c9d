"""Column types shared by agentexec's tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite keeps no offset and hands back naive values; PostgreSQL hands back the session's time
    zone. Normalising at the boundary makes both return UTC, and lets a naive value in a query
    (``datetime.utcnow()``, as the spec's examples use) mean UTC instead of failing or shifting.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store one canonical form (UTC, no offset)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # process_bind_param and SQLite's DATETIME formatting in one step: the same text
        # (``YYYY-MM-DD HH:MM:SS.ffffff``) at a third of the cost; every line a worker writes
        # binds one or two of these
        return _sqlite_text

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


#: JSON everywhere, JSONB on PostgreSQL (containment queries and a GIN index)
JSONType: Any = JSON().with_variant(JSONB(), "postgresql")
