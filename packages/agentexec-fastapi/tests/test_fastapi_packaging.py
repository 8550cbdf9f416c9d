"""agentexec-fastapi is a well-formed agentexec plugin whose discovery imports no web framework."""

from __future__ import annotations

from agentexec.testing import PluginPackagingSuite


class TestFastAPIPackaging(PluginPackagingSuite):
    distribution = "agentexec-fastapi"
    heavy_modules = ("fastapi", "starlette", "uvicorn")
