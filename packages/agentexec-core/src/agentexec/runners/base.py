"""``agentexec.runners.base``: where the original agentexec kept ``BaseAgentRunner`` (its
``from agentexec.runners.base import BaseAgentRunner`` keeps working)."""

from __future__ import annotations

from agentexec.runners import (
    DEFAULT_REPORT_STATUS_PROMPT,
    DEFAULT_WRAP_UP_PROMPT,
    REPORT_ACTIVITY_TOOL,
    REPORT_STATUS_TOOL,
    BaseAgentRunner,
    RunnerPrompts,
    RunnerTools,
    TokenUsage,
)

__all__ = [
    "DEFAULT_REPORT_STATUS_PROMPT",
    "DEFAULT_WRAP_UP_PROMPT",
    "REPORT_ACTIVITY_TOOL",
    "REPORT_STATUS_TOOL",
    "BaseAgentRunner",
    "RunnerPrompts",
    "RunnerTools",
    "TokenUsage",
]
