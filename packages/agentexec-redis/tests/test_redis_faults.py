"""Faults (issue 14): which Redis errors a worker waits out, and a consumer's registration."""

from __future__ import annotations

import uuid

import pytest
from agentexec.task import Envelope
from agentexec_redis._resilience import is_transient
from agentexec_redis.queue import RedisQueue
from agentexec_redis.results import RedisResults
from redis.exceptions import (
    BusyLoadingError,
    DataError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "exc",
    [
        RedisConnectionError("Error 111 connecting"), RedisTimeoutError("Timeout reading"),
        BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        ReadOnlyError("READONLY You can't write against a read only replica."),
        ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"),
        ConnectionRefusedError(),
    ],
)
def test_unreachable_or_not_writing_for_now_is_transient(exc: Exception) -> None:
    assert is_transient(exc)
    assert RedisQueue.is_transient(exc) and RedisResults.is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [ResponseError("ERR string exceeds maximum allowed size (proto-max-bulk-len)"), DataError("bad"), ValueError()],
)
def test_a_reply_refusing_the_data_is_permanent(exc: Exception) -> None:
    assert not is_transient(exc)


async def test_a_consumer_is_registered_from_its_first_take(redis_url: str) -> None:
    """A worker heartbeats as it starts, then its first take reaps what an earlier process
    under its id left (which unregisters the id): the take registers it again. Before, it
    stayed unregistered until its next heartbeat (a third of a lease: 10 s by default), so a
    pool killed meanwhile left tasks in an in-flight list no reaper looked at."""
    queue = RedisQueue(redis_url)
    queue.lease_timeout = 30.0
    name = f"reg-{uuid.uuid4().hex[:8]}"
    await queue.heartbeat(name, "c1")
    await queue.push(Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=name))
    lease = await queue.reserve(name, "c1", 1.0)
    assert lease is not None
    stats = await queue.stats(name)
    assert stats.in_flight == 1 and set(stats.consumers) == {"c1"}
    await queue.ack(lease)
