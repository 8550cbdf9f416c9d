"""PostgreSQL activity writes on the caller's event loop: psycopg async, one statement per batch.

The store's async twins would otherwise run SQLAlchemy in a worker thread: a thread hop, a
pooled connection check-out with a ping, and three or four statements per batch, all
competing with the event loop for the GIL. On PostgreSQL the hot writes (``acreate``,
``acreate_many``, ``aappend_many``) instead run here, on a small pool of async connections
per event loop:

- creating activities is one ``INSERT`` of the activities and their QUEUED lines (a CTE),
  the rows passed as arrays, so a thousand activities cost one statement;
- appending lines that all carry a status (the worker's lifecycle lines) is one autocommit
  statement: lock the activities in ``agent_id`` order (as :mod:`agentexec_sqlalchemy.activity.writes`
  explains), move ``updated_at``, insert every line — or nothing at all when an ``agent_id``
  is unknown, so a batch is all or nothing, as the protocol says;
- lines that inherit the current status take one round trip for ``BEGIN``, the lock and the
  ``INSERT``, then ``COMMIT`` (or ``ROLLBACK`` on an unknown ``agent_id``).

Durability: the relaxed connections run with ``synchronous_commit = off``: a commit is visible
to every session at once and survives any client crash, but a PostgreSQL *server* crash may
forget the last fraction of a second of such commits. A batch holding a final line (COMPLETE,
ERROR, CANCELED) goes through the durable connections, whose commits wait for the WAL flush;
the WAL is sequential, so once a final line is durable every line written before it is too. A
worker acknowledges a task only after its final line is durable; a lost QUEUED or RUNNING line
can only be followed by a redelivery, never by a lost task.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from agentexec.activity.status import Status
from agentexec.backends import LogEntry, UnknownActivityError

from agentexec_sqlalchemy import pg_async
from agentexec_sqlalchemy.activity.models import ACTIVITY_LOG_TABLE, ACTIVITY_TABLE
from agentexec_sqlalchemy.transport.statements import (
    ACK_MANY_PG_IF,
    NOTIFY_KEYS_PG,
    UPSERT_MANY_PG_IF,
)
from agentexec_sqlalchemy.types import utcnow

log = logging.getLogger("agentexec.sqlalchemy")

FINAL = frozenset({Status.COMPLETE.value, Status.ERROR.value, Status.CANCELED.value})

_A, _L = f'"{ACTIVITY_TABLE}"', f'"{ACTIVITY_LOG_TABLE}"'

CREATE = f"""
WITH input AS MATERIALIZED (  -- one id per row, the same in both inserts
    SELECT gen_random_uuid() AS id, t.*
    FROM unnest(%(agent_ids)b::uuid[], %(types)b::text[], %(messages)b::text[])
        AS t(agent_id, agent_type, message)
), created AS (
    INSERT INTO {_A} (id, agent_id, agent_type, created_at, updated_at, status, percentage)
    SELECT id, agent_id, agent_type, %(now)b, %(now)b, 'QUEUED', 0 FROM input
    RETURNING id
)
INSERT INTO {_L} (activity_id, message, status, percentage, created_at)
SELECT input.id, input.message, 'QUEUED', 0, %(now)b FROM input JOIN created USING (id)
"""

#: CREATE for a batch where some activity has metadata: one more array, of JSON texts (NULL
#: for none); CREATE itself stays as it was for the common batch without any
CREATE_WITH_METADATA = f"""
WITH input AS MATERIALIZED (
    SELECT gen_random_uuid() AS id, t.*
    FROM unnest(%(agent_ids)b::uuid[], %(types)b::text[], %(messages)b::text[],
                %(metadata)b::text[])
        AS t(agent_id, agent_type, message, metadata)
), created AS (
    INSERT INTO {_A} (id, agent_id, agent_type, created_at, updated_at, metadata, status,
                      percentage)
    SELECT id, agent_id, agent_type, %(now)b, %(now)b, metadata::jsonb, 'QUEUED', 0 FROM input
    RETURNING id
)
INSERT INTO {_L} (activity_id, message, status, percentage, created_at)
SELECT input.id, input.message, 'QUEUED', 0, %(now)b FROM input JOIN created USING (id)
"""

EXISTING = f"SELECT agent_id FROM {_A} WHERE agent_id = ANY(%(agent_ids)b::uuid[])"

#: the batch's lines, numbered (``ord``) in batch order; per activity, the line count ``n`` and
#: the last status and percentage given (NULL: none in the batch, the activity keeps its own)
_LINES = """
input AS (
    SELECT * FROM unnest(%(agent_ids)b::uuid[], %(messages)b::text[], %(statuses)b::text[],
                         %(percentages)b::int[]) WITH ORDINALITY AS t(agent_id, message, status,
                                                                      percentage, ord)
), counts AS (
    SELECT agent_id, count(*)::int AS n,
           (array_agg(status ORDER BY ord DESC) FILTER (WHERE status IS NOT NULL))[1] AS status,
           (array_agg(percentage ORDER BY ord DESC)
                FILTER (WHERE percentage IS NOT NULL))[1] AS percentage
    FROM input GROUP BY agent_id
)"""

#: lock the batch's activities in agent_id order (so overlapping batches queue instead of
#: deadlocking) and move updated_at past every new line of the activity
_LOCK_AND_MOVE = f"""
locked AS (
    SELECT a.id FROM {_A} a WHERE a.agent_id = ANY(%(agent_ids)b::uuid[])
    ORDER BY a.agent_id FOR NO KEY UPDATE OF a
), moved AS (
    UPDATE {_A} a
    SET updated_at = GREATEST(a.updated_at, %(now)b) + (c.n - 1) * interval '1 microsecond',
        status = COALESCE(c.status, a.status), percentage = COALESCE(c.percentage, a.percentage)
    FROM counts c
    WHERE a.id = ANY(ARRAY(SELECT id FROM locked)) AND a.agent_id = c.agent_id
      {{guard}}
    RETURNING a.id, a.agent_id, a.updated_at, c.n
)"""

#: LOCK_AND_MOVE alone -> the agent_ids found (the lines follow in APPEND)
LOCK = f"WITH {_LINES}, {_LOCK_AND_MOVE.format(guard='')} SELECT agent_id FROM moved"

#: one line with a status: the batch statement's work without arrays, windows or sorts
APPEND_ONE = f"""
WITH moved AS (
    UPDATE {_A} SET updated_at = GREATEST(updated_at, %(now)b), status = %(status)b,
                    percentage = COALESCE(%(percentage)b::int, percentage)
    WHERE agent_id = %(agent_id)b
    RETURNING id, updated_at
)
INSERT INTO {_L} (activity_id, message, status, percentage, created_at)
SELECT id, %(message)b, %(status)b, %(percentage)b, updated_at FROM moved
"""

#: every activity of the batch locked and moved, or none (an agent_id unknown)
_ALL_OR_NOTHING = _LOCK_AND_MOVE.format(
    guard="AND (SELECT count(*) FROM locked) = (SELECT count(*) FROM counts)"
)
#: the batch's lines, in batch order, each activity's strictly after its last one
_INSERT_LINES = f"""
INSERT INTO {_L} (activity_id, message, status, percentage, created_at)
SELECT m.id, i.message, i.status, i.percentage,
       m.updated_at
       - (m.n - row_number() OVER (PARTITION BY i.agent_id ORDER BY i.ord)) * interval '1 microsecond'
