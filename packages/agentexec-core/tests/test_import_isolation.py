"""Core never drags in a backend library: checked in fresh interpreters, where nothing else
could have imported them first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "redis", "sqlalchemy", "openai", "agents", "pydantic_ai", "opentelemetry", "prometheus_client",
    "fastapi", "starlette",
)
SRC = Path(__file__).resolve().parents[1] / "src" / "agentexec"


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
        "[r.backends(k) for k in KINDS]; r.runners(); r.names('agentexec'); r.instruments()\n"
        "ax.Priority.HIGH; ax.CONF.queue_name; ax.activity\n"
    )
    assert _imported_after(code) == []


def test_unconfigured_metrics_never_import_prometheus_client() -> None:
    """Instruments load on the first enqueue; without ``metrics_port``/``metrics_dir`` the
    Prometheus one stays out (OpenTelemetry's API loads when installed: it decides per span)."""
    code = "from agentexec import telemetry\ntelemetry.instruments()\n"
    assert "prometheus_client" not in _imported_after(code)


def test_the_memory_backends_run_without_backend_libraries() -> None:
    code = (
        "import asyncio\n"
        "from agentexec.runtime import build_backends\n"
        "b = build_backends({k: 'memory://' for k in ('queue', 'results', 'events', 'activity')})\n"
        "asyncio.run(b.queue.length('q'))\n"
    )
    assert _imported_after(code) == []


# -- start-up cost: what each entry point imports (deterministic, unlike timings; the timings
# are benchmarks/startup.py) ------------------------------------------------------------------
def test_import_agentexec_imports_nothing_heavy() -> None:
    """Every ``ax.`` name loads on first use: ``import agentexec`` is a few milliseconds."""
    watched = ("pydantic", "pydantic_settings", "anyio", "rich", "yaml", "croniter", "sqlalchemy")
    assert _imported_after("import agentexec", watched) == []


def test_a_pool_does_not_load_what_only_schedule_files_and_tables_need() -> None:
    code = "import agentexec as ax\nax.Pool\nax.enqueue\nax.CONF\n"
    assert _imported_after(code, ("yaml", "croniter", "rich.table")) == []
    cron = "import agentexec as ax\nfrom agentexec.schedule import make_timing\nmake_timing(cron='0 9 * * *')\n"
    assert _imported_after(cron, ("croniter",)) == ["croniter"]


def test_agentexec_version_reads_no_configuration() -> None:
    code = (
        "import sys\nfrom agentexec.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
    )
    assert _imported_after(code, ("pydantic", "agentexec.config", "rich")) == []


CORE_MODULES = sorted(
    "agentexec." + ".".join(p.relative_to(SRC).with_suffix("").parts)
    for p in SRC.rglob("*.py")
    if p.name != "__main__.py" and "testing" not in p.parts
)


def test_every_core_module_imports_first_in_a_fresh_interpreter() -> None:
    """Lazy names must not hide an import cycle: each module imports on its own, first.

    One interpreter, not one per module (~100 of them, ~40 s): before each import every
    ``agentexec*`` module is dropped from ``sys.modules``, so the module under test is the first
    of ours to load, as in a fresh interpreter; third-party libraries stay loaded, which cannot
    hide a cycle among our modules."""
    script = (
        "import importlib, sys\n"
        f"mods = {[m.removesuffix('.__init__') for m in CORE_MODULES]!r}\n"
        "bad = []\n"
        "for m in mods:\n"
        "    for name in [n for n in sys.modules if n == 'agentexec' or n.startswith(('agentexec.', 'agentexec_'))]:\n"
        "        del sys.modules[name]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except BaseException as exc:\n"
        "        bad.append((m, f'{type(exc).__name__}: {exc}'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
