"""Core's memory backends pass every suite of the conformance kit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentexec.activity.status import Status
from agentexec.memory.activity import MemoryActivityStore
from agentexec.memory.events import MemoryEvents
from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults
from agentexec.testing import (
    ActivityStoreSuite,
    Capabilities,
    EventsSuite,
    PluginPackagingSuite,
    PoolSuite,
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
    capabilities = Capabilities(replay=True)

    @pytest.fixture
    async def events(self) -> AsyncIterator[MemoryEvents]:
        e = MemoryEvents("memory://")
        yield e
        await e.close()


class TestMemoryActivityStore(ActivityStoreSuite):
    capabilities = Capabilities(activity_metadata=True)

    @pytest.fixture
    async def activity_store(self) -> AsyncIterator[MemoryActivityStore]:
        store = MemoryActivityStore("memory://")
        yield store
        await store.aclose()


class TestCorePackaging(PluginPackagingSuite):
    distribution = "agentexec-core"
    heavy_modules = ("redis", "sqlalchemy", "openai", "agents")


class TestMemoryActivityStoreShared(ActivityStoreSuite):
    """The same suite on ONE store shared by every test, holding other people's activities of
    every status and metadata: the kit's tests read only their own records."""

    capabilities = Capabilities(activity_metadata=True)
    shared = MemoryActivityStore("memory://")

    @pytest.fixture
    async def activity_store(self) -> AsyncIterator[MemoryActivityStore]:
        store = self.shared
        for status in (Status.RUNNING, Status.COMPLETE, Status.ERROR, Status.CANCELED):
            foreign = store.create("someone_else", "theirs", metadata={"org": "other", "user": "u1"})
            store.append(foreign, "theirs", status=status, percentage=50)
        store.create("someone_else", "still queued", metadata={"tier": 1})
        yield store


class TestMemoryPool(PoolSuite):
    @pytest.fixture
    def pool_env(self) -> dict[str, str]:
        return {f"AGENTEXEC_{kind}_BACKEND": "memory://" for kind in ("QUEUE", "RESULTS", "EVENTS", "ACTIVITY")}
