"""The SQL queue, results and events pass the conformance kit on SQLite and on PostgreSQL, and a
real ``ax.Pool`` runs on each (``PoolSuite``: queue, results, events and activity in one database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agentexec.testing import Capabilities, EventsSuite, PoolSuite, QueueSuite, ResultsSuite
from agentexec_sqlalchemy.transport.events import SQLEvents
from agentexec_sqlalchemy.transport.queue import SQLQueue
from agentexec_sqlalchemy.transport.results import SQLResults


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path: Path = tmp_path_factory.mktemp("sqlkit") / "agentexec.db"
    yield f"sqlite:///{path}"


# -- SQLite ---------------------------------------------------------------------------------
class TestSQLiteQueue(QueueSuite):
    @pytest.fixture
    async def queue(self, sqlite_url: str) -> AsyncIterator[SQLQueue]:
        q = SQLQueue(sqlite_url)
        yield q
        await q.close()


class TestSQLiteResults(ResultsSuite):
    @pytest.fixture
    async def results(self, sqlite_url: str) -> AsyncIterator[SQLResults]:
        r = SQLResults(sqlite_url)
        yield r
        await r.close()


class TestSQLiteEvents(EventsSuite):
    capabilities = Capabilities(replay=True)

    @pytest.fixture
    async def events(self, sqlite_url: str) -> AsyncIterator[SQLEvents]:
        e = SQLEvents(sqlite_url)
        yield e
        await e.close()


# -- PostgreSQL -----------------------------------------------------------------------------
class TestPostgresQueue(QueueSuite):
    @pytest.fixture
    async def queue(self, postgres_server_url: str) -> AsyncIterator[SQLQueue]:
        q = SQLQueue(postgres_server_url)
        yield q
        await q.close()


class TestPostgresResults(ResultsSuite):
    @pytest.fixture
    async def results(self, postgres_server_url: str) -> AsyncIterator[SQLResults]:
        r = SQLResults(postgres_server_url)
        yield r
        await r.close()


class TestPostgresEvents(EventsSuite):
    capabilities = Capabilities(replay=True)

    @pytest.fixture
    async def events(self, postgres_server_url: str) -> AsyncIterator[SQLEvents]:
        e = SQLEvents(postgres_server_url)
        yield e
        await e.close()


class TestSQLitePool(PoolSuite):
    @pytest.fixture
    def pool_env(self, tmp_path: Path) -> dict[str, str]:
        return {"AGENTEXEC_DATABASE_URL": f"sqlite:///{tmp_path / 'agentexec.db'}"}


class TestPostgresPool(PoolSuite):
    @pytest.fixture
    def pool_env(self, postgres_server_url: str) -> dict[str, str]:
        return {"AGENTEXEC_DATABASE_URL": postgres_server_url}
