"""The HTTP API's request and response bodies (pydantic), as they appear in its OpenAPI docs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from agentexec.activity.schemas import ActivityDetailSchema, ActivityListSchema
from agentexec.activity.status import Status
from agentexec.task import Priority
from pydantic import BaseModel, Field

__all__ = [
    "ActivityChangeOut",
    "ActivityDetailSchema",
    "ActivityListSchema",
    "CancelIn",
    "CancelOut",
    "DeadLetterOut",
    "EnqueueIn",
    "EnqueueOut",
    "PurgeOut",
    "QueueOut",
    "RequeueIn",
    "RequeueOut",
    "ResultOut",
    "WorkerOut",
]


class EnqueueIn(BaseModel):
    """A task to queue: its context is validated against the task's context model."""

    context: dict[str, Any] = Field(default_factory=dict, description="the task's context, as JSON")
    priority: Priority = Priority.LOW
    metadata: dict[str, Any] | None = Field(
        default=None, description="JSON attached to the activity (to filter by later)"
    )


class EnqueueOut(BaseModel):
    agent_id: UUID
    task_name: str
    queue_name: str
    status: Status = Status.QUEUED


class ResultOut(BaseModel):
    """A task's outcome: ``pending`` (not finished within the wait), ``complete`` (``result``
    is what the handler returned, as JSON), ``failed`` or ``cancelled`` (``error`` says why)."""

    agent_id: UUID
    status: Literal["pending", "complete", "failed", "cancelled"]
    task_name: str | None = None
    result: Any = None
    error: str | None = None
    attempts: int | None = None


class CancelIn(BaseModel):
    reason: str | None = Field(default=None, description="recorded on the activity's CANCELED line")


class CancelOut(BaseModel):
    """What a cancel did: ``cancelled`` (it was queued: it never starts, it is CANCELED now) or
    ``requested`` (a worker runs it: that worker cancels it and ends it CANCELED)."""

    agent_id: UUID
    state: Literal["cancelled", "requested"]
    message: str


class WorkerOut(BaseModel):
    """A worker (queue consumer) seen through its heartbeats."""

    id: str
    queue_name: str
    heartbeat_age: float = Field(description="seconds since its last heartbeat")


class QueueOut(BaseModel):
    name: str
    high: int = Field(description="tasks waiting at HIGH priority")
    low: int = Field(description="tasks waiting at LOW priority")
    in_flight: int = Field(description="tasks held by workers right now")
    dead: int = Field(description="dead letters")
    workers: list[WorkerOut]


class DeadLetterOut(BaseModel):
    id: str
    queue_name: str
    reason: str
    task_name: str | None
    agent_id: UUID | None
    failed_at: float
    payload: str = Field(description="the task as it was queued (JSON), for inspection")


class RequeueIn(BaseModel):
    ids: list[str] | None = Field(default=None, description="which dead letters; none: all of them")


class RequeueOut(BaseModel):
    requeued: int


class PurgeOut(BaseModel):
    purged: int


class ActivityChangeOut(BaseModel):
    """One event of the live stream: a line added to an activity's log (its SSE ``id`` is
    ``id``, the line's, which ``Last-Event-ID`` resumes after)."""

    id: int
    agent_id: UUID
    task_name: str
    status: Status
    percentage: int | None
    message: str
    created_at: datetime
