"""Installing agentexec-core adds nothing to anyone's pytest session: the kit's plugin is opt-in.

A user's suite whose conftest sets ``AGENTEXEC_*`` before it imports agentexec must get a
``CONF`` that honours it (an auto-loaded plugin that imported agentexec at start-up used to build
``CONF`` first, silently pointing the user's tests at the wrong Redis/database).
"""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

USER_CONFTEST = """
import os
import sys

# what pytest imported of agentexec before this conftest ran: nothing, or CONF is already built
IMPORTED_AT_START = sorted(m for m in sys.modules if m == "agentexec" or m.startswith("agentexec."))

os.environ["AGENTEXEC_QUEUE_NAME"] = "users_own_queue"
os.environ["AGENTEXEC_REDIS_URL"] = "redis://users-redis.invalid:6390/7"
{opt_in}
"""

USER_TESTS = """
import agentexec as ax
from conftest import IMPORTED_AT_START


def test_nothing_of_agentexec_was_imported_before_the_conftest():
    assert IMPORTED_AT_START == []


def test_conf_honours_what_the_conftest_set():
    assert ax.CONF.queue_name == "users_own_queue"
    assert ax.CONF.redis_url == "redis://users-redis.invalid:6390/7"
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("AGENTEXEC_QUEUE_NAME", "AGENTEXEC_REDIS_URL", "AGENTEXEC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester


def test_agentexec_core_declares_no_pytest_plugin_entry_point() -> None:
    dist = importlib.metadata.distribution("agentexec-core")
    assert [ep for ep in dist.entry_points if ep.group == "pytest11"] == []


def test_a_users_conftest_settings_reach_conf(user_project: pytest.Pytester) -> None:
    """A fresh pytest process, with every installed plugin auto-loaded as in a user's project."""
    user_project.makeconftest(USER_CONFTEST.format(opt_in=""))
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "agentexec conformance kit" not in result.stdout.str()


def test_opting_in_after_the_settings_keeps_them(user_project: pytest.Pytester) -> None:
    """The documented way to opt in: ``pytest_plugins`` in the conftest, after the settings."""
    user_project.makeconftest(USER_CONFTEST.format(opt_in='pytest_plugins = ["agentexec.testing"]'))
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["agentexec conformance kit * (agentexec.testing)"])


def test_opting_in_on_the_command_line(user_project: pytest.Pytester) -> None:
    """``-p agentexec.testing`` loads the plugin before any conftest: the kit's own suites work,
    and it says so in the header (settings must then come from the environment, not a conftest)."""
    user_project.makeconftest("")
    user_project.makepyfile(test_kit="""
import pytest
from agentexec.memory.results import MemoryResults
from agentexec.testing import ResultsSuite


class TestMine(ResultsSuite):
    @pytest.fixture
    def results(self):
        return MemoryResults()
""")
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", "-p", "agentexec.testing", "test_kit.py",
                                               "-k", "set_then_get or overwrites")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["agentexec conformance kit * (agentexec.testing)"])
