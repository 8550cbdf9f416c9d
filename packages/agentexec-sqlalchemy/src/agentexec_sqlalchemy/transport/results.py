"""Task outcomes in a SQL table, keyed by agent id, with a time to live honoured on read."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentexec_sqlalchemy import driver
from agentexec_sqlalchemy.transport import statements as sql
from agentexec_sqlalchemy.transport.common import SQLTransport
from agentexec_sqlalchemy.transport.models import schedule_table as S
from agentexec_sqlalchemy.transport.notify import RESULTS, channel

#: every this many ``set`` calls also delete the expired rows of the whole table
PURGE_EVERY = 200


class SQLResults(SQLTransport):
    """:class:`agentexec.backends.ResultBackend` on a SQL database.

    ``wait`` wakes on ``set``: a NOTIFY on PostgreSQL; on SQLite the in-process wake-up, else a
    poll backing off from 5 ms to 200 ms.
    """

    def __init__(self, url: str | sa.Engine) -> None:
        super().__init__(url)
        self._sets = itertools.count(1)

    async def set(self, agent_id: UUID, data: bytes, ttl: int) -> None:
        purge = next(self._sets) % PURGE_EVERY == 0
        # relaxed: lost in a database crash (with the ack that follows it, which is written after
        # it), the task simply runs again — at-least-once, like everything else here
        await self.run_write(self._set, str(agent_id), bytes(data), ttl, purge, durable=False)
        self.wake_local("result", str(agent_id))

    async def set_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        """:class:`agentexec.backends.BatchResults`: every outcome in one write operation, each
        as :meth:`set` stores it (its waiters woken after the commit)."""
        if not items:
            return
        rows = self.outcome_rows(items)
        if self.pg_ready and not any(purge for _, _, purge in rows):
            await self.pg_execute(sql.SET_MANY_PG, self._upsert_params(
                [(key, data) for key, data, _ in rows], time.time() + ttl, notify=True
            ))
        else:
            await self.run_write(self._set_rows, rows, ttl, durable=False)
        self.woken(rows)

    async def purge_expired(self) -> None:
        """Delete the expired rows of the whole table now (``set`` does it every
        ``PURGE_EVERY`` calls; the activity store's joint finish on PostgreSQL calls this)."""
        await self.run_write(lambda conn: conn.execute(sql.PURGE_RESULTS, {"ts": time.time()}), durable=False)

    def outcome_rows(self, items: Sequence[tuple[UUID, bytes]]) -> list[tuple[str, bytes, bool]]:
        """``(key, data, purge)`` of each outcome, for :meth:`_set_rows` (``set_many``, and the
        activity store's joint finish, which runs it in its own transaction)."""
        return [(str(a), bytes(d), next(self._sets) % PURGE_EVERY == 0) for a, d in items]

    def woken(self, rows: list[tuple[str, bytes, bool]]) -> None:
        """After the commit of :meth:`_set_rows`: wake this process's waiters of ``rows``."""
        for key, _, _ in rows:
            self.wake_local("result", key)

    def _set_rows(self, conn: Connection, rows: list[tuple[str, bytes, bool]], ttl: int) -> None:
        now = time.time()
        if self.is_sqlite:
            self._store(conn, [{"key": key, "data": data, "exp": now + ttl} for key, data, _ in rows])
        else:
            self._upsert_many(conn, sql.SET_MANY_PG, [(key, data) for key, data, _ in rows], now + ttl, notify=True)
        if any(purge for _, _, purge in rows):
            conn.execute(sql.PURGE_RESULTS, {"ts": now})

    def _set(self, conn: Connection, key: str, data: bytes, ttl: int, purge: bool) -> None:
        now = time.time()
        params: dict[str, object] = {"key": key, "data": data, "exp": now + ttl}
        if not self.is_sqlite:
            params.update(self.note("result", key))
        conn.execute(self.dialect_sql(sql.SET_RESULT), params)
        if purge:
            conn.execute(sql.PURGE_RESULTS, {"ts": now})

    async def get(self, agent_id: UUID) -> bytes | None:
        return await self._fetch(str(agent_id))

    async def stage_many(self, items: Sequence[tuple[UUID, bytes]], ttl: int) -> None:
        """:class:`agentexec.backends.StagedResults`: rows keyed ``staged:<agent_id>``, which no
        waiter watches; relaxed, like ``set``."""
        if not items:
            return
        rows = [(f"staged:{a}", bytes(d)) for a, d in items]
        if self.pg_ready:
            await self.pg_execute(sql.STAGE_MANY_PG, self._upsert_params(rows, time.time() + ttl, notify=False))
        else:
            await self.run_write(self._stage, rows, ttl, durable=False)

    def _stage(self, conn: Connection, rows: list[tuple[str, bytes]], ttl: int) -> None:
        exp = time.time() + ttl
        if not self.is_sqlite:
            self._upsert_many(conn, sql.STAGE_MANY_PG, rows, exp, notify=False)
            return
        self._store(conn, [{"key": key, "data": data, "exp": exp} for key, data in rows])

    def _upsert_many(
        self, conn: Connection, stmt: str, rows: list[tuple[str, bytes]], exp: float, notify: bool
    ) -> None:
        """PostgreSQL: ``rows`` in one statement, in ``conn``'s transaction."""
        driver.run_raw(conn, stmt, self._upsert_params(rows, exp, notify))

    def _upsert_params(self, rows: list[tuple[str, bytes]], exp: float, notify: bool) -> dict[str, object]:
        """The last value of a key the batch repeats wins, as one statement per row would leave
        it (one statement may not update a row twice)."""
        latest = dict(rows)
        params: dict[str, object] = {"keys": list(latest), "datas": list(latest.values()), "exp": exp}
        if notify:
            params["channel"] = channel(RESULTS)
        return params

    def _store(self, conn: Connection, params: list[dict[str, object]]) -> None:
        """SQLite: the rows, one ``INSERT OR REPLACE`` each (PostgreSQL: :meth:`_upsert_many`)."""
        driver.run_many(conn, sql.SET_RESULT["sqlite"], params)

    async def staged(self, agent_id: UUID) -> bytes | None:
        return await self._fetch(f"staged:{agent_id}")


    async def _fetch(self, key: str) -> bytes | None:
        value, expired = await self.run(self._get, key)
        if expired:  # forget it now rather than at the next purge
            await self.run_write(self._delete_expired, key)
        return value

    def _get(self, key: str) -> tuple[bytes | None, bool]:
        """The live value, and whether an expired one is stored."""
        with self.read() as conn:
            row = conn.execute(sql.GET_RESULT, {"key": key}).first()
        if row is None:
            return None, False
        if row.expires_at <= time.time():
            return None, True
        return bytes(row.data), False

    def _delete_expired(self, conn: Connection, key: str) -> None:
        conn.execute(sql.DELETE_EXPIRED_RESULT, {"key": key, "ts": time.time()})

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        key = str(agent_id)

        async def attempt() -> bytes | None:
            return await self._fetch(key)

        value = await self.wait_for("result", key, attempt, timeout)
        if value is None:
            raise TimeoutError(f"no result for {agent_id} within {timeout}s")
        return value

    async def delete(self, agent_id: UUID) -> None:
        await self.run_write(self._delete, str(agent_id))

    def _delete(self, conn: Connection, key: str) -> None:
        conn.execute(sql.DELETE_RESULT, {"key": key})

    async def schedule_records(self, queue_name: str) -> dict[str, str]:
        """:class:`agentexec.backends.ScheduleRecords`: the ``{prefix}schedule`` table."""
        return await self.run(self._schedule_records, queue_name)

    def _schedule_records(self, queue_name: str) -> dict[str, str]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(S.c.name, S.c.spec).where(S.c.queue_name == queue_name)
            ).all()
        return {row.name: row.spec for row in rows}

    async def put_schedule_record(self, queue_name: str, name: str, spec: str) -> None:
        await self.run_write(self._put_schedule, queue_name, name, spec)

    def _put_schedule(self, conn: Connection, queue_name: str, name: str, spec: str) -> None:
        # one upsert: an update-then-insert lets two concurrent writers of a new name both
        # insert, and the second fails on the primary key
        params = {"qn": queue_name, "name": name, "spec": spec, "ts": time.time()}
        conn.execute(self.dialect_sql(sql.PUT_SCHEDULE), params)

    async def add_schedule_record(self, queue_name: str, name: str, spec: str) -> bool:
        return await self.run_write(self._add_schedule, queue_name, name, spec)

    def _add_schedule(self, conn: Connection, queue_name: str, name: str, spec: str) -> bool:
        params = {"qn": queue_name, "name": name, "spec": spec, "ts": time.time()}
        return conn.execute(self.dialect_sql(sql.ADD_SCHEDULE), params).first() is not None

    async def delete_schedule_record(self, queue_name: str, name: str) -> bool:
        return await self.run_write(self._delete_schedule, queue_name, name)

    def _delete_schedule(self, conn: Connection, queue_name: str, name: str) -> bool:
        gone = conn.execute(S.delete().where(S.c.queue_name == queue_name, S.c.name == name))
        return bool(gone.rowcount)

    async def claim(self, key: str, ttl: int) -> bool:
        return await self.run_write(self._claim, f"claim:{key}", ttl)

    def _claim(self, conn: Connection, key: str, ttl: int) -> bool:
        now = time.time()
        # an expired claim no longer counts; the unique key then lets exactly one insert win
        conn.execute(sql.DELETE_EXPIRED_RESULT, {"key": key, "ts": now})
        won = conn.execute(self.dialect_sql(sql.CLAIM), {"key": key, "exp": now + ttl}).first()
        return won is not None

    async def incr(self, key: str, amount: int, ttl: int) -> int:
        """:class:`agentexec.backends.Counters`: a row ``counter:<key>`` of the results table
        (its value as decimal text), read and written under the row lock (PostgreSQL) or the
        write lock (SQLite) of one transaction."""
        return await self.run_write(self._incr, f"counter:{key}", int(amount), ttl)

    def _incr(self, conn: Connection, key: str, amount: int, ttl: int) -> int:
        now = time.time()
        conn.execute(sql.DELETE_EXPIRED_RESULT, {"key": key, "ts": now})
        conn.execute(self.dialect_sql(sql.CLAIM), {"key": key, "exp": now + ttl})  # 0 if absent
        row = conn.execute(sql.LOCK_RESULT, {"key": key}).first()
        value = (_as_int(row.data) if row is not None else 0) + amount
        conn.execute(sql.SET_DATA, {"k": key, "value": str(value).encode(), "exp": now + ttl})
        return value

    async def counter(self, key: str) -> int:
        value = await self._fetch(f"counter:{key}")
        return _as_int(value) if value is not None else 0

    async def close(self) -> None:
        """This loop's async connections; the engine is the process's, shared with the
        activity store."""
        if self._pg is not None:
            await self._pg.close()


def _as_int(data: bytes) -> int:
    """A counter row's value; a claim marker (what ``CLAIM`` inserts) reads as 0."""
    try:
        return int(bytes(data).decode())
    except ValueError:
        return 0
