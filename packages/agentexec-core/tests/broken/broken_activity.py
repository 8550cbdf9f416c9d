"""Activity stores with one bug each, built on the memory reference store."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agentexec.activity.schemas import ActivityListSchema
from agentexec.activity.status import Status
from agentexec.memory import activity


class _FirstLogRecord(activity._Record):
    @property
    def status(self) -> Status:
        return self.logs[0].status


class FirstLogStatusStore(activity.MemoryActivityStore):
    """Derives status from the FIRST log instead of the latest."""

    def create(self, task_name: str, message: str, agent_id: UUID | None = None,
               session: Any = None, metadata: dict[str, Any] | None = None) -> UUID:
        created = super().create(task_name, message, agent_id, session, metadata)
        self._records[created].__class__ = _FirstLogRecord
        return created


class MetadataFirstKeyOnlyStore(activity.MemoryActivityStore):
    """``list(metadata=...)`` matches the first key only: a filter on org AND user returns every
    user of the org."""

    def list(self, session: Any = None, page: int = 1, page_size: int = 50,
             status: Status | None = None, metadata: dict[str, Any] | None = None) -> ActivityListSchema:
        first = dict(list(metadata.items())[:1]) if metadata else metadata
        return super().list(session, page, page_size, status, first)


class MetadataAnyKeyStore(activity.MemoryActivityStore):
    """``list(metadata=...)`` matches activities having ANY of the pairs (OR instead of AND)."""

    def list(self, session: Any = None, page: int = 1, page_size: int = 50,
             status: Status | None = None, metadata: dict[str, Any] | None = None) -> ActivityListSchema:
        if not metadata or len(metadata) == 1:
            return super().list(session, page, page_size, status, metadata)
        found: dict[UUID, Any] = {}
        for key, value in metadata.items():
            for item in super().list(session, 1, 10**6, status, {key: value}).items:
                found[item.agent_id] = item
        items = sorted(found.values(), key=lambda i: i.created_at, reverse=True)
        chunk = items[(page - 1) * page_size : page * page_size]
        return ActivityListSchema(items=chunk, total=len(items), page=page, page_size=page_size,
                                  pages=ActivityListSchema.page_count(len(items), page_size))


class AcreateDropsMetadataStore(activity.MemoryActivityStore):
    """``acreate`` (what workers and ``ax.enqueue`` use) does not pass ``metadata`` on."""

    async def acreate(self, task_name: str, message: str, agent_id: UUID | None = None,
                      metadata: dict[str, Any] | None = None) -> UUID:
        return self.create(task_name, message, agent_id)


class AlistIgnoresStatusStore(activity.MemoryActivityStore):
    """``alist`` drops its ``status`` filter."""

    async def alist(self, page: int = 1, page_size: int = 50, status: Status | None = None) -> ActivityListSchema:
        return self.list(page=page, page_size=page_size)


class AlistFirstPageStore(activity.MemoryActivityStore):
    """``alist`` always returns the first page."""

    async def alist(self, page: int = 1, page_size: int = 50, status: Status | None = None) -> ActivityListSchema:
        return self.list(page=1, page_size=page_size, status=status)


class NoteReopensStore(activity.MemoryActivityStore):
    """``append(status=None)`` records RUNNING instead of the current status: a log line written
    after COMPLETE reopens the activity, and the next ``cancel_pending`` cancels a finished task."""

    def append(self, agent_id: UUID, message: str, status: Status | None = None,
               percentage: int | None = None, session: Any = None) -> None:
        super().append(agent_id, message, status or Status.RUNNING, percentage, session)


class CancelsFinishedStore(activity.MemoryActivityStore):
    """``cancel_pending`` cancels every activity, finished ones too."""

    def cancel_pending(self, session: Any = None) -> int:
        with self._lock:
            pending = list(self._records.values())
        for rec in pending:
            self.append(rec.agent_id, "Canceled.", Status.CANCELED)
        return len(pending)


class AcancelQueuedOnlyStore(activity.MemoryActivityStore):
    """``acancel_pending`` cancels QUEUED activities but not RUNNING ones."""

    async def acancel_pending(self) -> int:
        with self._lock:
            queued = [r for r in self._records.values() if r.status is Status.QUEUED]
        for rec in queued:
            self.append(rec.agent_id, "Canceled.", Status.CANCELED)
        return len(queued)


class PercentageFromFirstLogStore(activity.MemoryActivityStore):
    """``latest_percentage`` is the first non-null percentage, not the latest."""

    def detail(self, agent_id: UUID | str, session: Any = None):  # type: ignore[no-untyped-def]
        found = super().detail(agent_id, session)
        if found is None:
            return None
        first = next((log.percentage for log in found.logs if log.percentage is not None), None)
        return found.model_copy(update={"latest_percentage": first})


class ClosedForGoodStore(activity.MemoryActivityStore):
    """After ``aclose`` the store refuses every call (its async engine is disposed and never
    recreated): a worker loop that closed its connections cannot write again."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True

    def append(self, agent_id: UUID, message: str, status: Status | None = None,
               percentage: int | None = None, session: Any = None) -> None:
        if self.closed:
            raise RuntimeError("engine disposed")
        super().append(agent_id, message, status, percentage, session)


class ChangesNewestFirstStore(activity.MemoryActivityStore):
    """``achanges`` hands out the newest lines first (ORDER BY id DESC)."""

    async def achanges(self, after: int | None, limit: int = 500, also: Any = ()) -> Any:
        top, found = await super().achanges(after, 10**9, also)
        return top, sorted(found, key=lambda change: -change.id)[:limit]


class ChangesIgnoreAlsoStore(activity.MemoryActivityStore):
    """``achanges`` ignores ``also``: a line a feed saw missing is never handed out."""

    async def achanges(self, after: int | None, limit: int = 500, also: Any = ()) -> Any:
        return await super().achanges(after, limit)
