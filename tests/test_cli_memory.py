"""The operator CLI on the in-process backends, with an in-process pool: fast checks of the
commands' generic paths (the real-process, real-Redis run is ``test_cli_ops.py``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.cli import main
from agentexec.config import CONF
from agentexec.runtime import Backends, build_backends, set_backends
from agentexec.worker.reaping import reap
from pydantic import BaseModel

WAIT = 10


class Job(BaseModel):
    n: int = 0


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backends]:
    url = f"memory://{uuid.uuid4().hex}"
    built = build_backends({"queue": url, "results": url, "events": url, "activity": url})
    set_backends(built)
    monkeypatch.setattr(CONF, "num_workers", 1)
    yield built
    set_backends(None)


@pytest.fixture
def pool(backends: Backends, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A pool registered but not started: each test starts it when it wants workers."""
    monkeypatch.setattr(CONF, "queue_name", unique_name)
    pool = ax.Pool(backends=backends)

    @pool.task("double")
    async def double(agent_id: UUID, context: Job) -> int:
        await ax.activity.aupdate(agent_id, f"doubling {context.n}", percentage=40)
        return context.n * 2

    yield pool
    pool.shutdown(timeout=2)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


async def _dead_task(backends: Backends, queue_name: str) -> ax.Task:
    """A task whose worker vanished (a consumer that never heartbeats), reaped past max_attempts."""
    task = await ax.enqueue("double", Job(n=21))
    assert await backends.queue.reserve(queue_name, "ghost", 1) is not None
    queue = backends.queue
    queue.lease_timeout, queue.max_attempts = 0.01, 1
    try:
        await anyio.sleep(0.05)
        await reap(backends, queue_name)  # what the pool's reaper does: ERROR + failed outcome
    finally:
        queue.lease_timeout, queue.max_attempts = 30.0, 3
    return task


def test_requeue_runs_a_dead_task_to_completion(
    pool: Any, backends: Backends, capsys: pytest.CaptureFixture[str]
) -> None:
    task = anyio.run(_dead_task, backends, pool.queue_name)
    with pytest.raises(ax.TaskFailedError):
        anyio.run(lambda: ax.get_result(task, timeout=1))
    [letter] = run_json(capsys, "dead-letter", "list")
    assert letter["agent_id"] == str(task.agent_id) and letter["task"] == "double"
    assert run_json(capsys, "status")["dead_letters"] == 1

    pool.start()
    assert run_json(capsys, "dead-letter", "requeue", letter["id"]) == {"requeued": 1, "not_tasks": []}
    assert anyio.run(lambda: ax.get_result(task, timeout=WAIT)) == 42
    detail = run_json(capsys, "activity", "show", str(task.agent_id))
    statuses = [log["status"] for log in detail["logs"]]
    assert statuses == ["QUEUED", "ERROR", "QUEUED", "RUNNING", "RUNNING", "COMPLETE"]
    assert run_json(capsys, "dead-letter", "list") == []


def test_status_and_activity_pages(pool: Any, backends: Backends, capsys: pytest.CaptureFixture[str]) -> None:
    pool.start()
    async def run_some() -> list[Any]:
        tasks = [await ax.enqueue("double", Job(n=i)) for i in range(5)]
        return list(await ax.gather(*tasks, timeout=WAIT))

    assert anyio.run(run_some) == [0, 2, 4, 6, 8]
    # results reach waiters before the worker's batched ack lands: wait (bounded) for it
    deadline = time.monotonic() + WAIT
    while True:
        data = run_json(capsys, "status")
        [queue] = [q for q in data["queues"] if q["queue"] == pool.queue_name]
        if queue["in_flight"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert queue["queued"] == 0 and queue["in_flight"] == 0
    assert any(w["alive"] and w["queue"] == pool.queue_name for w in data["workers"])
    assert data["activities"]["COMPLETE"] == 5

    first = run_json(capsys, "activity", "list", "--page-size", "2")
    assert (first["total"], first["pages"], len(first["items"])) == (5, 3, 2)
    capsys.readouterr()
    assert main(["activity", "list", "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "page 1 of 3 (5 in all)" in out and "next: agentexec activity list --page 2" in out


def test_schedules_list_from_a_file_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], backends: Backends) -> None:
    app = tmp_path / "sched_app.py"
    app.write_text(
        "import agentexec as ax\nfrom uuid import UUID\nfrom pydantic import BaseModel\n"
        "from agentexec.runtime import get_backends\n"
        "pool = ax.Pool(backends=get_backends())\n"
        "class C(BaseModel):\n    who: str = 'x'\n"
        "@pool.schedule('greet', cron='*/15 * * * *', timezone='Asia/Tokyo', repeat='once')\n"
        "async def greet(agent_id: UUID, context: C) -> None: ...\n"
    )
    [row] = run_json(capsys, "schedules", "list", f"{app}:pool", "--next", "5")
    # "once" is the original's repeat=0: one firing, so one time shows
    assert row["repeat"] == 0 and row["firings"] == 1 and len(row["next"]) == 1
    assert row["next"][0].endswith("+09:00")
    capsys.readouterr()
    assert main(["schedules", "list", f"{app}:pool"]) == 0
    assert "greet" in capsys.readouterr().out


def test_tail_rejects_an_empty_selection(capsys: pytest.CaptureFixture[str], backends: Backends) -> None:
    assert main(["tail", "--no-logs", "--no-events"]) == 2
    assert "nothing to follow" in capsys.readouterr().err


def test_tail_reports_a_trimmed_resume_point_and_goes_on(
    backends: Backends, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--since`` an event that was trimmed away: a ``gap:`` line, then what is kept."""
    monkeypatch.setattr(CONF, "events_retention", 3)

    async def publish() -> list[str | None]:
        return [await ax.events.publish("gap.test", {"n": n}) for n in range(6)]

    ids = anyio.run(publish)
    capsys.readouterr()
    code = main(["tail", "--no-logs", "--since", str(ids[0]), "--count", "3", "--timeout", "5", "--json"])
    out = capsys.readouterr()
    assert code == 0
    assert "gap: events after" in out.err and "were trimmed from the events stream" in out.err
    assert [json.loads(line)["payload"]["n"] for line in out.out.splitlines()] == [3, 4, 5]
