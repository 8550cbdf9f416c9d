"""The Redis queue, results and events pass the conformance kit: on one server (real Redis in CI,
else fakeredis) and on a real local 3-master Redis Cluster (``redis+cluster://``); and a real
``ax.Pool`` runs on them (``PoolSuite``, real Redis only: worker processes cannot share fakeredis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agentexec.testing import (
    Capabilities,
    EventsSuite,
    PluginPackagingSuite,
    PoolSuite,
    QueueSuite,
    ResultsSuite,
)
from agentexec_redis.events import RedisEvents
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RedisResults


class TestRedisQueue(QueueSuite):
    @pytest.fixture
    async def queue(self, redis_url: str) -> AsyncIterator[RedisQueue]:
        q = RedisQueue(redis_url)
        yield q
        await q.close()


class TestRedisResults(ResultsSuite):
    @pytest.fixture
    async def results(self, redis_url: str) -> AsyncIterator[RedisResults]:
        r = RedisResults(redis_url)
        yield r
        await r.close()


class TestRedisEvents(EventsSuite):
    capabilities = Capabilities(replay=True)

    @pytest.fixture
    async def events(self, redis_url: str) -> AsyncIterator[RedisEvents]:
        e = RedisEvents(redis_url)
        yield e
        await e.close()


class TestRedisPackaging(PluginPackagingSuite):
    distribution = "agentexec-redis"
    heavy_modules = ("redis",)


class TestRedisPool(PoolSuite):
    """Queue, results and events on Redis; activities in a SQLite file."""

    @pytest.fixture
    def pool_env(self, redis_server_url: str | None, tmp_path: Path) -> dict[str, str]:
        if redis_server_url is None:
            pytest.skip("no real Redis server (worker processes cannot share fakeredis)")
        return {"AGENTEXEC_REDIS_URL": redis_server_url,
                "AGENTEXEC_DATABASE_URL": f"sqlite:///{tmp_path / 'activity.db'}"}


# -- the same kit on a real 3-master Redis Cluster (`cluster_url`: started once per session) ----
class TestRedisClusterQueue(QueueSuite):
    @pytest.fixture
    async def queue(self, cluster_url: str) -> AsyncIterator[RedisQueue]:
        q = RedisQueue(cluster_url)
        yield q
        await q.close()


class TestRedisClusterResults(ResultsSuite):
    @pytest.fixture
    async def results(self, cluster_url: str) -> AsyncIterator[RedisResults]:
        r = RedisResults(cluster_url)
        yield r
        await r.close()


class TestRedisClusterEvents(EventsSuite):
    capabilities = Capabilities(replay=True)

    @pytest.fixture
    async def events(self, cluster_url: str) -> AsyncIterator[RedisEvents]:
        e = RedisEvents(cluster_url)
        yield e
        await e.close()
