"""Publish/subscribe on a SQL table: every event is a row; subscribers read rows after an id.

Rows form three streams by their channel (:mod:`agentexec.limits`; no column: a row's stream is
its channel's prefix): ``logs:*`` channels, ``control:*`` channels, and every other channel.
Each keeps its own newest :func:`agentexec.limits.retention` rows, so logs never push events
out, nor events control messages, and a subscriber can resume from an id it saw (``last_id``). A trim
turns the newest row it removes into that stream's *marker* (channel :data:`MARKERS`, never
delivered): ``subscribe(last_id=...)`` before a marker raises
:class:`agentexec.backends.EventGapError` rather than replaying with a silent hole. On
PostgreSQL ``publish`` also NOTIFYs, and publishes are serialised by a transaction-scoped
advisory lock so ids become visible in increasing order (a reader that has seen id N never
later finds a smaller id committing).

``publish_mixed`` (:class:`agentexec.backends.MixedPublish`) stores messages of any channels as
one write of the process's batching writer (:mod:`.batching`): on PostgreSQL one statement
takes the lock, inserts the rows and NOTIFYs each channel once, where a ``publish`` per message
costs three round trips (measured with py-spy on a drain of no-op tasks: a PostgreSQL worker's
event publishes went from ~20 % of its samples to ~3 %). It rides in the transaction of
whatever else the writer has queued (acks, results): a writer of its own for events, so that
the lock is not held through a durable batch's WAL flush, measured no different (2026-12-07,
2 pairs, 2 processes), so it was not kept.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from agentexec.backends import Event, EventGapError
from agentexec.limits import CONTROL_PREFIX, LOGS_PREFIX, Stream, retention, stream_of, streams_for
from sqlalchemy.engine import Connection

from agentexec_sqlalchemy import driver
from agentexec_sqlalchemy.transport import statements as sql
from agentexec_sqlalchemy.transport.common import SQLTransport
from agentexec_sqlalchemy.transport.models import event_table
from agentexec_sqlalchemy.transport.notify import ANY_EVENT, HUB, event_key

#: the channel of each stream's marker row: the newest row a trim removed (see the module doc)
MARKERS: dict[Stream, str] = {
    "logs": LOGS_PREFIX + "~agentexec-trimmed",
    "control": CONTROL_PREFIX + "~agentexec-trimmed",
    "events": "~agentexec-trimmed",
}
#: every this many publishes of one process also trim the table
TRIM_EVERY = 100
#: rows read per round trip by a subscriber
BATCH = 500
#: bytes of a channel name a NOTIFY payload carries (PostgreSQL's limit is 8,000); longer: any
_MAX_NOTE = 4000
_PUBLISH_LOCK = 0x61676576
_TAKE_PUBLISH_LOCK = sa.select(sa.func.pg_advisory_xact_lock(_PUBLISH_LOCK))
E = event_table
_IS_LOG = sa.func.substr(E.c.channel, 1, len(LOGS_PREFIX)) == LOGS_PREFIX  # LIKE ignores case on SQLite
_IS_CONTROL = sa.func.substr(E.c.channel, 1, len(CONTROL_PREFIX)) == CONTROL_PREFIX
_IN_STREAM = {"logs": _IS_LOG, "control": _IS_CONTROL, "events": sa.not_(sa.or_(_IS_LOG, _IS_CONTROL))}


#: SQLite: the rows of ``publish_mixed``, in order (executemany)
_PUBLISH_ROWS = E.insert().values(channel=sa.bindparam("channel"), data=sa.bindparam("data"),
                                  created_at=sa.bindparam("ts"))


#: PostgreSQL: ``publish_mixed`` in one statement. The lock is taken before any row gets its
#: id (the sort needs every joined row, the lock's included, before the first reaches the
#: insert), the ids follow the list's order, and each channel is notified once (the payload
#: names it; longer than ``_MAX_NOTE``: any). psycopg's own placeholders: the arrays go in
#: binary (its text format escapes every quote of the JSON with a regex: measured, that was
#: most of the statement's cost)
_PUBLISH_ROWS_PG = f"""
WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock({_PUBLISH_LOCK}) AS taken),
stored AS (
    INSERT INTO "{E.name}" (channel, data, created_at)
    SELECT m.channel, m.data, %(ts)b::float8
    FROM locked, unnest(%(channels)b::text[], %(data)b::text[]) WITH ORDINALITY AS m(channel, data, n)
    ORDER BY m.n
    RETURNING channel
)
SELECT count(pg_notify(%(note)b, CASE WHEN octet_length(c) <= {_MAX_NOTE} THEN c ELSE '' END))
FROM (SELECT DISTINCT channel AS c FROM stored) AS channels
"""


def _oldest_kept(stream: Stream) -> sa.Select[tuple[int]]:
    """The id of the oldest row a stream keeps: below it, rows are trimmed."""
    return (
        sa.select(E.c.id)
        .where(_IN_STREAM[stream], E.c.channel != MARKERS[stream])
        .order_by(E.c.id.desc())
        .limit(1)
        .offset(sa.bindparam("keep"))
    )


def _marker(stream: Stream) -> sa.Select[Any]:
    return sa.select(sa.func.coalesce(sa.func.max(E.c.id), 0)).where(E.c.channel == MARKERS[stream])


class SQLEvents(SQLTransport):
    """:class:`agentexec.backends.EventBackend` on a SQL database."""

    def __init__(self, url: str | sa.Engine) -> None:
        super().__init__(url)
        self._published = 0

    def _trim_due(self, count: int) -> bool:
        """Count ``count`` more rows published; True every ``TRIM_EVERY``."""
        before, self._published = self._published, self._published + count
        return before // TRIM_EVERY != self._published // TRIM_EVERY

    async def publish(self, channel: str, data: str) -> str | None:
        event_id = await self.run_write(self._publish, channel, data, self._trim_due(1), durable=False)
        HUB.wake_events(self.database, (channel,))
        return str(event_id)

    async def publish_mixed(self, messages: Sequence[tuple[str, str]]) -> None:
        """``publish`` of each ``(channel, data)``, in order, as one write (see the module doc)."""
        if not messages:
            return
        rows = list(messages)
        await self.run_write(self._publish_mixed, rows, self._trim_due(len(rows)), durable=False)
        HUB.wake_events(self.database, {channel for channel, _ in rows})

    def _publish_mixed(self, conn: Connection, rows: list[tuple[str, str]], trim: bool) -> None:
        ts = time.time()
        if self.is_sqlite:
            driver.executemany(conn, _PUBLISH_ROWS, [{"channel": c, "data": d, "ts": ts} for c, d in rows])
        elif conn.dialect.driver != "psycopg":  # another driver: no binary placeholders
            for channel, data in rows:
                self._publish(conn, channel, data, False)
        else:
            conn.exec_driver_sql(_PUBLISH_ROWS_PG, {
                "ts": ts, "channels": [c for c, _ in rows], "data": [d for _, d in rows],
                "note": self.note("event", "")["channel"],
            })
        if trim:
            for stream in sorted({stream_of(channel) for channel, _ in rows}):
                self._trim(conn, stream)

    def _publish(self, conn: Connection, channel: str, data: str, trim: bool) -> int:
        # relaxed: events are notices (log lines, shutdown broadcasts), no need to wait for the
        # WAL flush
        if not self.is_sqlite:
            conn.execute(_TAKE_PUBLISH_LOCK)
        params = {"channel": channel, "data": data, "ts": time.time()}
        event_id = int(conn.execute(sql.PUBLISH, params).scalar_one())
        if trim:
            self._trim(conn, stream_of(channel))
        # the payload names the channel: a listener wakes only the subscriptions it matches
        self.notify(conn, "event", channel if len(channel.encode()) <= _MAX_NOTE else ANY_EVENT)
        return event_id

    @staticmethod
    def _trim(conn: Connection, stream: Stream) -> None:
        """Keep the stream's newest rows; the newest row trimmed becomes its marker."""
        cut = conn.execute(_oldest_kept(stream), {"keep": retention(stream)}).scalar()
        if cut is None:
            return
        conn.execute(E.delete().where(_IN_STREAM[stream], E.c.id < cut))
        conn.execute(E.update().where(E.c.id == cut).values(channel=MARKERS[stream], data=""))

    def _gap(self, streams: list[Stream], after: int) -> tuple[Stream, int] | None:
        with self.read() as conn:
            for stream in streams:
                marker = int(conn.execute(_marker(stream)).scalar_one())
                if marker > after:
                    return stream, marker
        return None

    def _last_id(self) -> int:
        with self.read() as conn:
            return int(conn.execute(sql.LAST_EVENT).scalar_one())

    def _after(self, cursor: int) -> list[tuple[int, str, str]]:
        with self.read() as conn:
            rows = conn.execute(sql.EVENTS_AFTER, {"cursor": cursor, "n": BATCH})
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def _matching_after(self, stmt: Any, cursor: int) -> tuple[list[tuple[int, str, str]], int]:
        """The rows after ``cursor`` that ``stmt`` (:func:`_matching`) selects, and the highest
        id stored when they were read."""
        with self.read() as conn:
            top = int(conn.execute(sql.LAST_EVENT).scalar_one())
            rows = conn.execute(stmt, {"cursor": cursor, "top": top, "n": BATCH})
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows], top

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
            gap = await self.run(self._gap, sorted(streams_for(patterns)), cursor)
            if gap is not None:
                raise EventGapError(str(last_id), str(gap[1]), gap[0])
        else:
            raise ValueError(
                f"last_id={last_id!r} is not an id of this event backend: pass an Event.id "
                f"received from SQLEvents (a decimal row id), or None for new events only"
            )
        yield _Subscription(self, tuple(patterns), cursor, _matching(tuple(patterns), self.is_sqlite))

    async def close(self) -> None:
        """Nothing to release: the engine is the process's, shared with the activity store."""
        return None


