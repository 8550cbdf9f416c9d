"""SQLite watcher: one poll per process and database file, feeding the hub.

SQLite has no cross-process signal, so something must poll. Rather than every waiter polling
its own row (500 ``gather``-ed results would be 500 pollers), one daemon thread polls for all
the waiters of this process, and only while someone waits. Each tick reads
``PRAGMA data_version`` — a counter that moves when *another* connection commits, costing
microseconds and no table read — on the connection of this process's writer when it has one
(whose own commits have woken this process's waiters already), else on its own; and only when
it moved asks one question per kind: which of these queues have waiting tasks, which of these
results exist, which channels got newer events (one query for all the subscriptions, which are
then woken only when one of their patterns matches). Ticks back off from 1 ms to 10 ms while
nothing changes. The queries run on the driver's cursor (:mod:`agentexec_sqlalchemy.driver`):
with several processes at work, a poll follows nearly every commit of the others.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa
from agentexec.backoff import Backoff
from sqlalchemy.engine import Connection, Engine

from agentexec_sqlalchemy.driver import execute as run
from agentexec_sqlalchemy.transport.batching import existing_writer
from agentexec_sqlalchemy.transport.models import (
    delayed_table,
    event_table,
    queue_table,
    result_table,
)
from agentexec_sqlalchemy.transport.notify import ANY_EVENT, HUB
from agentexec_sqlalchemy.transport.watch import Watcher

#: names per IN (...) list, well under SQLite's bound-parameter limit
CHUNK = 500
#: tick back-off while the database does not change (seconds)
TICK_MIN = 0.001
TICK_MAX = 0.01
#: a poller nobody waited on for this long stops (and closes its connection)
IDLE_EXIT = 30.0

Q, R, E = queue_table, result_table, event_table
B = sa.bindparam

# built once: building a statement costs more than running it (see _statements)
#: whether one queue has a waiting task: the first row of its waiting index. (A DISTINCT over
#: ``queue_name IN (...)`` read every waiting row: 1.2 ms with 10,000 tasks queued, per poll)
QUEUE_HAS_WORK = (
    sa.select(Q.c.id).where(Q.c.queue_name == B("name"), Q.c.consumer_id.is_(None)).limit(1)
)
RESULTS_STORED = sa.select(R.c.key).where(
    R.c.key.in_(B("keys", expanding=True)), R.c.expires_at > B("now")
)
RESULTS_SINCE = sa.select(R.c.id, R.c.key, R.c.expires_at).where(R.c.id > B("last")).order_by(R.c.id)
LAST_RESULT = sa.select(sa.func.coalesce(sa.func.max(R.c.id), 0))
LAST_EVENT = sa.select(sa.func.coalesce(sa.func.max(E.c.id), 0))
# the channels published on since the last look, and the newest id of each
CHANNELS_SINCE = sa.select(E.c.channel, sa.func.max(E.c.id)).where(E.c.id > B("last")).group_by(E.c.channel)
# delayed tasks pushed since the last look: their consumers re-read how long to wait
DELAYED_SINCE = sa.select(delayed_table.c.id, delayed_table.c.queue_name).where(
    delayed_table.c.id > B("last")
).order_by(delayed_table.c.id)
LAST_DELAYED = sa.select(sa.func.coalesce(sa.func.max(delayed_table.c.id), 0))


class SqlitePoller(Watcher):
    def __init__(self, engine: Engine, database: str) -> None:
        self._engine = engine
        self._kicked = threading.Event()
        self._last_event: int | None = None
        self._last_result: int | None = None
        self._last_delayed: int | None = None
        super().__init__(database, name="agentexec-sqlite-poll")
        self._ready.set()

    def kick(self) -> None:
        self._kicked.set()

    def _run(self) -> None:
        while True:
            try:
                with self._engine.connect() as conn:
                    if self._watch(conn):
                        return
            except sa.exc.SQLAlchemyError:  # locked past busy_timeout, file replaced: reconnect
                time.sleep(TICK_MAX)

    def _watch(self, conn: Connection) -> bool:
        """Poll until nobody has waited for ``IDLE_EXIT`` seconds (then True: the thread ends,
        and the next waiter starts a new poller)."""
        raw = conn.connection.driver_connection
        assert raw is not None
        version: int | None = None
        ticks = Backoff(TICK_MIN, TICK_MAX)  # idle polls slow down; a change speeds them up
        idle_since = time.monotonic()
        while True:
            waiting = HUB.waiting(self.database)
            if not waiting:
                if time.monotonic() - idle_since > IDLE_EXIT:
                    self._ready.clear()
                    self.forget()
                    HUB.wake_database(self.database)  # a waiter that raced in gets a new poller
                    return True
                self._kicked.wait(min(1.0, IDLE_EXIT))  # idle: no query until someone waits
                self._kicked.clear()
                # new waiters: look once whatever the version, results by their keys
                version, self._last_result = None, None
                ticks.reset()
                continue
            idle_since = time.monotonic()
            # the raw cursor: this runs up to 1,000 times a second, and SQLite answers in µs
            current = self._version(raw)
            if current != version:
                version = current
                for kind, name in self._poll(conn, waiting):
                    if kind == "event":
                        HUB.wake_events(self.database, name)
                    else:
                        HUB.wake((self.database, kind, name))
                ticks.reset()
            if self._kicked.wait(ticks.next()):  # a new waiter: check for it now
                self._kicked.clear()
                version = None

    def _version(self, raw: Any) -> Any:
        """What moves when another connection commits. This process's writer's connection when
        it has one: unlike the poller's own, it does not move after the writer's commits, whose
        waiters here are woken by the writer (:meth:`.BatchWriter.foreign_version`)."""
        writer = existing_writer(self.database)
        seen = writer.foreign_version() if writer is not None else None
        return seen if seen is not None else raw.execute("PRAGMA data_version").fetchone()

    def _poll(self, conn: Connection, waiting: dict[str, list[str]]) -> list[tuple[str, Any]]:
        """What to wake: (kind, name) pairs; for events ("event", the new rows' channels)."""
        found: list[tuple[str, Any]] = []
        for name in waiting.get("queue", []):
            if run(conn, QUEUE_HAS_WORK, {"name": name}):
                found.append(("queue", name))
        if "queue" in waiting:
            found += [("queue", name) for name in self._new_delayed(conn, waiting["queue"])]
        if "result" in waiting:
            found += [("result", key) for key in self._new_results(conn, waiting["result"])]
        if "event" in waiting:
            channels = self._new_channels(conn)
            if channels:
                found.append(("event", channels))
        conn.rollback()  # end the read transaction
        return found

    def _new_results(self, conn: Connection, keys: list[str]) -> set[str]:
        """The waited-for results set since the last look: the rows with a newer id (each set
        gets a new one), so the cost follows the sets, not the number of waiters."""
        now = time.time()
        if self._last_result is None:  # first look: the waiters' keys themselves, once
            self._last_result = int(run(conn, LAST_RESULT)[0][0])
            stored = {
                key
                for chunk in _chunks(keys)
                for (key,) in run(conn, RESULTS_STORED, {"keys": chunk, "now": now})
            }
        else:
            rows = run(conn, RESULTS_SINCE, {"last": self._last_result})
            if rows:
                self._last_result = rows[-1].id
            stored = {row.key for row in rows if row.expires_at > now}
        # who waits *now*: a waiter that registered after this query checked the table itself
        # after registering, so it already saw these rows
        return stored & set(HUB.waiting(self.database).get("result", []))

    def _new_delayed(self, conn: Connection, names: list[str]) -> set[str]:
        """Queues waited on that got a delayed task since the last look."""
        if self._last_delayed is None:
            self._last_delayed = int(run(conn, LAST_DELAYED)[0][0])
            return set()
        rows = run(conn, DELAYED_SINCE, {"last": self._last_delayed})
        if not rows:
            return set()
        self._last_delayed = rows[-1].id
        return {row.queue_name for row in rows} & set(names)

    def _new_channels(self, conn: Connection) -> set[str]:
        """The channels of the events stored since the last look."""
        if self._last_event is None:
            self._last_event = int(run(conn, LAST_EVENT)[0][0])
            # first sighting: an event may have landed between a subscriber's own check and
            # now, on any channel: every subscription re-checks
            return {ANY_EVENT}
        rows = run(conn, CHANNELS_SINCE, {"last": self._last_event})
        if rows:
            self._last_event = max(int(top) for _, top in rows)
        return {str(channel) for channel, _ in rows}


def _chunks(names: list[str]) -> list[list[str]]:
    return [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
