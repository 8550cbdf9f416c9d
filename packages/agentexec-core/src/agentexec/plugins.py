"""The plugin manager: entry-point discovery, backend selection, and errors that name the fix."""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pluggy

from agentexec import hookspecs
from agentexec._redact import mask_url
from agentexec._version import PLUGIN_API_VERSION
from agentexec.config import CONF
from agentexec.hookspecs import BackendSpec, InstrumentSpec, NameSpec, RunnerSpec

log = logging.getLogger("agentexec.plugins")

ENTRY_POINT_GROUP = "agentexec"

BackendKind = Literal["queue", "results", "events", "activity"]
KINDS: tuple[BackendKind, ...] = ("queue", "results", "events", "activity")
_HOOKS: dict[BackendKind, str] = {
    "queue": "agentexec_queue_backends",
    "results": "agentexec_result_backends",
    "events": "agentexec_event_backends",
    "activity": "agentexec_activity_stores",
}

#: first-party URL schemes and names, for the install hint when their adapter is missing
FIRST_PARTY_EXTRAS: dict[str, str] = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "sqlite": "sqlalchemy",
    "postgresql": "sqlalchemy",
    "postgres": "sqlalchemy",
    "sqlalchemy": "sqlalchemy",
    "openai": "openai",
}


class PluginError(RuntimeError):
    """Base of every plugin problem."""


class PluginLoadError(PluginError):
    """A plugin's module failed to import (raised in strict mode; recorded otherwise)."""


class PluginConflictError(PluginError):
    """Two plugins claim the same backend name or URL scheme."""


class BackendNotFoundError(PluginError, LookupError):
    """No installed plugin provides the requested backend."""


def install_hint(extra: str) -> str:
    return f"pip install 'agentexec[{extra}]'"


@dataclass(frozen=True)
class BrokenPlugin:
    name: str
    distribution: str
    error: str


@dataclass
class _Provided:
    spec: BackendSpec
    plugin: str
    distribution: str


@dataclass
class PluginRegistry:
    """A loaded pluggy manager plus where each plugin came from."""

    pm: pluggy.PluginManager
    distributions: dict[str, str] = field(default_factory=dict)  # plugin name -> distribution
    broken: list[BrokenPlugin] = field(default_factory=list)
    _backends: dict[BackendKind, dict[str, _Provided]] = field(default_factory=dict)
    _schemes: dict[BackendKind, dict[str, _Provided]] = field(default_factory=dict)

    # -- registration ----------------------------------------------------------------------
    def register(self, module: ModuleType | object, name: str, distribution: str) -> None:
        self.pm.register(module, name=name)
        self.distributions[name] = distribution
        self._backends.clear()
        self._schemes.clear()

    def _collect(self, hook_name: str) -> Iterable[tuple[Any, str, str]]:
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order
            try:
                items = list(impl.function() or ())
            except Exception as exc:
                self._fail(impl.plugin_name, f"hook {hook_name} raised {exc!r}")
                continue
            dist = self.distributions.get(impl.plugin_name, impl.plugin_name)
            for item in items:
                if getattr(item, "api_version", PLUGIN_API_VERSION) > PLUGIN_API_VERSION:
                    self._fail(
                        impl.plugin_name,
                        f"{item!r} needs plugin API {item.api_version}; this agentexec-core "
                        f"speaks {PLUGIN_API_VERSION}: upgrade agentexec-core",
                    )
                    continue
                yield item, impl.plugin_name, dist

    def _fail(self, plugin: str, error: str) -> None:
        dist = self.distributions.get(plugin, plugin)
        if CONF.strict_plugins:
            raise PluginLoadError(f"agentexec plugin {plugin!r} (distribution {dist}): {error}")
        log.warning("agentexec plugin %r (distribution %s) is broken: %s", plugin, dist, error)
        self.broken.append(BrokenPlugin(plugin, dist, error))

    def _index(self, kind: BackendKind) -> None:
        if kind in self._backends:
            return
        by_name: dict[str, _Provided] = {}
        by_scheme: dict[str, _Provided] = {}
        for spec, plugin, dist in self._collect(_HOOKS[kind]):
            provided = _Provided(spec, plugin, dist)
            if spec.name in by_name:
                other = by_name[spec.name]
                raise PluginConflictError(
                    f"two plugins provide a {kind} backend named {spec.name!r}: "
                    f"{other.distribution} and {dist}. Uninstall one, or disable it with "
                    f"AGENTEXEC_DISABLED_PLUGINS={plugin}"
                )
            by_name[spec.name] = provided
            for scheme in spec.schemes:
                if scheme in by_scheme:
                    other = by_scheme[scheme]
                    raise PluginConflictError(
                        f"two plugins claim the {kind} URL scheme {scheme!r}: "
                        f"{other.distribution} ({other.spec.name}) and {dist} ({spec.name}). "
                        f"Uninstall one, or disable it with AGENTEXEC_DISABLED_PLUGINS={plugin}"
                    )
                by_scheme[scheme] = provided
        self._backends[kind] = by_name
        self._schemes[kind] = by_scheme

    # -- queries -------------------------------------------------------------------------
    def backends(self, kind: BackendKind) -> dict[str, BackendSpec]:
        self._index(kind)
        return {name: p.spec for name, p in self._backends[kind].items()}

    def distribution_of(self, kind: BackendKind, name: str) -> str:
        self._index(kind)
        return self._backends[kind][name].distribution

    def find(self, kind: BackendKind, name_or_url: str) -> BackendSpec:
        """The backend named ``name_or_url``, or serving its URL scheme (full scheme first)."""
        self._index(kind)
        if "://" not in name_or_url and name_or_url in self._backends[kind]:
            return self._backends[kind][name_or_url].spec
        scheme = name_or_url.split("://", 1)[0] if "://" in name_or_url else name_or_url
        for candidate in (scheme, scheme.split("+", 1)[0]):
            if candidate in self._schemes[kind]:
                return self._schemes[kind][candidate].spec
        raise BackendNotFoundError(self._not_found(kind, name_or_url, scheme))

    def _not_found(self, kind: BackendKind, name_or_url: str, scheme: str) -> str:
        installed = ", ".join(
            f"{n} ({', '.join(p.spec.schemes) or 'no schemes'}; from {p.distribution})"
            for n, p in sorted(self._backends[kind].items())
        )
        msg = f"no {kind} backend for {mask_url(name_or_url)!r}. Installed {kind} backends: {installed or 'none'}."
        extra = FIRST_PARTY_EXTRAS.get(scheme.split("+", 1)[0])
        if extra:
            msg += f" Install the adapter: {install_hint(extra)}"
        broken = [b for b in self.broken]
        if broken:
            msg += " Broken plugins: " + "; ".join(f"{b.distribution}: {b.error}" for b in broken)
        return msg

    def runners(self) -> dict[str, RunnerSpec]:
        return {spec.name: spec for spec, _, _ in self._collect("agentexec_runners")}

    def instruments(self) -> dict[str, InstrumentSpec]:
        return {spec.name: spec for spec, _, _ in self._collect("agentexec_instruments")}

    def names(self, module: str) -> dict[str, NameSpec]:
        return {
            spec.name: spec
            for spec, _, _ in self._collect("agentexec_names")
            if spec.module == module
        }


