"""PostgreSQL watcher: one ``LISTEN`` connection per process and database, feeding the hub.

One daemon thread holds one connection that listens on four channels (queue, result, event,
results; the payload names the queue, the agent id, the event channel, or a batch's agent ids
as a JSON array: an event wakes only the subscriptions its channel matches) and forwards every
NOTIFY to :data:`~agentexec_sqlalchemy.transport.notify.HUB`. A fixed set of channels means no LISTEN/UNLISTEN round
trip per waiter, and queue names need not be valid identifiers. A thread, not an async
connection, because waiters live on many event loops (one per test, several per worker) and a
connection belongs to one loop. Idle waiters then do nothing at all until a NOTIFY arrives.
"""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa
from agentexec.backoff import Backoff

from agentexec_sqlalchemy.transport.notify import HUB, KINDS, RESULTS, channel
from agentexec_sqlalchemy.transport.watch import Watcher

log = logging.getLogger("agentexec.sqlalchemy")


class PgListener(Watcher):
    def __init__(self, url: sa.URL, database: str) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channels = {channel(kind): kind for kind in (*KINDS, RESULTS)}
        self._failed: str | None = None
        super().__init__(database, name="agentexec-pg-listen")

    def _run(self) -> None:
        import psycopg

        wait = Backoff(0.1, 5.0)
        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    for name in self._channels:
                        conn.execute(f'LISTEN "{name}"')  # type: ignore[arg-type]
                    self._ready.set()
                    wait.reset()
                    # anything sent while we were not listening is lost: make everyone re-check
                    HUB.wake_database(self.database)
                    while True:
                        for note in conn.notifies(timeout=1.0):
                            kind = self._channels.get(note.channel)
                            if kind == "event":  # the payload is the event's channel
                                HUB.wake_events(self.database, (note.payload,))
                            elif kind == RESULTS:
                                HUB.wake_names(self.database, "result", result_keys(note.payload))
                            elif kind is not None:
                                HUB.wake((self.database, kind, note.payload))
            except Exception as exc:  # the server went away: waiters poll until we are back
                self._ready.clear()
                if not HUB.has_waiters(self.database):
                    # nobody is waiting (a dropped test database, a server restart at night):
                    # stop; the next waiter starts a new listener
                    self.forget()
                    return
                HUB.wake_database(self.database)
                if self._failed != str(exc):
                    self._failed = str(exc)
                    log.warning("agentexec: PostgreSQL LISTEN connection lost (%s); retrying", exc)
                time.sleep(wait.next())


def result_keys(payload: str) -> list[str] | None:
    """The keys a ``results`` NOTIFY names; None (wake every result waiter) when it is empty or
    not a JSON array of strings."""
    try:
        keys = json.loads(payload) if payload else None
    except ValueError:
        return None
    if isinstance(keys, list) and all(isinstance(key, str) for key in keys):
        return keys
    return None
