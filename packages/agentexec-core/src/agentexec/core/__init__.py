"""Documented module paths whose contents an adapter provides (``agentexec.core.redis_client``,
``agentexec.core.db``)."""
