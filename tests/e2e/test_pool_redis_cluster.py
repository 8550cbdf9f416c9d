"""A real worker pool on a real Redis Cluster: queue, results and events on the session's
3-master cluster (``redis+cluster://``, ``redis_cluster_url`` in the root conftest), activity on
SQLite; two worker processes started as users start them (``python app_pool.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.runtime import Backends
from agentexec_redis.client import get_redis, is_cluster
from agentexec_redis.keys import queue_keys
from agentexec_redis.queue import RedisQueue
from e2e_support import WAIT, PoolProcess, Stack, python_app
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Job(BaseModel):
    """The context of app_pool's ``job`` task."""

    label: str = ""
    seconds: float = 0.0
    fail: bool = False


@pytest.fixture
def stack(redis_cluster_url: str, tmp_path: Path) -> Stack:
    """Overrides the e2e ``stack``: the producer (``producer``) and the pool (``run_pool``) both
    use the cluster URL for queue, results and events."""
    return Stack("redis-cluster", f"sqlite:///{tmp_path / 'agentexec.db'}", redis_cluster_url)


def statuses(agent_id: UUID) -> list[Status]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [log.status for log in detail.logs]


async def test_a_pool_of_two_workers_runs_every_task_on_a_redis_cluster(
    stack: Stack, producer: Backends, run_pool: Callable[..., PoolProcess], queue_name: str
) -> None:
    assert isinstance(producer.queue, RedisQueue) and producer.queue.url == stack.redis_url
    client = await get_redis(stack.redis_url)
    assert is_cluster(client)

    # waiting before the pool starts: 12 LOW, then 12 HIGH (which go to the front)
    lows = [await ax.enqueue("job", Job(label=f"low{i}", seconds=0.05), queue_name=queue_name)
            for i in range(12)]
    highs = [await ax.enqueue("job", Job(label=f"high{i}", seconds=0.05), queue_name=queue_name,
                              priority=ax.Priority.HIGH) for i in range(12)]
    assert await producer.queue.length(queue_name) == 24

    pool = run_pool(python_app(), AGENTEXEC_NUM_WORKERS=2, AGENTEXEC_WORKER_CONCURRENCY=1)
    # and more while it runs, both priorities, one batch through enqueue_many
    more = await ax.enqueue_many(
        [("job", Job(label=f"more{i}", seconds=0.02)) for i in range(12)], queue_name=queue_name
    )
    more.append(await ax.enqueue("job", Job(label="urgent"), queue_name=queue_name,
                                 priority=ax.Priority.HIGH))
    tasks = [*lows, *highs, *more]

    labels = await ax.gather(*tasks, timeout=WAIT)
    assert list(labels) == [f"low{i}" for i in range(12)] + [f"high{i}" for i in range(12)] + [
        f"more{i}" for i in range(12)
    ] + ["urgent"]
    wrong = [(t.agent_id, statuses(t.agent_id)) for t in tasks
             if statuses(t.agent_id) != [Status.QUEUED, Status.RUNNING, Status.COMPLETE]]
    assert not wrong, wrong[:3]

    starts = [e for e in pool.events() if e["event"] == "start"]
    assert sorted(e["label"] for e in starts) == sorted(labels)  # each ran once
    assert len({e["pid"] for e in starts}) == 2  # by both worker processes
    # the 13 HIGH ("urgent" too) were in front of every LOW: one task per worker at a time, so
    # the first ten handlers to start ran HIGH tasks (the last HIGH may race the first LOW)
    high = {f"high{i}" for i in range(12)} | {"urgent"}
    assert {e["label"] for e in starts[:10]} <= high, [e["label"] for e in starts]

    # the workers' logs came through the event stream on the cluster, their heartbeats and
    # in-flight lists live in the queue's slot there, and nothing is left in flight
    pool.wait_output("[Worker 1] Processing task: job")
    assert "[Worker 0] Processing task: job" in pool.output
    keys = queue_keys(queue_name)
    assert await client.zcard(keys.consumers) >= 2
    # a task's ack follows its result (the outbox's order): the last one may still be on its way
    stats = await producer.queue.stats(queue_name)
    with anyio.move_on_after(5):
        while stats.in_flight:
            await anyio.sleep(0.05)
            stats = await producer.queue.stats(queue_name)
    assert (stats.high, stats.low, stats.in_flight, stats.dead) == (0, 0, 0, 0)
    assert pool.stop() == 0
