"""examples/pydantic_ai_agent.py: explains itself without a key, and runs the whole path (pool
task, runner, structured output, live activity log) offline with a scripted model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pydantic_ai_agent.py"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYDANTIC_AI_", "AGENTEXEC_"))}


@pytest.mark.slow
def test_without_a_key_it_explains_itself_and_exits_0() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE)], env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OPENAI_API_KEY" in proc.stdout
    assert "nothing was run" in proc.stdout
    assert "--offline" in proc.stdout


@pytest.mark.slow
def test_offline_it_runs_the_agent_as_a_pool_task_and_prints_progress() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--offline", "Acme"],
        env=_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert " 30% Recalling the basics" in out and " 80% Writing the briefing" in out
    assert "Token usage: input=30 output=15 total=45 requests=3" in out
    assert "briefing on Acme:\n- Makes anvils." in out
