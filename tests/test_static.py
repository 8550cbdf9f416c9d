"""Lint and type checks are part of the test suite: ruff (with the backend-import ban on core)
and mypy --strict on every package's src."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed in this environment; run `uv sync --all-packages`")
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run(
        [_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_ruff_bans_backend_imports(tmp_path: Path) -> None:
    """The TID251 rule really fires inside core (a regression guard for the ruff config)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import redis\nimport sqlalchemy\n")
    config = ROOT / "packages/agentexec-core/pyproject.toml"
    result = subprocess.run(
        [_tool("ruff"), "check", "--config", str(config), "--select", "TID251", str(probe)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and "TID251" in result.stdout, result.stdout
