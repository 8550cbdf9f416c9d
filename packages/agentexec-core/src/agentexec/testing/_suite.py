"""The base of every suite: capability checks and the no-override guard.

The guard runs when a subclass is created (that is, while pytest collects its module): a suite
test may be overridden only by a function marked ``@pytest.mark.xfail(reason=...)``, so a
backend's test run can never quietly pass a contract it does not meet.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from agentexec.testing.capabilities import Capabilities

KIT_MODULE_PREFIX = "agentexec.testing"


class SuiteOverrideError(TypeError):
    """A suite subclass replaced or deleted a suite test without an xfail reason."""


def _xfail_reason(obj: Any) -> str | None:
    for mark in getattr(obj, "pytestmark", ()):
        if getattr(mark, "name", None) == "xfail":
            reason = mark.kwargs.get("reason")
            if isinstance(reason, str) and reason.strip():
                return reason
    return None


class Suite:
    """Common machinery; subclass one of the concrete suites, not this."""

    #: what the backend under test supports; tests needing a missing feature skip
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: names of the tests the kit defines (filled in for kit classes, inherited by yours)
    _kit_tests: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith(KIT_MODULE_PREFIX):
            own = {name for name in vars(cls) if name.startswith("test")}
            cls._kit_tests = cls._kit_tests | own
            return
        _check_overrides(cls)

    @pytest.fixture(scope="session")
    @classmethod
    def anyio_backend(cls) -> str:
        """Suites run on asyncio whatever the project's own ``anyio_backend`` says (backends use
        asyncio client libraries). Session scope, so session-scoped async fixtures still work."""
        return "asyncio"

    def require(self, capability: str) -> None:
        """Skip the running test unless the backend declares ``capability``."""
        if capability not in Capabilities.names():
            raise AttributeError(f"unknown capability {capability!r}; known: {Capabilities.names()}")
        if not getattr(self.capabilities, capability):
            pytest.skip(f"backend lacks capability {capability!r} (Capabilities.{capability}=False)")


def _check_overrides(cls: type[Suite]) -> None:
    problems: list[str] = []
    for name in sorted(cls._kit_tests):
        if name not in vars(cls):
            continue
        value = vars(cls)[name]
        if value is None or not callable(value):
            problems.append(
                f"{name} is deleted (set to {value!r}); kit tests cannot be removed, only "
                f"overridden with @pytest.mark.xfail(reason=...)"
            )
        elif _xfail_reason(value) is None:
            problems.append(
                f"{name} is overridden without @pytest.mark.xfail(reason=...)"
            )
    if problems:
        raise SuiteOverrideError(
            f"{cls.__module__}.{cls.__qualname__} changes conformance-kit tests: "
            + "; ".join(problems)
            + ". To declare a known gap, write:\n"
            "    @pytest.mark.xfail(reason='why this backend cannot meet it')\n"
            "    async def test_name(self, ...): ...\n"
            "or declare a missing optional feature with `capabilities = Capabilities(...)`."
        )
