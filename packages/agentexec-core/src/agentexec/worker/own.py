"""The tasks a worker runs, as far as their activities go: what it needs to create an activity
its producer has not written (yet).

A producer writes a task's QUEUED activity behind its push (:mod:`agentexec.activity.creates`),
or died before it did, or the database lost it. Whichever way, the worker running the task
creates the activity from the task itself — name, metadata — and writes its lines after it.
This is the one place that does (the line writer's async path and the sync path of
``ax.activity`` calls on the worker's loop both come here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from agentexec.backends import ActivityStore
from agentexec.config import CONF
from agentexec.task import Envelope

log = logging.getLogger("agentexec.worker")


class OwnTasks:
    def __init__(self) -> None:
        self._names: dict[UUID, str] = {}
        self._metadata: dict[UUID, dict[str, Any]] = {}

    def add(self, envelope: Envelope) -> None:
        self._names[envelope.agent_id] = envelope.task_name
        if envelope.metadata is not None:
            self._metadata[envelope.agent_id] = envelope.metadata

    def forget(self, agent_id: UUID) -> None:
        self._names.pop(agent_id, None)
        self._metadata.pop(agent_id, None)

    @property
    def names(self) -> Mapping[UUID, str]:
        """agent_id -> task name, of the tasks this worker runs."""
        return self._names

    @property
    def metadata(self) -> Mapping[UUID, dict[str, Any]]:
        """agent_id -> activity metadata, of those that have some."""
        return self._metadata

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._names

    def _args(self, agent_id: UUID) -> tuple[str, dict[str, Any] | None]:
        return self._names.get(agent_id, "unknown"), self._metadata.get(agent_id)

    async def acreate(self, store: ActivityStore, agent_id: UUID) -> None:
        """Create the QUEUED activity of ``agent_id`` from its task; nothing when it exists."""
        task_name, metadata = self._args(agent_id)
        try:
            if metadata is None:
                await store.acreate(task_name, CONF.activity_message_create, agent_id)
            else:
                await store.acreate(task_name, CONF.activity_message_create, agent_id, metadata)
        except ValueError:
            return  # created meanwhile
        log.warning("Task %s (%s) had no activity; created it from the task", task_name, agent_id)

    def create(self, store: ActivityStore, agent_id: UUID) -> None:
        """:meth:`acreate` for sync code on the worker's loop, which cannot wait."""
        task_name, metadata = self._args(agent_id)
        try:
            store.create(task_name, CONF.activity_message_create, agent_id, metadata=metadata)
        except ValueError:
            return
        log.warning("Task %s (%s) had no activity; created it from the task", task_name, agent_id)
