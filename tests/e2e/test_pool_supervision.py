"""The pool's supervision with real processes and real signals: a handler's ``sys.exit()`` fails
only its task, the pool outlives the SIGKILL of any process it owns, and a signal to the whole
process group (systemd's KillMode=control-group) drains the pool gracefully."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.runtime import Backends
from e2e_support import WAIT, PoolProcess, Stack, alive, process_parent, python_app, wait_until
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]


class Job(BaseModel):
    """The context of app_pool's ``job`` and ``sync_job`` tasks."""

    label: str = ""
    seconds: float = 0.0
    fail: bool = False
    exit: str = ""


def logs(agent_id: UUID) -> list[tuple[Status, str]]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [(log.status, log.message) for log in detail.logs]


async def enqueue(queue_name: str, label: str = "", task: str = "job", **kw: Any) -> ax.Task:
    return await ax.enqueue(task, Job(label=label, **kw), queue_name=queue_name)


def journal_time(pool: PoolProcess, event: str, label: str) -> float:
    [t] = [e["t"] for e in pool.events() if e["event"] == event and e["label"] == label]
    return float(t)


@pytest.mark.parametrize("stack", ["redis", "sqlite"], indirect=True)
async def test_a_handler_that_exits_fails_its_task_and_the_worker_goes_on(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(python_app())
    [worker] = pool.workers()
    cases = [
        ("job", "system_exit", "SystemExit: 3"),
        ("job", "keyboard_interrupt", "KeyboardInterrupt"),
        ("job", "base", "Bye: so long"),
        ("sync_job", "system_exit", "SystemExit: 3"),
        ("sync_job", "keyboard_interrupt", "KeyboardInterrupt"),
    ]
    for i, (name, how, reason) in enumerate(cases):
        bad = await enqueue(queue_name, f"bad{i}", name, exit=how)
        after = await enqueue(queue_name, f"after{i}", name)
        with pytest.raises(ax.TaskFailedError) as caught:
            await ax.get_result(bad, timeout=WAIT)
        assert caught.value.error == reason
        assert logs(bad.agent_id)[-1][0] is Status.ERROR
        assert reason in logs(bad.agent_id)[-1][1]
        assert await ax.get_result(after, timeout=WAIT) == f"after{i}"
        # the same worker took the next task at once: no death, no redelivery, no restart
        gap = journal_time(pool, "start", f"after{i}") - journal_time(pool, "start", f"bad{i}")
        assert gap < 1.0, f"{name}/{how}: the next task started {gap:.2f}s later"
    starts = [e for e in pool.events() if e["event"] == "start"]
    assert len(starts) == 2 * len(cases)  # each ran once
    assert {e["pid"] for e in starts} == {worker}
    assert pool.workers() == [worker]
    assert "starting a replacement" not in pool.output
    assert pool.stop() == 0


def gone(pids: set[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def wait_for(pool: PoolProcess, predicate: Callable[[], bool], what: str) -> None:
    """``wait_until``, with every pool process's stacks and the pool's output when it fails."""
    try:
        wait_until(predicate, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pool.dump_stacks()}") from None


def replaced(pool: PoolProcess, worker: int, count: int = 2) -> bool:
    now = pool.workers()
    return len(now) == count and worker not in now


@pytest.mark.parametrize("stack", ["redis_sqlite", "sqlite"], indirect=True)
async def test_the_pool_survives_sigkill_of_its_fork_server_and_standby(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    # one slot each: which worker runs a task is what this test watches
    pool = run_pool(python_app(), AGENTEXEC_NUM_WORKERS=2, AGENTEXEC_WORKER_CONCURRENCY=1)
    wait_for(pool, lambda: len(pool.named("spare")) == 1, what="the fork server's standby")
    server, standby, workers = pool.server(), pool.standby(), pool.workers()
    seen = {server, standby, *workers}
    long = await enqueue(queue_name, "long", seconds=2)
    pool.wait_event("start")

    # 1. the fork server: its standby takes over, its workers carry on (the running task too)
    os.kill(server, signal.SIGKILL)
    wait_for(pool, lambda: pool.servers() == [standby], what="the standby promoted")
    assert await ax.get_result(long, timeout=WAIT) == "long"
    assert [e["label"] for e in pool.events() if e["event"] == "start"] == ["long"]  # ran once
    assert pool.workers() == workers  # none died with their server, none was replaced
    assert all(process_parent(w) == pool.proc.pid for w in workers)  # adopted by the pool
    wait_for(pool, lambda: len(pool.named("spare")) == 1, what="a new standby")
    server, standby = pool.server(), pool.standby()
    seen |= {server, standby}
    assert [await ax.get_result(await enqueue(queue_name, f"a{i}"), timeout=WAIT) for i in range(4)] == [
        f"a{i}" for i in range(4)
    ]

    # 2. an adopted worker that dies is reaped and replaced by the new server
    os.kill(workers[0], signal.SIGKILL)
    wait_for(pool, lambda: replaced(pool, workers[0]), what="a replacement")
    [new_worker] = set(pool.workers()) - set(workers)
    assert process_parent(new_worker) == server
    seen.add(new_worker)

    # 3. the standby alone: its server forks another
    os.kill(standby, signal.SIGKILL)
    wait_for(pool, lambda: pool.named("spare") not in ([], [standby]), what="a new standby")
    standby = pool.standby()
    seen.add(standby)

    # 4. both at once: the last resort, a fork of the pool process
    os.kill(standby, signal.SIGKILL)
    os.kill(server, signal.SIGKILL)
    wait_for(pool, lambda: pool.servers() not in ([], [server]), what="a new fork server")
    wait_for(pool, lambda: len(pool.named("spare")) == 1, what="its standby")
    seen |= {pool.server(), pool.standby()}
    assert process_parent(pool.server()) == pool.proc.pid
    pool.wait_output("a new fork of the pool process")
    os.kill(new_worker, signal.SIGKILL)  # the new server forks its replacement
    wait_for(pool, lambda: replaced(pool, new_worker), what="a replacement")
    [last_worker] = set(pool.workers()) - {workers[1]}
    assert process_parent(last_worker) == pool.server()
    seen.add(last_worker)
    tasks = [await enqueue(queue_name, f"b{i}", seconds=0.3) for i in range(6)]
    assert await ax.gather(*tasks, timeout=WAIT) == tuple(f"b{i}" for i in range(6))
    ran_in = {e["pid"] for e in pool.events() if e["label"].startswith("b")}
    assert ran_in == {workers[1], last_worker}  # the last resort's worker takes tasks too

    assert alive(pool.proc.pid)
    assert "stopped on an error" not in pool.output
    assert "Traceback" not in pool.output and "exited with code" not in pool.output, pool.output
    assert pool.stop() == 0
    wait_until(lambda: gone(seen), timeout=5, what="every process of the pool to exit")


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_sigterm_to_one_pool_process(producer: Backends, run_pool: RunPool, queue_name: str) -> None:
    """The fork server and its standby ignore SIGTERM and SIGINT (the pool process decides); a
    worker finishes its running task, exits 0 and is replaced a moment later."""
    pool = run_pool(python_app())
    wait_for(pool, lambda: len(pool.named("spare")) == 1, what="the fork server's standby")
    server, standby, [worker] = pool.server(), pool.standby(), pool.workers()
    for pid in (server, standby):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
    task = await enqueue(queue_name, "long", seconds=1)
    pool.wait_event("start")
    os.kill(worker, signal.SIGTERM)
    assert await ax.get_result(task, timeout=WAIT) == "long"
    wait_for(pool, lambda: replaced(pool, worker, count=1), what="a replacement")
    pool.wait_output(f"Worker 0 (pid {worker}) exited with code 0; starting a replacement")
    assert pool.servers() == [server] and pool.named("spare") == [standby]
    after = await enqueue(queue_name, "after")
    assert await ax.get_result(after, timeout=WAIT) == "after"
    assert [e["label"] for e in pool.events() if e["event"] == "start"] == ["long", "after"]
    assert pool.stop() == 0


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_a_stuck_fork_server_is_replaced(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """A fork server that does not answer (here: stopped with SIGSTOP) can neither report its
    workers' exits nor start replacements: it is killed, and its standby takes over."""
    pool = run_pool(python_app(), AGENTEXEC_NUM_WORKERS=2, E2E_SERVER_TIMEOUT=2)
    wait_for(pool, lambda: len(pool.named("spare")) == 1, what="the fork server's standby")
    server, standby, workers = pool.server(), pool.standby(), pool.workers()
    os.kill(server, signal.SIGSTOP)
    os.kill(workers[0], signal.SIGKILL)
    wait_for(pool, lambda: pool.servers() == [standby], what="the standby promoted")
    wait_for(pool, lambda: replaced(pool, workers[0]), what="a replacement")
    assert not alive(server)
    pool.wait_output(f"The pool's fork server (pid {server}) has not answered for")
    tasks = [await enqueue(queue_name, f"t{i}", seconds=0.2) for i in range(4)]
    assert await ax.gather(*tasks, timeout=WAIT) == tuple(f"t{i}" for i in range(4))
    assert pool.stop() == 0


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_no_pool_process_outlives_the_pool_process(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """Workers outlive their fork server, never the pool: SIGKILL of the pool process takes
    every other process along, those it adopted from a dead server too."""
    pool = run_pool(python_app(), AGENTEXEC_NUM_WORKERS=2)
    wait_until(lambda: len(pool.named("spare")) == 1, what="the fork server's standby")
    standby = pool.standby()
    os.kill(pool.server(), signal.SIGKILL)
    wait_until(lambda: pool.servers() == [standby], what="the standby promoted")
    wait_until(lambda: len(pool.named("spare")) == 1, what="a new standby")
    task = await enqueue(queue_name, "long", seconds=30)
    pool.wait_event("start")
    members = set(pool.workers()) | {pool.server(), pool.standby()}
    assert any(process_parent(w) == pool.proc.pid for w in pool.workers())  # adopted ones
    killed = time.monotonic()
    os.kill(pool.proc.pid, signal.SIGKILL)
    wait_until(lambda: gone(members), timeout=5, what="every process of the pool to exit")
    print(f"the pool's {len(members)} processes exited {time.monotonic() - killed:.2f}s after it")
    assert logs(task.agent_id)[-1][0] is Status.RUNNING  # until a pool reaps its lease


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("stack", ["redis_sqlite", "sqlite"], indirect=True)
async def test_a_signal_to_the_whole_process_group_drains_the_pool(
    stack: Stack, producer: Backends, run_pool: RunPool, queue_name: str, sig: signal.Signals
) -> None:
    """What systemd (KillMode=control-group) and ``docker stop`` do: every process of the pool
    gets the signal at once. The running tasks finish, nothing else starts, the pool exits 0
    in about the time the tasks take, not the graceful timeout."""
    pool = run_pool(
        python_app(), AGENTEXEC_NUM_WORKERS=2, AGENTEXEC_WORKER_CONCURRENCY=2,
        AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT=60,
    )
    task_seconds = 1.5
    running = [await enqueue(queue_name, f"r{i}", seconds=task_seconds) for i in range(4)]
    pool.wait_event("start", count=4)
    waiting = [await enqueue(queue_name, f"q{i}") for i in range(6)]
    members = {pool.server(), pool.standby(), *pool.workers()}
    signalled, signalled_at = time.monotonic(), time.time()
    os.killpg(pool.proc.pid, sig)
    assert pool.stop(None) == 0
    took, exited_at = time.monotonic() - signalled, time.time()
    assert took < task_seconds + 3, f"the pool took {took:.2f}s to drain"
    assert all(not alive(pid) for pid in members)
    started = {e["label"] for e in pool.events() if e["event"] == "start"}
    assert started == {f"r{i}" for i in range(4)}, pool.output
    for task in running:
        assert [s for s, _ in logs(task.agent_id)] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
    for task in waiting:
        assert [s for s, _ in logs(task.agent_id)] == [Status.QUEUED]
    assert await producer.queue.length(queue_name) == len(waiting)
    assert (await producer.queue.stats(queue_name)).in_flight == 0
    assert "fork server" not in pool.output and "replacement" not in pool.output, pool.output
    last_end = max(e["t"] for e in pool.events() if e["event"] == "end")
    print(
        f"group {sig.name} on {stack.name}: exit {took:.2f}s after the signal, the last task ended "
        f"{last_end - signalled_at:.2f}s after it, the pool exited {exited_at - last_end:.2f}s after that"
    )


@pytest.mark.parametrize("stack", ["redis_sqlite", "sqlite"], indirect=True)
async def test_chaos_killing_any_pool_process_every_half_second(
    stack: Stack, producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """The issue's soak, shortened: SIGKILL one random process of the pool (a worker, the fork
    server or its standby) every 0.5 s while short tasks run. The pool keeps running and every
    task completes; killing the fork server or its standby costs no run at all (its workers
    carry on). What a killed worker costs (runs that finished but whose outcome it had not
    written yet run again) is the worker's outbox's business, reported here, not judged.

    One slot per worker, as in the issue's soak (benchmarks/chaos.py): with ten, each kill
    strikes ten running tasks, which go back to the front of the queue together and are taken
    together again, so three kills in a row can spend a task's three attempts on runs that did
    start, which is max_attempts doing its job, not what this test is about."""
    pool = run_pool(python_app(), AGENTEXEC_NUM_WORKERS=4, AGENTEXEC_WORKER_CONCURRENCY=1)
    rng = random.Random(13)
    tasks = await ax.enqueue_many(
        [("job", Job(label=f"t{i}", seconds=rng.uniform(0.02, 0.08))) for i in range(400)],
        queue_name=queue_name,
    )
    kills: list[tuple[int, str]] = []
    for _ in range(12):
        await anyio.sleep(0.5)
        victims = (
            [(pid, "worker") for pid in pool.workers()]
            + [(pid, "fork") for pid in pool.servers()]
            + [(pid, "spare") for pid in pool.named("spare")]
        )
        pid, role = rng.choice(victims)
        os.kill(pid, signal.SIGKILL)
        kills.append((pid, role))
    results = await ax.gather(*tasks, timeout=60)
    assert results == tuple(f"t{i}" for i in range(400))
    assert alive(pool.proc.pid) and "stopped on an error" not in pool.output
    roles = Counter(role for _, role in kills)
    assert roles["fork"] and roles["spare"], roles  # the seed picks each kind at least once

    starts: dict[str, list[int]] = {}
    for e in pool.events():
        if e["event"] == "start":
            starts.setdefault(e["label"], []).append(e["pid"])
    killed_workers = {pid for pid, role in kills if role == "worker"}
    reruns = {label: pids for label, pids in starts.items() if len(pids) > 1}

    def about(pids: list[int]) -> str:
        return "\n".join(line for line in pool.lines if any(f"pid {p}" in line for p in pids))

    # the pool saw exactly the workers it lost die, and none die with a fork server
    replaced = {int(m) for m in re.findall(r"Worker \d+ \(pid (\d+)\) [^;\n]*; starting a replacement", pool.output)}
    assert replaced <= killed_workers, f"replaced {replaced}, killed {kills}"
    # a task runs again only when the worker that ran it was killed
    for label, pids in reruns.items():
        assert set(pids[:-1]) <= killed_workers, f"{label} ran in {pids}; killed {kills}\n{about(pids)}"
    for task in tasks:
        statuses = [s for s, _ in logs(task.agent_id)]
        label = task.context.label  # type: ignore[attr-defined]
        assert statuses[-1] is Status.COMPLETE, (
            f"{label}: {logs(task.agent_id)}, ran in {starts.get(label)}; killed {kills}\n"
            f"{about(starts.get(label, []))}"
        )
    assert pool.stop() == 0
    duplicates = sum(len(pids) - 1 for pids in reruns.values())
    print(f"chaos on {stack.name}: kills {dict(roles)}, {duplicates} duplicate runs")
