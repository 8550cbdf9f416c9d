"""The entry-point module: hook implementations only; the backends load lazily."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentexec.hookspecs import BackendSpec, hookimpl


def _load_queue() -> Any:
    from agentexec_thirdparty_example.backends import ThirdPartyQueue

    return ThirdPartyQueue


def _load_results() -> Any:
    from agentexec_thirdparty_example.backends import ThirdPartyResults

    return ThirdPartyResults


@hookimpl
def agentexec_queue_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("thirdparty", ("thirdparty",), _load_queue, "example third-party queue")


@hookimpl
def agentexec_result_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("thirdparty", ("thirdparty",), _load_results, "example third-party results")
