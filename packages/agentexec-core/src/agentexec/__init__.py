"""agentexec: production orchestration for AI agents.

``import agentexec as ax``; the contract is ``spec/core-api.md`` (``ax.enqueue``, ``ax.Pool``,
``ax.activity``, ``ax.CONF``, ...). Every name is imported on first use, so ``import agentexec``
costs next to nothing and each command or process pays only for what it touches (a producer
never imports the worker pool; ``agentexec --version`` imports neither). ``ax.CONF`` is read
from the environment on first use: an invalid ``AGENTEXEC_*`` value stops the program there
with one line (:class:`agentexec.config.ConfigError`).

Names an adapter provides (``ax.Base``, ``ax.OpenAIRunner``, ``ax.PydanticAIRunner``,
``ax.close_redis``, ``ax.fastapi_router``, ``ax.fastapi_app``) resolve through the plugins; without the adapter, using one raises an ``ImportError`` that says what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentexec_fastapi import create_app as fastapi_app  # noqa: TID251 - for type checkers only
    from agentexec_fastapi import router as fastapi_router  # noqa: TID251 - for type checkers only
    from agentexec_openai.runner import OpenAIRunner  # noqa: TID251 - for type checkers only
    from agentexec_pydantic_ai.runner import PydanticAIRunner  # noqa: TID251 - for type checkers only
    from agentexec_redis.client import close_redis  # noqa: TID251 - for type checkers only
    from agentexec_sqlalchemy.activity.models import Base  # noqa: TID251 - for type checkers only

    from agentexec import activity, events, pricing
    from agentexec._version import __version__
    from agentexec.activity.status import Status
    from agentexec.cancellation import CancelResult, cancel, cancel_sync
    from agentexec.client import UnknownTaskError, enqueue, enqueue_many, gather, get_result
    from agentexec.config import CONF, Config
    from agentexec.pipeline import Pipeline
    from agentexec.results import NonRetryableError, RetryAfter, TaskCancelledError, TaskFailedError
    from agentexec.runners import BaseAgentRunner
    from agentexec.schedule import records as schedules
    from agentexec.task import Priority, Task, TaskDefinition
    from agentexec.tracker import Tracker
    from agentexec.worker.pool import Pool

__all__ = [
    "CONF",
    "Base",
    "BaseAgentRunner",
    "CancelResult",
    "Config",
    "OpenAIRunner",
    "NonRetryableError",
    "Pipeline",
    "Pool",
    "Priority",
    "PydanticAIRunner",
    "RetryAfter",
    "Status",
    "Task",
    "TaskCancelledError",
    "TaskDefinition",
    "TaskFailedError",
    "Tracker",
    "UnknownTaskError",
    "__version__",
    "activity",
    "cancel",
    "cancel_sync",
    "close_redis",
    "enqueue",
    "enqueue_many",
    "events",
    "fastapi_app",
    "fastapi_router",
    "gather",
    "get_result",
    "pricing",
    "schedules",
]

#: name -> (module, attribute; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "CONF": ("agentexec.config", "CONF"),
    "Config": ("agentexec.config", "Config"),
    "__version__": ("agentexec._version", "__version__"),
    "activity": ("agentexec.activity", None),
    "events": ("agentexec.events", None),
    "pricing": ("agentexec.pricing", None),
    "schedules": ("agentexec.schedule.records", None),
    "Status": ("agentexec.activity.status", "Status"),
    "enqueue": ("agentexec.client", "enqueue"),
    "enqueue_many": ("agentexec.client", "enqueue_many"),
    "gather": ("agentexec.client", "gather"),
    "get_result": ("agentexec.client", "get_result"),
    "UnknownTaskError": ("agentexec.client", "UnknownTaskError"),
    "TaskFailedError": ("agentexec.results", "TaskFailedError"),
    "TaskCancelledError": ("agentexec.results", "TaskCancelledError"),
    "RetryAfter": ("agentexec.results", "RetryAfter"),
    "NonRetryableError": ("agentexec.results", "NonRetryableError"),
    "cancel": ("agentexec.cancellation", "cancel"),
    "cancel_sync": ("agentexec.cancellation", "cancel_sync"),
    "CancelResult": ("agentexec.cancellation", "CancelResult"),
    "Priority": ("agentexec.task", "Priority"),
    "Task": ("agentexec.task", "Task"),
    "TaskDefinition": ("agentexec.task", "TaskDefinition"),
    "Pool": ("agentexec.worker.pool", "Pool"),
    "Pipeline": ("agentexec.pipeline", "Pipeline"),
    "Tracker": ("agentexec.tracker", "Tracker"),
    "BaseAgentRunner": ("agentexec.runners", "BaseAgentRunner"),
}
#: names adapters add, and the extra that provides each
_PLUGIN_NAMES = {
    "Base": "sqlalchemy",
    "OpenAIRunner": "openai",
    "PydanticAIRunner": "pydantic-ai",
    "close_redis": "redis",
    "fastapi_router": "fastapi",
    "fastapi_app": "fastapi",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
    elif name in _PLUGIN_NAMES:
        from agentexec.plugins import resolve_name

        value = resolve_name("agentexec", name, _PLUGIN_NAMES[name])
    else:
        raise AttributeError(f"module 'agentexec' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
