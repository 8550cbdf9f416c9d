"""Every Redis key agentexec writes, named in one place.

A queue's list keeps its bare name (``CONF.queue_name``), so the spec's health check
``await redis.llen(CONF.queue_name)`` works. Its companion keys (in-flight lists, consumers,
dead letters) start with a hash tag that Redis Cluster hashes exactly like the bare name, so a
Lua script or BLMOVE touching the queue and its companions stays in one slot on a cluster; no
two queue names share a companion key (:func:`slot_prefix`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

PREFIX = "agentexec"

#: stream of result-ready notifications that ``RedisResults.wait`` tails: field ``id`` = one
#: agent id, or field ``ids`` = several agent ids, comma-separated (one entry per batch)
RESULTS_DONE = f"{PREFIX}:results:done"
#: the stream of every event channel but worker logs and control channels (user events,
#: lifecycle events);
#: trimmed to about ``CONF.events_retention`` entries
EVENTS = f"{PREFIX}:events"
#: the stream of worker log channels (``logs:<queue>``), trimmed to about
#: ``CONF.logs_retention`` on its own, so logs never evict events. Its hash tag is the events
#: stream's name: both are in one cluster slot, so one XREAD reads both.
LOGS = "{" + EVENTS + "}:logs"
#: the stream of control channels (``control:*``: cancel requests, shutdown broadcasts,
#: schedule changes), trimmed to about ``CONF.events_retention`` on its own: a worker's
#: ``control:cancel`` listener reads this one, not every lifecycle event. Same hash tag.
CONTROL = "{" + EVENTS + "}:control"
#: the last event id given out in any of the three streams: ids are issued in one sequence
#: across them (:data:`agentexec_redis.events.PUBLISH`), so one ``last_id`` resumes each exactly
EVENT_SEQ = "{" + EVENTS + "}:seq"
#: approximate length bound (``XADD ... MAXLEN ~``) of the result-ready stream
STREAM_MAXLEN = 10_000


def _hash_tag(name: str) -> str | None:
    """What Redis Cluster hashes for ``name`` when it has a hash tag: the text between its
    first ``{`` and the first ``}`` after it, if that is not empty; else ``None``."""
    start = name.find("{")
    if start == -1:
        return None
    end = name.find("}", start + 1)
    return name[start + 1:end] if end > start + 1 else None


#: a key of this shape is a companion key (below), so no queue may be named so
_COMPANION = re.compile(r"\{[^}]*\}(:(consumers|dead|dead:seq|delayed|held|parked|keys|inflight:.*|lock:.*|park:.*)|#\d+:.*)", re.DOTALL)
#: agentexec's other keys: a queue of that name would push onto a stream or a result
_RESERVED = re.compile(
    rf"{PREFIX}:(events|results:done|result:.*|staged:.*|claim:.*)|\{{{PREFIX}:events\}}:(logs|seq)",
    re.DOTALL,
)


def slot_prefix(queue_name: str) -> str:
    """The prefix of ``queue_name``'s companion keys: in the cluster hash slot of the bare
    ``queue_name``, and different for every queue name.

    - A name without braces is wrapped: ``jobs`` -> ``{jobs}`` (so ``{jobs}:inflight:w1``).
    - A name with braces is spelled out after its slot's tag and its length:
      ``{tenant}jobs`` -> ``{tenant}#11:{tenant}jobs``, and ``{a}`` -> ``{a}#3:{a}``. Only a
      wrapped name is followed by ``:``, and a length says where the name ends, so the
      queues ``a`` and ``{a}`` (or any two names) never share a key.

    A ``}`` outside a hash tag cannot be put in any hash tag, so such names are refused, as are
    names that are themselves one of agentexec's keys (a companion key, the events stream ...).
    """
    if not queue_name:
        raise ValueError("queue name must be a non-empty string")
    if _COMPANION.fullmatch(queue_name) or _RESERVED.fullmatch(queue_name):
        raise ValueError(
            f"queue name {queue_name!r} is the name of one of agentexec's own Redis keys; "
            f"choose another name"
        )
    if "{" not in queue_name and "}" not in queue_name:
        return "{" + queue_name + "}"
    tag = _hash_tag(queue_name)
    if tag is None:
        if "}" in queue_name:
            raise ValueError(
                f"queue name {queue_name!r} contains '}}' outside a {{hash tag}}; its companion "
                f"keys could not share its Redis Cluster slot. Use a name without braces."
            )
        tag = queue_name  # a lone '{': the whole name is hashed
    return f"{{{tag}}}#{len(queue_name)}:{queue_name}"


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
    #: sorted set of tasks waiting for their due time (score: server seconds); each member is
    #: ``H:`` or ``L:`` (its priority) and the payload
    delayed: str
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
        delayed=f"{tag}:delayed",
        _inflight_prefix=f"{tag}:inflight:",
    )


def staged(agent_id: UUID | str) -> str:
    """Where a finished task's outcome waits, unseen by waiters, until it is ``result``."""
    return f"{PREFIX}:staged:{agent_id}"


def result(agent_id: UUID | str) -> str:
    """Where the outcome of one task is stored (with ``CONF.result_ttl``)."""
    return f"{PREFIX}:result:{agent_id}"


def schedules(queue_name: str) -> str:
    """The hash of the runtime schedules of ``queue_name`` (name -> JSON)."""
    return f"{PREFIX}:schedules:{queue_name}"


def claim(key: str) -> str:
    """A set-if-absent marker (schedulers use it to fire each occurrence once)."""
    return f"{PREFIX}:claim:{key}"


def counter(key: str) -> str:
    """A shared integer counter (``ax.Tracker``)."""
    return f"{PREFIX}:counter:{key}"
