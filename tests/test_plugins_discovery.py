"""Plugin discovery: broken plugins, strict mode, conflicts, misspelled hooks, allow/deny lists.

Fake plugin distributions are written to a temporary directory put on ``sys.path`` (a
``*.dist-info`` with ``entry_points.txt`` is all importlib.metadata needs), so no broken plugin is
ever installed into the shared environment.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agentexec import plugins
from agentexec.config import CONF
from agentexec.plugins import (
    BackendNotFoundError,
    PluginConflictError,
    PluginError,
    PluginLoadError,
    new_registry,
)

MakeDist = Callable[[str, str, str], None]

QUEUE_PLUGIN = """
from agentexec.hookspecs import BackendSpec, hookimpl

@hookimpl
def agentexec_queue_backends():
    yield BackendSpec({name!r}, {schemes!r}, lambda: dict)
"""


def write_dist(root: Path, dist: str, ep_name: str, source: str) -> None:
    """A minimal installed distribution: metadata, one ``agentexec`` entry point, one module."""
    module = f"{ep_name}_axplugin"
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[agentexec]\n{ep_name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    made: list[str] = []

    def make(dist: str, ep_name: str, source: str) -> None:
        write_dist(site, dist, ep_name, source)
        made.append(f"{ep_name}_axplugin")

    yield make
    for module in made:
        sys.modules.pop(module, None)


def test_plugin_that_raises_on_import_is_reported_with_its_distribution(
    fake_dist: MakeDist, caplog: pytest.LogCaptureFixture
) -> None:
    fake_dist("acme-broken", "acmebroken", "raise RuntimeError('acme client is misconfigured')\n")
    with caplog.at_level(logging.WARNING, logger="agentexec.plugins"):
        registry = new_registry()
    (broken,) = registry.broken
    assert broken.distribution == "acme-broken"
    assert "acme client is misconfigured" in broken.error
    assert "acme-broken" in caplog.text
    assert "memory" in registry.backends("queue"), "the other plugins still load"
    with pytest.raises(BackendNotFoundError, match="acme-broken"):
        registry.find("queue", "acme://x")


def test_strict_mode_raises_on_a_broken_plugin(
    fake_dist: MakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dist("acme-broken", "acmebroken", "raise RuntimeError('boom')\n")
    monkeypatch.setattr(CONF, "strict_plugins", True)
    with pytest.raises(PluginLoadError, match=r"acmebroken.*acme-broken.*boom"):
        new_registry()


def test_hook_that_raises_is_reported(fake_dist: MakeDist) -> None:
    fake_dist("acme-hook", "acmehook", """
        from agentexec.hookspecs import hookimpl

        @hookimpl
        def agentexec_queue_backends():
            raise ValueError("no config")
    """)
    registry = new_registry()
    assert "memory" in registry.backends("queue")
    assert [(b.distribution, "no config" in b.error) for b in registry.broken] == [("acme-hook", True)]


def test_plugin_needing_a_newer_api_is_reported(fake_dist: MakeDist) -> None:
    fake_dist("acme-future", "acmefuture", """
        from agentexec.hookspecs import BackendSpec, hookimpl

        @hookimpl
        def agentexec_queue_backends():
            yield BackendSpec("future", ("future",), lambda: dict, api_version=99)
    """)
    registry = new_registry()
    assert "future" not in registry.backends("queue")
    assert "upgrade agentexec-core" in registry.broken[0].error


def test_misspelled_hook_fails_loudly_naming_the_distribution(fake_dist: MakeDist) -> None:
    fake_dist("acme-typo", "acmetypo", """
        from agentexec.hookspecs import hookimpl

        @hookimpl
        def agentexec_queue_backend():  # missing the final s
            return []
    """)
    with pytest.raises(PluginError, match=r"acme-typo.*agentexec_queue_backend") as info:
        new_registry()
    assert "agentexec.hookspecs" in str(info.value)


def test_hook_with_a_wrong_signature_fails_loudly_naming_the_distribution(fake_dist: MakeDist) -> None:
    fake_dist("acme-args", "acmeargs", """
        from agentexec.hookspecs import hookimpl

        @hookimpl
        def agentexec_queue_backends(config):
            return []
    """)
    with pytest.raises(PluginError, match=r"(?s)acme-args.*config"):
        new_registry()


def test_backend_name_conflict_names_both_distributions(fake_dist: MakeDist) -> None:
    fake_dist("acme-one", "acmeone", QUEUE_PLUGIN.format(name="acme", schemes=("acme1",)))
    fake_dist("acme-two", "acmetwo", QUEUE_PLUGIN.format(name="acme", schemes=("acme2",)))
    registry = new_registry()
    with pytest.raises(PluginConflictError) as info:
        registry.backends("queue")
    assert "acme-one" in str(info.value) and "acme-two" in str(info.value)
    assert "'acme'" in str(info.value)


def test_scheme_conflict_names_both_distributions(fake_dist: MakeDist) -> None:
    fake_dist("acme-memory", "acmememory", QUEUE_PLUGIN.format(name="mine", schemes=("memory",)))
    with pytest.raises(PluginConflictError) as info:
        new_registry().find("queue", "memory://")
    assert "agentexec-core" in str(info.value) and "acme-memory" in str(info.value)
    assert "AGENTEXEC_DISABLED_PLUGINS=acmememory" in str(info.value)


def test_one_plugin_name_from_two_distributions_is_a_conflict(fake_dist: MakeDist) -> None:
    fake_dist("acme-imposter", "memory", QUEUE_PLUGIN.format(name="imposter", schemes=("imp",)))
    with pytest.raises(PluginConflictError, match=r"agentexec-core.*acme-imposter|acme-imposter.*agentexec-core"):
        new_registry()


def test_agentexec_plugins_loads_only_the_listed_plugins(
    fake_dist: MakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dist("acme-broken", "acmebroken", "raise RuntimeError('must not be imported')\n")
    monkeypatch.setattr(CONF, "plugins", "memory, thirdparty")
    registry = new_registry()
    assert set(registry.distributions) == {"memory", "thirdparty"}
    assert registry.broken == [] and "acmebroken_axplugin" not in sys.modules
    assert set(registry.backends("queue")) == {"memory", "thirdparty"}


def test_agentexec_disabled_plugins_skips_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONF, "disabled_plugins", "thirdparty")
    registry = new_registry()
    assert "thirdparty" not in registry.distributions and "memory" in registry.distributions
    with pytest.raises(BackendNotFoundError, match="thirdparty://"):
        registry.find("queue", "thirdparty://x")


# -- the same through real environment variables, in fresh interpreters --------------------

PROBE = """
import agentexec as ax
from agentexec.plugins import get_registry
registry = get_registry()
print("loaded:", ",".join(sorted(registry.distributions)))
print("broken:", ";".join(f"{b.distribution}|{b.error}" for b in registry.broken))
"""


def _run(site: Path | None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    if site is not None:
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), full.get("PYTHONPATH")]))
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=60
    )


def test_broken_plugin_in_a_real_process_warns_and_strict_mode_fails(tmp_path: Path) -> None:
    write_dist(tmp_path, "acme-broken", "acmebroken", "raise ImportError('acme_client missing')\n")
    lenient = _run(tmp_path)
    assert lenient.returncode == 0, lenient.stderr
    assert "broken: acme-broken|" in lenient.stdout and "acme_client missing" in lenient.stdout
    assert "acme-broken" in lenient.stderr  # the warning
    strict = _run(tmp_path, AGENTEXEC_STRICT_PLUGINS="1")
    assert strict.returncode != 0
    assert "PluginLoadError" in strict.stderr and "acme-broken" in strict.stderr


def test_plugin_env_vars_in_a_real_process() -> None:
    only = _run(None, AGENTEXEC_PLUGINS="memory")
    assert "loaded: memory\n" in only.stdout, only.stderr
    without = _run(None, AGENTEXEC_DISABLED_PLUGINS="redis,openai")
    loaded = without.stdout.split("loaded: ", 1)[1].split("\n", 1)[0].split(",")
    assert "memory" in loaded and "redis" not in loaded and "openai" not in loaded


@pytest.fixture(autouse=True)
def _fresh_global_registry() -> Iterator[None]:
    yield
    plugins.reset_registry()
