"""SQLite watcher: one batched poll per process and database file, feeding the hub.

SQLite has no cross-process signal, so something must poll. Rather than every waiter polling
its own row (500 ``gather``-ed results would be 500 pollers), one daemon thread asks, per poll,
one question per kind for *all* the waiters of this process: which of these queues have waiting
tasks, which of these results exist, is there a newer event. It polls only while someone waits,
backing off from 5 ms to 100 ms while nothing turns up, and wakes the hub for what it found.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agentexec_sqlalchemy.notify import HUB, poll_delays
from agentexec_sqlalchemy.transport_models import event_table, queue_table, result_table
from agentexec_sqlalchemy.watch import Watcher

#: names per IN (...) list, well under SQLite's bound-parameter limit
CHUNK = 500

Q, R, E = queue_table, result_table, event_table


class SqlitePoller(Watcher):
    def __init__(self, engine: Engine, database: str) -> None:
        self._engine = engine
        self._kicked = threading.Event()
        self._last_event: int | None = None
        super().__init__(database, name="agentexec-sqlite-poll")
        self._ready.set()

    def kick(self) -> None:
        self._kicked.set()

    def _run(self) -> None:
        delays = poll_delays()
        while True:
            waiting = HUB.waiting(self.database)
            if not waiting:
                self._kicked.wait(1.0)  # idle: no query until someone waits
                self._kicked.clear()
                delays = poll_delays()
                continue
            try:
                found = self._poll(waiting)
            except sa.exc.OperationalError:  # locked for longer than busy_timeout: next round
                found = []
            for kind, name in found:
                HUB.wake((self.database, kind, name))
            if found:
                delays = poll_delays()
            time.sleep(next(delays))

    def _poll(self, waiting: dict[str, list[str]]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        with self._engine.connect() as conn:
            for chunk in _chunks(waiting.get("queue", [])):
                rows = conn.execute(
                    sa.select(Q.c.queue_name)
                    .where(Q.c.queue_name.in_(chunk), Q.c.consumer_id.is_(None))
                    .distinct()
                )
                found += [("queue", name) for (name,) in rows]
            for chunk in _chunks(waiting.get("result", [])):
                rows = conn.execute(
                    sa.select(R.c.key).where(R.c.key.in_(chunk), R.c.expires_at > time.time())
                )
                found += [("result", key) for (key,) in rows]
            if "event" in waiting and self._newer_event(conn):
                found.append(("event", ""))
            conn.rollback()
        return found

    def _newer_event(self, conn: Connection) -> bool:
        last = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(E.c.id), 0))).scalar_one())
        # first sighting: an event may have landed between a subscriber's own check and now
        newer = self._last_event is None or last > self._last_event
        self._last_event = last
        return newer


def _chunks(names: list[str]) -> list[list[str]]:
    return [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
