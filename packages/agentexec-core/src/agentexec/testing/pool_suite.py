"""``PoolSuite``: your backends under the real ``ax.Pool``, in a process of its own.

The method-by-method suites prove each call; this one proves the backends where users meet
them. Each test starts ``python -m agentexec.testing._pool_app`` (a pool with one registered
task, that enqueues its own tasks and waits for their results) with the ``AGENTEXEC_*``
variables your ``pool_env`` fixture returns, and reads what happened from a journal file:
tasks complete with their results, HIGH runs before LOW, a SIGKILLed worker's task is handed
out again and completes, and SIGTERM lets the running task finish while queued ones stay queued.

Timing attributes (seconds; raising one above the kit's default needs a ``timing_reason``):

- ``start_within_s`` (20): the pool process is up and has enqueued its tasks
- ``finish_within_s`` (20): the tasks of a test have run (and a killed worker's task has run
  again: at once with ``reap_consumer``, else once ``pool_lease_timeout_s`` has passed)
- ``pool_lease_timeout_s`` (2): ``AGENTEXEC_LEASE_TIMEOUT`` of the pool under test
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agentexec.testing._suite import Suite
from agentexec.testing.process import kill_group


class PoolRun:
    """One pool process of a test: its journal and its output."""

    def __init__(self, proc: subprocess.Popen[bytes], journal: Path, output: Path) -> None:
        self.proc = proc
        self.journal = journal
        self.output = output

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        # the last piece is "" or a line a process is still writing: only whole lines count
        found = [json.loads(line) for line in self.journal.read_text().split("\n")[:-1] if line.strip()]
        return [e for e in found if kind is None or e["event"] == kind]

    def log(self) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        return f"\n--- pool output (last 3000 chars) ---\n{text[-3000:]}\n--- journal ---\n" + "\n".join(
            json.dumps(e) for e in self.events()[-40:]
        )

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None and not predicate():
                pytest.fail(f"the pool exited ({self.proc.returncode}) before {what}{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g} s{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float) -> dict[str, Any]:
        """SIGTERM, wait for a clean exit, and return the pool's summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the pool did not exit within {timeout:g} s of SIGTERM{self.log()}")
        assert code == 0, f"the pool exited with {code} after SIGTERM{self.log()}"
        summaries = self.events("summary")
        assert len(summaries) == 1, f"the pool wrote no summary{self.log()}"
        return summaries[0]

    def kill(self) -> None:
        kill_group(self.proc)