_MARKER_CHANNELS = frozenset(MARKERS.values())


def _matching(patterns: tuple[str, ...], sqlite: bool) -> Any:
    """A select of the rows after ``:cursor`` (up to ``:top``) whose channel matches one of
    ``patterns``, so the database skips the other channels' rows rather than this process: a
    worker listening for ``control:cancel`` no longer reads every log line and event of the
    bus. ``None`` (read every row, filter here) for patterns with ``[`` classes, whose syntax
    differs between ``fnmatch`` and SQL, and for ``*``, which matches everything anyway."""
    if any("[" in p for p in patterns) or "*" in patterns:
        return None
    if sqlite:  # GLOB: fnmatch's * and ?, case-sensitive (LIKE ignores case on SQLite)
        conditions = [E.c.channel.op("GLOB")(sa.literal(p)) for p in patterns]
    else:
        conditions = [
            E.c.channel.like(
                p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                .replace("*", "%").replace("?", "_"),
                escape="\\",
            )
            for p in patterns
        ]
    return (
        sa.select(E.c.id, E.c.channel, E.c.data)
        .where(E.c.id > sa.bindparam("cursor"), E.c.id <= sa.bindparam("top"), sa.or_(*conditions))
        .order_by(E.c.id)
        .limit(sa.bindparam("n"))
    )


