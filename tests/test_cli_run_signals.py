"""``agentexec run`` stopped while it is still starting: a SIGTERM during the app's import ends
it with status 0 and the pool never starts (it used to meet Python's default action: -15); a
second signal during start-up acts as it would without agentexec (Ctrl+C twice interrupts an
import that hangs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = str(Path(sys.executable).parent / "agentexec")

#: an app whose import takes a while, saying when it has begun
SLOW_APP = """
import pathlib, time
from uuid import UUID

pathlib.Path("importing").write_text("yes")
time.sleep(3)
import agentexec as ax
from pydantic import BaseModel

pool = ax.Pool()


class Nothing(BaseModel):
    pass


@pool.task("noop")
async def noop(agent_id: UUID, context: Nothing) -> None:
    return None
"""


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env["AGENTEXEC_EMBEDDED_DB_PATH"] = str(tmp_path / "agentexec.db")
    proc = subprocess.Popen(
        [SCRIPT, "run", "slow_app:pool", "--workers", "1"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / "importing").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the app never began importing: {proc.communicate()[0]}")
        time.sleep(0.02)
    return proc


def test_sigterm_while_the_app_imports_ends_with_status_0(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "stopped while starting" in out
    assert "Pool started" not in out


def test_a_second_signal_while_starting_acts_as_without_agentexec(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
