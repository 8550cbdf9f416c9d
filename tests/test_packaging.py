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
    # one distribution, two instruments: each extra also brings its library (the adapter's own
    # extra of the same name)
    "otel": "agentexec-telemetry",
    "prometheus": "agentexec-telemetry",
    "fastapi": "agentexec-fastapi",
}


def _pin(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[a-z0-9,-]+\])?\s*==\s*([^\s;,]+)", requirement.strip())
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


#: the original `agentexec` on the package index released 0.1.0 - 0.3.0; we succeed it
ORIGINALS_LAST_RELEASE = (0, 3, 0)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group(0).split("."))  # type: ignore[union-attr]


def test_one_version_for_every_distribution() -> None:
    """The root's version is the release's; members carry copies `scripts/set-version` writes."""
    assert {name: project["version"] for name, project in MEMBERS.items()} == {
        name: META["version"] for name in MEMBERS
    }


def test_version_is_above_the_original_projects_releases() -> None:
    """`agentexec[...]==<ours>` must never resolve to the index's unrelated 0.1.0 - 0.3.0."""
    assert _release(META["version"]) > ORIGINALS_LAST_RELEASE
    assert f"=={META['version']}" in (ROOT / "README.md").read_text(), "README's install line"


def test_the_test_fixture_plugin_is_not_a_release_member() -> None:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    assert workspace["members"] == ["packages/*"]
    fixture = tomllib.loads(
        (ROOT / "tests/plugins/agentexec-thirdparty-example/pyproject.toml").read_text()
    )["project"]
    assert "Private :: Do Not Upload" in fixture["classifiers"]


@pytest.mark.parametrize("distribution", sorted(MEMBERS))
def test_sdists_hold_only_the_package(distribution: str) -> None:
    config = tomllib.loads((ROOT / "packages" / distribution / "pyproject.toml").read_text())
    only = config["tool"]["hatch"]["build"]["targets"]["sdist"]["only-include"]
    assert [p for p in only if p not in ("pyproject.toml", "README.md")] == [
        f"src/{MEMBERS[distribution]['name'].replace('-core', '').replace('-', '_')}"
    ]


def test_meta_sdist_holds_only_its_metadata() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["hatch"]["build"]["targets"]["sdist"]["only-include"] == [
        "pyproject.toml", "README.md",
    ]
