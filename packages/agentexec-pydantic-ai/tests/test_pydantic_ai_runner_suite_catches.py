"""The runner suite catches a broken pydantic-ai runner too (it is not OpenAI-shaped in a way that
would pass anything): runners broken in one way each fail the test that covers that behaviour
(run in a child pytest, so the failures do not fail this run)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).parent

BROKEN = textwrap.dedent(
    '''
    import sys
    sys.path.insert(0, {tests_dir!r})

    import pytest
    from agentexec_pydantic_ai.runner import PydanticAIRunner
    from test_pydantic_ai_runner_suite import TestPydanticAIRunner as _Working


    class NoClamp(PydanticAIRunner):
        async def report_status(self, message, percentage):
            from agentexec.activity.status import Status

            await self._append(message, percentage, Status.RUNNING)  # the store rejects 150
            return "ok"


    class IgnoresPrompt(PydanticAIRunner):
        def instructions_with_report_status(self, instructions):
            return instructions


    class NeverRecovers(PydanticAIRunner):
        def should_recover(self, error):
            return False


    class NoUsage(PydanticAIRunner):
        async def record_usage(self, usage):
            return None


    def _suite(runner_class):
        class Broken(_Working):
            @pytest.fixture
            def runner_factory(self):
                return runner_class
        Broken.__name__ = Broken.__qualname__ = f"Test{{runner_class.__name__}}"
        return Broken


    TestNoClamp = _suite(NoClamp)
    TestIgnoresPrompt = _suite(IgnoresPrompt)
    TestNeverRecovers = _suite(NeverRecovers)
    TestNoUsage = _suite(NoUsage)
    del _Working
    '''
)

EXPECTED_FAILURES = {
    "TestNoClamp": {"test_out_of_range_percentage_is_clamped"},
    "TestIgnoresPrompt": {"test_custom_report_status_prompt_reaches_the_model"},
    "TestNeverRecovers": {
        "test_max_turns_recovery_wraps_up_the_same_conversation",
        "test_exhausted_recovery_propagates_the_error",
        "test_streamed_run_recovers",
    },
    "TestNoUsage": {
        "test_token_usage_is_logged",
        "test_max_turns_recovery_wraps_up_the_same_conversation",
        "test_without_recovery_max_turns_error_propagates",
        "test_streamed_run_records_progress",
    },
}


@pytest.mark.slow
def test_broken_runners_fail_exactly_the_tests_for_what_they_break(tmp_path: Path) -> None:
    (tmp_path / "test_broken_runners.py").write_text(BROKEN.format(tests_dir=str(HERE)))
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--tb=line", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         f"--junitxml={report}", str(tmp_path / "test_broken_runners.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert report.exists(), proc.stdout + proc.stderr
    failed: dict[str, set[str]] = {name: set() for name in EXPECTED_FAILURES}
    ran = 0
    for case in ET.parse(report).getroot().iter("testcase"):
        ran += 1
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        if case.find("failure") is not None or case.find("error") is not None:
            failed.setdefault(cls, set()).add(case.get("name", "").split("[")[0])
    assert ran >= 4 * 12, proc.stdout[-3000:]
    assert failed == EXPECTED_FAILURES, proc.stdout[-3000:]
