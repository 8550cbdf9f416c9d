"""The transport's hot-path statements, built once with bind parameters.

Building a SQLAlchemy expression and its cache key costs more than running it on SQLite (about
0.3 ms per statement, measured); built once, each execution reuses the memoized cache key and
the compiled SQL. Dialect-specific ones (upserts) come in a dict keyed by dialect name.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agentexec_sqlalchemy.transport.models import consumer_table as C
from agentexec_sqlalchemy.transport.models import dead_letter_table as D
from agentexec_sqlalchemy.transport.models import delayed_table as DL
from agentexec_sqlalchemy.transport.models import event_table as E
from agentexec_sqlalchemy.transport.models import queue_table as Q
from agentexec_sqlalchemy.transport.models import result_table as R
from agentexec_sqlalchemy.transport.models import schedule_table as S

_INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
B = sa.bindparam


def _per_dialect(build: Any) -> dict[str, Any]:
    return {name: build(insert) for name, insert in _INSERTS.items()}


NOTIFY = sa.select(sa.func.pg_notify(B("channel"), B("note")))
#: the earliest due time among a queue's delayed tasks (every take asks: see SQLQueue._promote)
NEXT_DUE = sa.select(sa.func.min(DL.c.due)).where(DL.c.queue_name == B("qn"))

# -- queue ----------------------------------------------------------------------------------
PUSH = Q.insert()
PUSH_ONE = Q.insert().values(
    queue_name=B("qn"), rank=B("rank"), front=0, payload=B("body"), attempts=B("att"),
    enqueued_at=B("ts"),
)
#: PostgreSQL: insert and NOTIFY in one statement (one round trip, atomic, notifies on commit);
#: psycopg's parameters (``driver.run_raw``, ``SQLTransport.pg_execute``)
PUSH_ONE_PG = f"""
WITH pushed AS (
    INSERT INTO "{Q.name}" (queue_name, rank, front, payload, attempts, enqueued_at)
    VALUES (%(qn)s, %(rank)s, 0, %(body)s, %(att)s, %(ts)s)
)
SELECT pg_notify(%(channel)s, %(note)s)
"""

_NEXT_WAITING = (
    sa.select(Q.c.id)
    .where(Q.c.queue_name == B("qn"), Q.c.consumer_id.is_(None))
    .order_by(Q.c.rank, Q.c.front.desc(), Q.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the write lock already
    .scalar_subquery()
)
TAKE = (
    Q.update()
    .where(Q.c.id == _NEXT_WAITING)
    .values(consumer_id=B("cid"), leased_at=B("ts"))
    .returning(Q.c.id, Q.c.payload, Q.c.attempts)
)
# reserve_many: the next ``n`` waiting rows in one statement, in TAKE's order (RETURNING gives
# no order: the caller sorts by rank, front, id)
TAKE_MANY = (
    Q.update()
    .where(
        Q.c.id.in_(
            sa.select(Q.c.id)
            .where(Q.c.queue_name == B("qn"), Q.c.consumer_id.is_(None))
            .order_by(Q.c.rank, Q.c.front.desc(), Q.c.id)
            .limit(B("n"))
            .with_for_update(skip_locked=True)
        )
    )
    .values(consumer_id=B("cid"), leased_at=B("ts"))
    .returning(Q.c.id, Q.c.payload, Q.c.attempts, Q.c.rank, Q.c.front)
)
#: PostgreSQL: TAKE_MANY with the queue's next due time read in the same statement (every
#: take asks it, see ``SQLQueue._promote``): one round trip per take instead of two or three.
#: While a delayed task is due it takes nothing (the caller promotes, then takes), so due
#: tasks keep their place in the order. One row at least: ``id`` NULL when nothing was taken.
TAKE_PG = f"""
WITH due AS MATERIALIZED (
    SELECT min(due) AS next FROM "{DL.name}" WHERE queue_name = %(qn)s
), taken AS (
    UPDATE "{Q.name}" SET consumer_id = %(cid)s, leased_at = %(ts)s
    WHERE id IN (
        SELECT id FROM "{Q.name}"
        WHERE queue_name = %(qn)s AND consumer_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM due WHERE next <= %(ts)s)
        ORDER BY rank, front DESC, id
        LIMIT %(n)s::int
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, payload, attempts, rank, front
)
SELECT taken.*, due.next AS next_due FROM due LEFT JOIN taken ON true
"""
#: PostgreSQL: the dead rows of a table by the server's statistics (``SQLQueue.vacuum``)
QUEUE_DEAD_ROWS_PG = "SELECT n_dead_tup AS dead FROM pg_stat_user_tables WHERE relid = to_regclass(%(table)s)"
VACUUM_QUEUE_PG = f'VACUUM (SKIP_LOCKED) "{Q.name}"'
LENGTH = sa.select(sa.func.count()).where(Q.c.queue_name == B("qn"), Q.c.consumer_id.is_(None))
DELETE_TASK = Q.delete().where(Q.c.id == B("row_id"))

# the row is still this lease's: same consumer, and not reaped since (attempts)
_MINE = sa.and_(Q.c.id == B("row_id"), Q.c.consumer_id == B("cid"), Q.c.attempts == B("att"))
ACK = Q.delete().where(_MINE)
#: PostgreSQL: the acks of a batch as one statement (arrays, not a statement per row: the
#: server plans and runs one DELETE, the client binds three arrays)
#: three arrays, psycopg's binary parameters (``driver.run_raw``)
#: (``ACK_MANY_PG_IF`` takes one more condition, ``{only}``: the activity store's joint finish)
ACK_MANY_PG_IF = f"""
DELETE FROM "{Q.name}" q
USING unnest(%(ids)b::bigint[], %(cids)b::text[], %(atts)b::int[]) AS t(id, cid, att)
WHERE q.id = t.id AND q.consumer_id = t.cid AND q.attempts = t.att {{only}}
"""
ACK_MANY_PG = ACK_MANY_PG_IF.format(only="")
_RELEASE = Q.update().where(_MINE).values(consumer_id=None, leased_at=None, front=B("front"))
_released = _RELEASE.returning(Q.c.id).cte("released")
# a row comes back only when the lease was still ours (PostgreSQL: NOTIFY only then)
RELEASE = {
    "sqlite": _RELEASE.returning(Q.c.id),
    "postgresql": sa.select(sa.func.pg_notify(B("channel"), B("note"))).select_from(_released),
}


def _beat(insert: Any) -> Any:
    stmt = insert(C).values(queue_name=B("qn"), consumer_id=B("cid"), heartbeat_at=B("ts"))
    return stmt.on_conflict_do_update(
        index_elements=[C.c.queue_name, C.c.consumer_id],
        set_={"heartbeat_at": stmt.excluded.heartbeat_at},
    )


BEAT = _per_dialect(_beat)
BURY = D.insert().values(
    queue_name=B("qn"), reason=B("reason"), payload=B("payload"), failed_at=B("ts")
).returning(D.c.id)

# -- results --------------------------------------------------------------------------------


def _set_result(insert: Any) -> Any:
    stmt = insert(R).values(key=B("key"), data=B("data"), expires_at=B("exp"))
    return stmt.on_conflict_do_update(
        index_elements=[R.c.key],
        set_={"data": stmt.excluded.data, "expires_at": stmt.excluded.expires_at},
    )


def _claim(insert: Any) -> Any:
    return (
        insert(R)
        .values(key=B("key"), data=b"", expires_at=B("exp"))
        .on_conflict_do_nothing(index_elements=[R.c.key])
        .returning(R.c.key)  # psycopg reports no rowcount for INSERT
    )


SET_RESULT = {
    # REPLACE: a new row, so a new id (see result_table)
    "sqlite": sqlite.insert(R)
    .prefix_with("OR REPLACE")
    .values(key=B("key"), data=B("data"), expires_at=B("exp")),
    "postgresql": NOTIFY.add_cte(_set_result(postgresql.insert).cte("stored")),
}
CLAIM = _per_dialect(_claim)

#: PostgreSQL: a batch of results as one upsert (the keys distinct: one statement may not
#: update a row twice); STAGE_MANY_PG without a NOTIFY (no waiter watches a staged key),
#: SET_MANY_PG with NOTIFY_KEYS_PG; psycopg's binary parameters (``driver.run_raw``)
#: (``UPSERT_MANY_PG_IF`` takes a condition, ``{only}``: the activity store's joint finish)
UPSERT_MANY_PG_IF = f"""
INSERT INTO "{R.name}" (key, data, expires_at)
SELECT key, data, %(exp)b::double precision
FROM unnest(%(keys)b::text[], %(datas)b::bytea[]) AS t(key, data) {{only}}
ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at
"""
_UPSERT_MANY_PG = UPSERT_MANY_PG_IF.format(only="")
STAGE_MANY_PG = _UPSERT_MANY_PG
#: the keys of a CTE ``stored`` in as few NOTIFYs as fit, on the ``results`` channel
#: (``%(channel)b``): each payload a JSON array of keys, about 7,000 bytes at most; one past
#: PostgreSQL's 8,000 (keys full of escapes) goes empty, which wakes every result waiter. Every
#: listening process reads every NOTIFY: one per key was most of the cost of a batch's waking
NOTIFY_KEYS_PG = """(
    SELECT count(pg_notify(%(channel)b, CASE WHEN octet_length(note) < 8000 THEN note ELSE '' END))
    FROM (
        SELECT json_agg(key)::text AS note
        FROM (SELECT key, sum(octet_length(key) + 3) OVER (ROWS UNBOUNDED PRECEDING) / 7000 AS chunk
              FROM stored) AS k
        GROUP BY chunk
    ) AS notes
)"""
SET_MANY_PG = f"WITH stored AS ({_UPSERT_MANY_PG} RETURNING key) SELECT {NOTIFY_KEYS_PG}"


def _schedule_row(insert: Any) -> Any:
    return insert(S).values(queue_name=B("qn"), name=B("name"), spec=B("spec"), updated_at=B("ts"))


def _put_schedule(insert: Any) -> Any:
    stmt = _schedule_row(insert)
    return stmt.on_conflict_do_update(
        index_elements=[S.c.queue_name, S.c.name],
        set_={"spec": stmt.excluded.spec, "updated_at": stmt.excluded.updated_at},
    )


def _add_schedule(insert: Any) -> Any:
    return (
        _schedule_row(insert)
        .on_conflict_do_nothing(index_elements=[S.c.queue_name, S.c.name])
        .returning(S.c.name)  # psycopg reports no rowcount for INSERT
    )


PUT_SCHEDULE = _per_dialect(_put_schedule)
ADD_SCHEDULE = _per_dialect(_add_schedule)
GET_RESULT = sa.select(R.c.data, R.c.expires_at).where(R.c.key == B("key"))
DELETE_RESULT = R.delete().where(R.c.key == B("key"))
#: counters (SQLResults.incr): the row, locked; its new value and lifetime
LOCK_RESULT = sa.select(R.c.data).where(R.c.key == B("key")).with_for_update()
SET_DATA = R.update().where(R.c.key == B("k")).values(data=B("value"), expires_at=B("exp"))
DELETE_EXPIRED_RESULT = R.delete().where(R.c.key == B("key"), R.c.expires_at <= B("ts"))
PURGE_RESULTS = R.delete().where(R.c.expires_at <= B("ts"))

# -- events ---------------------------------------------------------------------------------
PUBLISH = E.insert().values(channel=B("channel"), data=B("data"), created_at=B("ts")).returning(E.c.id)
EVENTS_AFTER = (
    sa.select(E.c.id, E.c.channel, E.c.data).where(E.c.id > B("cursor")).order_by(E.c.id).limit(B("n"))
)
LAST_EVENT = sa.select(sa.func.coalesce(sa.func.max(E.c.id), 0))
TRIM_EVENTS = E.delete().where(E.c.id <= B("upto"))
