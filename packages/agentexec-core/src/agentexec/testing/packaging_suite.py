"""``PluginPackagingSuite``: checks that a distribution is a well-formed agentexec plugin."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from agentexec.backends import (
    ActivityPrefixLookup,
    ActivityStore,
    BatchAck,
    BatchPublish,
    BatchReserve,
    BatchResults,
    ConsumerReaper,
    EventBackend,
    InFlightView,
    MixedPublish,
    QueueBackend,
    ResultBackend,
    StagedResults,
)
from agentexec.hookspecs import BackendSpec
from agentexec.plugins import (
    ENTRY_POINT_GROUP,
    KINDS,
    BackendKind,
    PluginRegistry,
    check_hooks,
    new_registry,
)
from agentexec.testing._suite import Suite

PROTOCOLS: dict[BackendKind, type[Any]] = {
    "queue": QueueBackend,
    "results": ResultBackend,
    "events": EventBackend,
    "activity": ActivityStore,
}

#: the optional protocols of each kind: a backend need not have their methods, but a method it
#: has under one of these names must match the protocol (agentexec calls it when present)
OPTIONAL_PROTOCOLS: dict[BackendKind, tuple[type[Any], ...]] = {
    "queue": (ConsumerReaper, InFlightView, BatchReserve, BatchAck),
    "results": (BatchResults, StagedResults),
    "events": (BatchPublish, MixedPublish),
    "activity": (ActivityPrefixLookup,),
}

#: modules documented in spec/core-api.md that plugins may add names to
NAME_MODULES = (
    "agentexec",
    "agentexec.core.redis_client",
    "agentexec.core.db",
    "agentexec.activity.models",
)


def _protocol_methods(protocol: type[Any]) -> dict[str, bool]:
    """Method name -> whether it is ``async def`` in the protocol."""
    methods = {}
    for name, value in vars(protocol).items():
        if name.startswith("_") or not inspect.isfunction(value):
            continue
        methods[name] = inspect.iscoroutinefunction(value)
    return methods


def missing_members(kind: BackendKind, candidate: Any) -> list[str]:
    """What ``candidate`` (a class or an instance) lacks of the ``kind`` protocol."""
    problems = []
    for name, is_async in _protocol_methods(PROTOCOLS[kind]).items():
        member = getattr(candidate, name, None)
        if member is None or not callable(member):
            problems.append(f"no method {name}()")
        elif is_async and not inspect.iscoroutinefunction(member):
            problems.append(f"{name}() must be `async def`")
    for optional in OPTIONAL_PROTOCOLS[kind]:
        for name, is_async in _protocol_methods(optional).items():
            member = getattr(candidate, name, None)
            if member is not None and is_async and not inspect.iscoroutinefunction(member):
                problems.append(f"{name}() (optional, {optional.__name__}) must be `async def`")
    if kind == "queue" and not isinstance(candidate, type):
        problems += [f"no attribute {a}" for a in ("lease_timeout", "max_attempts") if not hasattr(candidate, a)]
    return problems


class PluginPackagingSuite(Suite):
    """Subclass and name your distribution and the heavy libraries discovery must not import::

        class TestAcmePackaging(PluginPackagingSuite):
            distribution = "acme-agentexec"
            heavy_modules = ("acme_client",)

    Backends whose ``load()`` returns a factory function rather than a class are built with
    ``sample_urls[name]`` (default ``"<first scheme>://"``) to check the instance; building one
    must not connect anywhere.
    """

    distribution: ClassVar[str] = ""
    heavy_modules: ClassVar[tuple[str, ...]] = ()
    sample_urls: ClassVar[dict[str, str]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _entry_points(self) -> list[importlib.metadata.EntryPoint]:
        if not self.distribution:
            pytest.fail("set `distribution = \"your-distribution-name\"` on the PluginPackagingSuite subclass")
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"distribution {self.distribution!r} is not installed in this environment")
        return [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]

    def _registry(self) -> PluginRegistry:
        """A fresh registry holding only this distribution's plugins."""
        registry = new_registry(load_entry_points=False)
        for ep in self._entry_points():
            registry.register(ep.load(), ep.name, self.distribution)
        check_hooks(registry)
        return registry

    def _backend_specs(self) -> list[tuple[BackendKind, BackendSpec]]:
        registry = self._registry()
        specs = [(kind, spec) for kind in KINDS for spec in registry.backends(kind).values()]
        assert registry.broken == [], f"broken plugin hooks: {registry.broken}"
        return specs

    # -- tests -----------------------------------------------------------------------------
    def test_declares_an_agentexec_entry_point(self) -> None:
        """The distribution declares at least one entry point in the ``agentexec`` group.

        Troubleshooting: add to pyproject.toml ``[project.entry-points.agentexec]``
        ``yourname = "your_package._plugin"`` and reinstall the distribution.
        """
        assert self._entry_points(), (
            f"{self.distribution} has no entry point in group {ENTRY_POINT_GROUP!r}"
        )

    def test_plugin_modules_implement_only_known_hooks(self) -> None:
        """Every ``@hookimpl`` names a hook of :mod:`agentexec.hookspecs` with valid arguments.

        Troubleshooting: a misspelled hook name (``agentexec_queue_backend`` without the s) or an
        extra parameter fails ``check_pending``; compare with the hookspecs module.
        """
        registry = self._registry()
        impls = [
            impl for name in vars(registry.pm.hook)
            if not name.startswith("_")
            for impl in getattr(registry.pm.hook, name).get_hookimpls()
        ]
        assert impls, f"{self.distribution}'s plugin modules implement no agentexec hook"

    def test_hooks_return_valid_descriptors(self) -> None:
        """Every hook returns descriptors of the right type with a name, schemes and a callable ``load``.

        Troubleshooting: yield ``BackendSpec``/``RunnerSpec``/``NameSpec`` instances; scheme
        strings are bare (``"acme"``, not ``"acme://"``) and lower-case.
        """
        registry = self._registry()
        from agentexec.hookspecs import NameSpec, RunnerSpec

        for kind, spec in self._backend_specs():
            assert isinstance(spec, BackendSpec), f"{kind} hook returned {spec!r}"
            assert spec.name and callable(spec.load)
            for scheme in spec.schemes:
                assert scheme and scheme == scheme.lower() and "://" not in scheme and ":" not in scheme, (
                    f"{kind} backend {spec.name!r} has malformed scheme {scheme!r}"
                )
        for runner in registry.runners().values():
            assert isinstance(runner, RunnerSpec) and runner.name and callable(runner.load)
        for module in NAME_MODULES:
            for name_spec in registry.names(module).values():
                assert isinstance(name_spec, NameSpec) and callable(name_spec.load)
        assert registry.broken == [], f"broken plugin hooks: {registry.broken}"

    def test_names_and_schemes_do_not_conflict(self) -> None:
        """The distribution's backend names and URL schemes are unique within it, and no other
        installed distribution claims one of them. Conflicts between *other* installed plugins
        are not this distribution's business and do not fail it.

        Troubleshooting: pick a distinct backend name and URL scheme; the error names both
        distributions that claim one.
        """
        registry = self._registry()
        ours: dict[tuple[BackendKind, str, str], str] = {}
        for kind in KINDS:
            for spec in registry.backends(kind).values():  # raises PluginConflictError inside ours
                ours[(kind, "name", spec.name)] = spec.name
                for scheme in spec.schemes:
                    ours[(kind, "scheme", scheme)] = spec.name
        clashes = []
        for dist, claims in _claims_of_other_distributions(self.distribution).items():
            for claim in claims & set(ours):
                kind, what, value = claim
                clashes.append(f"{dist} also provides the {kind} backend {what} {value!r}")
        assert not clashes, f"{self.distribution} conflicts with installed plugins: {'; '.join(sorted(clashes))}"

    def test_loaders_give_protocol_implementations(self) -> None:
        """Each backend's ``load()`` gives a class (or factory) satisfying its protocol.

        Troubleshooting: ``load()`` returns the backend class, called as ``Class(url)``; it must
        have every method of the protocol in :mod:`agentexec.backends`, async where the protocol's is.
        """
        checked = 0
        for kind, spec in self._backend_specs():
            factory: Callable[[str], Any] = spec.load()
            assert callable(factory), f"{kind} backend {spec.name!r}: load() returned {factory!r}"
            if isinstance(factory, type):
                target: Any = factory
            else:
                url = self.sample_urls.get(spec.name) or (f"{spec.schemes[0]}://" if spec.schemes else "")
                target = factory(url)
            problems = missing_members(kind, target)
            assert not problems, f"{kind} backend {spec.name!r} ({target!r}): {'; '.join(problems)}"
            checked += 1
        registry = self._registry()
        for runner in registry.runners().values():
            assert isinstance(runner.load(), type), f"runner {runner.name!r}: load() must return a class"
            checked += 1
        for module in NAME_MODULES:
            for name_spec in registry.names(module).values():
                assert name_spec.load() is not None, f"{module}.{name_spec.name} loaded None"
                checked += 1
        from agentexec.telemetry import Instrument

        for instrument_spec in registry.instruments().values():
            instrument = instrument_spec.load()
            assert instrument is None or isinstance(instrument, Instrument), (
                f"instrument {instrument_spec.name!r}: load() must return an "
                f"agentexec.telemetry.Instrument or None, got {instrument!r}"
            )
            checked += 1
        assert checked, f"{self.distribution} provides nothing"

    def test_discovery_does_not_import_heavy_modules(self) -> None:
        """Discovering the plugin (listing every descriptor) imports none of ``heavy_modules``.

        Checked in a fresh interpreter. Troubleshooting: import your client library inside the
        ``load()`` functions, never at the top of the plugin module or its package ``__init__``.
        """
        script = (
            "import json, sys\n"
            "from agentexec.plugins import KINDS, new_registry\n"
            "r = new_registry()\n"
            "[r.backends(k) for k in KINDS]; r.runners(); r.instruments()\n"
            f"[r.names(m) for m in {NAME_MODULES!r}]\n"
            f"names = sorted(r.distributions.values())\n"
            f"print(json.dumps({{'dists': names, 'heavy': [m for m in {self.heavy_modules!r} "
            f"if m in sys.modules]}}))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert self.distribution in report["dists"] or _normalized(self.distribution) in [
            _normalized(d) for d in report["dists"]
        ], f"{self.distribution} was not discovered; found {report['dists']}"
        assert report["heavy"] == [], f"discovery imported {report['heavy']}"


def _claims_of_other_distributions(distribution: str) -> dict[str, set[tuple[BackendKind, str, str]]]:
    """(kind, "name" | "scheme", value) claimed by each other installed distribution's
    ``agentexec`` entry points, each loaded into a registry of its own (a broken one is skipped:
    it is that distribution's problem)."""
    by_dist: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if _normalized(name) == _normalized(distribution):
            continue
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                by_dist.setdefault(name, []).append(ep)
    claims: dict[str, set[tuple[BackendKind, str, str]]] = {}
    for name, eps in by_dist.items():
        found: set[tuple[BackendKind, str, str]] = set()
        for ep in eps:
            try:
                registry = new_registry(load_entry_points=False)
                registry.register(ep.load(), ep.name, name)
                for kind in KINDS:
                    for spec in registry.backends(kind).values():
                        found.add((kind, "name", spec.name))
                        found.update((kind, "scheme", scheme) for scheme in spec.schemes)
            except Exception:
                continue
        claims[name] = found
    return claims


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
