"""The base of every suite: capability checks, timing thresholds and the no-override guard.

The guard runs when a subclass is created (that is, while pytest collects its module): a suite
test may be overridden only by a function marked ``@pytest.mark.xfail(reason=...)``, and a
timing threshold may be loosened (raised above the kit's default) only with a
``timing_reason``, which is then shown as a warning in every run — so a backend's test run can
never quietly pass a contract it does not meet.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import pytest

from agentexec.testing.capabilities import METHOD_CAPABILITIES, Capabilities

KIT_MODULE_PREFIX = "agentexec.testing"


class SuiteOverrideError(TypeError):
    """A suite subclass replaced or deleted a suite test without an xfail reason, or loosened a
    timing threshold without a ``timing_reason``."""


class LoosenedTimingWarning(UserWarning):
    """A suite subclass runs with a timing threshold looser than the kit's default (it said why)."""


#: "Class: name default -> value (reason)" for every loosened threshold seen in this process
LOOSENED: list[str] = []


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
    #: why this backend needs a timing threshold looser than the kit's default; required to
    #: raise any of the suite's timing attributes, and printed with every run that does
    timing_reason: ClassVar[str] = ""
    #: names of the tests the kit defines (filled in for kit classes, inherited by yours)
    _kit_tests: ClassVar[frozenset[str]] = frozenset()
    #: the suite's timing attributes (seconds; larger is looser), declared by each kit suite
    _timings: ClassVar[tuple[str, ...]] = ()
    #: their kit defaults (filled in for kit classes)
    _timing_defaults: ClassVar[dict[str, float]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith(KIT_MODULE_PREFIX):
            own = {name for name in vars(cls) if name.startswith("test")}
            cls._kit_tests = cls._kit_tests | own
            cls._timing_defaults = {name: float(getattr(cls, name)) for name in cls._timings}
            return
        _check_overrides(cls)
        _check_timings(cls)

    @pytest.fixture(scope="session")
    @classmethod
    def anyio_backend(cls) -> str:
        """Suites run on asyncio whatever the project's own ``anyio_backend`` says (backends use
        asyncio client libraries). Session scope, so session-scoped async fixtures still work."""
        return "asyncio"

    def require(self, capability: str, backend: Any = None) -> None:
        """Skip the running test unless the backend has ``capability``.

        A method capability (see :mod:`agentexec.testing.capabilities`) is looked up on
        ``backend`` when not declared; declared ``True`` it must be there, declared ``False`` it
        must not be a method the pool would call anyway.
        """
        if capability not in Capabilities.names():
            raise AttributeError(f"unknown capability {capability!r}; known: {Capabilities.names()}")
        declared = getattr(self.capabilities, capability)
        method = METHOD_CAPABILITIES.get(capability)
        if method is None:
            if not declared:
                pytest.skip(
                    f"backend lacks capability {capability!r} (Capabilities.{capability}=False, "
                    f"the default; declare Capabilities({capability}=True) to test it)"
                )
            return
        signature = " / ".join(f"{m}()" for m in method.methods)
        present = method.present(backend)
        if declared is None and not present:
            pytest.skip(f"backend lacks capability {capability!r} (it has no {signature})")
        if declared is True and not present:
            pytest.fail(
                f"Capabilities.{capability} is True but the backend has no {signature} "
                f"(see {method.protocol.__module__}.{method.protocol.__qualname__}). Add it, or "
                f"declare `capabilities = Capabilities({capability}=False)`."
            )
        if declared is False:
            if present and method.used_when_present:
                pytest.fail(
                    f"Capabilities.{capability} is False but the backend has {signature}: agentexec "
                    f"calls it whenever a backend has it, so the kit tests it. Remove the method, or "
                    f"drop the declaration (and mark a known failure with xfail(reason=...))."
                )
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


def _check_timings(cls: type[Suite]) -> None:
    looser = {
        name: (default, float(getattr(cls, name)))
        for name, default in cls._timing_defaults.items()
        if float(getattr(cls, name)) > default
    }
    if not looser:
        return
    listed = ", ".join(f"{name} {default:g} -> {value:g} s" for name, (default, value) in looser.items())
    reason = cls.timing_reason.strip()
    if not reason:
        raise SuiteOverrideError(
            f"{cls.__module__}.{cls.__qualname__} loosens the kit's timing thresholds ({listed}) "
            f"without saying why. Set `timing_reason = '...'` on the class (it is printed with "
            f"every run), or keep the defaults."
        )
    note = f"{cls.__qualname__}: {listed} ({reason})"
    LOOSENED.append(note)
    warnings.warn(LoosenedTimingWarning(f"looser timing thresholds than the kit's: {note}"), stacklevel=3)
