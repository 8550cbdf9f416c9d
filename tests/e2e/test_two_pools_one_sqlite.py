"""Two pools (separate process trees) on one SQLite file share a queue: 2,000 tasks, each run
exactly once (no crash injected), none lost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import agentexec as ax
import pytest
from agentexec.runtime import Backends
from e2e_support import PoolProcess, Stack, python_app
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TASKS = 2_000


class Job(BaseModel):  # the context model of app_pool.py's "job" task
    label: str = ""
    seconds: float = 0.0
    fail: bool = False


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """Only the embedded SQLite stack (overrides the parametrized fixture of conftest.py)."""
    return Stack("sqlite", f"sqlite:///{tmp_path / 'agentexec.db'}", None)


async def test_two_pools_on_one_sqlite_file_run_each_task_once(
    producer: Backends, run_pool: Callable[..., PoolProcess], queue_name: str
) -> None:
    # a long lease: this test is about sharing, not redelivery, so no heartbeat may lapse under load
    pools = [
        run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY=8, AGENTEXEC_LEASE_TIMEOUT=60)
        for _ in range(2)
    ]
    labels = [f"t{i}" for i in range(TASKS)]
    tasks = await ax.enqueue_many([("job", Job(label=label)) for label in labels], queue_name=queue_name)
    assert await ax.gather(*tasks, timeout=240) == tuple(labels)

    runs = Counter(e["label"] for pool in pools for e in pool.events() if e["event"] == "start")
    assert set(runs) == set(labels), f"lost: {sorted(set(labels) - set(runs))[:10]}"
    assert [label for label, n in runs.items() if n > 1] == []
    per_pool = [sum(1 for e in pool.events() if e["event"] == "start") for pool in pools]
    assert all(n > 0 for n in per_pool), per_pool
    page = ax.activity.list(page_size=1, status=ax.Status.COMPLETE)
    assert page.total == TASKS
    assert all(pool.stop() == 0 for pool in pools)
