"""agentexec-openai is a well-formed agentexec plugin whose discovery does not import the SDK."""

from __future__ import annotations

from agentexec.testing import PluginPackagingSuite


class TestOpenAIPackaging(PluginPackagingSuite):
    distribution = "agentexec-openai"
    heavy_modules = ("openai", "agents")
