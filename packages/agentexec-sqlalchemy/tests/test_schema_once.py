"""The embedded default's tables are checked once per database and process tree: a worker
forked from the pool's process does not check them again; a relative SQLite path in another
working directory is another database; an in-memory database is never remembered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from agentexec_sqlalchemy import schema_once
from agentexec_sqlalchemy.transport.queue import SQLQueue


def test_a_relative_sqlite_file_is_named_by_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = sa.create_engine("sqlite:///agentexec.db")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    in_a = schema_once.database_key(engine, "transport")
    monkeypatch.chdir(tmp_path / "b")
    in_b = schema_once.database_key(engine, "transport")
    assert in_a and in_b and in_a != in_b
    assert str(tmp_path / "b" / "agentexec.db") in in_b
    assert schema_once.database_key(sa.create_engine("sqlite://"), "transport") is None
    assert schema_once.database_key(sa.create_engine("sqlite:///:memory:"), "transport") is None


def test_once_per_key_and_always_without_one() -> None:
    calls: list[str] = []
    key = f"test {os.getpid()} {id(calls)}"
    for _ in range(3):
        schema_once.once(key, lambda: calls.append("keyed"))
        schema_once.once(None, lambda: calls.append("unkeyed"))
    assert calls.count("keyed") == 1 and calls.count("unkeyed") == 3


def test_a_forked_worker_inherits_the_checked_tables(tmp_path: Path) -> None:
    queue = SQLQueue(f"sqlite:///{tmp_path / 'q.db'}")
    assert not queue.schema_ready
    queue.ensure_schema()
    assert queue.schema_ready
    assert sa.inspect(queue.engine).get_table_names(), "the transport tables were created"
    pid = os.fork()
    if pid == 0:  # the worker: ready without a catalogue query of its own
        code = 0 if queue.schema_ready else 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
