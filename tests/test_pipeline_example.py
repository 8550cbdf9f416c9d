"""``examples/pipeline_research.py`` runs to completion (exit 0) on the embedded default and on
the in-memory backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline_research.py"


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["--memory"]], ids=["embedded", "memory"])
def test_pipeline_research_example(args: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 3 pipelines finished" in result.stdout
    assert result.stdout.count("Step 4/4: Write the report") == 3
    assert "Hooli:" in result.stdout
    if not args:
        assert (tmp_path / "agentexec.db").exists()  # the embedded SQLite file, nothing else
