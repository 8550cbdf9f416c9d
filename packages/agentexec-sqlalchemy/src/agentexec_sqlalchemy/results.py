"""Task outcomes in a SQL table, keyed by agent id, with a time to live honoured on read."""

from __future__ import annotations

import itertools
import time
from uuid import UUID

import sqlalchemy as sa

from agentexec_sqlalchemy import _statements as sql
from agentexec_sqlalchemy._transport import SQLTransport

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
        await self.run(self._set, str(agent_id), bytes(data), ttl, purge)
        self.wake_local("result", str(agent_id))

    def _set(self, key: str, data: bytes, ttl: int, purge: bool) -> None:
        now = time.time()
        params: dict[str, object] = {"key": key, "data": data, "exp": now + ttl}
        if not self.is_sqlite:
            params.update(self.note("result", key))
        with self.autocommit() as conn:
            # one statement (the upsert, and on PostgreSQL its NOTIFY): atomic without BEGIN
            conn.execute(self.dialect_sql(sql.SET_RESULT), params)
            if purge:
                conn.execute(sql.PURGE_RESULTS, {"ts": now})

    async def get(self, agent_id: UUID) -> bytes | None:
        return await self.run(self._get, str(agent_id))

    def _get(self, key: str) -> bytes | None:
        with self.read() as conn:
            row = conn.execute(sql.GET_RESULT, {"key": key}).first()
        if row is None:
            return None
        if row.expires_at <= time.time():
            with self.autocommit() as conn:  # expired: forget it now, not at the next purge
                conn.execute(sql.DELETE_EXPIRED_RESULT, {"key": key, "ts": time.time()})
            return None
        return bytes(row.data)

    async def wait(self, agent_id: UUID, timeout: float) -> bytes:
        key = str(agent_id)

        async def attempt() -> bytes | None:
            return await self.run(self._get, key)

        value = await self.wait_for("result", key, attempt, timeout)
        if value is None:
            raise TimeoutError(f"no result for {agent_id} within {timeout}s")
        return value

    async def delete(self, agent_id: UUID) -> None:
        await self.run(self._delete, str(agent_id))

    def _delete(self, key: str) -> None:
        with self.autocommit() as conn:
            conn.execute(sql.DELETE_RESULT, {"key": key})

    async def claim(self, key: str, ttl: int) -> bool:
        return await self.run(self._claim, f"claim:{key}", ttl)

    def _claim(self, key: str, ttl: int) -> bool:
        now = time.time()
        with self.autocommit() as conn:
            # an expired claim no longer counts; the primary key then lets exactly one insert win
            conn.execute(sql.DELETE_EXPIRED_RESULT, {"key": key, "ts": now})
            won = conn.execute(self.dialect_sql(sql.CLAIM), {"key": key, "exp": now + ttl}).first()
        return won is not None

    async def close(self) -> None:
        """Nothing to release: the engine is the process's, shared with the activity store."""
        return None
