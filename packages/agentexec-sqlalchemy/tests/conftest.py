"""Fixtures for the activity store: the same tests on SQLite (file, memory) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from agentexec import runtime
from agentexec.memory.events import MemoryEvents
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec_sqlalchemy import engine as engines
from agentexec_sqlalchemy.activity.models import Activity, ActivityLog, ActivityMetadataPair, Base
from agentexec_sqlalchemy.activity.session import clear_global_session
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from sqlalchemy.engine import Engine

DATABASES = ("sqlite_file", "sqlite_memory", "postgresql")


@pytest.fixture(scope="session")
def pg_engine(postgres_server_url: str) -> Iterator[Engine]:
    """The session's PostgreSQL database with agentexec's tables."""
    engine = engines.get_engine(postgres_server_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _empty_pg(engine: Engine) -> Engine:
    # other test modules share the database: make sure the tables exist, then empty ours
    Base.metadata.create_all(
        engine, tables=[Activity.__table__, ActivityLog.__table__, ActivityMetadataPair]  # type: ignore[list-item]
    )
    with engine.begin() as conn:
        conn.execute(sa.delete(ActivityLog.__table__))
        conn.execute(sa.delete(Activity.__table__))
    return engine


@pytest.fixture(params=DATABASES)
def db_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine on an empty database with agentexec's tables, for each kind of database."""
    kind = request.param
    if kind == "postgresql":
        yield _empty_pg(request.getfixturevalue("pg_engine"))
        clear_global_session()
        return
    if kind == "sqlite_file":
        engine = engines.create_engine(f"sqlite:///{tmp_path_factory.mktemp('db')}/agentexec.db")
    else:
        engine = engines.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    clear_global_session()  # it may hold one of this engine's connections
    engine.dispose()


@pytest.fixture
def store(db_engine: Engine) -> SQLActivityStore:
    return SQLActivityStore(db_engine)


@pytest.fixture(autouse=True)
def _no_global_session() -> Iterator[None]:
    clear_global_session()
    yield
    clear_global_session()


@pytest.fixture
def ax_store(store: SQLActivityStore) -> Iterator[SQLActivityStore]:
    """``ax.activity`` talks to ``store`` (the other backends are in-memory)."""
    runtime.set_backends(
        runtime.Backends(
            queue=MemoryQueue(), results=MemoryResults(), events=MemoryEvents(), activity=store,
            cross_process=False,
        )
    )
    yield store
    runtime.set_backends(None)


class StatementCounter:
    """Counts the SQL statements an engine runs (``before_cursor_execute``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)

    @property
    def work(self) -> int:
        """The statements that are not transaction control (``BEGIN IMMEDIATE``, a savepoint
        and its release: what a write on SQLite's batching writer adds around its own)."""
        control = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
        return sum(1 for s in self.statements if not s.lstrip().upper().startswith(control))


@pytest.fixture
def statement_counter() -> type[StatementCounter]:
    return StatementCounter
