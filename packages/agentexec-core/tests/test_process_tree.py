"""Pieces of the pool's process tree that a unit test can pin: the subreaper flag shared by the
pools of one process, and which dead children the pool process reaps."""

from __future__ import annotations

import os
import sys
import time

import pytest

from agentexec.worker.forkserver import reap_strays
from agentexec.worker.process import is_child_subreaper, set_process_name
from agentexec.worker.process_supervisor import _Subreaper

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")


def test_the_process_stays_a_subreaper_until_its_last_pool_stops() -> None:
    if is_child_subreaper():
        pytest.skip("this process is already a subreaper")
    flag = _Subreaper()
    flag.take()
    flag.take()  # a second pool in the same process
    assert is_child_subreaper()
    flag.give_back()
    assert is_child_subreaper()  # the other pool still runs processes
    flag.give_back()
    assert not is_child_subreaper()


def _child(name: str | None) -> int:
    pid = os.fork()
    if pid == 0:
        if name:
            set_process_name(name)
        os._exit(0)
    return pid


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_only_dead_pool_processes_nobody_waits_for_are_reaped() -> None:
    ours, known, theirs = _child("w7"), _child("w8"), _child(None)
    try:
        deadline = time.monotonic() + 10
        while not all(_zombie(p) for p in (ours, known, theirs)):
            assert time.monotonic() < deadline, "the children did not exit"
            time.sleep(0.01)
        assert reap_strays({known}) == [ours]
        assert _zombie(known) and _zombie(theirs)  # a known worker's and the application's child
    finally:
        for pid in (ours, known, theirs):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
