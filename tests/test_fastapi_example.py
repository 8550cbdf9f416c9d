"""``examples/fastapi_app.py`` runs as documented (docs/http-api.md): ``--check`` starts the
pool and the server on the embedded SQLite default, lists the YAML schedules through the API,
enqueues a task through it, gets its result and sees the other component react to its events (the task's own and the pool's task.completed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_fastapi_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env["AGENTEXEC_NUM_WORKERS"] = "1"
    ran = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fastapi_app.py"), "--check"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "the support bot heard email.batch_processed and task.completed" in ran.stdout, ran.stdout + ran.stderr
    assert (tmp_path / "agentexec.db").exists()
