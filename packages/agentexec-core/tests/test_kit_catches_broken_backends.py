"""The kit catches real bugs: deliberately broken backends (``broken/``) each fail the kit on the
test that names their bug, and nothing else fails by accident."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

BROKEN = Path(__file__).parent / "broken"

SUITES = '''
import pytest

from agentexec.testing import ActivityStoreSuite, EventsSuite, QueueSuite, ResultsSuite
from broken_activity import FirstLogStatusStore
from broken_events import LazySubscribeEvents
from broken_queues import DoubleLeaseQueue, LosesHighPriorityQueue, NeverRedeliversQueue
from broken_results import RacyClaimResults, WaitMissesEarlyValueResults


class TestLosesHighPriority(QueueSuite):
    @pytest.fixture
    def queue(self):
        return LosesHighPriorityQueue()


class TestDoubleLease(QueueSuite):
    @pytest.fixture
    def queue(self):
        return DoubleLeaseQueue()


class TestNeverRedelivers(QueueSuite):
    @pytest.fixture
    def queue(self):
        return NeverRedeliversQueue()


class TestWaitMissesEarlyValue(ResultsSuite):
    @pytest.fixture
    def results(self):
        return WaitMissesEarlyValueResults()


class TestRacyClaim(ResultsSuite):
    @pytest.fixture
    def results(self):
        return RacyClaimResults()


class TestLazySubscribe(EventsSuite):
    @pytest.fixture
    def events(self):
        return LazySubscribeEvents()


class TestFirstLogStatus(ActivityStoreSuite):
    @pytest.fixture
    def activity_store(self):
        return FirstLogStatusStore()
'''


#: the broken backends live in memory, so the pytester run may use shorter waits than real servers need
FAST_CONFTEST = """
from agentexec.testing import events_suite, queue_suite

events_suite.DELIVERY = 0.5
queue_suite.SHORT_LEASE = 0.1
queue_suite.EXPIRE_WAIT = 0.2
"""

#: each broken backend's suite class -> (the kit test named after its bug, every test it fails)
CAUGHT_BY: dict[str, tuple[str, set[str]]] = {
    "TestLosesHighPriority": ("test_high_priority_is_taken_before_low", {
        "test_high_priority_is_taken_before_low", "test_push_many_keeps_each_priority",
    }),
    "TestDoubleLease": ("test_concurrent_consumers_get_each_task_exactly_once", {
        "test_concurrent_consumers_get_each_task_exactly_once",
    }),
    "TestNeverRedelivers": ("test_expired_lease_is_redelivered_to_the_front", {
        "test_expired_lease_is_redelivered_to_the_front", "test_reap_leaves_live_consumers_alone",
        "test_dead_letter_after_max_attempts", "test_requeue_dead_and_purge_dead",
    }),
    "TestWaitMissesEarlyValue": ("test_wait_returns_a_value_set_before_the_wait", {
        "test_wait_returns_a_value_set_before_the_wait",
    }),
    "TestRacyClaim": ("test_claim_is_exactly_once_under_concurrency", {
        "test_claim_is_exactly_once_under_concurrency",
    }),
    "TestLazySubscribe": ("test_subscription_is_live_once_entered", {
        # every test that publishes before the first read
        "test_subscription_is_live_once_entered", "test_subscriber_receives_only_matching_channels",
        "test_several_patterns_and_exact_channels", "test_every_subscriber_receives_each_event",
        "test_events_arrive_in_publish_order",
        # and the resume check, which must happen on entering too
        "test_a_trimmed_resume_point_raises_event_gap_error",
    }),
    "TestFirstLogStatus": ("test_status_comes_from_the_latest_log", {
        "test_status_comes_from_the_latest_log", "test_append_without_status_keeps_the_current_status",
        "test_list_filters_by_status", "test_cancel_pending_cancels_exactly_queued_and_running",
        "test_async_twins", "test_aappend_many_is_all_or_nothing",
    }),
}


def outcomes(junit: Path) -> dict[str, dict[str, set[str]]]:
    """class name -> outcome ("failed", "passed", "skipped") -> test names."""
    found: dict[str, dict[str, set[str]]] = {}
    for case in ET.parse(junit).iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "").split("[", 1)[0]
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        found.setdefault(cls, {}).setdefault(outcome, set()).add(name)
    return found


def test_each_broken_backend_fails_the_kit_on_the_test_naming_its_bug(pytester: pytest.Pytester) -> None:
    for source in BROKEN.glob("broken_*.py"):
        shutil.copy(source, pytester.path / source.name)
    pytester.makeconftest(FAST_CONFTEST)
    pytester.makepyfile(test_broken_backends=SUITES)
    junit = pytester.path / "junit.xml"
    # a subprocess with four xdist workers: the suites mostly sleep, so this quarters the time
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "4", f"--junitxml={junit}")
    found = outcomes(junit)
    assert set(found) == set(CAUGHT_BY), f"suites that ran: {sorted(found)}"
    wrong = {
        suite: sorted(found[suite].get("failed", set()))
        for suite, (bug_test, expected) in CAUGHT_BY.items()
        if bug_test not in expected or found[suite].get("failed", set()) != expected
    }
    assert not wrong, f"the kit failed these broken backends on unexpected tests: {wrong}"
