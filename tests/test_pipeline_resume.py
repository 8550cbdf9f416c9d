"""A worker killed (SIGKILL) mid-pipeline: the redelivered pipeline resumes after the last finished
step, so the side effects of finished steps (and of their child tasks) happen once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.runtime import build_backends, set_backends
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WAIT = 30


class Job(BaseModel):
    workdir: str
    value: int


class Note(BaseModel):
    workdir: str
    text: str


def _record(workdir: str, text: str) -> int:
    """Append a side effect; returns how many times it has happened so far."""
    path = Path(workdir) / "effects.log"
    with path.open("a") as f:
        f.write(text + "\n")
    return path.read_text().splitlines().count(text)


def _effects(workdir: Path) -> dict[str, int]:
    lines = (workdir / "effects.log").read_text().splitlines()
    return {line: lines.count(line) for line in set(lines)}


def install(pool: Any) -> Any:
    @pool.task("note")
    async def note(agent_id: UUID, context: Note) -> str:
        _record(context.workdir, context.text)
        return context.text

    pipeline = ax.Pipeline(pool)

    class Resumable(pipeline.Base):
        @pipeline.step(0, description="Prepare, with two child tasks")
        async def prepare(self, job: Job) -> tuple[str, int, list[str]]:
            _record(job.workdir, "prepare")
            children = [await ax.enqueue("note", Note(workdir=job.workdir, text=f"child{i}")) for i in (1, 2)]
            notes = await ax.gather(*children, timeout=WAIT)
            return job.workdir, job.value, list(notes)

        @pipeline.step(1, description="Slow step (the worker dies here the first time)")
        async def slow(self, workdir: str, value: int, notes: list[str]) -> dict[str, Any]:
            if _record(workdir, "slow") == 1:
                # written whole, then renamed: the test polls for the file and reads it at once
                (Path(workdir) / "worker.pid.part").write_text(str(os.getpid()))
                (Path(workdir) / "worker.pid.part").rename(Path(workdir) / "worker.pid")
                await anyio.sleep(WAIT)  # killed during this sleep
            return {"workdir": workdir, "value": value * 2, "notes": notes}

        @pipeline.step(2, description="Finish")
        async def finish(self, data: dict[str, Any]) -> str:
            _record(data["workdir"], "finish")
            return f"{data['value']}:{','.join(data['notes'])}"

    return pipeline


@pytest.fixture(params=["redis", "sqlite"])
def pipeline(request: pytest.FixtureRequest, redis_server_url: str | None, tmp_path: Path) -> Iterator[Any]:
    import sqlalchemy as sa

    db = f"sqlite:///{tmp_path / 'agentexec.db'}"
    ax.Base.metadata.create_all(sa.create_engine(db))
    urls = dict.fromkeys(("queue", "results", "events", "activity"), db)
    if request.param == "redis":
        if redis_server_url is None:
            pytest.skip("needs a real Redis: worker processes cannot share fakeredis")
        urls.update(queue=redis_server_url, results=redis_server_url, events=redis_server_url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "queue_name", f"resume{os.urandom(5).hex()}")
        mp.setattr(ax.CONF, "num_workers", 1)
        mp.setattr(ax.CONF, "lease_timeout", 2.0)
        backends = build_backends(urls)  # type: ignore[arg-type]
        set_backends(backends)
        pool = ax.Pool(backends=backends)
        built = install(pool)
        pool.start()
        try:
            yield built
        finally:
            pool.shutdown(timeout=3)
            set_backends(None)


async def test_killed_worker_resumes_after_last_finished_step(pipeline: Any, tmp_path: Path) -> None:
    task = await pipeline.enqueue(context=Job(workdir=str(tmp_path), value=21))
    pid_file = tmp_path / "worker.pid"
    with anyio.fail_after(WAIT):
        while not pid_file.exists():
            await anyio.sleep(0.02)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)

    assert await ax.get_result(task, timeout=WAIT) == "42:child1,child2"
    # finished work happened once; only the step that was cut off ran again
    assert _effects(tmp_path) == {"prepare": 1, "child1": 1, "child2": 1, "slow": 2, "finish": 1}

    detail = await ax.activity.adetail(task.agent_id)
    assert detail is not None
    messages = [log.message for log in detail.logs]
    assert any(m.startswith("Resuming after step 1/3") for m in messages), messages
    assert messages.count("Step 1/3: Prepare, with two child tasks") == 1
    assert messages.count("Step 2/3: Slow step (the worker dies here the first time)") == 2
    assert detail.status is ax.Status.COMPLETE
