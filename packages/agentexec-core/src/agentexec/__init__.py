"""agentexec: production orchestration for AI agents.

``import agentexec as ax``; see ``spec/core-api.md`` for the contract. Names an adapter provides
(``ax.Base``, ``ax.OpenAIRunner``, ``ax.close_redis``) resolve lazily through the plugins; without
the adapter, using one raises an ``ImportError`` that says what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentexec import activity
from agentexec._version import __version__
from agentexec.activity.status import Status
from agentexec.client import UnknownTaskError, enqueue, enqueue_many, gather, get_result
from agentexec.config import CONF, Config
from agentexec.results import TaskFailedError
from agentexec.task import Priority, Task, TaskDefinition

if TYPE_CHECKING:
    from agentexec_openai.runner import OpenAIRunner  # noqa: TID251 - for type checkers only
    from agentexec_redis.client import close_redis  # noqa: TID251 - for type checkers only
    from agentexec_sqlalchemy.models import Base  # noqa: TID251 - for type checkers only

    from agentexec import events
    from agentexec.pipeline import Pipeline
    from agentexec.runners import BaseAgentRunner
    from agentexec.worker.pool import Pool

__all__ = [
    "CONF",
    "Base",
    "BaseAgentRunner",
    "Config",
    "OpenAIRunner",
    "Pipeline",
    "Pool",
    "Priority",
    "Status",
    "Task",
    "TaskDefinition",
    "TaskFailedError",
    "UnknownTaskError",
    "__version__",
    "activity",
    "close_redis",
    "enqueue",
    "enqueue_many",
    "events",
    "gather",
    "get_result",
]

#: core names imported on first use (they pull in more of core than a producer needs)
_CORE_LAZY = {
    "Pool": ("agentexec.worker.pool", "Pool"),
    "Pipeline": ("agentexec.pipeline", "Pipeline"),
    "BaseAgentRunner": ("agentexec.runners", "BaseAgentRunner"),
    "events": ("agentexec.events", None),
}
#: names adapters add, and the extra that provides each
_PLUGIN_NAMES = {"Base": "sqlalchemy", "OpenAIRunner": "openai", "close_redis": "redis"}


def __getattr__(name: str) -> Any:
    if name in _CORE_LAZY:
        module_name, attr = _CORE_LAZY[name]
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
