"""The workspace's distributions: the meta-distribution's pins, entry points, typed packages."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = {
    path.parent.name: tomllib.loads(path.read_text())["project"]
    for path in sorted((ROOT / "packages").glob("*/pyproject.toml"))
}
META = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ADAPTERS = {
    "redis": "agentexec-redis",
    "sqlalchemy": "agentexec-sqlalchemy",
    "openai": "agentexec-openai",
    "pydantic-ai": "agentexec-pydantic-ai",
}


def _pin(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)", requirement.strip())
    assert match, f"{requirement!r} is not pinned with == to one version"
    return match.group(1), match.group(2)


def test_workspace_has_core_and_every_adapter() -> None:
    assert set(MEMBERS) == {"agentexec-core", *ADAPTERS.values()}
    assert META["name"] == "agentexec"


def test_meta_distribution_pins_core_to_its_version() -> None:
    pins = dict(_pin(r) for r in META["dependencies"])
    assert pins == {"agentexec-core": MEMBERS["agentexec-core"]["version"]}


@pytest.mark.parametrize(("extra", "distribution"), sorted(ADAPTERS.items()))
def test_each_extra_pins_its_adapter_to_the_members_version(extra: str, distribution: str) -> None:
    pins = dict(_pin(r) for r in META["optional-dependencies"][extra])
    assert pins == {distribution: MEMBERS[distribution]["version"]}


def test_all_extra_pins_every_adapter_to_its_version() -> None:
    pins = dict(_pin(r) for r in META["optional-dependencies"]["all"])
    assert pins == {d: MEMBERS[d]["version"] for d in ADAPTERS.values()}


@pytest.mark.parametrize("distribution", sorted(ADAPTERS.values()))
def test_adapters_pin_core_to_its_version(distribution: str) -> None:
    core = [r for r in MEMBERS[distribution]["dependencies"] if r.startswith("agentexec-core")]
    assert [_pin(r) for r in core] == [("agentexec-core", MEMBERS["agentexec-core"]["version"])]


@pytest.mark.parametrize("distribution", sorted(MEMBERS))
def test_members_are_installed_typed_and_registered(distribution: str) -> None:
    dist = importlib.metadata.distribution(distribution)
    assert dist.version == MEMBERS[distribution]["version"]
    entry_points = [ep for ep in dist.entry_points if ep.group == "agentexec"]
    assert entry_points, f"{distribution} declares no `agentexec` entry point"
    package = "agentexec" if distribution == "agentexec-core" else distribution.replace("-", "_")
    assert (ROOT / "packages" / distribution / "src" / package / "py.typed").is_file()
