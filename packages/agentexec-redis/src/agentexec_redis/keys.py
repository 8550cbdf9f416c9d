"""Every Redis key agentexec writes, named in one place.

A queue's list keeps its bare name (``CONF.queue_name``), so the spec's health check
``await redis.llen(CONF.queue_name)`` works. Its companion keys (in-flight lists, consumers,
dead letters) start with a hash tag that Redis Cluster hashes exactly like the bare name, so a
Lua script or BLMOVE touching the queue and its companions stays in one slot on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

PREFIX = "agentexec"

#: stream of result-ready notifications that ``RedisResults.wait`` tails: field ``id`` = one
#: agent id, or field ``ids`` = several agent ids, comma-separated (one entry per batch)
RESULTS_DONE = f"{PREFIX}:results:done"
#: the one stream carrying every event channel (worker logs, shutdown, user events)
EVENTS = f"{PREFIX}:events"
#: approximate length bound (``XADD ... MAXLEN ~``) of both streams
STREAM_MAXLEN = 10_000


def _has_hash_tag(name: str) -> bool:
    start = name.find("{")
    return start != -1 and name.find("}", start + 1) > start + 1


def slot_prefix(queue_name: str) -> str:
    """A prefix whose cluster hash slot is the slot of the bare ``queue_name``.

    A name without braces is wrapped in ``{...}``; a name that already has a hash tag is used
    as-is (its tag decides the slot of both). A ``}`` outside a hash tag cannot be wrapped
    (the tag would end early), so such names are refused.
    """
    if not queue_name:
        raise ValueError("queue name must be a non-empty string")
    if _has_hash_tag(queue_name):
        return queue_name
    if "}" in queue_name:
        raise ValueError(
            f"queue name {queue_name!r} contains '}}' outside a {{hash tag}}; its companion keys "
            f"could not share its Redis Cluster slot. Use a name without braces."
        )
    return "{" + queue_name + "}"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    queue: str
    #: sorted set: consumer id -> server time (seconds) of its last heartbeat
    consumers: str
    #: list of dead-letter records (JSON), oldest first
    dead: str
    #: counter that numbers dead letters
    dead_seq: str
    _inflight_prefix: str

    def inflight(self, consumer_id: str) -> str:
        """The list holding what ``consumer_id`` has taken and not yet acknowledged."""
        return self._inflight_prefix + consumer_id


@lru_cache(maxsize=4096)
def queue_keys(queue_name: str) -> QueueKeys:
    tag = slot_prefix(queue_name)
    return QueueKeys(
        queue=queue_name,
        consumers=f"{tag}:consumers",
        dead=f"{tag}:dead",
        dead_seq=f"{tag}:dead:seq",
        _inflight_prefix=f"{tag}:inflight:",
    )


def staged(agent_id: UUID | str) -> str:
    """Where a finished task's outcome waits, unseen by waiters, until it is ``result``."""
    return f"{PREFIX}:staged:{agent_id}"


def result(agent_id: UUID | str) -> str:
    """Where the outcome of one task is stored (with ``CONF.result_ttl``)."""
    return f"{PREFIX}:result:{agent_id}"


def claim(key: str) -> str:
    """A set-if-absent marker (schedulers use it to fire each occurrence once)."""
    return f"{PREFIX}:claim:{key}"


def counter(key: str) -> str:
    """A shared integer counter (``ax.Tracker``)."""
    return f"{PREFIX}:counter:{key}"
