"""Issue #16: the runner as the original agentexec's users know it. Its progress tool is named
``report_activity`` (what the model sees, and what its prompt and users' own instructions call),
reached as ``runner.tools.report_status``; ``BaseAgentRunner`` and ``OpenAIRunner`` import from
the original's module paths."""

from __future__ import annotations

import asyncio
import uuid

import agentexec as ax
from agentexec.runners import REPORT_STATUS_TOOL, BaseAgentRunner


def test_the_originals_module_paths() -> None:
    from agentexec.runners.base import BaseAgentRunner as FromBase
    from agentexec.runners.openai import OpenAIRunner

    assert FromBase is BaseAgentRunner is ax.BaseAgentRunner
    assert OpenAIRunner is ax.OpenAIRunner and issubclass(OpenAIRunner, BaseAgentRunner)


def test_the_progress_tool_is_report_activity_and_the_prompt_says_so() -> None:
    runner = BaseAgentRunner(uuid.uuid4())
    assert REPORT_STATUS_TOOL == "report_activity"
    assert "report_activity" in runner.prompts.report_status
    assert "report_status" not in runner.prompts.report_status
    tool = runner.tools.report_status
    assert tool.__name__ == "report_activity"
    assert asyncio.iscoroutinefunction(tool)
