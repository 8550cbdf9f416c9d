"""Core's memory backends pass every suite of the conformance kit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentexec.memory.activity import MemoryActivityStore
from agentexec.memory.events import MemoryEvents
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.testing import (
    ActivityStoreSuite,
    EventsSuite,
    PluginPackagingSuite,
    QueueSuite,
    ResultsSuite,
)


class TestMemoryQueue(QueueSuite):
    @pytest.fixture
    async def queue(self) -> AsyncIterator[MemoryQueue]:
        q = MemoryQueue("memory://")
        yield q
        await q.close()


class TestMemoryResults(ResultsSuite):
    @pytest.fixture
    async def results(self) -> AsyncIterator[MemoryResults]:
        r = MemoryResults("memory://")
        yield r
        await r.close()


class TestMemoryEvents(EventsSuite):
    @pytest.fixture
    async def events(self) -> AsyncIterator[MemoryEvents]:
        e = MemoryEvents("memory://")
        yield e
        await e.close()


class TestMemoryActivityStore(ActivityStoreSuite):
    @pytest.fixture
    async def activity_store(self) -> AsyncIterator[MemoryActivityStore]:
        store = MemoryActivityStore("memory://")
        yield store
        await store.aclose()


class TestCorePackaging(PluginPackagingSuite):
    distribution = "agentexec-core"
    heavy_modules = ("redis", "sqlalchemy", "openai", "agents")
