"""``OpenAIRunner.tools``: the runner's tools as Agents SDK ``FunctionTool`` objects."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from agentexec.runners import REPORT_STATUS_TOOL, RunnerTools
from agents import FunctionTool, function_tool

if TYPE_CHECKING:
    from agentexec.runners import BaseAgentRunner


class OpenAIRunnerTools(RunnerTools):
    """``runner.tools.report_status`` is a ``FunctionTool`` named ``report_status``.

    It is built once per runner, so ``runner.tools.report_status`` is the same object on every
    access (and can be compared or de-duplicated in an agent's tool list).
    """

    def __init__(self, runner: BaseAgentRunner) -> None:
        super().__init__(runner)

    @cached_property
    def report_status(self) -> FunctionTool:  # type: ignore[override]
        runner = self._runner

        async def report_status(message: str, percentage: int) -> str:
            """Report your progress on the task to the user.

            Args:
                message: What you are doing now, for the user, in 10 words or fewer.
                percentage: How much of the whole task is done, an integer from 0 to 100.
            """
            return await runner.report_status(message, percentage)

        return function_tool(report_status, name_override=REPORT_STATUS_TOOL)