class _Subscription:
    """The async iterator a subscription yields; reads batches after its cursor."""

    def __init__(self, backend: SQLEvents, patterns: tuple[str, ...], cursor: int, matching: Any = None) -> None:
        self._backend = backend
        self._patterns = patterns
        self._cursor = cursor
        self._pending: list[Event] = []
        self._matching = matching
        self._key = event_key(patterns)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            await self._backend.wait_for("event", self._key, self._fetch, timeout=3600.0)
        return self._pending.pop(0)

    async def _fetch(self) -> bool | None:
        """True once something matched; None when the table has nothing newer."""
        while True:
            if self._matching is not None:
                rows, top = await self._backend.run(self._backend._matching_after, self._matching, self._cursor)
                # every matching row up to top was read unless the batch was full
                self._cursor = rows[-1][0] if len(rows) >= BATCH else max(top, self._cursor)
            else:
                rows = await self._backend.run(self._backend._after, self._cursor)
                if rows:
                    self._cursor = rows[-1][0]
            if not rows:
                return None
            self._pending.extend(
                Event(channel, data, str(event_id))
                for event_id, channel, data in rows
                if any(fnmatch.fnmatchcase(channel, p) for p in self._patterns)
                and channel not in _MARKER_CHANNELS
            )
            if self._pending:
                return True
            if len(rows) < BATCH:
                return None
