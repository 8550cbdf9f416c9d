"""README's main job runs on the embedded default: no Redis, no database server, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB = "uv run python examples/quickstart.py"


def test_readme_names_the_main_job() -> None:
    assert f"pip install uv && {MAIN_JOB}" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_main_job_runs_with_no_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    # nothing listens on port 9: were these consulted at all, this would fail loudly. (REDIS_URL
    # is read, as the original agentexec reads it: a setting here, not a foreign variable.)
    env.pop("REDIS_URL", None)
    env["DATABASE_URL"] = "postgresql://127.0.0.1:9/app"  # a foreign variable agentexec must not read
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:9/0"
    env["COLUMNS"] = "100"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Activities (20)" in out
    assert out.count("COMPLETE") == 19 and out.count("ERROR") == 1
    assert "19 completed, 1 failed (on purpose)." in out
    assert "using the embedded SQLite file agentexec.db" in result.stderr
    assert "ConnectionError" not in result.stderr
