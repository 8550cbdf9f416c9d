"""The SQL activity store passes the conformance kit on SQLite (file, memory) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agentexec.testing import ActivityStoreSuite, PluginPackagingSuite
from agentexec_sqlalchemy.store import SQLActivityStore
from sqlalchemy.engine import Engine


class TestSQLActivityStore(ActivityStoreSuite):
    """Runs once per database of the ``db_engine`` fixture (each test on an empty database)."""

    @pytest.fixture
    async def activity_store(self, db_engine: Engine) -> AsyncIterator[SQLActivityStore]:
        store = SQLActivityStore(db_engine)
        yield store
        await store.aclose()


class TestSQLAlchemyPackaging(PluginPackagingSuite):
    distribution = "agentexec-sqlalchemy"
    heavy_modules = ("sqlalchemy",)
