"""The task definitions of every pool created in this process, for ``Task.execute()`` called
outside a worker (a worker resolves names against its own pool only)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Protocol

from agentexec.task import TaskDefinition


class _HasTasks(Protocol):
    @property
    def tasks(self) -> Mapping[str, TaskDefinition]: ...


_pools: weakref.WeakSet[_HasTasks] = weakref.WeakSet()


def add_pool(pool: _HasTasks) -> None:
    _pools.add(pool)


def find_definition(task_name: str) -> TaskDefinition | None:
    for pool in list(_pools):
        definition = pool.tasks.get(task_name)
        if definition is not None:
            return definition
    return None


def registered_names() -> list[str]:
    return sorted({name for pool in list(_pools) for name in pool.tasks})
