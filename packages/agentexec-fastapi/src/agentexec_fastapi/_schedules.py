"""The schedule endpoints of the router: runtime schedules (:mod:`agentexec.schedule.records`)."""

# no ``from __future__ import annotations``: see _api.py

from datetime import timedelta
from typing import Annotated, Any

from agentexec.activity.metadata import metadata_matches
from agentexec.schedule.records import ScheduleSpec
from agentexec.schedule.schedule import ScheduleError
from agentexec.task import Priority
from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

Every = Annotated[
    str | float | None,
    Field(description='an interval: "5 minutes", "1 hour", "30 seconds", or a number of seconds'),
]


class ScheduleIn(BaseModel):
    """A schedule to create: ``cron`` or ``every``, of a registered task."""

    task_name: str
    name: str | None = Field(default=None, description="default: the task's name")
    cron: str | None = Field(default=None, description='e.g. "0 9 * * *"')
    every: Every = None
    context: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = Field(default=None, description="IANA name; default CONF.timezone")
    repeat: int | str | None = Field(default=None, description="more firings after the first (0: once); none: forever")
    priority: Priority = Priority.LOW
    enabled: bool = True
    description: str | None = None
    metadata: dict[str, Any] | None = None
    misfire_grace: float = 60.0


class ScheduleUpdate(BaseModel):
    """Fields to change (the others stay)."""

    cron: str | None = None
    every: Every = None
    context: dict[str, Any] | None = None
    timezone: str | None = None
    repeat: int | None = None
    priority: Priority | None = None
    enabled: bool | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    misfire_grace: float | None = None


def _invalid(exc: ScheduleError) -> HTTPException:
    """The schedule API's own error, shaped like FastAPI's validation errors."""
    return HTTPException(422, [{"loc": ["body", exc.field or "schedule"], "msg": exc.reason, "type": "schedule"}])


def add_schedule_routes(api: APIRouter, queue_name: str, pinned_type: Any) -> None:
    from agentexec.schedule import records

    def visible(spec: ScheduleSpec, pinned: dict[str, Any] | None) -> bool:
        return pinned is None or metadata_matches(spec.metadata, pinned)

    async def _get(name: str, pinned: dict[str, Any] | None) -> ScheduleSpec:
        spec = await records.get(name, queue_name)
        if spec is None or not visible(spec, pinned):
            raise HTTPException(404, f"no schedule {name!r}")
        return spec

    @api.get("/schedules", response_model=list[ScheduleSpec], summary="List schedules")
    async def list_schedules(pinned: pinned_type) -> list[ScheduleSpec]:
        return [s for s in await records.list(queue_name) if visible(s, pinned)]

    @api.get("/schedules/{name}", response_model=ScheduleSpec, summary="One schedule",
             responses={404: {"description": "no such schedule"}})
    async def get_schedule(name: str, pinned: pinned_type) -> ScheduleSpec:
        return await _get(name, pinned)

    @api.post("/schedules", response_model=ScheduleSpec, status_code=201, summary="Create a schedule",
              responses={409: {"description": "the name is taken"},
                         422: {"description": "invalid cron, interval, timezone, context ..."}})
    async def create_schedule(body: ScheduleIn, pinned: pinned_type) -> ScheduleSpec:
        metadata = body.metadata if pinned is None else {**(body.metadata or {}), **pinned}
        try:
            return await records.create(
                body.task_name, cron=body.cron, every=body.every, context=body.context, name=body.name,
                timezone=body.timezone, repeat=body.repeat, priority=body.priority, enabled=body.enabled,
                description=body.description, metadata=metadata, misfire_grace=body.misfire_grace,
                queue_name=queue_name,
            )
        except ScheduleError as exc:
            if exc.field == "name" and "already exists" in exc.reason:
                raise HTTPException(409, exc.reason) from None
            raise _invalid(exc) from None

    async def _update(name: str, pinned: dict[str, Any] | None, **changes: Any) -> ScheduleSpec:
        await _get(name, pinned)
        if pinned is not None and "metadata" in changes:
            changes["metadata"] = {**(changes["metadata"] or {}), **pinned}
        try:
            return await records.update(name, queue_name, **changes)
        except ScheduleError as exc:
            raise _invalid(exc) from None
        except LookupError:
            raise HTTPException(404, f"no schedule {name!r}") from None

    @api.patch("/schedules/{name}", response_model=ScheduleSpec, summary="Change a schedule")
    async def update_schedule(name: str, body: ScheduleUpdate, pinned: pinned_type) -> ScheduleSpec:
        changes = body.model_dump(exclude_unset=True)
        if isinstance(changes.get("every"), timedelta):
            changes["every"] = changes["every"].total_seconds()
        return await _update(name, pinned, **changes)

    @api.post("/schedules/{name}/enable", response_model=ScheduleSpec, summary="Enable a schedule")
    async def enable_schedule(name: str, pinned: pinned_type) -> ScheduleSpec:
        return await _update(name, pinned, enabled=True)

    @api.post("/schedules/{name}/disable", response_model=ScheduleSpec, summary="Disable a schedule")
    async def disable_schedule(name: str, pinned: pinned_type) -> ScheduleSpec:
        return await _update(name, pinned, enabled=False)

    @api.delete("/schedules/{name}", status_code=204, summary="Delete a schedule")
    async def delete_schedule(name: str, pinned: pinned_type) -> Response:
        await _get(name, pinned)
        await records.delete(name, queue_name)
        return Response(status_code=204)
