"""In-process reference activity store."""

from __future__ import annotations

import builtins
import itertools
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from agentexec.activity.metadata import (
    metadata_matches,
    validate_metadata,
    validate_metadata_filter,
)
from agentexec.activity.schemas import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
    ActivityLogSchema,
)
from agentexec.activity.status import Status
from agentexec.backends import (
    ActivityChange,
    ActivityItem,
    LogEntry,
    UnknownActivityError,
    activity_item_metadata,
    validate_percentage,
)
from agentexec.backends import as_uuid as _uuid

#: the start of a runner's token-usage line (``agentexec.runners.TokenUsage.PREFIX``)
USAGE_PREFIX = "Token usage:"


@dataclass
class _Record:
    agent_id: UUID
    agent_type: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] | None
    logs: builtins.list[ActivityLogSchema] = field(default_factory=builtins.list)

    @property
    def status(self) -> Status:
        return self.logs[-1].status

    @property
    def latest_percentage(self) -> int | None:
        return next((log.percentage for log in reversed(self.logs) if log.percentage is not None), None)


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryActivityStore:
    cross_process = False

    def __init__(self, url: Any = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._records: dict[UUID, _Record] = {}
        self._ids = itertools.count(1)

    # -- sync --------------------------------------------------------------------------
    async def afind_prefix(self, prefix: str, limit: int = 2) -> list[UUID]:
        """Up to ``limit`` agent ids that start with ``prefix`` (as printed, dashes included)."""
        text = prefix.lower()
        with self._lock:
            found = [a for a in self._records if str(a).startswith(text)]
        return found[:limit]

    def create(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        session: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID:
        agent_id = _uuid(agent_id) if agent_id is not None else uuid.uuid4()
        metadata = validate_metadata(metadata)
        now = _now()
        with self._lock:
            if agent_id in self._records:
                raise ValueError(f"an activity with agent_id {agent_id} already exists")
            rec = _Record(agent_id, task_name, now, now, metadata)
            rec.logs.append(ActivityLogSchema(
                id=next(self._ids), message=message, status=Status.QUEUED, percentage=0, created_at=now
            ))
            self._records[agent_id] = rec
        return agent_id

    def append(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
        session: Any = None,
    ) -> None:
        validate_percentage(percentage)
        agent_id = _uuid(agent_id)
        with self._lock:
            rec = self._records.get(agent_id)
            if rec is None:
                raise UnknownActivityError(agent_id)
            self._add_line(rec, message, status, percentage)

    def _add_line(self, rec: _Record, message: str, status: Status | None, percentage: int | None) -> None:
        now = _now()
        rec.logs.append(ActivityLogSchema(
            id=next(self._ids), message=message, status=status or rec.status,
            percentage=percentage, created_at=now,
        ))
        rec.updated_at = now

    def cancel_pending(self, session: Any = None) -> int:
        with self._lock:
            pending = [r for r in self._records.values() if r.status in Status.pending()]
        for rec in pending:
            self.append(rec.agent_id, "Canceled.", Status.CANCELED)
        return len(pending)

    def list(
        self,
        session: Any = None,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        task_name: str | None = None,
    ) -> ActivityListSchema:
        if page < 1 or page_size < 1:
            raise ValueError(f"page and page_size must be >= 1, got page={page}, page_size={page_size}")
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.created_at, reverse=True)
            if status is not None:
                records = [r for r in records if r.status == status]
            if task_name is not None:
                records = [r for r in records if r.agent_type == task_name]
            found = validate_metadata_filter(metadata)
            if found is not None:
                records = [r for r in records if metadata_matches(r.metadata, found)]
            total = len(records)
            chunk = records[(page - 1) * page_size : page * page_size]
            items = [
                ActivityListItemSchema(
                    agent_id=r.agent_id, agent_type=r.agent_type, created_at=r.created_at,
                    updated_at=r.updated_at, status=r.status, latest_log=r.logs[-1].message,
                    latest_percentage=r.latest_percentage,
                ).with_metadata(r.metadata)
                for r in chunk
            ]
        return ActivityListSchema(
            items=items, total=total, page=page, page_size=page_size,
            pages=ActivityListSchema.page_count(total, page_size),
        )

    def detail(
        self, agent_id: UUID | str, session: Any = None, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None:
        found = validate_metadata_filter(metadata)
        with self._lock:
            rec = self._records.get(_uuid(agent_id))
            if rec is None or (found is not None and not metadata_matches(rec.metadata, found)):
                return None
            return ActivityDetailSchema(
                agent_id=rec.agent_id, agent_type=rec.agent_type, created_at=rec.created_at,
                updated_at=rec.updated_at, status=rec.status,
                latest_percentage=rec.latest_percentage, logs=builtins.list(rec.logs),
            ).with_metadata(rec.metadata)

    def count_active(self, session: Any = None, metadata: dict[str, Any] | None = None) -> int:
        found = validate_metadata_filter(metadata)
        with self._lock:
            return sum(
                1 for r in self._records.values()
                if r.status in Status.pending()
                and (found is None or metadata_matches(r.metadata, found))
            )

    async def acount_active(self, metadata: dict[str, Any] | None = None) -> int:
        return self.count_active(metadata=metadata)

    async def ausage_messages(
        self, task_name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> builtins.list[str]:
        """The token-usage lines of the matching activities (see ``ax.activity.usage``)."""
        found = validate_metadata_filter(metadata)
        with self._lock:
            return [
                log.message for r in self._records.values()
                if (task_name is None or r.agent_type == task_name)
                and (found is None or metadata_matches(r.metadata, found))
                for log in r.logs if log.message.startswith(USAGE_PREFIX)
            ]

    # -- async twins -------------------------------------------------------------------
    async def acreate(
        self,
        task_name: str,
        message: str,
        agent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID:
        return self.create(task_name, message, agent_id, metadata=metadata)

    async def acreate_many(self, items: Sequence[ActivityItem]) -> None:
        for item in items:
            self.create(item[1], item[2], item[0], metadata=activity_item_metadata(item))

    async def aappend(
        self,
        agent_id: UUID,
        message: str,
        status: Status | None = None,
        percentage: int | None = None,
    ) -> None:
        self.append(agent_id, message, status, percentage)

    async def aappend_many(self, entries: Sequence[LogEntry]) -> None:
        with self._lock:
            for e in entries:
                validate_percentage(e.percentage)
                if _uuid(e.agent_id) not in self._records:
                    raise UnknownActivityError(e.agent_id)
        for e in entries:
            self.append(e.agent_id, e.message, e.status, e.percentage)

    async def arequeue(self, agent_id: UUID, message: str) -> bool:
        """:class:`agentexec.backends.RequeueLine`: checked and written under the store's lock."""
        with self._lock:
            rec = self._records.get(_uuid(agent_id))
            if rec is None or rec.status is not Status.RUNNING:
                return False
            self._add_line(rec, message, Status.QUEUED, None)
            return True

    async def adetail(
        self, agent_id: UUID, metadata: dict[str, Any] | None = None
    ) -> ActivityDetailSchema | None:
        return self.detail(agent_id, metadata=metadata)

    async def alist(
        self,
        page: int = 1,
        page_size: int = 50,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        task_name: str | None = None,
    ) -> ActivityListSchema:
        """``task_name``: only that task's activities (an extra of the memory and SQL stores)."""
        if task_name is None:  # a subclass's list() may not know task_name (the kit's broken stores)
            return self.list(page=page, page_size=page_size, status=status, metadata=metadata)
        return self.list(page=page, page_size=page_size, status=status, metadata=metadata, task_name=task_name)

    async def acancel_pending(self) -> int:
        return self.cancel_pending()

    async def achanges(
        self, after: int | None, limit: int = 500, also: Sequence[int] = ()
    ) -> tuple[int, builtins.list[ActivityChange]]:
        wanted = set(also)
        with self._lock:
            found = [
                ActivityChange(
                    log.id, rec.agent_id, rec.agent_type, log.message, log.status, log.percentage,
                    log.created_at, None if rec.metadata is None else dict(rec.metadata),
                )
                for rec in self._records.values() for log in rec.logs
                if after is not None and (log.id > after or log.id in wanted)
            ]
            top = max((log.id for rec in self._records.values() for log in rec.logs), default=0)
        found.sort(key=lambda change: change.id)
        return max(top, after or 0), found[:limit]

    async def aclose(self) -> None:
        return None
