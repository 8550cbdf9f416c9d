"""Hostile data is inert, sizes are bounded, warnings are true, workers recycle: real pools
(``app_hostile.py``), real processes, on Redis (activity on PostgreSQL) and, where the
backend matters, on the embedded SQLite transport.

Each attack ends with its documented outcome (docs/operations.md) and every other task COMPLETE.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.activity.status import Status
from agentexec.results import Outcome
from agentexec.runtime import Backends
from agentexec.testing._helpers import push_raw
from e2e_support import HERE, WAIT, PoolProcess, Stack, agentexec_cli, wait_until
from pydantic import BaseModel

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RunPool = Callable[..., PoolProcess]
APP = [sys.executable, str(HERE / "app_hostile.py")]
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m"
#: a JSON value nested far deeper than any parser's recursion limit
POISON = '{"payload": ' + "[" * 100_000 + "]" * 100_000 + "}"
#: a warning that is true on the test Redis (it runs with neither AOF nor RDB)
NO_PERSISTENCE = "has neither AOF nor RDB persistence"


class Job(BaseModel):
    label: str = ""
    seconds: float = 0.0
    size: int = 0


async def enqueue(queue: str, task: str = "job", label: str = "", **kw: Any) -> ax.Task:
    return await ax.enqueue(task, Job(label=label, **kw), queue_name=queue)


def status(agent_id: UUID) -> tuple[Status, str]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return detail.status, detail.logs[-1].message


async def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """A command's exit code, stdout and stderr (bounded by WAIT)."""
    with anyio.fail_after(WAIT):
        done = await anyio.run_process(argv, env=env, check=False, cwd=HERE)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def cli(stack: Stack, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")} | stack.env()
    return await run(agentexec_cli(*args), env)


async def count_after(backends: Backends, channel: str, since: str) -> int:
    """How many messages ``channel`` holds after ``since`` (read until a second passes idle)."""
    count = 0
    async with backends.events.subscribe([channel], last_id=since) as stream:
        while True:
            got = None
            with anyio.move_on_after(1):
                got = await anext(stream)
            if got is None:
                return count
            count += 1


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL"))]


@pytest.mark.parametrize("stack", ["redis", "sqlite"], indirect=True)
async def test_hostile_data_ends_as_documented(
    stack: Stack, producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(APP, AGENTEXEC_WORKER_CONCURRENCY=4, AGENTEXEC_MAX_RESULT_BYTES=4096)
    logs_channel = f"logs:{queue_name}"
    since = await producer.events.publish(logs_channel, "a line before the test")
    async with ax.events.subscribe("hostile.*") as subscriber:
        # poison on every channel a pool or a subscriber reads: skipped with a warning
        for channel in ("events:hostile.poison", logs_channel, f"control:{queue_name}"):
            await producer.events.publish(channel, POISON)
        await ax.events.publish("hostile.fine", {"n": 1})
        with anyio.fail_after(WAIT):
            event = await anext(subscriber)
        assert (event.event_type, event.payload) == ("hostile.fine", {"n": 1})

    # a payload whose attempts would never reach max_attempts: dead-lettered, never run
    forged = ax.Task.create("job", Job(label="forged")).to_envelope(queue_name)
    payload = forged.model_dump_json().replace('"attempts":0', '"attempts":-1000000')
    await push_raw(producer.queue, queue_name, payload, ax.Priority.LOW)

    goods = [await enqueue(queue_name, label=f"good{i}") for i in range(6)]
    shout = await enqueue(queue_name, "shout", "shout", size=10 * 2**20)  # a 10 MB log line
    escape = await enqueue(queue_name, "escape", "escape")
    bulky = await enqueue(queue_name, "bulky", "bulky", size=10_000)  # over 4096 bytes
    assert list(await ax.gather(*goods, shout, escape, timeout=WAIT)) == [
        *[f"good{i}" for i in range(6)], "shout", "escape",
    ]
    with pytest.raises(ax.TaskFailedError, match="result too large: 10,002 bytes, over the limit of 4,096"):
        await ax.get_result(bulky, timeout=WAIT)
    assert status(bulky.agent_id)[0] is Status.ERROR
    for task in [*goods, shout, escape]:
        assert status(task.agent_id)[0] is Status.COMPLETE

    dead = await producer.queue.dead_letters(queue_name)
    assert [d.envelope for d in dead] == [None] and "attempts" in dead[0].reason
    assert "forged" not in {e["label"] for e in pool.events()}

    # the 10 MB line reached the pool's output cut, with the marker (and Redis holds it cut)
    pool.wait_output("[truncated: 10,485,760 bytes in all]")
    longest = max(len(line) for line in pool.lines)
    assert longest < 40_000, f"a {longest}-character line got through"
    # the relay survived the poison: a task enqueued after it is still relayed
    after = await enqueue(queue_name, label="after")
    assert await ax.get_result(after, timeout=WAIT) == "after"
    wait_until(lambda: pool.output.count("Task completed: job") >= 7, WAIT, "relayed lines")

    # escape codes reach the terminal as text, through `activity show` and `tail`
    code, shown, err = await cli(stack, "activity", "show", str(escape.agent_id))
    assert code == 0, err
    records = await count_after(producer, logs_channel, str(since))
    code, tailed, err = await cli(
        stack, "tail", "--queue", queue_name, "--no-events", "--since", str(since),
        "--count", str(records), "--timeout", str(WAIT),
    )
    assert code == 0, err
    for output in (shown, tailed):
        assert "evil\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m" in output
        assert not {"\x1b", "\x07", "\x9b"} & set(output), "a control character reached the terminal"
    assert "xxxxxxxx… [truncated: 10,485,760 bytes in all]" in tailed
    assert pool.stop() == 0


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
async def test_a_forged_result_type_imports_nothing(stack: Stack, producer: Backends) -> None:
    """An outcome naming ``agentexec:OpenAIRunner`` made ``get_result`` import 1,250 modules."""
    task, plain = ax.Task.create("job", Job()), ax.Task.create("job", Job())
    forged = Outcome(status="ok", task_name="job", value={"x": 1}, model="agentexec:OpenAIRunner")
    await producer.results.set(task.agent_id, forged.encode(), 60)
    await producer.results.set(plain.agent_id, Outcome.ok("job", {"x": 0}).encode(), 60)
    code = (
        "import sys, anyio, agentexec as ax\n"
        "from agentexec.runtime import build_backends, set_backends\n"
        f"set_backends(build_backends({stack.urls()!r}))\n"
        f"anyio.run(lambda: ax.get_result({str(plain.agent_id)!r}, timeout=5))  # what any read imports\n"
        "before = set(sys.modules)\n"
        f"value = anyio.run(lambda: ax.get_result({str(task.agent_id)!r}, timeout=5))\n"
        "print(value, sorted(set(sys.modules) - before))\n"
    )
    _, out, err = await run([sys.executable, "-c", code])
    assert out.strip() == "{'x': 1} []", out + err


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
async def test_queues_a_and_braced_a_keep_their_tasks_apart(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """``a`` and ``{a}`` once shared their companion keys: pool ``a``'s reaper took the tasks
    of a dead ``{a}`` worker and ran them on the wrong queue."""
    braced = "{" + queue_name + "}"
    plain_pool = run_pool(APP)
    braced_pool = run_pool(APP, queue=braced)
    stranded = await enqueue(braced, label="braced", seconds=3)
    braced_pool.wait_event("start")
    await anyio.sleep(1)  # a heartbeat or two: its consumer is registered
    braced_pool.kill()  # the whole pool: only another pool's reaper could take the task now
    plain = await enqueue(queue_name, label="plain")
    assert await ax.get_result(plain, timeout=WAIT) == "plain"
    await anyio.sleep(2 * producer.queue.lease_timeout + 1)  # the lease expired long ago
    assert [e["label"] for e in plain_pool.events() if e["event"] == "start"] == ["plain"]
    again = run_pool(APP, queue=braced)  # its own pool hands it out again, and runs it
    assert await ax.get_result(stranded, timeout=WAIT) == "braced"
    assert {e["queue"] for e in again.events()} == {braced}
    assert status(stranded.agent_id)[0] is Status.COMPLETE
    assert plain_pool.stop() == 0 and again.stop() == 0


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
async def test_an_idle_pool_logs_no_warning(stack: Stack, run_pool: RunPool) -> None:
    """Idle event subscribers once logged 'Redis unavailable during event subscription:
    Timeout reading from ...' about every 20 s: a 5 s XREAD BLOCK against redis-py's 5 s
    socket timeout, retried 3 times. The same relation at a 0.5 s socket timeout fails within
    2 s; 6 s of idling shows it holds (``benchmarks/idle_pool.py`` idles 10 minutes at the
    defaults)."""
    assert stack.redis_url is not None
    url = stack.redis_url + ("&" if "?" in stack.redis_url else "?") + "socket_timeout=0.5"
    pool = run_pool(APP, AGENTEXEC_REDIS_URL=url, AGENTEXEC_NUM_WORKERS=2)
    await anyio.sleep(6)
    assert pool.stop() == 0
    assert [w for w in warnings_in(pool.output) if NO_PERSISTENCE not in w] == [], pool.output
    # the one true warning: this Redis keeps nothing on disk; said once
    assert len([w for w in warnings_in(pool.output) if NO_PERSISTENCE in w]) == 1


@pytest.mark.parametrize("stack", ["redis", "sqlite"], indirect=True)
async def test_two_pools_on_one_queue_print_only_their_own_workers(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    first, second = run_pool(APP), run_pool(APP)
    tasks = [await enqueue(queue_name, label=f"t{i}", seconds=0.05) for i in range(20)]
    await ax.gather(*tasks, timeout=WAIT)
    await anyio.sleep(1)  # the last relayed lines
    ran = [(pool, sum(e["event"] == "end" for e in pool.events())) for pool in (first, second)]
    assert sum(count for _, count in ran) == 20
    for pool, count in ran:
        printed = pool.output.count("[Worker 0] Task completed: job")
        assert printed == count, f"a pool printed {printed} task lines, its workers ran {count}"
    assert first.stop() == 0 and second.stop() == 0


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
async def test_workers_are_recycled_after_n_tasks_losing_nothing(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    pool = run_pool(APP, AGENTEXEC_MAX_TASKS_PER_WORKER=3, AGENTEXEC_WORKER_CONCURRENCY=2)
    tasks = [await enqueue(queue_name, label=f"t{i}", seconds=0.3) for i in range(10)]
    assert list(await ax.gather(*tasks, timeout=WAIT)) == [f"t{i}" for i in range(10)]
    starts = [e for e in pool.events() if e["event"] == "start"]
    assert sorted(e["label"] for e in starts) == sorted(f"t{i}" for i in range(10)), "a task ran twice"
    per_worker = Counter(e["pid"] for e in starts)
    assert len(per_worker) >= 4 and max(per_worker.values()) <= 3, per_worker
    assert "recycled; starting a replacement" in pool.output
    assert all(status(t.agent_id)[0] is Status.COMPLETE for t in tasks)
    assert [w for w in warnings_in(pool.output) if NO_PERSISTENCE not in w] == []
    assert pool.stop() == 0


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
async def test_a_worker_over_its_memory_limit_is_recycled(
    producer: Backends, run_pool: RunPool, queue_name: str
) -> None:
    """A handler that leaks (64 MiB a task here) grew a worker to 2 GB; with
    ``max_worker_rss_mb`` the worker finishes its tasks and is replaced once over the limit."""
    pool = run_pool(APP, AGENTEXEC_WORKER_CONCURRENCY=1)
    wait_until(lambda: len(pool.workers()) == 1, what="the named worker")
    [worker] = pool.workers()
    baseline = _rss_mb(worker)
    assert baseline > 0
    assert pool.stop() == 0
    limit = int(baseline + 100)
    pool = run_pool(APP, AGENTEXEC_WORKER_CONCURRENCY=1, AGENTEXEC_MAX_WORKER_RSS_MB=limit)
    tasks = [await enqueue(queue_name, "hoard", f"h{i}", size=64) for i in range(6)]
    assert list(await ax.gather(*tasks, timeout=WAIT)) == [f"h{i}" for i in range(6)]
    per_worker = Counter(e["pid"] for e in pool.events() if e["event"] == "start")
    assert len(per_worker) >= 2 and max(per_worker.values()) <= 2, (limit, per_worker)
    assert f"max_worker_rss_mb={limit}" in pool.output
    assert all(w not in per_worker or _rss_mb(w) <= limit + 70 for w in pool.workers())
    assert pool.stop() == 0


def _rss_mb(pid: int) -> float:
    """The process's resident memory; 0 for one that has exited meanwhile (a recycled worker
    between its exit and its reaping has no VmRSS line, or no /proc entry at all)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
