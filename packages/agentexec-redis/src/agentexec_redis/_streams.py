"""Reading the Redis streams behind events and result wake-ups."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from agentexec_redis.keys import STREAM_MAXLEN

Entry = tuple[str, dict[bytes, bytes]]


async def last_id(r: aioredis.Redis, key: str) -> str:
    """The id of the newest entry (``"0-0"`` for an empty stream): reading after it misses
    nothing added from now on, unlike ``$``, which means "after whatever is newest when the
    XREAD arrives"."""
    newest: Any = await r.xrevrange(key, count=1)
    return _str(newest[0][0]) if newest else "0-0"


async def append(r: aioredis.Redis, key: str, fields: dict[str, str]) -> str:
    entry_id = await r.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    return _str(entry_id)


async def read_after(
    r: aioredis.Redis, key: str, cursor: str, block_ms: int, count: int = 500
) -> list[Entry]:
    """Entries after ``cursor``, blocking up to ``block_ms`` for the first one."""
    response: Any = await r.xread({key: cursor}, count=count, block=block_ms)
    if not response:
        return []
    streams = response.items() if isinstance(response, dict) else response
    entries: list[Entry] = []
    for _name, items in streams:
        for entry_id, fields in items:
            entries.append((_str(entry_id), fields))
    return entries


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
