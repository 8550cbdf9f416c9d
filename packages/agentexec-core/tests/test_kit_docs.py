"""Every kit test tells a backend author how to fix a failure."""

from __future__ import annotations

import inspect

import pytest

import agentexec.testing as kit

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
