"""Reading the Redis streams behind events and result wake-ups."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agentexec_redis.keys import STREAM_MAXLEN

Entry = tuple[str, dict[bytes, bytes]]


async def last_id(r: aioredis.Redis, key: str) -> str:
    """The id of the newest entry (``"0-0"`` for an empty stream): reading after it misses
    nothing added from now on, unlike ``$``, which means "after whatever is newest when the
    XREAD arrives"."""
    newest: Any = await r.xrevrange(key, count=1)
    return _str(newest[0][0]) if newest else "0-0"


async def append(
    r: aioredis.Redis, key: str, fields: dict[str, str], maxlen: int = STREAM_MAXLEN
) -> str:
    entry_id = await r.xadd(key, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
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


async def read_streams(
    r: aioredis.Redis, cursors: dict[str, str], block_ms: int, count: int = 500
) -> list[tuple[str, str, dict[bytes, bytes]]]:
    """``(stream, id, fields)`` of the entries after each stream's cursor, in id order, blocking
    up to ``block_ms`` for the first one (one XREAD for all the streams)."""
    response: Any = await r.xread(cursors, count=count, block=block_ms)  # type: ignore[arg-type]
    if not response:
        return []
    streams = response.items() if isinstance(response, dict) else response
    entries = [
        (_str(name), _str(entry_id), fields) for name, items in streams for entry_id, fields in items
    ]
    if len(cursors) > 1:
        entries.sort(key=lambda entry: parse_id(entry[1]))
    return entries


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream id (``"1700000000000-3"``, or ``"17"`` for ``17-0``) as comparable numbers;
    ``ValueError`` for anything else."""
    ms, _, seq = entry_id.partition("-")
    if not ms.isdigit() or not (seq.isdigit() or seq == ""):
        raise ValueError(f"not a stream id: {entry_id!r}")
    return int(ms), int(seq or 0)


def _before(entry_id: tuple[int, int]) -> str:
    ms, seq = entry_id
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-18446744073709551615" if ms else "0-0"


async def trimmed_after(r: aioredis.Redis, key: str, last_id: str, retention: int) -> str | None:
    """Whether resuming ``key`` after ``last_id`` would silently skip trimmed entries: the id to
    resume from instead (just before the oldest entry kept), or ``None`` when nothing is lost.

    The resume point counts as trimmed away when it is older than the oldest entry kept and the
    stream has dropped entries (Redis 7 counts every entry ever added; before that a stream at
    its length bound is taken to have)."""
    wanted = parse_id(last_id)
    try:
        info: Any = await r.xinfo_stream(key)
    except ResponseError:  # no such stream: nothing was ever trimmed from it
        return None
    first = info.get("first-entry") or info.get(b"first-entry")
    if not first:
        return None
    resume = _before(parse_id(_str(first[0])))
    if wanted >= parse_id(resume):
        return None
    added = info.get("entries-added", info.get(b"entries-added"))
    length = int(info.get("length", info.get(b"length", 0)))
    dropped = int(added) > length if added is not None else length >= retention
    return resume if dropped else None


def text(value: bytes | str) -> str:
    return _str(value)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
