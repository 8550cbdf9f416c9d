"""Database errors translated into messages that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc
from sqlalchemy.engine import Engine

from agentexec_sqlalchemy.models import ACTIVITY_LOG_TABLE, ACTIVITY_TABLE


class MissingTablesError(RuntimeError):
    """agentexec's tables do not exist in the database the store talks to."""

    def __init__(self, engine: Engine | None) -> None:
        where = engine.url.render_as_string(hide_password=True) if engine is not None else "the database"
        super().__init__(
            f"agentexec's tables ({ACTIVITY_TABLE}, {ACTIVITY_LOG_TABLE}) do not exist in {where}: "
            f"create them once with ax.Base.metadata.create_all(engine) "
            f"(import agentexec as ax; engine = sqlalchemy.create_engine(url))"
        )


def is_missing_table(error: exc.DBAPIError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "42P01":  # PostgreSQL undefined_table
        return True
    return "no such table" in str(orig)


def is_unique_violation(error: exc.IntegrityError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    return "UNIQUE constraint failed" in str(orig)


@contextmanager
def explain_missing_tables(engine: Engine | None) -> Iterator[None]:
    try:
        yield
    except (exc.OperationalError, exc.ProgrammingError) as error:
        if is_missing_table(error):
            raise MissingTablesError(engine) from error
        raise
