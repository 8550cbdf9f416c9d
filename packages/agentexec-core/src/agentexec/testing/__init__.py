"""The agentexec conformance kit: the backend protocols as pytest suites.

Install with ``pip install 'agentexec-core[testing]'``; this is the only agentexec module that
imports pytest. Subclass a suite and provide one fixture that yields a fresh backend::

    import pytest
    from agentexec.testing import QueueSuite

    class TestAcmeQueue(QueueSuite):
        @pytest.fixture
        async def queue(self):
            q = AcmeQueue("acme://localhost")
            yield q
            await q.close()

Declare optional features your backend lacks with ``capabilities = Capabilities(...)``; the tests
that need them skip and name the capability. A suite test may be overridden only with
``@pytest.mark.xfail(reason=...)``; overriding or deleting one otherwise fails collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentexec.testing._suite import Suite, SuiteOverrideError
from agentexec.testing.activity_suite import ActivityStoreSuite
from agentexec.testing.capabilities import Capabilities
from agentexec.testing.events_suite import EventsSuite
from agentexec.testing.packaging_suite import PluginPackagingSuite
from agentexec.testing.queue_suite import QueueSuite
from agentexec.testing.results_suite import ResultsSuite

if TYPE_CHECKING:
    from agentexec.testing.runner_suite import RunnerSuite

__all__ = [
    "ActivityStoreSuite",
    "Capabilities",
    "EventsSuite",
    "PluginPackagingSuite",
    "QueueSuite",
    "ResultsSuite",
    "RunnerSuite",
    "Suite",
    "SuiteOverrideError",
]


def __getattr__(name: str) -> Any:
    # RunnerSuite imports the runner base class, which the queue/store suites do not need.
    if name == "RunnerSuite":
        from agentexec.testing.runner_suite import RunnerSuite

        return RunnerSuite
    raise AttributeError(f"module 'agentexec.testing' has no attribute {name!r}")
