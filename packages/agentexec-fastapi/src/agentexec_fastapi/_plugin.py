"""Registers the control plane with agentexec: ``ax.fastapi_router`` and ``ax.fastapi_app``.
Imports nothing heavy: FastAPI is imported when one of them is first used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import NameSpec, hookimpl


def _router() -> Any:
    from agentexec_fastapi import router

    return router


def _app() -> Any:
    from agentexec_fastapi import create_app

    return create_app


@hookimpl
def agentexec_names() -> Iterator[NameSpec]:
    yield NameSpec("agentexec", "fastapi_router", _router)
    yield NameSpec("agentexec", "fastapi_app", _app)
