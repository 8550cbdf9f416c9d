"""Database errors translated into messages that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc
from sqlalchemy.engine import Engine

from agentexec_sqlalchemy.activity.models import ACTIVITY_LOG_TABLE, ACTIVITY_TABLE


class MissingTablesError(RuntimeError):
    """agentexec's tables do not exist in the database the store talks to."""

    def __init__(self, engine: Engine | None) -> None:
        where = engine.url.render_as_string(hide_password=True) if engine is not None else "the database"
        super().__init__(
            f"agentexec's tables ({ACTIVITY_TABLE}, {ACTIVITY_LOG_TABLE}) do not exist in {where}: "
            f"create them once with ax.Base.metadata.create_all(engine) "
            f"(import agentexec as ax; engine = sqlalchemy.create_engine(url))"
        )


class SchemaOutdatedError(RuntimeError):
    """agentexec's tables exist but are older than this release (a column it needs is missing)."""

    def __init__(self, engine: Engine | None) -> None:
        where = engine.url.render_as_string(hide_password=True) if engine is not None else "the database"
        super().__init__(
            f"agentexec's tables in {where} are older than this agentexec release: upgrade them "
            f"with `agentexec db upgrade` (AGENTEXEC_DATABASE_URL set to that database, or "
            f"--url), or from Python: agentexec_sqlalchemy.migrations.upgrade(engine)"
        )


def is_transient(error: BaseException) -> bool:
    """Whether a failed call may succeed later unchanged (:mod:`agentexec.faults`): the
    database unreachable or restarting, a connection lost, a full disk, a lock or a timeout
    (the DB-API's ``OperationalError`` / ``InterfaceError`` and connection errors). Data the
    database refuses (``DataError``, ``IntegrityError``, an encoding error) is permanent."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        return _driver_transient(error.orig)
    if isinstance(error, exc.DisconnectionError | exc.TimeoutError | exc.PendingRollbackError):
        return True  # a lost connection, no free pooled one, a connection reset after a failure
    return _driver_transient(error)


def _driver_transient(error: BaseException | None) -> bool:
    """A DB-API error raised outside SQLAlchemy (psycopg's async writes): its class, or a base,
    is the DB-API's ``OperationalError`` or ``InterfaceError``."""
    if error is None:
        return False
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(error).__mro__
    )


def is_missing_table(error: exc.DBAPIError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) == "42P01":  # PostgreSQL undefined_table
        return True
    return "no such table" in str(orig)


def is_missing_column(error: BaseException | None) -> bool:
    if getattr(error, "sqlstate", None) == "42703":  # PostgreSQL undefined_column
        return True
    text = str(error)
    return "no such column" in text or "has no column named" in text


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
        if is_missing_column(error.orig):
            raise SchemaOutdatedError(engine) from error
        raise
