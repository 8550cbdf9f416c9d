"""The event loop a worker process runs its tasks on (``CONF.worker_event_loop``).

A worker spends much of each task's CPU in the event loop itself: scheduling the task, its
callbacks, the wake-ups from the backends' threads, its sockets. uvloop (libuv, in C) does that
work in fewer µs than asyncio's pure-Python loop (measured on the no-op drain of
``benchmarks/pool.py``: workers' CPU per task 85 -> 78 µs on Redis), so a worker runs on it
whenever it is installed, as uvicorn does. Only the workers do: the pool's main process forks
them (and may fork from its own loop), and a loop in C that a process forks from has no place in
a fork server.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from agentexec.config import CONF, ConfigError


def worker_loop_options(choice: str | None = None) -> dict[str, Any]:
    """``anyio.run``'s ``backend_options`` for a worker process's loop.

    ``choice`` (``CONF.worker_event_loop`` when ``None``): ``auto`` is uvloop when it can be
    imported, ``asyncio`` otherwise; ``uvloop`` insists on it (a :class:`ConfigError` saying what
    to do when it is not installed). The pool checks this before it starts its workers, so the
    error comes from ``pool.start()``, not from every worker.
    """
    choice = CONF.worker_event_loop if choice is None else choice
    if choice == "asyncio":
        return {}
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise ConfigError(
                "AGENTEXEC_WORKER_EVENT_LOOP is 'uvloop' but uvloop is not installed: "
                "pip install uvloop, or set AGENTEXEC_WORKER_EVENT_LOOP=auto (or asyncio)"
            )
        return {}
    import uvloop  # noqa: F401  imported before the fork: every worker inherits it loaded

    return {"use_uvloop": True}
