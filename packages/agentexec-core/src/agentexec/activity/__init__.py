"""``ax.activity``: create, update and read the activity records of tasks (spec/activity-api.md).

Each function delegates to the process's activity store (the SQLAlchemy store by default). The
optional ``session`` is a SQLAlchemy ``Session``; without it the process-global session from
``agentexec.core.db.set_global_session`` (or the store's own) is used. The ``a``-prefixed twins
are for async code such as task handlers, so the event loop never blocks on the database.

Tenancy: ``metadata=`` on ``create`` (and on ``ax.enqueue``) attaches JSON to an activity;
``metadata_filter=`` on ``list``/``detail``/``count_active`` and their async twins keeps only
the activities whose metadata has every given key/value pair. The rules (typed JSON equality,
NUL refused, ``{}`` refused) are in :mod:`agentexec.activity.metadata`; list items and details
carry ``.metadata``, which is never serialized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentexec.activity.metadata import validate_metadata, validate_metadata_filter
from agentexec.activity.schemas import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
    ActivityLogSchema,
)
from agentexec.activity.status import Status

if TYPE_CHECKING:
    from agentexec.backends import ActivityStore


def _uuid(value: str | UUID) -> UUID:
    # imported here: agentexec.backends imports this package's modules (a cycle at import time)
    from agentexec.backends import as_uuid

    return as_uuid(value)

__all__ = [
    "ActivityDetailSchema",
    "ActivityListItemSchema",
    "ActivityListSchema",
    "ActivityLogSchema",
    "Status",
    "acancel_pending",
    "acomplete",
    "acount_active",
    "acreate",
    "adetail",
    "aerror",
    "alist",
    "active_count",
    "aupdate",
    "ausage",
    "cancel_pending",
    "complete",
    "count_active",
    "create",
    "detail",
    "error",
    "list",
    "update",
    "usage",
]


def _cap(message: str) -> str:
    """A message within ``CONF.max_activity_message_bytes`` (cut, and saying so)."""
    if not isinstance(message, str) or len(message) <= 64:
        return message
    from agentexec.config import CONF
    from agentexec.limits import truncate

    return truncate(message, CONF.max_activity_message_bytes)


def _store() -> ActivityStore:
    from agentexec.runtime import get_activity_store

    return get_activity_store()


def _written(
    agent_id: str | UUID | None = None,
    message: str | None = None,
    status: Status | None = None,
    percentage: int | None = None,
    session: Any = None,
) -> bool:
    """Inside a worker, its own unwritten lines of the activity go first (see
    ``lifecycle.lines_written_sync``); True when the line to write (``message``) was queued
    behind them instead of being left to the caller."""
    from agentexec.activity.creates import created
    from agentexec.backends import LogEntry, validate_percentage
    from agentexec.lifecycle import lines_written_sync, silenced

    agent = None if agent_id is None else _uuid(agent_id)
    if message is not None and silenced(agent):
        return True  # a quiet re-run: the activity already ended
    created(agent)
    entry = None
    if agent is not None and message is not None and session is None:
        entry = LogEntry(agent, message, status, validate_percentage(percentage))
    return lines_written_sync(agent, entry)


async def _awritten(agent_id: str | UUID | None = None, writing: bool = True) -> bool:
    """The async :func:`_written`: False when the caller must not write (a quiet re-run)."""
    from agentexec.activity.creates import acreated
    from agentexec.lifecycle import lines_written, silenced

    agent = None if agent_id is None else _uuid(agent_id)
    if writing and silenced(agent):
        return False
    await acreated(agent)
    await lines_written(agent)
    return True


def create(
    task_name: str,
    message: str,
    agent_id: UUID | str | None = None,
    session: Any = None,
    metadata: dict[str, Any] | None = None,
) -> UUID:
    """Create an activity (status QUEUED) and return its agent_id. ``metadata``: JSON to filter
    by later (``list(metadata_filter=...)``)."""
    message = _cap(message)
    return _store().create(
        task_name, message, _uuid(agent_id) if agent_id is not None else None, session,
        validate_metadata(metadata),
    )


def update(
    agent_id: str | UUID,
    message: str,
    percentage: int | None = None,
    status: Status | None = None,
    session: Any = None,
) -> None:
    """Add a log entry; ``status=None`` keeps the current status."""
    message = _cap(message)
    if not _written(agent_id, message, status, percentage, session):
        _store().append(_uuid(agent_id), message, status, percentage, session)


def complete(
    agent_id: str | UUID, message: str, percentage: int = 100, session: Any = None
) -> None:
    """Mark the activity COMPLETE."""
    message = _cap(message)
    if not _written(agent_id, message, Status.COMPLETE, percentage, session):
        _store().append(_uuid(agent_id), message, Status.COMPLETE, percentage, session)


def error(agent_id: str | UUID, message: str, session: Any = None) -> None:
    """Mark the activity ERROR."""
    message = _cap(message)
    if not _written(agent_id, message, Status.ERROR, None, session):
        _store().append(_uuid(agent_id), message, Status.ERROR, None, session)


def cancel_pending(session: Any = None) -> int:
    """Mark every QUEUED or RUNNING activity CANCELED; returns how many."""
    _written()
    return _store().cancel_pending(session)


def _filter(metadata_filter: Any, metadata: Any) -> dict[str, Any] | None:
    """The one metadata filter of a call: ``metadata_filter=`` (the original agentexec's name)
    or ``metadata=`` (this package's earlier name), checked."""
    if metadata is not None:
        if metadata_filter is not None:
            raise TypeError("pass metadata_filter= or metadata=, not both (they are the same filter)")
        metadata_filter = metadata
    return validate_metadata_filter(metadata_filter)


def list(
    session: Any = None,
    page: int = 1,
    page_size: int = 50,
    status: Status | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    metadata_filter: dict[str, Any] | None = None,
) -> ActivityListSchema:
    """A page of activities, newest first; ``status=`` and ``metadata_filter=`` narrow it
    (``metadata=`` is another name for ``metadata_filter=``)."""
    found = _filter(metadata_filter, metadata)
    _written()
    if found is None:
        return _store().list(session, page, page_size, status)
    return _store().list(session, page, page_size, status, found)


def detail(
    session: Any = None,
    agent_id: str | UUID | None = None,
    metadata_filter: dict[str, Any] | None = None,
) -> ActivityDetailSchema | None:
    """One activity with its whole log, or ``None`` (also when ``metadata_filter`` does not
    match it). ``detail(agent_id)`` works too."""
    if agent_id is None:
        if isinstance(session, UUID | str):
            session, agent_id = None, session
        else:
            raise TypeError("detail() needs an agent_id: ax.activity.detail(session, agent_id)")
    found = validate_metadata_filter(metadata_filter)
    _written(agent_id)
    if found is None:
        return _store().detail(_uuid(agent_id), session)
    return _store().detail(_uuid(agent_id), session, metadata=found)


if TYPE_CHECKING:
    from agentexec.runners import TokenUsage


async def ausage(
    task_name: str | None = None, metadata_filter: dict[str, Any] | None = None
) -> TokenUsage | None:
    """The tokens and cost of every activity of ``task_name`` (every task when ``None``) whose
    metadata matches ``metadata_filter`` (a tenant: ``{"organization_id": "org-123"}``), summed
    from the runners' usage lines; ``None`` when none has any. One query on the stores agentexec
    ships; a store without ``ausage_messages`` is read a page of details at a time."""
    from agentexec.runners import TokenUsage

    found = validate_metadata_filter(metadata_filter)
    await _awritten()
    store = _store()
    read = getattr(store, "ausage_messages", None)
    if callable(read):
        messages = await read(task_name, found)
        return TokenUsage.total(messages)
    total: TokenUsage | None = None
    page = 1
    while True:
        listed = await store.alist(page, 100, None, found) if found else await store.alist(page, 100)
        for item in listed.items:
            if task_name is not None and item.agent_type != task_name:
                continue
            detail = await store.adetail(item.agent_id)
            usage = None if detail is None else detail.usage
            if usage is not None:
                total = usage if total is None else total + usage
        if page >= listed.pages:
            return total
        page += 1


def usage(
    task_name: str | None = None, metadata_filter: dict[str, Any] | None = None
) -> TokenUsage | None:
    """:func:`ausage` for sync code: ``ax.activity.usage("research")``,
    ``ax.activity.usage(metadata_filter={"organization_id": "org-123"})``."""
    import anyio

    try:
        anyio.get_current_task()
    except RuntimeError:
        return anyio.run(ausage, task_name, metadata_filter)
    raise RuntimeError(
        "ax.activity.usage() is for sync code; inside async code use "
        "await ax.activity.ausage(...)"
    )


def count_active(session: Any = None, metadata_filter: dict[str, Any] | None = None) -> int:
    """How many activities are QUEUED or RUNNING (with ``metadata_filter``: of those, how many
    match it)."""
    from agentexec.backends import ActiveCount  # a cycle at import time, as in _uuid

    found = validate_metadata_filter(metadata_filter)
    _written()
    store = _store()
    if isinstance(store, ActiveCount):
        return store.count_active(session, found)
    return sum(
        (store.list(session, 1, 1, s) if found is None else store.list(session, 1, 1, s, found)).total
        for s in Status.pending()
    )


#: the original agentexec's README name of :func:`count_active`
active_count = count_active


# -- async twins -----------------------------------------------------------------------------
async def acreate(
    task_name: str,
    message: str,
    agent_id: UUID | str | None = None,
    metadata: dict[str, Any] | None = None,
) -> UUID:
    message = _cap(message)
    return await _store().acreate(
        task_name, message, _uuid(agent_id) if agent_id is not None else None,
        validate_metadata(metadata),
    )


async def aupdate(
    agent_id: str | UUID,
    message: str,
    percentage: int | None = None,
    status: Status | None = None,
) -> None:
    message = _cap(message)
    if await _awritten(agent_id):
        await _store().aappend(_uuid(agent_id), message, status, percentage)


async def acomplete(agent_id: str | UUID, message: str, percentage: int = 100) -> None:
    message = _cap(message)
    if await _awritten(agent_id):
        await _store().aappend(_uuid(agent_id), message, Status.COMPLETE, percentage)


async def aerror(agent_id: str | UUID, message: str) -> None:
    message = _cap(message)
    if await _awritten(agent_id):
        await _store().aappend(_uuid(agent_id), message, Status.ERROR, None)


async def acancel_pending() -> int:
    await _awritten(writing=False)
    return await _store().acancel_pending()


async def alist(
    page: int = 1,
    page_size: int = 50,
    status: Status | None = None,
    *,
    metadata_filter: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> ActivityListSchema:
    found = _filter(metadata_filter, metadata)
    await _awritten(writing=False)
    if found is None:
        return await _store().alist(page, page_size, status)
    return await _store().alist(page, page_size, status, metadata=found)


async def adetail(
    agent_id: str | UUID, metadata_filter: dict[str, Any] | None = None
) -> ActivityDetailSchema | None:
    found = validate_metadata_filter(metadata_filter)
    await _awritten(agent_id, writing=False)
    if found is None:
        return await _store().adetail(_uuid(agent_id))
    return await _store().adetail(_uuid(agent_id), metadata=found)


async def acount_active(metadata_filter: dict[str, Any] | None = None) -> int:
    """The async :func:`count_active`."""
    from agentexec.backends import ActiveCount

    found = validate_metadata_filter(metadata_filter)
    await _awritten(writing=False)
    store = _store()
    if isinstance(store, ActiveCount):
        return await store.acount_active(found)
    total = 0
    for s in Status.pending():
        page = await (store.alist(1, 1, s) if found is None else store.alist(1, 1, s, metadata=found))
        total += page.total
    return total
