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


# the backends keep their data in the process (they are core's memory backends under another
# scheme): cross_process=False makes a pool run its workers on its own thread, where they see it
@hookimpl
def agentexec_queue_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("thirdparty", ("thirdparty",), _load_queue, "example third-party queue",
                      cross_process=False)


@hookimpl
def agentexec_result_backends() -> Iterator[BackendSpec]:
    yield BackendSpec("thirdparty", ("thirdparty",), _load_results, "example third-party results",
                      cross_process=False)
