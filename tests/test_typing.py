"""Typed results, proven with mypy --strict on snippets: ``ax.get_result`` of a task enqueued
from its ``@pool.task`` handler has the handler's return type, and the mistakes a newcomer makes
(a wrong annotation, a misspelled task, the wrong context model) are type errors."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = ROOT / "tests" / "typing"


@functools.cache
def _mypy_snippets() -> str:
    """One mypy run over every snippet (a cold run costs tens of seconds; each test reads the
    lines of its own file)."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.fail("mypy is not installed in this environment; run `uv sync --all-packages`")
    files = sorted(SNIPPETS.glob("*.py"))
    result = subprocess.run(
        [mypy, "--strict", "--no-error-summary", *(str(f.relative_to(ROOT)) for f in files)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.stdout


def _mypy(file: Path) -> str:
    prefix = str(file.relative_to(ROOT)) + ":"
    return "".join(line for line in _mypy_snippets().splitlines(keepends=True) if line.startswith(prefix))


def test_results_have_the_handlers_return_type() -> None:
    """Every ``assert_type`` in typed_results.py holds (mypy reports a failed one as an error)."""
    out = _mypy(SNIPPETS / "typed_results.py")
    assert out.strip() == "", out


def test_wrong_annotations_and_misspelled_tasks_fail_type_checking() -> None:
    """Each line marked ``# error: [code]`` in typed_results_wrong.py is reported with that
    code, and nothing else is."""
    path = SNIPPETS / "typed_results_wrong.py"
    expected = {
        (number, match.group(1))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (match := re.search(r"# error: \[([a-z-]+)\]", line))
    }
    assert len(expected) == 4
    out = _mypy(path)
    reported = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"typed_results_wrong\.py:(\d+): error: .*\[([a-z-]+)\]$", out, re.M)
    }
    assert reported == expected, out
