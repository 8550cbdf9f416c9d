"""Connections whose writes cost no task of their own.

redis-py (5.x to 8.x) sends every command of a connection that has a socket timeout (redis-py 8
sets 5 s by default) through ``asyncio.wait_for``, which on Python 3.11 wraps the write in a new
task that runs on the next turn of the event loop: measured ~30-60 us of CPU and one loop turn
more per command, for a write that almost never waits (the socket takes the bytes at once).
These connections write, and wait with the socket timeout only when the transport holds bytes
back (its buffer is over the high-water mark and ``drain`` would block). Failures are raised
as redis-py raises them (``TimeoutError`` writing, ``ConnectionError`` on an OS error, the
connection dropped either way); everything else, the read timeout included, is redis-py's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _DirectSend:
    """Mixin over a ``redis.asyncio`` connection class (see the module doc)."""

    socket_timeout: float | None
    is_connected: bool

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        writer: Any = getattr(self, "_writer", None)
        timeout = self.socket_timeout
        if not timeout or writer is None or not self.is_connected:
            # no timeout to pay for, or a (re)connect first: redis-py's own path
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if check_health:
            await self.check_health()  # type: ignore[attr-defined]
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            writer.writelines(command)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await writer.drain()
            else:
                await writer.drain()  # nothing held back: returns without waiting
        except TimeoutError:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            if len(e.args) == 1:
                err_no, errmsg = "UNKNOWN", e.args[0]
            else:
                err_no, errmsg = e.args[0], e.args[1]
            raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            # a write cut off midway leaves the connection unusable (as redis-py decides)
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise


class Connection(_DirectSend, aioredis.Connection):
    pass


class SSLConnection(_DirectSend, aioredis.SSLConnection):
    pass


class UnixDomainSocketConnection(_DirectSend, aioredis.UnixDomainSocketConnection):
    pass


_DIRECT: dict[type[Any], type[Any]] = {
    aioredis.Connection: Connection,
    aioredis.SSLConnection: SSLConnection,
    aioredis.UnixDomainSocketConnection: UnixDomainSocketConnection,
}


def direct_send(pool: aioredis.ConnectionPool) -> aioredis.ConnectionPool:
    """``pool``, making its connections with the matching class above (a class the URL chose
    that is not one of redis-py's three is kept)."""
    pool.connection_class = _DIRECT.get(pool.connection_class, pool.connection_class)
    return pool