FROM input i JOIN moved m USING (agent_id)
ORDER BY i.ord"""

#: lines that all carry a status, in one statement: lock (agent_id order), move updated_at,
#: insert in batch order; when an agent_id is unknown nothing is updated or inserted (the
#: caller compares the row count)
APPEND_WITH_STATUS = f"WITH {_LINES}, {_ALL_OR_NOTHING}{_INSERT_LINES}"

#: APPEND_WITH_STATUS, and with it the outcomes' upsert (``keys``, ``datas``, ``exp``, their
#: NOTIFY_KEYS_PG on ``channel``) and the acks (``ids``, ``cids``, ``atts``): the activity
#: store's joint finish, ONE statement and one commit; when an agent_id is unknown the guard
#: leaves ``moved`` empty, and then nothing at all is written (the caller compares ``lines``)
FINISH = f"""
WITH {_LINES}, {_ALL_OR_NOTHING}, lines AS ({_INSERT_LINES}
    RETURNING 1
), stored AS (
    {UPSERT_MANY_PG_IF.format(only="WHERE EXISTS (SELECT FROM moved)")}
    RETURNING key
), acked AS (
    {ACK_MANY_PG_IF.format(only="AND EXISTS (SELECT FROM moved)")}
    RETURNING 1
)
SELECT (SELECT count(*) FROM lines) AS lines,
       {NOTIFY_KEYS_PG} AS notified
