"""``agentexec.runners.openai``: where the original agentexec kept ``OpenAIRunner``; provided by
``agentexec-openai`` (``pip install 'agentexec[openai]'``), resolved on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentexec._lazy_module import plugin_getattr

if TYPE_CHECKING:
    from agentexec_openai.runner import OpenAIRunner  # noqa: TID251 - for type checkers only

__all__ = ["OpenAIRunner"]
__getattr__ = plugin_getattr("agentexec", "openai", tuple(__all__))
