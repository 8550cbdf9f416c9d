"""The SQL activity store passes the conformance kit on SQLite (file, memory) and PostgreSQL.

On PostgreSQL the kit runs on the session's shared database as every other test module left it,
not emptied: the kit's tests read only their own records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agentexec.testing import ActivityStoreSuite, Capabilities, PluginPackagingSuite
from agentexec_sqlalchemy import engine as engines
from agentexec_sqlalchemy.activity.models import Base
from agentexec_sqlalchemy.activity.session import clear_global_session
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from sqlalchemy.engine import Engine


@pytest.fixture(params=("sqlite_file", "sqlite_memory", "postgresql"))
def kit_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database per test; PostgreSQL is the session's shared one, not emptied."""
    if request.param == "postgresql":
        shared: Engine = request.getfixturevalue("pg_engine")
        Base.metadata.create_all(shared)
        yield shared
        clear_global_session()
        return
    url = f"sqlite:///{tmp_path / 'agentexec.db'}" if request.param == "sqlite_file" else "sqlite://"
    engine = engines.create_engine(url)
    Base.metadata.create_all(engine)
    yield engine
    clear_global_session()
    engine.dispose()


class TestSQLActivityStore(ActivityStoreSuite):
    """Runs once per database of ``kit_engine``."""

    capabilities = Capabilities(activity_metadata=True)

    @pytest.fixture
    async def activity_store(self, kit_engine: Engine) -> AsyncIterator[SQLActivityStore]:
        store = SQLActivityStore(kit_engine)
        yield store
        await store.aclose()


class TestSQLAlchemyPackaging(PluginPackagingSuite):
    distribution = "agentexec-sqlalchemy"
    heavy_modules = ("sqlalchemy",)