"""

#: the lines, in batch order; a line without a status takes the one before it in the batch, or
#: the activity's latest (read in this statement, after LOCK took the row locks)
APPEND = f"""
WITH {_LINES}, numbered AS (
    SELECT i.*, a.id AS activity_id, a.updated_at,
           c.n, row_number() OVER (PARTITION BY i.agent_id ORDER BY i.ord) AS k
    FROM input i JOIN counts c USING (agent_id)
        JOIN (SELECT id, agent_id, updated_at FROM {_A} WHERE agent_id = ANY(%(agent_ids)b::uuid[])) a
        USING (agent_id)
)
INSERT INTO {_L} (activity_id, message, status, percentage, created_at)
SELECT activity_id, message,
       COALESCE(
           status,
           (SELECT p.status FROM input p WHERE p.agent_id = numbered.agent_id
              AND p.ord < numbered.ord AND p.status IS NOT NULL ORDER BY p.ord DESC LIMIT 1),
           (SELECT l.status FROM {_L} l WHERE l.activity_id = numbered.activity_id
              ORDER BY l.created_at DESC, l.id DESC LIMIT 1),
           'QUEUED'),
       percentage,
       updated_at - (n - k) * interval '1 microsecond'
FROM numbered ORDER BY ord
"""


class PgWriter:
    """The fast activity writes of one database (see the module doc)."""

    def __init__(self, url: Any) -> None:
        self._connections = pg_async.shared(url)
        self._connection = self._connections.connection

    async def close(self) -> None:
        await self._connections.close()

    async def create(
        self, items: Sequence[tuple[UUID, str, str] | tuple[UUID, str, str, dict[str, Any] | None]]
    ) -> None:
        """Activities ``(agent_id, task_name, message[, metadata])``, each with its QUEUED line,
        in one statement; ``ValueError`` naming the agent_ids that already exist (nothing is
        written). Metadata must be checked already (``validate_metadata``)."""
        import psycopg

        agent_ids = [item[0] for item in items]
        params: dict[str, Any] = {
            "agent_ids": agent_ids,
            "types": [item[1] for item in items],
            "messages": [item[2] for item in items],
            "now": utcnow(),
        }
        metadata = [item[3] if len(item) > 3 else None for item in items]  # type: ignore[misc]
        statement = CREATE
        if any(m is not None for m in metadata):
            statement = CREATE_WITH_METADATA
            params["metadata"] = [None if m is None else json.dumps(m) for m in metadata]
        try:
            async with self._connection() as conn:
                await conn.execute(statement, params)
        except psycopg.errors.UniqueViolation as error:
            raise ValueError(await self._taken(agent_ids)) from error

    async def _taken(self, agent_ids: list[UUID]) -> str:
        async with self._connection() as conn:
            cur = await conn.execute(EXISTING, {"agent_ids": agent_ids})
            taken = {row[0] for row in await cur.fetchall()}
        repeated = {a for a in agent_ids if agent_ids.count(a) > 1} if len(agent_ids) > 1 else set()
        which = sorted(str(a) for a in taken | repeated) or [str(agent_ids[0])]
        if len(which) == 1:
            return f"an activity with agent_id {which[0]} already exists"
        return f"activities with these agent_ids already exist or repeat: {', '.join(which)}"

    async def _first_unknown(self, agent_ids: list[UUID]) -> UUID:
        async with self._connection() as conn:
            cur = await conn.execute(EXISTING, {"agent_ids": agent_ids})
            known = {row[0] for row in await cur.fetchall()}
        return next((a for a in agent_ids if a not in known), agent_ids[0])

    def shares(self, connections: pg_async.AsyncConnections | None) -> bool:
        """Whether ``connections`` (a transport's) reach this writer's database."""
        return connections is self._connections

    async def finish(
        self, entries: Sequence[LogEntry], stored: dict[str, Any], acked: dict[str, Any]
    ) -> None:
        """Lines that all carry a status, with the outcomes' upsert (``stored``: the results'
        ``_upsert_params``) and the acks (``acked``: the queue's ``_acks``), in ONE statement on
        a durable connection, all or nothing: :class:`UnknownActivityError` (nothing written)
        when an ``agent_id`` has no activity."""
        agent_ids = [e.agent_id for e in entries]
        params = {
            "agent_ids": agent_ids, "now": utcnow(),
            "statuses": [Status(e.status).value for e in entries if e.status is not None],
            "messages": [e.message for e in entries],
            "percentages": [e.percentage for e in entries],
            **stored, **acked,
        }
        if len(params["statuses"]) != len(entries):
            raise ValueError("a joint finish takes lines that all carry a status")
        async with self._connection(durable=True) as conn:
            cur = await conn.execute(FINISH, params)
            row = await cur.fetchone()
        if row is None or row[0] != len(entries):
            raise UnknownActivityError(await self._first_unknown(agent_ids))

    async def append(self, entries: Sequence[LogEntry]) -> None:
        """Append the lines in order, all or nothing: :class:`UnknownActivityError` (nothing
        written) when an ``agent_id`` has no activity."""
        agent_ids = [e.agent_id for e in entries]
        statuses = [Status(e.status).value if e.status is not None else None for e in entries]
        now: datetime = utcnow()
        durable = any(s in FINAL for s in statuses)
        if None not in statuses:
            statement, params = (APPEND_WITH_STATUS, {
                "agent_ids": agent_ids, "now": now, "statuses": statuses,
                "messages": [e.message for e in entries],
                "percentages": [e.percentage for e in entries],
            }) if len(entries) > 1 else (APPEND_ONE, {
                "agent_id": agent_ids[0], "now": now, "status": statuses[0],
                "message": entries[0].message, "percentage": entries[0].percentage,
            })
            # one round trip, autocommit: the statement is all or nothing by itself
            async with self._connection(durable) as conn:
                cur = await conn.execute(statement, params)
            if cur.rowcount != len(entries):
                raise UnknownActivityError(await self._first_unknown(agent_ids))
            return
        async with self._connection(durable) as conn, conn.pipeline() as pipeline, conn.transaction():
            lines = {
                "agent_ids": agent_ids, "now": now, "statuses": statuses,
                "messages": [e.message for e in entries],
                "percentages": [e.percentage for e in entries],
            }
            locked = await conn.execute(LOCK, lines)
            await conn.execute(APPEND, lines)
            await pipeline.sync()
            found = {row[0] for row in await locked.fetchall()}
            if len(found) != len(set(agent_ids)):
                raise UnknownActivityError(next(a for a in agent_ids if a not in found))
