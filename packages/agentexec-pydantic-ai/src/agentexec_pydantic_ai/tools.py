"""``PydanticAIRunner.tools``: the runner's tools as pydantic-ai ``Tool`` objects."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from agentexec.runners import REPORT_STATUS_TOOL, RunnerTools
from pydantic_ai import Tool

if TYPE_CHECKING:
    from agentexec.runners import BaseAgentRunner


class PydanticAIRunnerTools(RunnerTools):
    """``runner.tools.report_status`` is a pydantic-ai ``Tool`` named ``report_status``.

    Give it to the agent like any other tool: ``Agent(..., tools=[runner.tools.report_status])``.
    It is built once per runner, so every access returns the same object.
    """

    def __init__(self, runner: BaseAgentRunner) -> None:
        super().__init__(runner)

    @cached_property
    def report_status(self) -> Tool[Any]:  # type: ignore[override]
        runner = self._runner

        async def report_status(message: str, percentage: int) -> str:
            """Report your progress on the task to the user.

            Args:
                message: What you are doing now, for the user, in 10 words or fewer.
                percentage: How much of the whole task is done, an integer from 0 to 100.
            """
            return await runner.report_status(message, percentage)

        return Tool(report_status, takes_ctx=False, name=REPORT_STATUS_TOOL)
