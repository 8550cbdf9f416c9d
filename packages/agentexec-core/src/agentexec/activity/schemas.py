"""The response schemas of ``ax.activity.list`` and ``ax.activity.detail`` (spec/activity-api.md)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from agentexec.activity.status import Status


class ActivityLogSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message: str
    status: Status
    percentage: int | None
    created_at: datetime


class ActivityDetailSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: UUID
    agent_type: str
    created_at: datetime
    updated_at: datetime
    status: Status
    latest_percentage: int | None
    logs: list[ActivityLogSchema]


class ActivityListItemSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: UUID
    agent_type: str
    created_at: datetime
    updated_at: datetime
    status: Status
    latest_log: str | None
    latest_percentage: int | None


class ActivityListSchema(BaseModel):
    items: list[ActivityListItemSchema]
    total: int
    page: int
    page_size: int
    pages: int

    @staticmethod
    def page_count(total: int, page_size: int) -> int:
        """Pages needed for ``total`` items: ceil(total / page_size), so 0 when there are none."""
        return -(-total // page_size) if page_size > 0 else 0