class PoolSuite(Suite):
    """Subclass and provide ``pool_env``: the ``AGENTEXEC_*`` variables that select your
    backends in a fresh process (through your plugin's URL schemes or backend names)::

        class TestAcmePool(PoolSuite):
            @pytest.fixture
            def pool_env(self):
                return {"AGENTEXEC_QUEUE_BACKEND": "acme://localhost",
                        "AGENTEXEC_RESULTS_BACKEND": "acme://localhost",
                        "AGENTEXEC_EVENTS_BACKEND": "memory://",
                        "AGENTEXEC_ACTIVITY_BACKEND": "memory://"}

    Backends that live in one process (``cross_process=False`` in their ``BackendSpec``) run
    the workers on the pool's own thread; the SIGKILL test then skips. An activity store with
    ``ensure_schema()`` gets its tables created by the pool program.
    """

    start_within_s: ClassVar[float] = 20.0
    finish_within_s: ClassVar[float] = 20.0
    pool_lease_timeout_s: ClassVar[float] = 2.0
    _timings = ("start_within_s", "finish_within_s", "pool_lease_timeout_s")

    @pytest.fixture
    def pool_env(self) -> dict[str, str]:
        pytest.fail(
            "PoolSuite needs a `pool_env` fixture returning the AGENTEXEC_* variables that select "
            "your backends in a fresh process"
        )

    @pytest.fixture
    def start_pool(self, pool_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., PoolRun]]:
        """``start_pool(plan, workers=1, slots=1)`` starts a pool process; killed after the test."""
        runs: list[PoolRun] = []

        def start(plan: list[dict[str, Any]], workers: int = 1, slots: int = 1) -> PoolRun:
            n = len(runs)
            journal, output = tmp_path / f"journal-{n}.jsonl", tmp_path / f"pool-{n}.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTEXEC_", "AXKIT_"))}
            env.update({
                "PYTHONUNBUFFERED": "1",
                "AGENTEXEC_NUM_WORKERS": str(workers),
                "AGENTEXEC_WORKER_CONCURRENCY": str(slots),
                "AGENTEXEC_LEASE_TIMEOUT": str(self.pool_lease_timeout_s),
                "AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT": str(int(self.finish_within_s)),
                "AXKIT_QUEUE": f"axkit_pool_{uuid.uuid4().hex[:10]}",
                "AXKIT_JOURNAL": str(journal),
                "AXKIT_PLAN": json.dumps(plan),
                "AXKIT_WAIT": str(self.finish_within_s),
            })
            env.update(pool_env)
            with output.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "agentexec.testing._pool_app"], cwd=tmp_path, env=env,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            run = PoolRun(proc, journal, output)
            runs.append(run)
            run.wait_for("pool start", lambda: bool(run.events("started")), self.start_within_s)
            return run

        yield start
        for run in runs:
            if run.proc.poll() is None:
                run.kill()

    # -- tests -----------------------------------------------------------------------------
    def test_tasks_complete_with_their_results(self, start_pool: Callable[..., PoolRun]) -> None:
        """Twenty tasks on two workers of four slots each all run once, their results reach the
        producer, their activities end COMPLETE and the queue is empty.

        Troubleshooting: read the pool's output and journal in the failure message. A task that
        never starts: the workers cannot see what the producer pushed (an in-process backend
        declared ``cross_process=True`` in its ``BackendSpec``, or a URL that names another
        database). No result: ``set`` does not wake ``wait`` across processes.
        """
        plan = [{"label": f"t{i}"} for i in range(20)]
        run = start_pool(plan, workers=2, slots=4)
        run.wait_for("20 results", lambda: len(run.events("result")) + len(run.events("no_result")) >= 20,
                     self.finish_within_s)
        assert run.events("no_result") == [], f"tasks without a result{run.log()}"
        assert sorted(e["value"] for e in run.events("result")) == sorted(p["label"] for p in plan)
        starts = [e["agent_id"] for e in run.events("start")]
        assert len(starts) == len(set(starts)) == 20, f"a task ran twice or never{run.log()}"
        summary = run.stop(self.finish_within_s)
        assert set(summary["statuses"].values()) == {"COMPLETE"}, summary
        assert summary["waiting"] == 0

    def test_high_priority_runs_before_low(self, start_pool: Callable[..., PoolRun]) -> None:
        """With tasks waiting when one single-slot worker starts, HIGH tasks run first and LOW
        ones in the order they were enqueued.

        Troubleshooting: see ``QueueSuite.test_high_priority_is_taken_before_low``; with
        ``reserve_many``, a batch must keep that order too.
        """
        plan = [{"label": "low1"}, {"label": "low2"}, {"label": "high1", "priority": "high"},
                {"label": "low3"}, {"label": "high2", "priority": "high"}]
        run = start_pool(plan, workers=1, slots=1)
        run.wait_for("5 results", lambda: len(run.events("result")) >= 5, self.finish_within_s)
        order = [e["label"] for e in run.events("start")]
        assert sorted(order[:2]) == ["high1", "high2"] and order[2:] == ["low1", "low2", "low3"], (
            f"start order {order}{run.log()}"
        )
        run.stop(self.finish_within_s)

    def test_a_sigkilled_workers_task_runs_again(self, start_pool: Callable[..., PoolRun]) -> None:
        """A worker process SIGKILLed in the middle of a task: the task is handed out again (at
        once where the queue has ``reap_consumer``, else after the lease), runs on another
        worker process, and completes.

        Skips for in-process backends (workers are threads of the pool). Troubleshooting: see
        ``QueueSuite``'s lease and reap tests; the pool reaps the dead worker's consumer id on the
        queue, so in-flight records must be keyed by consumer id.
        """
        run = start_pool([{"label": "victim", "seconds": 60}], workers=1, slots=1)
        if not run.events("started")[0]["cross_process"]:
            run.kill()
            pytest.skip("in-process backends: the workers are threads of the pool process")
        run.wait_for("the task's start", lambda: bool(run.events("start")), self.finish_within_s)
        victim = run.events("start")[0]["pid"]
        assert victim != run.proc.pid
        os.kill(victim, signal.SIGKILL)
        run.wait_for(
            "the task's second run and result", lambda: bool(run.events("result")),
            self.finish_within_s + self.pool_lease_timeout_s,
        )
        starts = run.events("start")
        assert len(starts) == 2 and starts[1]["pid"] != victim, f"{starts}{run.log()}"
        assert run.events("result")[0]["value"] == "victim"
        summary = run.stop(self.finish_within_s)
        assert set(summary["statuses"].values()) == {"COMPLETE"}, summary

    def test_sigterm_lets_the_running_task_finish(self, start_pool: Callable[..., PoolRun]) -> None:
        """SIGTERM while a task runs: it finishes and completes, the pool exits cleanly, and the
        tasks that had not started stay queued for the next start.

        Troubleshooting: ``release`` (or nothing) for leases not yet running; never ``ack`` a
        task that did not run; ``length`` must count the tasks left waiting.
        """
        plan = [{"label": "running", "seconds": 1.0}, {"label": "waiting1"}, {"label": "waiting2"}]
        run = start_pool(plan, workers=1, slots=1)
        run.wait_for("the first task's start", lambda: bool(run.events("start")), self.finish_within_s)
        started = time.monotonic()
        summary = run.stop(self.finish_within_s)
        assert [e["label"] for e in run.events("end")] == ["running"], f"{run.log()}"
        assert time.monotonic() - started >= 0.5, "the pool did not wait for the running task"
        by_label = {e["agent_id"]: e["label"] for e in run.events("enqueued")}
        statuses = {by_label[aid]: status for aid, status in summary["statuses"].items()}
        assert statuses == {"running": "COMPLETE", "waiting1": "QUEUED", "waiting2": "QUEUED"}, statuses
        assert summary["waiting"] == 2, summary
