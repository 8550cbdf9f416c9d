"""Backend selection: explicit object → name → URL scheme, and errors that say what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from agentexec import plugins
from agentexec.memory.queue import MemoryQueue
from agentexec.plugins import BackendNotFoundError, get_registry, load_backend, new_registry
from agentexec.runtime import build_backends

MEMORY = {"queue": "memory://", "results": "memory://", "events": "memory://", "activity": "memory://"}


@pytest.fixture(autouse=True)
def _fresh_global_registry() -> Iterator[None]:
    plugins.reset_registry()
    yield
    plugins.reset_registry()


def test_third_party_plugin_is_discovered_with_its_distribution() -> None:
    registry = new_registry()
    assert "thirdparty" in registry.backends("queue")
    assert registry.distribution_of("queue", "thirdparty") == "agentexec-thirdparty-example"


def test_third_party_backend_is_selected_by_url_scheme() -> None:
    backends = build_backends({**MEMORY, "queue": "thirdparty://q", "results": "thirdparty://r"})
    assert type(backends.queue).__name__ == "ThirdPartyQueue"
    assert type(backends.results).__name__ == "ThirdPartyResults"
    assert backends.queue.url == "thirdparty://q"  # type: ignore[attr-defined]
    assert type(backends.events).__module__ == "agentexec.memory.events"


def test_selection_by_name_and_by_scheme_with_a_driver_suffix() -> None:
    registry = get_registry()
    assert registry.find("queue", "thirdparty").name == "thirdparty"
    assert registry.find("queue", "thirdparty+tls://host").name == "thirdparty"
    assert type(load_backend("queue", "thirdparty")).__name__ == "ThirdPartyQueue"


def test_an_explicit_object_wins_over_urls() -> None:
    mine = MemoryQueue()
    backends = build_backends({**MEMORY, "queue": "nope://"}, queue=mine)
    assert backends.queue is mine


def test_unknown_backend_lists_what_is_installed() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        get_registry().find("queue", "nope")
    message = str(info.value)
    assert "'nope'" in message and "Installed queue backends:" in message
    for name in ("memory", "thirdparty", "redis"):
        assert name in message
    assert "agentexec-thirdparty-example" in message


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full, capture_output=True, text=True, timeout=60,
    )


ENQUEUE = """
    import asyncio
    from pydantic import BaseModel
    import agentexec as ax

    class Ctx(BaseModel):
        x: int = 1

    try:
        asyncio.run(ax.enqueue("t", Ctx()))
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_agentexec_queue_backend_nope_fails_listing_installed_backends() -> None:
    out = _python(ENQUEUE, AGENTEXEC_QUEUE_BACKEND="nope")
    assert out.stdout.startswith("BackendNotFoundError no queue backend for 'nope'"), out.stdout + out.stderr
    assert "Installed queue backends: memory (memory; from agentexec-core)" in out.stdout
    assert "thirdparty (thirdparty; from agentexec-thirdparty-example)" in out.stdout


def test_first_party_scheme_without_its_adapter_says_what_to_install() -> None:
    out = _python(ENQUEUE, AGENTEXEC_DISABLED_PLUGINS="redis",
                  AGENTEXEC_REDIS_URL="redis://127.0.0.1:6379/0")
    assert "pip install 'agentexec[redis]'" in out.stdout, out.stdout + out.stderr
    names = _python(
        """
        import agentexec as ax
        try:
            ax.Base
        except ImportError as exc:
            print(exc)
        """,
        AGENTEXEC_PLUGINS="memory",
    )
    assert "pip install 'agentexec[sqlalchemy]'" in names.stdout, names.stdout + names.stderr
