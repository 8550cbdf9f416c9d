"""The operator CLI as a newcomer meets it: tables that fit 80 columns, the short ids they print
accepted back, plain text in ``--json``, read-only commands that never create a database, fast
one-line errors when a server is down (password masked), and ``agentexec run`` refusing to
start without the activity tables, saying how to create them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import agentexec as ax
import pytest
from agentexec.backends import Event
from agentexec.cli import main
from agentexec.cli._ops import mask_url, sqlite_file
from agentexec.cli.tail import render
from agentexec.runtime import Backends, build_backends, set_backends

SCRIPT = str(Path(sys.executable).parent / "agentexec")


@pytest.fixture
def backends() -> Iterator[Backends]:
    url = f"memory://{uuid.uuid4().hex}"
    built = build_backends({"queue": url, "results": url, "events": url, "activity": url})
    set_backends(built)
    yield built
    set_backends(None)


def _activities(count: int = 3) -> list[uuid.UUID]:
    ids = []
    for i in range(count):
        agent_id = ax.activity.create("summarize_quarterly_filings", "Waiting to start.")
        ax.activity.update(agent_id, "Reading the filings of a company with a long name " * 3,
                           percentage=100 if i == 0 else 50)
        ids.append(agent_id)
    return ids


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    return {**env, **extra}


@pytest.mark.parametrize("columns", [80, 120])
def test_activity_list_fits_the_terminal_and_keeps_every_column(
    backends: Backends, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    ids = _activities()
    monkeypatch.setenv("COLUMNS", str(columns))
    capsys.readouterr()
    assert main(["activity", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns, out
    header = next(line for line in lines if "agent id" in line)
    assert " % " in header and "updated" in header and "latest log" in header, out
    short = {str(i)[:8] for i in ids}
    rows = {parts[1]: line for line in lines if len(parts := line.split()) > 1 and parts[1] in short}
    assert len(rows) == 3, out
    assert " 100 " in rows[str(ids[0])[:8]] and " 50 " in rows[str(ids[1])[:8]], out
    assert all(" ago " in row for row in rows.values()), out


def test_activity_show_accepts_the_short_id_list_prints(
    backends: Backends, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    [agent_id] = _activities(1)
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert main(["activity", "show", str(agent_id)[:8]]) == 0
    out = capsys.readouterr().out
    assert str(agent_id) in out and "Timeline" in out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert " 100%" in out
    assert main(["activity", "show", str(agent_id)[:8], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agent_id"] == str(agent_id)


def test_a_prefix_must_be_unique_and_long_enough(
    backends: Backends, capsys: pytest.CaptureFixture[str]
) -> None:
    first = uuid.UUID("abcd0000-0000-4000-8000-000000000001")
    second = uuid.UUID("abcd0000-0000-4000-8000-000000000002")
    for agent_id in (first, second):
        ax.activity.create("t", "m", agent_id=agent_id)
    capsys.readouterr()
    assert main(["activity", "show", "abcd0000"]) == 1
    assert "several agent ids" in capsys.readouterr().err
    assert main(["activity", "show", "abc"]) == 2
    assert "at least its first 4 hex digits" in capsys.readouterr().err
    assert main(["activity", "show", "ffff"]) == 1
    assert "no activity whose agent id starts with 'ffff'" in capsys.readouterr().err
    assert main(["activity", "show", "abcd0000-0000-4000-8000-000000000002"]) == 0


def test_tail_json_text_is_plain() -> None:
    event = Event(
        channel="events:report.done", id="1",
        data=json.dumps({"event_type": "report.done", "payload": {"a": 1}, "source": "x"}),
    )
    record = render(event)
    assert record is not None and "[bold]" in record["text"]  # markup for the terminal
    log = Event(channel="logs:q", id="2", data=json.dumps(
        {"worker": 0, "level": "WARNING", "message": "[not markup]", "time": time.time()}))
    assert render(log) is not None


def test_tail_json_prints_plain_text(
    backends: Backends, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyio

    async def publish_then_tail() -> int:
        async def later() -> None:
            await anyio.sleep(0.3)
            await ax.events.publish("report.done", {"pages": 3}, source="reports")

        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            code = await anyio.to_thread.run_sync(
                lambda: main(["tail", "--no-logs", "--count", "1", "--timeout", "10", "--json"])
            )
        return code

    assert anyio.run(publish_then_tail) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["event_type"] == "report.done"
    assert "[" not in record["text"] and "report.done from reports" in record["text"], record


@pytest.mark.parametrize(
    "argv",
    [["activity", "list"], ["activity", "show", "abcd1234"], ["status"], ["dead-letter", "list"],
     ["tail", "--timeout", "1"]],
)
def test_read_only_commands_never_create_a_database(tmp_path: Path, argv: list[str]) -> None:
    result = subprocess.run(
        [SCRIPT, *argv], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"no agentexec database at {tmp_path / 'agentexec.db'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_is_down_is_named_fast_with_the_password_masked(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [SCRIPT, "status"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=_env(AGENTEXEC_REDIS_URL="redis://:s3cret@127.0.0.1:9/0",
                 AGENTEXEC_DATABASE_URL=f"sqlite:///{tmp_path}/a.db"),
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "cannot reach the queue backend at redis://:***@127.0.0.1:9/0" in line
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
    assert elapsed <= 2.5, elapsed  # the probe answers within 1 s; the rest is start-up


def test_mask_url_and_sqlite_file() -> None:
    assert mask_url("postgresql+psycopg://user:pw@db:5432/x") == "postgresql+psycopg://user:***@db:5432/x"
    assert mask_url("redis://:pw@h/0") == "redis://:***@h/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert sqlite_file("sqlite:///agentexec.db") == Path("agentexec.db")
    assert sqlite_file("sqlite:////tmp/a.db") == Path("/tmp/a.db")
    assert sqlite_file("sqlite://") is None and sqlite_file("redis://x") is None


def test_run_refuses_to_start_without_the_activity_tables(
    tmp_path: Path, postgres_server_url: str
) -> None:
    (tmp_path / "app.py").write_text(
        "import agentexec as ax\nfrom uuid import UUID\nfrom pydantic import BaseModel\n"
        "pool = ax.Pool()\n"
        "class C(BaseModel):\n    x: int = 1\n"
        "@pool.task('t')\nasync def t(agent_id: UUID, context: C) -> int:\n    return 1\n"
    )
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_server_url)
    prefix = f"fh{uuid.uuid4().hex[:6]}_"
    try:
        result = subprocess.run(
            [SCRIPT, "run", "app:pool"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env=_env(AGENTEXEC_DATABASE_URL=postgres_server_url, AGENTEXEC_TABLE_PREFIX=prefix),
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Pool started" not in result.stdout + result.stderr
        assert f"the activity tables {prefix}activity, {prefix}activity_log do not exist" in result.stderr
        assert "`agentexec run app:pool --create-tables`" in result.stderr
    finally:
        with engine.begin() as conn:  # the SQL transport's tables of this prefix
            for name in sa.inspect(conn).get_table_names():
                if name.startswith(prefix):
                    conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
        engine.dispose()
