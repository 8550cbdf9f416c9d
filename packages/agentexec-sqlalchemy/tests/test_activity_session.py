"""``agentexec.core.db``: the process-global session (spec/core-api.md, Database Session Management)."""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy as sa
from agentexec.core.db import get_global_session, remove_global_session, set_global_session
from agentexec_sqlalchemy.activity.session import clear_global_session, global_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


@pytest.fixture
def engine(tmp_path: object) -> Engine:
    return sa.create_engine(f"sqlite:///{tmp_path}/s.db")


def test_get_before_set_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"set_global_session\(engine\)"):
        get_global_session()
    remove_global_session()  # harmless when nothing is set


def test_set_get_remove(engine: Engine) -> None:
    set_global_session(engine)
    session = get_global_session()
    assert isinstance(session, Session) and session.get_bind() is engine
    assert get_global_session() is session  # one per thread, reused
    assert session.execute(sa.text("select 1")).scalar() == 1
    remove_global_session()
    fresh = get_global_session()
    assert fresh is not session and fresh.get_bind() is engine
    assert global_engine() is engine
    clear_global_session()
    assert global_engine() is None
    with pytest.raises(RuntimeError):
        get_global_session()


def test_a_url_is_accepted_too(tmp_path: object) -> None:
    set_global_session(f"sqlite:///{tmp_path}/u.db")
    assert get_global_session().execute(sa.text("select 2")).scalar() == 2


def test_each_thread_has_its_own_session(engine: Engine) -> None:
    set_global_session(engine)
    mine = get_global_session()
    theirs: list[Session] = []
    thread = threading.Thread(target=lambda: theirs.append(get_global_session()))
    thread.start()
    thread.join(timeout=10)
    assert theirs and theirs[0] is not mine and theirs[0].get_bind() is engine


def test_setting_again_rebinds(engine: Engine, tmp_path: object) -> None:
    set_global_session(engine)
    first = get_global_session()
    other = sa.create_engine(f"sqlite:///{tmp_path}/other.db")
    set_global_session(other)
    assert get_global_session() is not first and get_global_session().get_bind() is other


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_session(engine: Engine) -> None:
    set_global_session(engine)
    parent = get_global_session()
    parent.execute(sa.text("select 1"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it got a new, working session, then leave at once
        try:
            child = get_global_session()
            ok = child is not parent and child.execute(sa.text("select 3")).scalar() == 3
        except BaseException:
            ok = False
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    assert get_global_session() is parent
