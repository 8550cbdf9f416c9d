"""Core never drags in a backend library: checked in fresh interpreters, where nothing else
could have imported them first."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("redis", "sqlalchemy", "openai", "agents", "pydantic_ai")


def _imported_after(code: str, watched: tuple[str, ...] = HEAVY) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_agentexec_imports_no_backend_library() -> None:
    assert _imported_after("import agentexec") == []


def test_only_the_conformance_kit_imports_pytest() -> None:
    assert _imported_after("import agentexec, agentexec.runtime, agentexec.client", ("pytest",)) == []
    assert _imported_after("import agentexec.testing", ("pytest",)) == ["pytest"]


def test_discovering_every_plugin_imports_no_backend_library() -> None:
    code = (
        "import agentexec as ax\n"
        "from agentexec.plugins import KINDS, get_registry\n"
        "r = get_registry()\n"
        "[r.backends(k) for k in KINDS]; r.runners(); r.names('agentexec')\n"
        "ax.Priority.HIGH; ax.CONF.queue_name; ax.activity\n"
    )
    assert _imported_after(code) == []


def test_the_memory_backends_run_without_backend_libraries() -> None:
    code = (
        "import asyncio\n"
        "from agentexec.runtime import build_backends\n"
        "b = build_backends({k: 'memory://' for k in ('queue', 'results', 'events', 'activity')})\n"
        "asyncio.run(b.queue.length('q'))\n"
    )
    assert _imported_after(code) == []
