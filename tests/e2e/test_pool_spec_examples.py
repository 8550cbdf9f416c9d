"""The examples of spec/worker-pool.md, spec/task-lifecycle.md and spec/core-api.md, run as
written: a script that builds a pool at module level and calls ``pool.run()`` with no
``if __name__ == "__main__"`` guard, started as ``python script.py``, stopped by SIGTERM."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import agentexec as ax
import pytest
from agentexec.activity.status import Status
from agentexec.runtime import build_backends, set_backends
from e2e_support import WAIT, PoolProcess, wait_until
from pydantic import BaseModel
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parent / "spec_examples"


class MyContext(BaseModel):
    data: str
    count: int = 1


class ResearchContext(BaseModel):
    company: str


async def test_worker_pool_example_on_redis(
    redis_server_url: str | None, postgres_server_url: str, tmp_path: Path
) -> None:
    if redis_server_url is None:
        pytest.skip("no real Redis server")
    queue = f"spec_{uuid.uuid4().hex[:8]}"
    env = {
        "AGENTEXEC_REDIS_URL": redis_server_url,
        "AGENTEXEC_DATABASE_URL": postgres_server_url,
        "AGENTEXEC_QUEUE_NAME": queue,
        "AGENTEXEC_NUM_WORKERS": "2",
    }
    pool = PoolProcess.start(
        [sys.executable, str(EXAMPLES / "worker_pool_example.py")], env=env,
        journal=tmp_path / "unused", cwd=tmp_path,
    )
    backends = build_backends({
        "queue": redis_server_url, "results": redis_server_url, "events": redis_server_url,
        "activity": postgres_server_url,
    })
    set_backends(backends)
    try:
        # forked, not spawned: no recursive start from the script (workers name themselves a
        # moment after they start)
        wait_until(lambda: len(pool.workers()) == 2, what="two named workers")
        task = await ax.enqueue("my_task_name", MyContext(data="value"), queue_name=queue)
        assert await ax.get_result(task, timeout=WAIT) == "result"
        bad = await ax.enqueue("risky_task", MyContext(data="x"), queue_name=queue)
        with pytest.raises(ax.TaskFailedError, match="Something went wrong"):
            await ax.get_result(bad, timeout=WAIT)
        after = await ax.enqueue("my_task_name", MyContext(data="again"), queue_name=queue)
        assert await ax.get_result(after, timeout=WAIT) == "result"

        engine = create_engine(postgres_server_url)
        with Session(engine) as session:  # spec/task-lifecycle.md, "Query Single Task"
            activity = ax.activity.detail(session, task.agent_id)
            assert activity is not None and activity.status is Status.COMPLETE
            assert [log.status for log in activity.logs] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
            failed = ax.activity.detail(session, bad.agent_id)
            assert failed is not None and failed.status is Status.ERROR
            assert failed.logs[-1].message == "Task failed with error: Something went wrong"
        engine.dispose()
        pool.wait_output("Task failed: ValueError: Something went wrong")
        assert pool.stop() == 0
        assert len(pool.workers()) == 0
    finally:
        set_backends(None)
        if pool.proc.poll() is None:
            pool.kill()


async def test_core_api_pool_example_on_the_embedded_sqlite(tmp_path: Path) -> None:
    queue = f"spec_{uuid.uuid4().hex[:8]}"
    pool = PoolProcess.start(
        [sys.executable, str(EXAMPLES / "core_api_example.py")],
        env={"AGENTEXEC_QUEUE_NAME": queue, "AGENTEXEC_NUM_WORKERS": "1"},
        journal=tmp_path / "unused", cwd=tmp_path,
    )
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    set_backends(build_backends({"queue": url, "results": url, "events": url, "activity": url}))
    try:
        task = await ax.enqueue("research", ResearchContext(company="Acme"), queue_name=queue)
        assert await ax.get_result(task, timeout=WAIT) == "Researched Acme"
        detail = ax.activity.detail(task.agent_id)
        assert detail is not None
        assert [(log.status, log.message) for log in detail.logs] == [
            (Status.QUEUED, "Waiting to start."),
            (Status.RUNNING, "Task started."),
            (Status.RUNNING, "Starting phase 1"),
            (Status.COMPLETE, "Task completed successfully."),
        ]
        assert pool.stop() == 0
    finally:
        set_backends(None)
        if pool.proc.poll() is None:
            pool.kill()
