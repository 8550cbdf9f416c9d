"""Publish/subscribe on a SQL table: every event is a row; subscribers read rows after an id.

The table keeps the last :data:`RETENTION` events, so a subscriber can resume from an id it saw
(``last_id``). On PostgreSQL ``publish`` also NOTIFYs, and publishes are serialised by a
transaction-scoped advisory lock so ids become visible in increasing order (a reader that has
seen id N never later finds a smaller id committing).
"""

from __future__ import annotations

import fnmatch
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import sqlalchemy as sa
from agentexec.backends import Event
from sqlalchemy.engine import Connection

from agentexec_sqlalchemy import _statements as sql
from agentexec_sqlalchemy._transport import SQLTransport

#: events kept for replay; older rows are trimmed
RETENTION = 10_000
#: every this many publishes of one process also trim the table
TRIM_EVERY = 100
#: rows read per round trip by a subscriber
BATCH = 500
_TAKE_PUBLISH_LOCK = sa.select(sa.func.pg_advisory_xact_lock(0x61676576))


class SQLEvents(SQLTransport):
    """:class:`agentexec.backends.EventBackend` on a SQL database."""

    def __init__(self, url: str | sa.Engine) -> None:
        super().__init__(url)
        self._published = itertools.count(1)

    async def publish(self, channel: str, data: str) -> str | None:
        trim = next(self._published) % TRIM_EVERY == 0
        event_id = await self.run_write(self._publish, channel, data, trim, durable=False)
        self.wake_local("event", "")
        return str(event_id)

    def _publish(self, conn: Connection, channel: str, data: str, trim: bool) -> int:
        # relaxed: events are notices (log lines, shutdown broadcasts), no need to wait for the
        # WAL flush
        if not self.is_sqlite:
            conn.execute(_TAKE_PUBLISH_LOCK)
        params = {"channel": channel, "data": data, "ts": time.time()}
        event_id = int(conn.execute(sql.PUBLISH, params).scalar_one())
        if trim:
            conn.execute(sql.TRIM_EVENTS, {"upto": event_id - RETENTION})
        self.notify(conn, "event", "")
        return event_id

    def _last_id(self) -> int:
        with self.read() as conn:
            return int(conn.execute(sql.LAST_EVENT).scalar_one())

    def _after(self, cursor: int) -> list[tuple[int, str, str]]:
        with self.read() as conn:
            rows = conn.execute(sql.EVENTS_AFTER, {"cursor": cursor, "n": BATCH})
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    @asynccontextmanager
    async def subscribe(
        self, patterns: Sequence[str], *, last_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Events published after entering (or after ``last_id``) on channels matching
        ``patterns`` (``*`` wildcards, as :func:`fnmatch.fnmatchcase`)."""
        if last_id is None:
            cursor = await self.run(self._last_id)
        elif str(last_id).isdigit():
            cursor = int(last_id)
        else:
            raise ValueError(
                f"last_id={last_id!r} is not an id of this event backend: pass an Event.id "
                f"received from SQLEvents (a decimal row id), or None for new events only"
            )
        yield _Subscription(self, tuple(patterns), cursor)

    async def close(self) -> None:
        """Nothing to release: the engine is the process's, shared with the activity store."""
        return None


class _Subscription:
    """The async iterator a subscription yields; reads batches after its cursor."""

    def __init__(self, backend: SQLEvents, patterns: tuple[str, ...], cursor: int) -> None:
        self._backend = backend
        self._patterns = patterns
        self._cursor = cursor
        self._pending: list[Event] = []

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            await self._backend.wait_for("event", "", self._fetch, timeout=3600.0)
        return self._pending.pop(0)

    async def _fetch(self) -> bool | None:
        """True once something matched; None when the table has nothing newer."""
        while True:
            rows = await self._backend.run(self._backend._after, self._cursor)
            if not rows:
                return None
            self._cursor = rows[-1][0]
            self._pending.extend(
                Event(channel, data, str(event_id))
                for event_id, channel, data in rows
                if any(fnmatch.fnmatchcase(channel, p) for p in self._patterns)
            )
            if self._pending:
                return True
            if len(rows) < BATCH:
                return None
