"""Event channels a pool uses, shared with ``agentexec`` CLI commands.

- ``logs:<queue>``: worker log records, a JSON object each (``worker``, ``pool`` (the pool's id),
  ``pid``, ``level`` (the name, ``"INFO"``), ``levelno``, ``logger``, ``message``, ``time``), one
  per message or several in one message as a JSON array (what a worker logged meanwhile);
  the pool's main process prints those of its own workers as ``[Worker N] ...`` (several pools
  may serve one queue). A worker announces its exit with
  ``{"worker": N, "pool": ID, "pid": P, "event": "exit"}``.
- ``control:<queue>``: ``{"action": "shutdown", "pool": <pool id or null>}`` asks the workers of
  that pool (every pool on the queue when ``pool`` is null) to finish their tasks and exit.
"""

from __future__ import annotations

import json
from typing import Any

SHUTDOWN = "shutdown"


def logs_channel(queue_name: str) -> str:
    return f"logs:{queue_name}"


def control_channel(queue_name: str) -> str:
    return f"control:{queue_name}"


def shutdown_message(pool_id: str | None = None) -> str:
    return json.dumps({"action": SHUTDOWN, "pool": pool_id})


def is_shutdown_for(data: str, pool_id: str) -> bool:
    """Whether a control message asks the pool ``pool_id`` to shut down."""
    try:
        msg: Any = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(msg, dict)
        and msg.get("action") == SHUTDOWN
        and msg.get("pool") in (None, pool_id)
    )
