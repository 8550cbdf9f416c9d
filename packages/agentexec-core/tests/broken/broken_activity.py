"""An activity store that derives status from the FIRST log instead of the latest."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agentexec.activity.status import Status
from agentexec.memory import activity


class _FirstLogRecord(activity._Record):
    @property
    def status(self) -> Status:
        return self.logs[0].status


class FirstLogStatusStore(activity.MemoryActivityStore):
    def create(self, task_name: str, message: str, agent_id: UUID | None = None,
               session: Any = None, metadata: dict[str, Any] | None = None) -> UUID:
        created = super().create(task_name, message, agent_id, session, metadata)
        self._records[created].__class__ = _FirstLogRecord
        return created
