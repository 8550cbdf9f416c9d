"""Idle waiters wake on a write from another process: at once on PostgreSQL (LISTEN/NOTIFY,
no polling while idle), within the poll back-off on SQLite."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from agentexec.task import Envelope
from agentexec_sqlalchemy.transport.events import SQLEvents
from agentexec_sqlalchemy.transport.models import queue_table
from agentexec_sqlalchemy.transport.queue import SQLQueue
from agentexec_sqlalchemy.transport.results import SQLResults
from agentexec_sqlalchemy.transport.watch_pg import result_keys

# Another process: on each line from stdin it pushes one task, sets one result or a batch of
# them, or publishes one event, then prints the wall-clock time its transaction committed.
WRITER = """
import sys, time, uuid, anyio
from agentexec.task import Envelope
from agentexec_sqlalchemy.transport.events import SQLEvents
from agentexec_sqlalchemy.transport.queue import SQLQueue
from agentexec_sqlalchemy.transport.results import SQLResults
from agentexec_sqlalchemy.transport.watch_pg import result_keys

url = sys.argv[1]

async def main() -> None:
    queue, results, events = SQLQueue(url), SQLResults(url), SQLEvents(url)
    queue.ensure_schema()
    print("ready", flush=True)
    for line in sys.stdin:
        kind, name = line.split()
        if kind == "publish":
            await events.publish(name, "x")
        elif kind == "set_many":
            await results.set_many([(uuid.UUID(key), b"done") for key in name.split(",")], 60)
        elif kind == "push":
            await queue.push(Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=name))
        else:
            await results.set(uuid.UUID(name), b"done", 60)
        print(time.time(), flush=True)

anyio.run(main)
"""


class Writer:
    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, kind: str, name: str) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{kind} {name}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('wake') / 'wake.db'}"
    return str(request.getfixturevalue("postgres_server_url"))


@pytest.fixture(scope="module")
def writer(url: str) -> Iterator[Writer]:
    w = Writer(url)
    yield w
    w.close()


def _counting(obj: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the time of every call of ``obj.name`` (a sync method run in a worker thread)."""
    calls: list[float] = []
    original = getattr(obj, name)

    def wrapper(*args: Any) -> Any:
        calls.append(time.monotonic())
        return original(*args)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


# generous bounds for a loaded 2-core CI box; typical figures are in benchmarks/sql_queue.py
BOUND = {"postgresql": 0.15, "sqlite": 0.5}


