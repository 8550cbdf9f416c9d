"""``get_redis()``, ``get_redis_sync()`` and ``close_redis()``, provided by ``agentexec-redis``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentexec._lazy_module import plugin_getattr

if TYPE_CHECKING:
    from agentexec_redis.client import close_redis, get_redis, get_redis_sync  # noqa: TID251

__all__ = ["close_redis", "get_redis", "get_redis_sync"]
__getattr__ = plugin_getattr(__name__, "redis", tuple(__all__))
