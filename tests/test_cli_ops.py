"""The operator CLI against a running pool: status, activity, tail, schedules, dead-letter.

A real pool (``agentexec run cli_ops_app:pool``, one worker process) runs on the real Redis
(queue, results, events) with a SQLite activity file; the commands run through
``agentexec.cli.main`` — the console script's entry point — and, once each, as the installed
``agentexec`` script itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.cli import main
from agentexec.config import CONF
from agentexec.runtime import build_backends, get_backends, set_backends

HERE = Path(__file__).parent
SCRIPT = str(Path(sys.executable).parent / "agentexec")

pytestmark = pytest.mark.slow


class OpsPool:
    def __init__(self, queue: str, env: dict[str, str], tmp: Path, proc: subprocess.Popen[bytes]) -> None:
        self.queue = queue
        self.env = env
        self.tmp = tmp
        self.proc = proc


def _run(coro: Any, *args: Any) -> Any:
    return anyio.run(coro, *args)


@pytest.fixture(scope="module")
def ops(redis_server_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsPool]:
    if redis_server_url is None:
        pytest.skip("no Redis server reachable (CI always has one)")
    tmp = tmp_path_factory.mktemp("cliops")
    queue = f"cliops{os.getpid()}{int(time.time() * 1000) % 100000}"
    env = {
        "AGENTEXEC_REDIS_URL": redis_server_url,
        "AGENTEXEC_DATABASE_URL": f"sqlite:///{tmp}/activity.db",
        "AGENTEXEC_QUEUE_NAME": queue,
        "AGENTEXEC_NUM_WORKERS": "1",
        "AGENTEXEC_MAX_ATTEMPTS": "2",
        "AGENTEXEC_GRACEFUL_SHUTDOWN_TIMEOUT": "5",
        # heartbeats every 2 s: the first one can be undone by the Redis queue's start-up
        # recovery of the consumer id, and the test waits for a live worker
        "AGENTEXEC_LEASE_TIMEOUT": "6",
    }
    proc = subprocess.Popen(
        [SCRIPT, "run", "cli_ops_app:pool"], cwd=HERE, env={**os.environ, **env},
        stdout=(tmp / "pool.log").open("wb"), stderr=subprocess.STDOUT,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CONF, "redis_url", env["AGENTEXEC_REDIS_URL"])
        mp.setattr(CONF, "database_url", env["AGENTEXEC_DATABASE_URL"])
        mp.setattr(CONF, "queue_name", queue)
        for key, value in env.items():
            mp.setenv(key, value)
        mp.syspath_prepend(str(HERE))
        set_backends(build_backends())
        try:
            _wait_for_worker(queue, proc, tmp)
            yield OpsPool(queue, env, tmp, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            set_backends(None)
            sys.modules.pop("cli_ops_app", None)


def _wait_for_worker(queue: str, proc: subprocess.Popen[bytes], tmp: Path) -> None:
    async def wait() -> None:
        with anyio.fail_after(30):
            while not (await get_backends().queue.stats(queue)).consumers:
                if proc.poll() is not None:
                    raise AssertionError(f"the pool exited: {(tmp / 'pool.log').read_text()}")
                await anyio.sleep(0.1)

    _run(wait)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def script(ops: OpsPool, *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed ``agentexec`` console script, as an operator runs it."""
    return subprocess.run(
        [SCRIPT, *argv], cwd=HERE, env={**os.environ, **ops.env, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60,
    )


def enqueue_and_wait(task_name: str, context: Any, timeout: float = 20) -> tuple[UUID, Any]:
    async def go() -> tuple[UUID, Any]:
        task = await ax.enqueue(task_name, context)
        return task.agent_id, await ax.get_result(task, timeout=timeout)

    result: tuple[UUID, Any] = _run(go)
    return result


# -- status -----------------------------------------------------------------------------------
def test_status_shows_depth_per_priority_live_workers_and_dead_letters(
    ops: OpsPool, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_ops_app import Note

    idle = f"{ops.queue}-idle"  # a queue no pool consumes, so its depth stays put

    async def fill() -> None:
        for priority in (ax.Priority.HIGH, ax.Priority.HIGH, ax.Priority.LOW, ax.Priority.LOW, ax.Priority.LOW):
            await ax.enqueue("echo", Note(), priority=priority, queue_name=idle)

    _run(fill)
    data = cli_json(capsys, "status", "--queue", ops.queue, "--queue", idle)
    queues = {q["queue"]: q for q in data["queues"]}
    assert set(queues) == {ops.queue, f"{ops.queue}:pipelines", idle, f"{idle}:pipelines"}
    assert (queues[idle]["high"], queues[idle]["low"], queues[idle]["queued"]) == (2, 3, 5)
    [worker] = [w for w in data["workers"] if w["queue"] == ops.queue]
    assert worker["alive"] and 0 <= worker["heartbeat_age"] < 10
    assert data["dead_letters"] == sum(q["dead"] for q in data["queues"])
    assert data["activities"]["QUEUED"] >= 5

    shown = script(ops, "status", "--queue", ops.queue, "--queue", idle)
    assert shown.returncode == 0, shown.stderr
    assert "Queues" in shown.stdout and idle in shown.stdout and "Workers (1 live)" in shown.stdout
    assert worker["worker"] in shown.stdout and "ago" in shown.stdout


def test_status_counts_the_activities_this_process_has_just_enqueued(
    ops: OpsPool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ax.enqueue`` writes the QUEUED activity behind the push; ``status`` run in the same
    process (a script, a test) counts it once written, as ``ax.activity`` reads do."""
    from agentexec.activity import creates
    from cli_ops_app import Note

    idle = f"{ops.queue}-behind"
    before = cli_json(capsys, "status", "--queue", idle)["activities"]["QUEUED"]
    original = creates._create

    async def slow(store: Any, items: Any) -> None:
        await anyio.sleep(0.5)  # the write behind the push, still on its way when status reads
        await original(store, items)

    monkeypatch.setattr(creates, "_create", slow)

    async def fill() -> None:
        for _ in range(3):
            await ax.enqueue("echo", Note(), queue_name=idle)

    _run(fill)
    after = cli_json(capsys, "status", "--queue", idle)["activities"]["QUEUED"]
    assert after - before == 3


# -- activity ---------------------------------------------------------------------------------
def test_activity_list_and_show_timeline(ops: OpsPool, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_ops_app import Note

    agent_id, value = enqueue_and_wait("echo", Note(text="cli"))
    assert value == "CLI"

    page = cli_json(capsys, "activity", "list", "--status", "complete", "--page-size", "100")
    assert str(agent_id) in [item["agent_id"] for item in page["items"]]
    assert all(item["status"] == "COMPLETE" for item in page["items"])
    assert cli_json(capsys, "activity", "list", "--page", "999")["items"] == []

    detail = cli_json(capsys, "activity", "show", str(agent_id))
    assert [log["status"] for log in detail["logs"]] == ["QUEUED", "RUNNING", "RUNNING", "COMPLETE"]
    assert [log["percentage"] for log in detail["logs"]][-2:] == [50, 100]

    code, out, _ = cli(capsys, "activity", "show", str(agent_id))
    assert code == 0
    assert "echo" in out and str(agent_id) in out and "Timeline" in out
    assert "Half way [step 1/2]" in out  # user text is never read as rich markup
    assert " 50%" in out and "100%" in out and "COMPLETE" in out

    code, out, _ = cli(capsys, "activity", "list", "--status", "COMPLETE")
    assert code == 0 and "COMPLETE" in out and "echo" in out


def test_activity_errors_are_plain_messages(ops: OpsPool, capsys: pytest.CaptureFixture[str]) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    code, _, err = cli(capsys, "activity", "show", missing)
    assert code == 1 and f"no activity with agent id {missing}" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["activity", "list", "--status", "DONE"])
    assert exit_info.value.code == 2
    assert "unknown status 'DONE'" in capsys.readouterr().err


# -- tail -------------------------------------------------------------------------------------
def test_tail_shows_worker_logs_and_events(ops: OpsPool, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_ops_app import Note

    start = _run(lambda: ax.events.publish("tailtest.start", {}, source="tester"))
    agent_id, _ = enqueue_and_wait("echo", Note(text="tail"))
    _run(lambda: ax.events.publish("tailtest.done", {"agent_id": str(agent_id)}, source="tester"))
    _run(lambda: ax.events.publish("other.thing", {}, source="tester"))

    # resume after the first event: the worker's log lines and the later events are replayed
    # (the timeout covers opening the backends too: generous, for a loaded CI machine)
    code, out, _ = cli(capsys, "tail", "--queue", ops.queue, "--events", "tailtest.*",
                       "--since", str(start), "--timeout", "3", "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    logs = [r for r in records if r["kind"] == "log"]
    events = [r for r in records if r["kind"] == "event"]
    assert any("echoing tail" in str(r.get("message")) and r.get("worker") == 0 for r in logs), logs
    assert [e["event_type"] for e in events] == ["tailtest.done"]  # other.thing filtered out
    assert events[0]["payload"] == {"agent_id": str(agent_id)} and events[0]["source"] == "tester"

    code, out, _ = cli(capsys, "tail", "--queue", ops.queue, "--events", "tailtest.*",
                       "--since", str(start), "--timeout", "3")
    assert code == 0 and "[Worker 0]" in out and "event tailtest.done from tester" in out


def test_tail_live_with_count(ops: OpsPool, capsys: pytest.CaptureFixture[str]) -> None:
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(main(["tail", "--no-logs", "--events", "live.*", "--count", "2",
                                          "--timeout", "15", "--json"])),
    )
    thread.start()

    async def publish_until_done() -> None:
        with anyio.fail_after(15):
            while thread.is_alive():  # the subscription may start after the first publishes
                await ax.events.publish("live.ping", {"at": time.time()})
                await anyio.sleep(0.1)

    _run(publish_until_done)
    thread.join(5)
    assert codes == [0]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(line["event_type"] == "live.ping" for line in lines)


# -- schedules --------------------------------------------------------------------------------
def test_schedules_list_shows_next_fire_times(ops: OpsPool, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = {row["name"]: row for row in cli_json(capsys, "schedules", "list", "cli_ops_app:pool")}
    assert set(rows) == {"heartbeat", "morning-echo"}
    hb, morning = rows["heartbeat"], rows["morning-echo"]
    assert hb["rule"] == "every 1 hour" and hb["repeat"] == "forever" and len(hb["next"]) == 3
    first = datetime.fromisoformat(hb["next"][0])
    assert first.minute == first.second == 0 and first > datetime.now(first.tzinfo)
    assert morning["rule"] == "cron 0 9 * * 1-5" and morning["timezone"] == "Europe/Paris"
    assert morning["repeat"] == 3 and morning["task"] == "echo"
    for text in morning["next"]:
        moment = datetime.fromisoformat(text)
        assert (moment.hour, moment.minute) == (9, 0) and moment.weekday() < 5

    extra = tmp_path / "more.yaml"
    extra.write_text("tasks:\n  - name: nightly\n    type: cron\n    schedule: '30 2 * * *'\n"
                     "    task: echo\n    context: {text: night}\n    enabled: false\n")
    rows = {r["name"]: r for r in cli_json(capsys, "schedules", "list", "cli_ops_app:pool", "--schedules", str(extra))}
    assert rows["nightly"]["enabled"] is False and rows["nightly"]["next"] == []

    shown = script(ops, "schedules", "list", "cli_ops_app:pool", "--next", "2")
    assert shown.returncode == 0, shown.stderr
    assert "morning-echo" in shown.stdout and "Europe/Paris" in shown.stdout
    assert "CET" in shown.stdout or "CEST" in shown.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - name: x\n    schedule: '99 * * * *'\n    task: echo\n")
    code, _, err = cli(capsys, "schedules", "list", "cli_ops_app:pool", "--schedules", str(bad))
    assert code == 1 and "field 'schedule': invalid cron expression '99 * * * *'" in err
    code, _, err = cli(capsys, "schedules", "list", "no_such_module:pool")
    assert code == 2 and "no_such_module" in err


# -- dead letters -----------------------------------------------------------------------------
def test_dead_letter_requeue_brings_a_dead_task_back_to_success(
    ops: OpsPool, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_ops_app import Fragile

    flag = ops.tmp / "fixed"
    context = Fragile(fixed_flag=str(flag))

    async def crash() -> UUID:
        task = await ax.enqueue("fragile", context)
        with pytest.raises(ax.TaskFailedError):  # it killed its worker max_attempts (2) times
            await ax.get_result(task, timeout=30)
        return task.agent_id

    agent_id = _run(crash)
    letters = cli_json(capsys, "dead-letter", "list")
    [letter] = [dl for dl in letters if dl["agent_id"] == str(agent_id)]
    assert letter["task"] == "fragile" and letter["queue"] == ops.queue and letter["attempts"] == 2
    assert "max_attempts=2" in letter["reason"]
    code, out, _ = cli(capsys, "dead-letter", "list")
    assert code == 0 and letter["id"] in out and "fragile" in out

    flag.write_text("deployed the fix")
    code, out, _ = cli(capsys, "dead-letter", "requeue", letter["id"])
    assert code == 0 and "Requeued 1 task." in out

    assert _run(lambda: ax.get_result(agent_id, timeout=20)) == "recovered"
    detail = cli_json(capsys, "activity", "show", str(agent_id))
    statuses = [log["status"] for log in detail["logs"]]
    assert detail["status"] == "COMPLETE"
    assert "ERROR" in statuses and statuses.index("ERROR") < len(statuses) - 3
    assert "Requeued from the dead-letter list" in " ".join(log["message"] for log in detail["logs"])
    assert [dl for dl in cli_json(capsys, "dead-letter", "list") if dl["agent_id"] == str(agent_id)] == []


def test_dead_letter_payloads_that_are_not_tasks_can_only_be_purged(
    ops: OpsPool, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    client = redis.Redis.from_url(ops.env["AGENTEXEC_REDIS_URL"])
    try:
        client.lpush(ops.queue, "not a task")
    finally:
        client.close()

    async def wait_dead() -> None:
        with anyio.fail_after(15):
            while not await get_backends().queue.dead_letters(ops.queue):
                await anyio.sleep(0.1)

    _run(wait_dead)
    [letter] = cli_json(capsys, "dead-letter", "list")
    assert letter["task"] is None and letter["payload"] == "not a task"

    code, out, _ = cli(capsys, "dead-letter", "requeue", "--all")
    assert code == 0 and "Requeued 0 tasks." in out and "cannot be requeued" in out
    code, _, err = cli(capsys, "dead-letter", "requeue")
    assert code == 2 and "--all" in err
    code, _, err = cli(capsys, "dead-letter", "requeue", "nope")
    assert code == 1 and "no dead letter with id nope" in err
    code, _, err = cli(capsys, "dead-letter", "purge")  # stdin is not a terminal: needs --yes
    assert code == 2 and "--yes" in err
    assert cli_json(capsys, "dead-letter", "purge", "--yes") == {"purged": 1}
    assert cli_json(capsys, "dead-letter", "list") == []
    code, out, _ = cli(capsys, "dead-letter", "list")
    assert "No dead letters." in out
