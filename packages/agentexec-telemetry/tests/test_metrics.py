"""``/metrics`` of a running multi-process pool (``agentexec run --metrics-port``): counts from
every worker (and from a producer sharing the metrics directory), duration histograms, and the
gauges read from the queue at scrape time."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agentexec as ax
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


class Job(BaseModel):
    label: str = ""
    hold: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        time.sleep(0.1)


async def test_metrics_of_a_pool_after_100_tasks(
    producer: Any, run_pool: Any, obs_queue: str, stack: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    pool = run_pool(
        "--metrics-port", str(port), "--log-format", "json",
        AGENTEXEC_NUM_WORKERS=2, AGENTEXEC_METRICS_DIR=metrics_dir,
    )
    gate = tmp_path / "gate"
    try:
        samples = scrape(port)
        assert value(samples, "agentexec_workers", queue=obs_queue) == 2

        # two held tasks keep both workers busy: five more wait in the queue
        held = [await ax.enqueue("job", Job(label=f"hold{i}", hold=str(gate)), queue_name=obs_queue) for i in range(2)]
        wait_for(lambda: value(scrape(port), "agentexec_tasks_in_flight", queue=obs_queue) == 2, "2 in flight")
        waiting = [await ax.enqueue("job", Job(label=f"wait{i}"), queue_name=obs_queue) for i in range(5)]
        samples = scrape(port)
        assert value(samples, "agentexec_queue_depth", queue=obs_queue, priority="low") == 5
        assert value(samples, "agentexec_queue_depth", queue=obs_queue, priority="high") == 0
        assert value(samples, "agentexec_tasks_in_flight", queue=obs_queue) == 2
        gate.touch()
        for task in [*held, *waiting]:
            await ax.get_result(task, timeout=60)

        # 100 tasks from a producer process: 10 fail, 3 kill their worker once and run again
        jobs = [
            {"label": f"t{i}", "fail": i % 10 == 0, "die_once": i in (5, 45, 85)} for i in range(100)
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTEXEC_", "PROMETHEUS_"))}
        env |= stack | {"OBS_QUEUE": obs_queue, "AGENTEXEC_METRICS_DIR": str(metrics_dir)}
        done = await anyio.run_process(
            [sys.executable, str(HERE / "producer_observed.py"), json.dumps(jobs)],
            env=env, cwd=HERE, check=False,
        )
        assert done.returncode == 0, (done.stdout + done.stderr).decode()
        assert json.loads(done.stdout.decode().splitlines()[-1]) == {"completed": 90, "failed": 10}

        job = {"task": "job", "queue": obs_queue}
        wait_for(lambda: value(scrape(port), "agentexec_workers", queue=obs_queue) == 2, "2 workers again")
        samples = scrape(port)
        assert value(samples, "agentexec_tasks_enqueued_total", **job) == 100  # the producer's
        started = value(samples, "agentexec_tasks_started_total", **job)
        retried = value(samples, "agentexec_tasks_retried_total", **job)
        completed = value(samples, "agentexec_tasks_completed_total", **job)
        failed = value(samples, "agentexec_tasks_failed_total", **job)
        # at least once: each of the three deaths may also lose the finish of the task its worker
        # ran just before (counted, not yet written), and on a loaded machine a 2 s lease can
        # expire; every extra run must still be a counted retry that started and ended
        assert 3 <= retried <= 20, samples
        assert started == 107 + retried
        assert completed >= 97 and failed >= 10
        assert completed + failed == started - 3  # the three runs whose worker died never ended
        assert value(samples, "agentexec_worker_restarts_total", queue=obs_queue) == 3
        assert value(samples, "agentexec_task_duration_seconds_count", **job, outcome="completed") == completed
        assert value(samples, "agentexec_task_duration_seconds_count", **job, outcome="failed") == failed
        assert value(samples, "agentexec_queue_depth", queue=obs_queue) == 0
        assert value(samples, "agentexec_tasks_in_flight", queue=obs_queue) == 0
        assert value(samples, "agentexec_dead_letters", queue=obs_queue) == 0
    finally:
        gate.touch()  # a failure above may leave the held tasks waiting: the stop would wait 60 s
        assert pool.stop() == 0, pool.output
    assert list(metrics_dir.glob("*.db"))  # a directory the operator gave is kept

    # --log-format json: one object per line; a worker's line about a task says which
    records = [json.loads(line) for line in pool.lines if line.startswith("{")]
    assert records and len(records) == len([line for line in pool.lines if line.strip()])
    failures = [r for r in records if "Task failed: ValueError: boom" in r["message"]]
    assert len(failures) >= 10
    for record in failures:
        assert record["level"] == "ERROR" and record["logger"] == "agentexec.worker"
        assert record["task"] == "job" and record["worker"] in (0, 1) and record["attempt"] == 1
        assert record["message"].startswith(f"[Worker {record['worker']}]")
        assert len(record["agent_id"]) == 36
