"""The issue's must-show with real pools: three `agentexec run ... --schedules` processes share
an `every: 1 second` schedule; each tick is enqueued exactly once, on Redis and on SQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from agentexec.runtime import build_backends

HERE = Path(__file__).parent
SCRIPT = str(Path(sys.executable).parent / "agentexec")
RUN_FOR = 5.0

pytestmark = pytest.mark.slow

SCHEDULES = """\
tasks:
  - name: {name}
    description: the HA test's tick
    enabled: true
    type: interval
    schedule: "1 second"
    task: tick
    context:
      label: ha
"""


@pytest.fixture(params=["redis+postgresql", "sqlite"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path}/agentexec.db"
        yield {"AGENTEXEC_DATABASE_URL": db}
        return
    redis_url = request.getfixturevalue("redis_server_url")
    if redis_url is None:
        pytest.skip("no Redis server reachable (CI always has one)")
    yield {"AGENTEXEC_REDIS_URL": redis_url,
           "AGENTEXEC_DATABASE_URL": request.getfixturevalue("postgres_server_url")}


def test_three_pools_enqueue_each_tick_once(
    transport: dict[str, str], tmp_path: Path, unique_name: str
) -> None:
    import agentexec as ax
    from agentexec_sqlalchemy.engine import get_engine

    db = transport["AGENTEXEC_DATABASE_URL"]
    ax.Base.metadata.create_all(get_engine(db))  # once, before three processes race to it
    schedule_file = tmp_path / "schedules.yaml"
    schedule_file.write_text(SCHEDULES.format(name=unique_name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env.update(transport, AGENTEXEC_QUEUE_NAME=unique_name, AGENTEXEC_NUM_WORKERS="1",
               AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT="5", AGENTEXEC_LEASE_TIMEOUT="6")
    logs = [tmp_path / f"pool{i}.log" for i in range(3)]
    pools = [
        subprocess.Popen(
            [SCRIPT, "run", "schedule_pool_app:pool", "--schedules", str(schedule_file)],
            cwd=HERE, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    urls = {"queue": transport.get("AGENTEXEC_REDIS_URL", db), "activity": db}
    backends = build_backends({"queue": urls["queue"], "results": urls["queue"],
                               "events": urls["queue"], "activity": db})
    try:
        window = anyio.run(_run_while_all_live, pools, logs)
    finally:
        for p in pools:
            p.send_signal(signal.SIGTERM)
        for p in pools:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    page = backends.activity.list(page_size=1000, metadata={"schedule": unique_name})
    fired = _scheduled_for(db, unique_name)
    assert len(fired) == page.total
    duplicates = [t for t, n in Counter(fired).items() if n > 1]
    assert duplicates == [], f"ticks enqueued twice: {duplicates}"
    start, end = window
    in_window = [t for t in fired if start < t <= end]
    assert 4 <= len(in_window) <= 6, (len(in_window), sorted(fired), window)
    # every firing ran as an ordinary task
    assert {item.status for item in page.items} <= {ax.Status.COMPLETE, ax.Status.QUEUED, ax.Status.RUNNING}
    assert sum(item.status is ax.Status.COMPLETE for item in page.items) >= len(in_window) - 1
    # each pool ran the scheduler; the enqueues they logged add up to the activities
    texts = [log.read_text() for log in logs]
    assert all("scheduler: 1 schedule(s)" in text for text in texts), texts
    assert sum(text.count(f"'{unique_name}' enqueued") for text in texts) == len(fired)


async def _run_while_all_live(pools: list[subprocess.Popen[bytes]], logs: list[Path]) -> tuple[datetime, datetime]:
    """Wait until the scheduler of every pool runs, then let them run for ``RUN_FOR`` seconds."""
    with anyio.fail_after(60):
        while not all("scheduler: 1 schedule(s)" in log.read_text() for log in logs):
            for p, log in zip(pools, logs, strict=True):
                if p.poll() is not None:
                    raise AssertionError(f"a pool exited early:\n{log.read_text()}")
            await anyio.sleep(0.1)
    start = datetime.now(UTC)
    await anyio.sleep(RUN_FOR)
    return start, datetime.now(UTC)


def _scheduled_for(db: str, name: str) -> list[datetime]:
    """The tick each activity of the schedule was enqueued for (its ``scheduled_for`` metadata)."""
    import sqlalchemy as sa
    from agentexec_sqlalchemy.activity.models import Activity
    from agentexec_sqlalchemy.engine import get_engine

    with get_engine(db).connect() as conn:
        rows = conn.execute(sa.select(Activity.metadata_)).scalars().all()
    return [datetime.fromisoformat(m["scheduled_for"]) for m in rows if m and m.get("schedule") == name]
