"""The agentexec conformance kit: the backend protocols as pytest suites.

Install with ``pip install 'agentexec-core[testing]'``; this is the only agentexec module that
imports pytest. Nothing loads it on its own: installing agentexec-core adds no plugin to anyone's
test session. Subclass a suite and provide one fixture that yields a fresh backend::

    import pytest
    from agentexec.testing import QueueSuite

    class TestAcmeQueue(QueueSuite):
        @pytest.fixture
        async def queue(self):
            q = AcmeQueue("acme://localhost")
            yield q
            await q.close()

Optional methods (``reserve_many``, ``ack_many``, ``set_many``, ...) are tested when the backend
has them, as the pool uses them when it has them; declare optional behaviours it has
(``replay``, ``activity_metadata``) with ``capabilities = Capabilities(...)``; the tests for what
it lacks skip and name the capability. A suite test may be overridden only with
``@pytest.mark.xfail(reason=...)``; overriding or deleting one otherwise fails collection. Timing
thresholds are class attributes; loosening one needs a ``timing_reason``.

This module is also an opt-in pytest plugin (``pytest_plugins = ["agentexec.testing"]`` in a
conftest, after it sets any ``AGENTEXEC_*`` variable, or ``pytest -p agentexec.testing``): it
adds the kit's version to the report header and lists loosened timing thresholds at the end.
The suites work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentexec.testing._suite import LOOSENED, LoosenedTimingWarning, Suite, SuiteOverrideError
from agentexec.testing.activity_suite import ActivityStoreSuite
from agentexec.testing.capabilities import Capabilities
from agentexec.testing.events_suite import EventsSuite
from agentexec.testing.packaging_suite import PluginPackagingSuite
from agentexec.testing.queue_suite import QueueSuite
from agentexec.testing.results_suite import ResultsSuite

if TYPE_CHECKING:
    from agentexec.testing.pool_suite import PoolSuite
    from agentexec.testing.runner_suite import RunnerSuite

__all__ = [
    "ActivityStoreSuite",
    "Capabilities",
    "EventsSuite",
    "LoosenedTimingWarning",
    "PluginPackagingSuite",
    "PoolSuite",
    "QueueSuite",
    "ResultsSuite",
    "RunnerSuite",
    "Suite",
    "SuiteOverrideError",
]


def __getattr__(name: str) -> Any:
    # RunnerSuite imports the runner base class and PoolSuite the pool's test app, which the
    # queue/store suites do not need.
    if name == "RunnerSuite":
        from agentexec.testing.runner_suite import RunnerSuite

        return RunnerSuite
    if name == "PoolSuite":
        from agentexec.testing.pool_suite import PoolSuite

        return PoolSuite
    raise AttributeError(f"module 'agentexec.testing' has no attribute {name!r}")


# -- the opt-in pytest plugin (hooks pytest finds on this module when it is loaded as one) ------
def pytest_report_header(config: Any) -> str:
    from agentexec._version import __version__

    return f"agentexec conformance kit {__version__} (agentexec.testing)"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if LOOSENED:
        terminalreporter.write_sep("-", "agentexec kit: timing thresholds looser than the kit's")
        for line in dict.fromkeys(LOOSENED):
            terminalreporter.write_line(line)
