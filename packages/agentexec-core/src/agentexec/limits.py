"""Size limits (``CONF.max_*_bytes``) and the three event streams.

- Worker log messages and activity messages longer than their limit are cut, and say so
  (:func:`truncate`): a log line must never be lost for being long, nor fill a server.
- An event or a result larger than its limit is refused with :class:`TooLargeError`: cutting
  one would hand its reader something it cannot parse.
- Event channels live in three streams: ``logs:<queue>`` channels (worker log records, many and
  bursty) in the *logs* stream, ``control:*`` channels (cancel requests, shutdown broadcasts,
  schedule changes: few) in the *control* stream, every other channel (``events:*``, lifecycle
  events included) in the *events* stream, each with its own retention (:func:`retention`), so a
  burst of logs can never push an event out of what a subscriber can resume from, nor a burst of
  events a control message; and a subscriber of ``control:*`` channels (every worker listens for
  ``control:cancel``) reads the control stream only, not every lifecycle event of the bus.
- Many small messages of one channel travel as one, a JSON array (:func:`pack`,
  :func:`joined`), of at most a count and about ``CONF.max_event_bytes``.

See docs/operations.md ("Limits").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Stream = Literal["logs", "events", "control"]

#: channels of the logs stream start with this (``agentexec.worker.channels.logs_channel``)
LOGS_PREFIX = "logs:"
#: channels of the control stream start with this (``agentexec.cancellation.CANCEL_CHANNEL``,
#: ``agentexec.worker.channels.control_channel``, ``agentexec.schedule.changes``)
CONTROL_PREFIX = "control:"
#: the streams, each with the prefix of its channels (*events*: every other channel)
STREAMS: tuple[Stream, ...] = ("events", "logs", "control")
_PREFIXES: tuple[tuple[str, Stream], ...] = ((LOGS_PREFIX, "logs"), (CONTROL_PREFIX, "control"))


class TooLargeError(ValueError):
    """A message over its size limit (``what`` is ``"event"``, ``"result"`` ...)."""

    def __init__(self, what: str, size: int, limit: int, setting: str) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        self.setting = setting
        super().__init__(
            f"{what} too large: {size:,} bytes, over the limit of {limit:,} "
            f"(AGENTEXEC_{setting.upper()})"
        )


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (a lone surrogate counts as the 3 bytes it would take)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its start followed by
    ``… [truncated: N bytes in all]``, the whole within ``limit`` bytes."""
    if len(text) <= limit // 4:  # fits whatever its characters (4 bytes at most each)
        return text
    size = utf8_size(text)
    if size <= limit:
        return text
    marker = f"… [truncated: {size:,} bytes in all]"
    room = max(0, limit - utf8_size(marker))
    head = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return head + marker


def check_size(what: str, size: int, limit: int, setting: str) -> None:
    if size > limit:
        raise TooLargeError(what, size, limit, setting)


def stream_of(channel: str) -> Stream:
    """The stream a channel's messages go to."""
    if channel.startswith(LOGS_PREFIX):
        return "logs"
    if channel.startswith(CONTROL_PREFIX):
        return "control"
    return "events"


def retention(stream: Stream) -> int:
    """The messages a stream keeps for replay: ``CONF.logs_retention`` for the logs,
    ``CONF.events_retention`` for each of the other two."""
    from agentexec.config import CONF

    return CONF.logs_retention if stream == "logs" else CONF.events_retention


def streams_for(patterns: Iterable[str]) -> set[Stream]:
    """The streams a subscription to ``patterns`` (``fnmatch`` patterns) must read."""
    found: set[Stream] = set()
    for pattern in patterns:
        literal = pattern
        for i, char in enumerate(pattern):
            if char in "*?[":
                literal = pattern[:i]
                break
        else:  # an exact channel
            found.add(stream_of(pattern))
            continue
        for prefix, stream in _PREFIXES:
            if literal.startswith(prefix):
                found.add(stream)
                break
        else:  # "*", "l*", "c*", "log?:x": the events stream, and each whose prefix it may match
            found.add("events")
            found.update(stream for prefix, stream in _PREFIXES if prefix.startswith(literal))
    return found


def pack(messages: Iterable[str], limit: int, most: int) -> list[list[str]]:
    """``messages`` (each one JSON value) in order, in groups of at most ``most`` and about
    ``limit`` bytes (a larger message goes alone): each group is one message (:func:`joined`)."""
    groups: list[list[str]] = []
    group: list[str] = []
    size = 0
    for message in messages:
        if group and (len(group) >= most or size + len(message) > limit):
            groups.append(group)
            group, size = [], 0
        group.append(message)
        size += len(message) + 1
    if group:
        groups.append(group)
    return groups


def joined(group: list[str]) -> str:
    """One message made of ``group``: its only message, or a JSON array of them."""
    return group[0] if len(group) == 1 else "[" + ",".join(group) + "]"
