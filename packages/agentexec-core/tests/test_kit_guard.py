"""The kit's own safety rails: the no-override guard, capabilities, and fixture hints."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

HEADER = """
import pytest
from agentexec.memory.queue import MemoryQueue
from agentexec.testing import Capabilities, QueueSuite


class Plain:  # a queue without the optional push_raw
    def __init__(self):
        self._q = MemoryQueue()

    def __getattr__(self, name):
        if name == "push_raw":
            raise AttributeError(name)
        return getattr(self._q, name)
"""

FIXTURE = """
    @pytest.fixture
    def queue(self):
        return MemoryQueue()
"""


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_suite=HEADER + body)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_overriding_a_kit_test_without_xfail_fails_collection(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
""" + FIXTURE + """
    async def test_low_priority_is_first_in_first_out(self, queue, queue_name):
        pass
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines([
        "*SuiteOverrideError*TestMine changes conformance-kit tests: "
        "test_low_priority_is_first_in_first_out is overridden without @pytest.mark.xfail(reason=...)*",
    ])


def test_deleting_a_kit_test_fails_collection(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
""" + FIXTURE + """
    test_stats_reports_depth_in_flight_and_consumers = None
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*test_stats_reports_depth_in_flight_and_consumers is deleted*"])


def test_xfail_without_a_reason_is_not_enough(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
""" + FIXTURE + """
    @pytest.mark.xfail
    async def test_low_priority_is_first_in_first_out(self, queue, queue_name):
        raise AssertionError
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*overridden without @pytest.mark.xfail(reason=...)*"])


def test_xfail_with_a_reason_declares_a_known_gap(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
""" + FIXTURE + """
    @pytest.mark.xfail(reason="this backend keeps LOW in LIFO order")
    async def test_low_priority_is_first_in_first_out(self, queue, queue_name):
        raise AssertionError("LIFO")
""", "-k", "first_in_first_out or push_then_reserve")
    result.assert_outcomes(passed=1, xfailed=1)


def test_missing_capability_skips_naming_it(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    capabilities = Capabilities(raw_payloads=False)

    @pytest.fixture
    def queue(self):
        return Plain()
""", "-k", "malformed_payload_is", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*backend lacks capability 'raw_payloads' (Capabilities.raw_payloads=False)*"])


def test_an_undeclared_method_capability_is_detected(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    @pytest.fixture
    def queue(self):
        return Plain()
""", "-k", "malformed_payload_is", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*backend lacks capability 'raw_payloads' (it has no push_raw())*"])


def test_claimed_capability_without_push_raw_says_what_to_add(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    capabilities = Capabilities(raw_payloads=True)

    @pytest.fixture
    def queue(self):
        return Plain()
""", "-k", "malformed_payload_is")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*Capabilities.raw_payloads is True but the backend has no push_raw()*RawPayloads*"
        "Capabilities(raw_payloads=False)*",
    ])


def test_declaring_off_a_method_the_pool_calls_fails(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    capabilities = Capabilities(ack_many=False)
""" + FIXTURE, "-k", "ack_many_acknowledges")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*Capabilities.ack_many is False but the backend has ack_many(): agentexec calls it "
        "whenever a backend has it*",
    ])


def test_loosening_a_timing_threshold_needs_a_reason(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    wake_within_s = 0.5
""" + FIXTURE)
    assert result.ret != 0
    result.stdout.fnmatch_lines([
        "*SuiteOverrideError*TestMine loosens the kit's timing thresholds (wake_within_s 0.1 -> 0.5 s) "
        "without saying why*timing_reason*",
    ])


def test_a_loosened_threshold_with_its_reason_is_shown_in_the_run(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    wake_within_s = 0.5
    timing_reason = "Acme pushes wake-ups through a 200 ms batcher"
""" + FIXTURE, "-p", "agentexec.testing", "-k", "wakes_when")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*LoosenedTimingWarning*TestMine: wake_within_s 0.1 -> 0.5 s (Acme pushes wake-ups through*",
        "*agentexec kit: timing thresholds looser than the kit's*",
        "TestMine: wake_within_s 0.1 -> 0.5 s (Acme pushes wake-ups through a 200 ms batcher)",
    ])


def test_tightening_a_threshold_needs_no_reason(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    wake_within_s = 0.05
    lease_timeout_s = 0.1
""" + FIXTURE, "-k", "wakes_when or not_reaped_before")
    result.assert_outcomes(passed=2)
    assert "LoosenedTimingWarning" not in result.stdout.str()


def test_a_suite_without_its_fixture_says_which_fixture(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
class TestMine(QueueSuite):
    pass
""", "-k", "push_then_reserve")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*QueueSuite needs a `queue` fixture*"])


def test_suites_run_on_asyncio_whatever_the_project_configures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest

@pytest.fixture(scope="session", params=["trio"])
def anyio_backend(request):
    return request.param
""")
    result = run(pytester, """
class TestMine(QueueSuite):
""" + FIXTURE, "-k", "push_then_reserve")
    result.assert_outcomes(passed=1)
