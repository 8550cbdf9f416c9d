"""The agentexec plugin contract.

A plugin is a module named by an entry point in the ``agentexec`` group. It holds ``@hookimpl``
functions and imports nothing heavy: every descriptor it returns carries a ``load()`` that imports
the real implementation only when agentexec selects it. Core registers its own in-memory backends
(``memory://``) through these very hooks.

Every hook is called once per process, the first time agentexec needs that kind of thing (for
example the first ``ax.enqueue`` resolves the queue backend). Hooks take no arguments and return
an iterable of small frozen descriptors.

A complete plugin, ``pyproject.toml``::

    [project.entry-points.agentexec]
    acme = "acme_agentexec._plugin"

and ``acme_agentexec/_plugin.py``::

    from agentexec.hookspecs import BackendSpec, hookimpl

    def _load_queue():
        from acme_agentexec.queue import AcmeQueue   # the heavy import happens here, lazily
        return AcmeQueue                             # called as AcmeQueue(url)

    @hookimpl
    def agentexec_queue_backends():
        yield BackendSpec(name="acme", schemes=("acme",), load=_load_queue)

``AGENTEXEC_QUEUE_BACKEND=acme://host`` (or ``=acme``) now selects it, and the plugin proves
itself with the conformance kit::

    from agentexec.testing import QueueSuite

    class TestAcmeQueue(QueueSuite):
        @pytest.fixture
        async def queue(self):
            yield AcmeQueue("acme://localhost")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from agentexec._version import PLUGIN_API_VERSION

PROJECT = "agentexec"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class BackendSpec:
    """A backend a plugin offers.

    ``load()`` returns a factory called as ``factory(url)`` that returns the backend (usually the
    backend class itself). ``schemes`` are the URL schemes it serves; ``"postgresql"`` also
    serves ``"postgresql+psycopg://..."`` unless another plugin claims the full scheme.
    ``cross_process`` is False for backends that live inside one process (``memory://``): the
    pool then runs its workers in that process.
    """

    name: str
    schemes: tuple[str, ...]
    load: Callable[[], Callable[[str], Any]]
    description: str = ""
    cross_process: bool = True
    api_version: int = PLUGIN_API_VERSION


@dataclass(frozen=True)
class RunnerSpec:
    """An agent runner (a :class:`agentexec.runners.BaseAgentRunner` subclass) for one framework."""

    name: str
    load: Callable[[], type[Any]]
    description: str = ""
    api_version: int = PLUGIN_API_VERSION


@dataclass(frozen=True)
class NameSpec:
    """A name a plugin adds to a documented agentexec module, resolved lazily on first access.

    ``module`` is the public module the name appears in (``"agentexec"`` for ``ax.Base``,
    ``"agentexec.core.redis_client"`` for ``get_redis``); ``extra`` is the pip extra that provides
    it, used in the hint shown when no plugin does.
    """

    module: str
    name: str
    load: Callable[[], Any]
    api_version: int = PLUGIN_API_VERSION


@dataclass(frozen=True)
class InstrumentSpec:
    """An observability instrument (traces, metrics) a plugin offers.

    ``load()`` returns an :class:`agentexec.telemetry.Instrument`, or ``None`` when it has
    nothing to do in this process (its library is not installed, or it is not configured):
    then it costs nothing. It is called once per process, the first time core reports
    something (an enqueue, a task run), so it may read ``CONF`` and import its library there.
    """

    name: str
    load: Callable[[], Any]
    description: str = ""
    api_version: int = PLUGIN_API_VERSION


@hookspec
def agentexec_queue_backends() -> Iterable[BackendSpec]:  # type: ignore[empty-body]
    """Queue backends (:class:`agentexec.backends.QueueBackend`) this plugin provides.

    Called the first time a queue is needed. Example::

        @hookimpl
        def agentexec_queue_backends():
            yield BackendSpec(name="redis", schemes=("redis", "rediss", "unix"), load=_load_queue)
    """


@hookspec
def agentexec_result_backends() -> Iterable[BackendSpec]:  # type: ignore[empty-body]
    """Result backends (:class:`agentexec.backends.ResultBackend`) this plugin provides.

    Called the first time a result is stored or awaited. Same shape as the queue hook.
    """


@hookspec
def agentexec_event_backends() -> Iterable[BackendSpec]:  # type: ignore[empty-body]
    """Event backends (:class:`agentexec.backends.EventBackend`): worker logs, shutdown, user events.

    Called the first time something publishes or subscribes. Same shape as the queue hook.
    """


@hookspec
def agentexec_activity_stores() -> Iterable[BackendSpec]:  # type: ignore[empty-body]
    """Activity stores (:class:`agentexec.backends.ActivityStore`) behind ``ax.activity``.

    Called the first time an activity is read or written. The factory is called with the
    database URL. Example::

        @hookimpl
        def agentexec_activity_stores():
            yield BackendSpec(name="sqlalchemy", schemes=("sqlite", "postgresql"), load=_load_store)
    """


@hookspec
def agentexec_runners() -> Iterable[RunnerSpec]:  # type: ignore[empty-body]
    """Agent runners for agent frameworks, listed by ``agentexec plugins``.

    Called when runners are listed or looked up by name. Example::

        @hookimpl
        def agentexec_runners():
            yield RunnerSpec(name="openai", load=lambda: __import__("acme_runner").AcmeRunner)
    """


@hookspec
def agentexec_names() -> Iterable[NameSpec]:  # type: ignore[empty-body]
    """Names this plugin adds to documented agentexec modules (``ax.Base``, ``ax.OpenAIRunner``,
    ``agentexec.core.redis_client.get_redis`` ...).

    Called the first time such a name is accessed; the name's ``load()`` runs then. Example::

        @hookimpl
        def agentexec_names():
            yield NameSpec(module="agentexec", name="OpenAIRunner", load=_load_runner)
    """


@hookspec
def agentexec_instruments() -> Iterable[InstrumentSpec]:  # type: ignore[empty-body]
    """Observability instruments (:class:`agentexec.telemetry.Instrument`): spans, counts and
    durations of enqueues, task runs, pipeline steps and agent turns.

    Called once per process, the first time core reports something; every instrument whose
    ``load()`` returns an instrument receives every report. Example::

        def _load_statsd():
            from acme_agentexec.statsd import StatsdInstrument   # imports the client lazily
            return StatsdInstrument() if os.environ.get("STATSD_HOST") else None

        @hookimpl
        def agentexec_instruments():
            yield InstrumentSpec(name="statsd", load=_load_statsd)
    """