def _split(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def new_registry(*, load_entry_points: bool = True) -> PluginRegistry:
    """A fresh manager with the hook specs; loads the ``agentexec`` entry points unless told not to."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm)
    if load_entry_points:
        load_entry_points_into(registry)
    check_hooks(registry)
    return registry


def check_hooks(registry: PluginRegistry) -> None:
    """Fail loudly, naming the plugin and its distribution, when a plugin implements a hook
    agentexec does not define (a misspelled ``agentexec_*`` name, most often)."""
    try:
        registry.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = registry.pm.get_name(exc.plugin) or repr(exc.plugin)
        dist = registry.distributions.get(plugin, plugin)
        raise PluginError(
            f"agentexec plugin {plugin!r} (distribution {dist}): {exc}. Compare the hook names "
            f"with agentexec.hookspecs, or disable it with AGENTEXEC_DISABLED_PLUGINS={plugin}"
        ) from exc


def load_entry_points_into(registry: PluginRegistry) -> None:
    allowed = _split(CONF.plugins)
    disabled = _split(CONF.disabled_plugins) or set()
    seen: dict[str, str] = {}  # entry-point name -> distribution
    for ep in _entry_points(ENTRY_POINT_GROUP):
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        dist = ep.dist.name if ep.dist is not None else ep.value.split(".", 1)[0]
        if ep.name in seen:
            if seen[ep.name] == dist:  # the same distribution seen twice on sys.path
                continue
            raise PluginConflictError(
                f"two distributions declare the agentexec plugin {ep.name!r}: {seen[ep.name]} "
                f"and {dist}. Uninstall one of them"
            )
        seen[ep.name] = dist
        registry.distributions[ep.name] = dist
        try:
            module = ep.load()
        except Exception as exc:
            registry._fail(ep.name, f"importing {ep.value!r} failed: {exc!r}")
            continue
        try:
            registry.register(module, ep.name, dist)
        except pluggy.PluginValidationError as exc:  # a hook with parameters its spec lacks
            raise PluginError(
                f"agentexec plugin {ep.name!r} (distribution {dist}): {exc}. Compare the hook "
                f"signatures with agentexec.hookspecs, or disable it with "
                f"AGENTEXEC_DISABLED_PLUGINS={ep.name}"
            ) from exc


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The entry points of ``group``, in ``sys.path`` order. ``entry_points(group=...)`` parses
    the entry points of every installed distribution to pick a group's (a third of an
    ``import agentexec; ax.Pool()`` in an environment of 200 distributions, paid by every
    process that loads the registry: each ``agentexec`` command, each pool start); here only
    the distributions whose ``entry_points.txt`` names the group are parsed."""
    header = f"[{group}]"
    found: list[importlib.metadata.EntryPoint] = []
    for dist in importlib.metadata.distributions():
        try:
            text = dist.read_text("entry_points.txt")
        except OSError:
            continue
        if text and header in text:
            found.extend(ep for ep in dist.entry_points if ep.group == group)
    return found


_lock = threading.Lock()
_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = new_registry()
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins (tests, or after changing AGENTEXEC_PLUGINS)."""
    global _registry
    with _lock:
        _registry = None


def load_backend(kind: BackendKind, name_or_url: str) -> Any:
    """Build the backend for a name or URL through the registry."""
    spec = get_registry().find(kind, name_or_url)
    factory = spec.load()
    url = name_or_url if "://" in name_or_url else f"{spec.schemes[0]}://" if spec.schemes else ""
    return factory(url)


def resolve_name(module: str, name: str, extra: str) -> Any:
    """A name a plugin adds to ``module`` (``ax.Base`` ...), with the install hint when absent."""
    spec = get_registry().names(module).get(name)
    if spec is None:
        raise ImportError(
            f"{module}.{name} is provided by the agentexec {extra} adapter, which is not "
            f"installed: {install_hint(extra)}"
        )
    return spec.load()
