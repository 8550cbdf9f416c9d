"""The worker pool as users run it: real processes, real signals, on Redis (activity on
PostgreSQL), on the embedded SQL transport over SQLite, and over PostgreSQL."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
from agentexec.activity.creates import CREATES
from agentexec.activity.status import Status
from agentexec.config import CONF
from agentexec.runtime import Backends, set_backends
from e2e_support import HERE, WAIT, PoolProcess, Stack, agentexec_cli, alive, python_app, wait_until
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]


class Job(BaseModel):
    """The context of app_pool's ``job`` task (the workers validate it into their own model)."""

    label: str = ""
    seconds: float = 0.0
    fail: bool = False


def logs(agent_id: UUID) -> list[tuple[Status, str]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.status, log.message) for log in detail.logs]


def assert_none_running(tasks: list[ax.Task]) -> None:
    running = [t.task_name for t in tasks if logs(t.agent_id)[-1][0] is Status.RUNNING]
    assert not running, f"{len(running)} task(s) left RUNNING"


async def enqueue(queue_name: str, label: str = "", **kw: Any) -> ax.Task:
    priority = kw.pop("priority", ax.Priority.LOW)
    return await ax.enqueue("job", Job(label=label, **kw), priority=priority, queue_name=queue_name)


async def test_lifecycle_messages_errors_and_worker_logs(
    producer: Backends, run_pool: RunPool, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = {
        "activity_message_create": "Queued up.",
        "activity_message_started": "Off we go.",
        "activity_message_complete": "All done.",
        "activity_message_error": "Broke: {error}",
    }
    for key, value in messages.items():
        monkeypatch.setattr(CONF, key, value)
    pool = run_pool(python_app(), **{f"AGENTEXEC_{k.upper()}": v for k, v in messages.items()})

    ok = await enqueue(queue_name, "first")
    assert await ax.get_result(ok, timeout=WAIT) == "first"
    assert logs(ok.agent_id) == [
        (Status.QUEUED, "Queued up."), (Status.RUNNING, "Off we go."), (Status.COMPLETE, "All done."),
    ]

    bad = await enqueue(queue_name, "second", fail=True)
    with pytest.raises(ax.TaskFailedError) as caught:
        await ax.get_result(bad, timeout=WAIT)
    assert caught.value.error == "boom second"
    assert logs(bad.agent_id)[-1] == (Status.ERROR, "Broke: boom second")

    after = await enqueue(queue_name, "third")
    assert await ax.get_result(after, timeout=WAIT) == "third"
    starts = [e["pid"] for e in pool.events() if e["event"] == "start"]
    assert len(starts) == 3 and len(set(starts)) == 1  # the same worker went on after the failure

    pool.wait_output("[Worker 0] Task failed: ValueError: boom second")
    assert "[Worker 0] Processing task: job" in pool.output
    assert pool.stop() == 0


async def test_detail_right_after_enqueue_says_queued(producer: Backends, queue_name: str) -> None:
    """After the first, ``ax.enqueue`` writes its QUEUED activity behind the push (see
    ``agentexec.activity.creates``); this process still reads it at once, whichever call."""
    first = await enqueue(queue_name, "first")
    assert CREATES.checked(producer.activity)  # the next ones go behind
    assert logs(first.agent_id) == [(Status.QUEUED, CONF.activity_message_create)]
    tasks = [first]
    for i in range(60):
        task = await enqueue(queue_name, f"n{i}")
        tasks.append(task)
        if i % 3 == 0:
            assert logs(task.agent_id) == [(Status.QUEUED, CONF.activity_message_create)]
        elif i % 3 == 1:
            detail = await ax.activity.adetail(task.agent_id)
            assert detail is not None and detail.status is Status.QUEUED
        else:  # newest first: the one just enqueued
            assert ax.activity.list(page_size=1).items[0].agent_id == task.agent_id
    newest = ax.activity.list(page_size=len(tasks)).items
    assert {i.agent_id for i in newest} == {t.agent_id for t in tasks}


async def test_activities_of_tasks_taken_at_once_end_in_order(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """A running pool takes a task within a fraction of a millisecond, often before the
    producer's thread has created its activity: the worker waits for it (or creates it), and
    every activity still reads QUEUED, RUNNING, COMPLETE, each once."""
    pool = run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY=8)
    tasks = []
    for i in range(150):
        task = await enqueue(queue_name, f"t{i}")
        assert ax.activity.detail(task.agent_id) is not None
        tasks.append(task)
    await ax.gather(*tasks, timeout=WAIT)
    expected = [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
    wrong = [(t.agent_id, logs(t.agent_id)) for t in tasks if [s for s, _ in logs(t.agent_id)] != expected]
    assert not wrong, wrong[:3]
    assert pool.stop() == 0


async def test_a_worker_creates_the_activity_its_producer_never_wrote(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """A producer that died between its push and its activity: the task is the source of truth."""
    pool = run_pool(python_app())
    task = ax.Task.create("job", Job(label="orphan"))
    await producer.queue.push(task.to_envelope(queue_name))
    assert await ax.get_result(task, timeout=WAIT) == "orphan"
    assert logs(task.agent_id) == [
        (Status.QUEUED, CONF.activity_message_create),
        (Status.RUNNING, CONF.activity_message_started),
        (Status.COMPLETE, CONF.activity_message_complete),
    ]
    pool.wait_output("had no activity; created it from the task")
    assert pool.stop() == 0


async def test_workers_run_on_uvloop_by_default(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    run_pool(python_app())
    task = await ax.enqueue("event_loop", Job(), queue_name=queue_name)
    assert await ax.get_result(task, timeout=WAIT) == "uvloop.Loop"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_worker_event_loop_asyncio_is_the_standard_librarys(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    run_pool(python_app(), AGENTEXEC_WORKER_EVENT_LOOP="asyncio")
    task = await ax.enqueue("event_loop", Job(), queue_name=queue_name)
    assert await ax.get_result(task, timeout=WAIT) == "asyncio.unix_events._UnixSelectorEventLoop"


async def test_high_priority_first(producer: Backends, run_pool: RunPool, queue_name: str) -> None:
    lows = [await enqueue(queue_name, f"low{i}") for i in range(5)]
    high = await enqueue(queue_name, "high", priority=ax.Priority.HIGH)
    # one slot: the start order is the order tasks are taken (with the default 10 slots all six
    # start at once, in whatever order the worker's fetchers happen to run)
    pool = run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY=1)
    await ax.gather(*lows, high, timeout=WAIT)
    order = [e["label"] for e in pool.events() if e["event"] == "start"]
    assert order == ["high", "low0", "low1", "low2", "low3", "low4"]
    assert pool.stop() == 0


async def test_sigterm_lets_the_running_task_finish(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(python_app())
    task = await enqueue(queue_name, "long", seconds=3)
    pool.wait_event("start")
    started = time.monotonic()
    assert pool.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started >= 2  # it waited for the task rather than killing it
    assert logs(task.agent_id)[-1][0] is Status.COMPLETE
    assert await ax.get_result(task, timeout=1) == "long"
    assert_none_running([task])


async def test_a_killed_worker_is_replaced_and_its_task_runs_again(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(python_app())
    [first_worker] = pool.workers()
    task = await enqueue(queue_name, "victim", seconds=1)
    pool.wait_event("start")
    pool_pid = pool.proc.pid
    os.kill(first_worker, signal.SIGKILL)
    assert await ax.get_result(task, timeout=WAIT) == "victim"
    starts = [e for e in pool.events() if e["event"] == "start"]
    assert 1 < len(starts) <= 2 and starts[0]["pid"] == first_worker != starts[-1]["pid"]
    assert [w for w in pool.workers() if w != first_worker], "no replacement worker"
    assert alive(pool_pid)
    assert logs(task.agent_id)[-1][0] is Status.COMPLETE
    assert_none_running([task])
    assert pool.stop() == 0


async def test_shutdown_timeout_kills_and_gives_the_task_back(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    # one slot, so the second task waits in the queue while the first runs
    pool = run_pool(python_app(), AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT=1, AGENTEXEC_WORKER_CONCURRENCY=1)
    task = await enqueue(queue_name, "endless", seconds=60)
    waiting = await enqueue(queue_name, "waiting")
    pool.wait_event("start")
    worker = pool.workers()[0]
    assert pool.stop(signal.SIGTERM) == 0
    assert not alive(worker)
    # the cut-off task is queued again, first in line; the one that never started stays queued
    assert logs(task.agent_id)[-1][0] is Status.QUEUED
    assert logs(waiting.agent_id) == [(Status.QUEUED, CONF.activity_message_create)]
    assert await producer.queue.length(queue_name) == 2
    assert (await producer.queue.stats(queue_name)).in_flight == 0


async def test_pools_on_different_queues_never_share_tasks(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    other = queue_name + "_other"
    pool_a = run_pool(python_app(), queue=queue_name)
    pool_b = run_pool(python_app(), queue=other)
    on_a = [await enqueue(queue_name, f"a{i}") for i in range(10)]
    on_b = [await enqueue(other, f"b{i}") for i in range(10)]
    assert await ax.gather(*on_a, *on_b, timeout=WAIT) == tuple(
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
    )
    assert {e["label"][0] for e in pool_a.events()} == {"a"}
    assert {e["label"][0] for e in pool_b.events()} == {"b"}
    assert pool_a.stop() == 0 and pool_b.stop() == 0


async def test_many_io_bound_tasks_in_one_process(
    stack: Stack, producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(python_app(), AGENTEXEC_WORKER_CONCURRENCY=500)
    warm = await enqueue(queue_name, "warm")
    await ax.get_result(warm, timeout=WAIT)
    tasks = await ax.enqueue_many([("job", Job(seconds=0.1))] * 500, queue_name=queue_name)
    started, t0 = time.perf_counter(), time.time()
    await ax.gather(*tasks, timeout=WAIT)
    elapsed = time.perf_counter() - started
    events = [e for e in pool.events() if e["label"] != "warm"]
    starts = sorted(e["t"] - t0 for e in events if e["event"] == "start")
    ends = sorted(e["t"] - t0 for e in events if e["event"] == "end")
    # one at a time they would take 50 s: half that proves they overlap, on a machine as
    # loaded as it may be; how fast they go is benchmarks/pool.py's business (2 s on Redis)
    bound = 25.0
    assert elapsed < bound, (
        f"500 x 0.1 s took {elapsed:.2f}s on {stack.name}: handlers started "
        f"{starts[0]:.2f}..{starts[-1]:.2f}s, ended {ends[0]:.2f}..{ends[-1]:.2f}s"
    )
    assert pool.stop() == 0


async def test_cli_runs_a_pool_and_ctrl_c_is_graceful(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(agentexec_cli("run", "app_pool:pool", "--workers", "2", "--concurrency", "3"))
    pool.wait_output("2 worker(s)")
    # the workers name themselves (agentexec:wN) a moment after the pool says it started them
    wait_until(lambda: len(pool.workers()) == 2, what="two named workers")
    tasks = [await enqueue(queue_name, f"t{i}", seconds=0.2) for i in range(6)]
    pool.wait_event("start")
    os.killpg(pool.proc.pid, signal.SIGINT)  # Ctrl+C reaches the whole process group
    assert pool.stop(None) == 0
    done = [logs(t.agent_id)[-1][0] for t in tasks]
    # whatever had started finished; the rest wait in the queue for the next start
    started = {e["agent_id"] for e in pool.events() if e["event"] == "start"}
    for t, status in zip(tasks, done, strict=True):
        expected = Status.COMPLETE if str(t.agent_id) in started else Status.QUEUED
        assert status is expected, (logs(t.agent_id), pool.events(), pool.output)
    assert_none_running(tasks)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_replacement_workers_start_cleanly_while_the_pool_process_uses_sqlite(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """A fork while another thread is inside SQLite copies SQLite's locked mutex into the child,
    which then hangs: workers are forked by the single-threaded fork server instead."""
    pool = run_pool([sys.executable, str(HERE / "app_hammer.py")])
    for round_ in range(5):
        task = await enqueue(queue_name, f"r{round_}")
        assert await ax.get_result(task, timeout=WAIT) == f"r{round_}"
        [worker] = pool.workers()
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda w=worker: pool.workers() not in ([], [w]), what="a replacement worker")
    last = await enqueue(queue_name, "last")
    assert await ax.get_result(last, timeout=WAIT) == "last"
    assert pool.stop() == 0


def test_cli_create_tables_makes_the_activity_tables(tmp_path: Path) -> None:
    from agentexec.cli.run import create_tables
    from sqlalchemy import inspect

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    pool = ax.Pool(database_url=url, queue_name="create_tables_check")
    try:
        create_tables(pool)
        names = set(inspect(pool.backends.activity.engine).get_table_names())  # type: ignore[attr-defined]
        assert {f"{CONF.table_prefix}activity", f"{CONF.table_prefix}activity_log"} <= names
    finally:
        set_backends(None)