@pytest.mark.slow
@pytest.mark.anyio
async def test_idle_consumer_wakes_on_a_push_from_another_process(
    url: str, writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = SQLQueue(url)
    queue_name = f"wake-{uuid.uuid4().hex[:8]}"
    takes = _counting(queue, "_take", monkeypatch)
    got: list[tuple[Any, float]] = []

    async def consume() -> None:
        lease = await queue.reserve(queue_name, "idle", 5.0)
        got.append((lease, time.time()))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(1.0)  # idle for a while
            idle_takes = len(takes)
            pushed_at = await anyio.to_thread.run_sync(writer.send, "push", queue_name)
    lease, woke_at = got[0]
    assert lease is not None
    latency = woke_at - pushed_at
    assert latency < BOUND[queue.engine.dialect.name], f"woke {latency * 1000:.0f} ms after the push"
    # one attempt, then sleep until woken: by the NOTIFY on PostgreSQL, by the process's shared
    # poller (reads only) on SQLite; never a write transaction per poll
    assert idle_takes == 1, idle_takes


@pytest.mark.slow
@pytest.mark.anyio
async def test_result_waiter_wakes_on_a_set_from_another_process(
    url: str, writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = SQLResults(url)
    agent_id = uuid.uuid4()
    reads = _counting(results, "_get", monkeypatch)
    got: list[tuple[bytes, float]] = []

    async def wait() -> None:
        got.append((await results.wait(agent_id, 5.0), time.time()))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(1.0)
            idle_reads = len(reads)
            set_at = await anyio.to_thread.run_sync(writer.send, "set", str(agent_id))
    value, woke_at = got[0]
    assert value == b"done"
    latency = woke_at - set_at
    assert latency < BOUND[results.engine.dialect.name], f"woke {latency * 1000:.0f} ms after the set"
    assert idle_reads == 1, idle_reads  # the waiter itself never polls


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_batch_of_results_wakes_its_waiters_and_no_other(
    url: str, writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 keys are more than one NOTIFY's payload holds: the waiter of the 250th wakes at once,
    the waiter of a key the batch does not hold is not woken (it read once, and sleeps on)."""
    results = SQLResults(url)
    keys = [uuid.uuid4() for _ in range(300)]
    other = uuid.uuid4()
    reads = _counting(results, "_get", monkeypatch)
    got: list[tuple[bytes, float]] = []

    async def wait() -> None:
        got.append((await results.wait(keys[249], 5.0), time.time()))

    async def wait_other() -> None:
        with anyio.move_on_after(1.5):
            await results.wait(other, 5.0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait_other)
            await anyio.sleep(1.0)
            assert len(reads) == 2
            set_at = await anyio.to_thread.run_sync(writer.send, "set_many", ",".join(map(str, keys)))
    value, woke_at = got[0]
    assert value == b"done"
    latency = woke_at - set_at
    assert latency < BOUND[results.engine.dialect.name], f"woke {latency * 1000:.0f} ms after the set"
    assert len(reads) == 3, len(reads)  # the woken waiter read once more; the other never


@pytest.mark.anyio
async def test_an_event_wakes_only_the_subscriptions_it_matches(
    url: str, writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of other channels, published by another process or this one, do not make an idle
    subscription query (a worker's ``control:cancel`` listener is not woken by every lifecycle
    event and log line); one of its own channel wakes it at once."""
    events = SQLEvents(url)
    mine, other = f"mine-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    reads = _counting(events, "_matching_after", monkeypatch)
    got: list[tuple[str, float]] = []
    with anyio.fail_after(15):
        async with events.subscribe([f"{mine}:*"]) as sub:

            async def listen() -> None:
                async for event in sub:
                    got.append((event.channel, time.time()))
                    return

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await anyio.sleep(0.5)  # the subscription waits
                idle_reads = len(reads)
                for i in range(5):
                    await anyio.to_thread.run_sync(writer.send, "publish", f"{other}:{i}")
                    await SQLEvents(url).publish(f"{other}:local", "x")
                await anyio.sleep(0.3)  # past the SQLite poll back-off
                assert len(reads) == idle_reads, "woken by events of other channels"
                sent_at = await anyio.to_thread.run_sync(writer.send, "publish", f"{mine}:a")
    channel, woke_at = got[0]
    assert channel == f"{mine}:a"
    latency = woke_at - sent_at
    # latency proper is the other tests' business: a bound loose enough for a loaded box
    assert latency < 1.0, f"woke {latency * 1000:.0f} ms after the publish"


def _push_bypassing_this_process(queue: SQLQueue, queue_name: str) -> None:
    """Insert a task as another process would: no in-process wake-up, only the database's."""
    env = Envelope(agent_id=uuid.uuid4(), task_name="t", context={}, queue_name=queue_name)
    row = queue._row(env, None)
    with queue.write() as conn:
        conn.execute(queue_table.insert(), [row])
        queue.notify(conn, "queue", queue_name)


@pytest.mark.anyio
async def test_waiters_survive_a_lost_listen_connection(postgres_server_url: str) -> None:
    queue = SQLQueue(postgres_server_url)
    name = f"lost-{uuid.uuid4().hex[:8]}"
    got: list[Any] = []

    async def consume() -> None:
        got.append(await queue.reserve(name, "c", 8.0))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.3)
            with queue.read() as conn:  # the server drops the listener's connection
                killed = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )).scalars().all()
            assert killed and all(killed)
            await anyio.sleep(0.5)  # reconnected (first retry after 100 ms)
            started = time.monotonic()
            _push_bypassing_this_process(queue, name)
    assert got[0] is not None
    assert time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_an_idle_sqlite_poller_stops_and_a_new_one_starts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentexec_sqlalchemy.transport import watch_sqlite

    monkeypatch.setattr(watch_sqlite, "IDLE_EXIT", 0.2)
    queue = SQLQueue(f"sqlite:///{tmp_path / 'idle.db'}")
    name = f"idle-{uuid.uuid4().hex[:8]}"
    first = await queue.watcher()
    assert await queue.reserve(name, "c", 0.05) is None
    await anyio.sleep(1.0)  # idle past IDLE_EXIT: the thread ends
    assert not first.healthy and not first._thread.is_alive()
    got: list[Any] = []

    async def consume() -> None:
        got.append(await queue.reserve(name, "c", 5.0))

    with anyio.fail_after(6):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.2)
            started = time.monotonic()
            _push_bypassing_this_process(queue, name)
    assert got[0] is not None
    assert time.monotonic() - started < 0.5
    assert (await queue.watcher()) is not first


def test_a_results_payload_names_its_keys_or_every_waiter() -> None:
    assert result_keys('["a", "b"]') == ["a", "b"]
    for everyone in ("", "not json", "[1, 2]", '{"a": 1}'):
        assert result_keys(everyone) is None
