"""agentexec-pydantic-ai is a well-formed agentexec plugin whose discovery does not import
pydantic-ai."""

from __future__ import annotations

from agentexec.testing import PluginPackagingSuite


class TestPydanticAIPackaging(PluginPackagingSuite):
    distribution = "agentexec-pydantic-ai"
    heavy_modules = ("pydantic_ai",)
