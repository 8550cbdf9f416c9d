"""RedisResults: wake-up latency, many concurrent waiters on few connections, the key layout."""

from __future__ import annotations

import statistics
import time
import uuid

import anyio
import pytest
from agentexec.config import CONF
from agentexec_redis import keys
from agentexec_redis.client import get_redis
from agentexec_redis.results import RedisResults

pytestmark = pytest.mark.anyio


async def test_value_lives_under_its_key_with_the_ttl(redis_url: str) -> None:
    results = RedisResults(redis_url)
    agent_id = uuid.uuid4()
    await results.set(agent_id, b"done", 120)
    r = await get_redis(redis_url)
    assert keys.result(agent_id) == f"agentexec:result:{agent_id}"
    assert await r.get(keys.result(agent_id)) == b"done"
    assert 0 < await r.ttl(keys.result(agent_id)) <= 120


async def test_an_empty_outcome_completes_its_waiters(redis_url: str) -> None:
    """Whatever bytes core stores for a handler that returned None (even b"") wake the waiter."""
    results = RedisResults(redis_url)
    agent_id = uuid.uuid4()
    got: list[bytes] = []

    async def waiter() -> None:
        got.append(await results.wait(agent_id, 5))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            await results.set(agent_id, b"", 60)
    assert got == [b""]


async def test_wake_up_is_prompt(redis_url: str) -> None:
    """Median delay from ``set`` to ``wait`` returning over 200 trials (benchmark:
    ``benchmarks/redis_results_wakeup.py``); the bound here is generous for shared CI machines."""
    results = RedisResults(redis_url)
    delays: list[float] = []
    for _ in range(200):
        agent_id = uuid.uuid4()
        returned = anyio.Event()
        done_at = 0.0

        async def waiter(agent_id: uuid.UUID = agent_id, returned: anyio.Event = returned) -> None:
            nonlocal done_at
            await results.wait(agent_id, 5)
            done_at = time.perf_counter()
            returned.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.002)  # the waiter is blocked
                start = time.perf_counter()
                await results.set(agent_id, b"x", 60)
                await returned.wait()
        delays.append(done_at - start)
    assert statistics.median(delays) < 0.05, f"median wake-up {statistics.median(delays) * 1000:.1f} ms"


async def test_a_thousand_waiters_share_one_connection(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gather`` over many tasks must not take one pooled connection per waiter."""
    monkeypatch.setattr(CONF, "redis_pool_size", 3)
    monkeypatch.setattr(CONF, "redis_pool_timeout", 5)  # 1 s timed out at load 10
    from agentexec_redis.client import close_redis

    await close_redis(redis_url)  # the next pool is built with the small size
    results = RedisResults(redis_url)
    ids = [uuid.uuid4() for _ in range(1000)]
    got: dict[uuid.UUID, bytes] = {}

    async def waiter(agent_id: uuid.UUID) -> None:
        got[agent_id] = await results.wait(agent_id, 20)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for agent_id in ids:
                tg.start_soon(waiter, agent_id)
            await anyio.sleep(0.2)
            for agent_id in ids:
                await results.set(agent_id, agent_id.bytes, 60)
    assert got == {agent_id: agent_id.bytes for agent_id in ids}
    await results.close()


async def test_claim_is_set_if_absent(redis_url: str) -> None:
    results = RedisResults(redis_url)
    key = f"fire:{uuid.uuid4()}"
    assert await results.claim(key, 30) is True
    assert await results.claim(key, 30) is False
    r = await get_redis(redis_url)
    assert 0 < await r.ttl(keys.claim(key)) <= 30
