"""Every kit test tells a backend author how to fix a failure."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import agentexec.testing as kit
from agentexec.testing.capabilities import METHOD_CAPABILITIES

SUITES = [
    kit.QueueSuite, kit.ResultsSuite, kit.EventsSuite, kit.ActivityStoreSuite,
    kit.PluginPackagingSuite, kit.RunnerSuite, kit.PoolSuite,
]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.__name__)
def test_every_kit_test_ends_with_troubleshooting_hints(suite: type) -> None:
    tests = {name: getattr(suite, name) for name in dir(suite) if name.startswith("test")}
    assert tests, f"{suite.__name__} defines no tests"
    missing = [
        name for name, fn in tests.items()
        if "Troubleshooting:" not in (inspect.getdoc(fn) or "").split("\n\n")[-1]
    ]
    assert not missing, f"{suite.__name__} tests without a closing Troubleshooting hint: {missing}"


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.__name__)
def test_every_kit_test_is_protected_by_the_override_guard(suite: type[kit.Suite]) -> None:
    assert suite._kit_tests == {name for name in dir(suite) if name.startswith("test")}


DOCS = Path(__file__).resolve().parents[3] / "docs" / "backends.md"


def _table_rows(heading: str) -> list[list[str]]:
    text = DOCS.read_text().split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip().strip("`") for cell in row] for row in rows[1:]]


def test_the_capabilities_table_of_the_docs_lists_every_capability_with_its_default() -> None:
    documented = {row[0]: row[1] for row in _table_rows("Capabilities")}
    expected = {
        name: "detect" if name in METHOD_CAPABILITIES else "off" for name in kit.Capabilities.names()
    }
    assert documented == expected
    assert all(getattr(kit.Capabilities(), name) is (None if d == "detect" else False) for name, d in expected.items())


def _documented_timings() -> dict[str, dict[str, float]]:
    """suite -> attribute -> default, from the "Timing thresholds" table."""
    found: dict[str, dict[str, float]] = {}
    suite = ""
    for row in _table_rows("Timing thresholds"):
        suite = row[0] or suite
        names = re.findall(r"(\w+_s)\b", row[1])
        defaults = [float(d) for d in row[2].split(",")]
        found.setdefault(suite, {}).update(zip(names, defaults, strict=True))
    return found


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.__name__)
def test_the_docs_give_each_timing_threshold_its_default(suite: type[kit.Suite]) -> None:
    assert _documented_timings().get(suite.__name__, {}) == suite._timing_defaults
    module_doc = inspect.getmodule(suite).__doc__ or ""
    for name, default in suite._timing_defaults.items():
        assert f"``{name}`` ({default:g})" in module_doc, f"{suite.__name__}'s module doc lacks {name} ({default:g})"


PROTOCOLS_BY_SUITE = {
    "QueueSuite": ("QueueBackend", "ConsumerReaper", "InFlightView", "BatchAck", "BatchReserve", "RawPayloads"),
    "ResultsSuite": ("ResultBackend", "BatchResults", "StagedResults"),
    "EventsSuite": ("EventBackend", "BatchPublish"),
    "ActivityStoreSuite": ("ActivityStore", "ActivityPrefixLookup"),
}


@pytest.mark.parametrize("suite_name", sorted(PROTOCOLS_BY_SUITE))
def test_every_protocol_method_is_called_by_its_suite(suite_name: str) -> None:
    """Item 1 of issue 19: no method of a protocol or of an optional protocol goes untested."""
    import agentexec.backends as backends
    from agentexec.testing import _helpers

    suite = getattr(kit, suite_name)
    source = inspect.getsource(inspect.getmodule(suite)) + inspect.getsource(_helpers)
    missing = []
    for protocol_name in PROTOCOLS_BY_SUITE[suite_name]:
        protocol = getattr(backends, protocol_name)
        for name, value in vars(protocol).items():
            if name.startswith("_") or not inspect.isfunction(value):
                continue
            if not re.search(rf"\.{name}\(|getattr\([^)]*\"{name}\"", source):
                missing.append(f"{protocol_name}.{name}")
    assert not missing, f"{suite_name} never calls {missing}"
