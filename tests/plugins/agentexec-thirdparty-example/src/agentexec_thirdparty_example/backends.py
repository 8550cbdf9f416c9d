"""The backends: core's in-process reference semantics under this distribution's own scheme.

A real plugin would talk to its own server here; reusing the memory backends keeps the example
about packaging, which is what it proves.
"""

from __future__ import annotations

from agentexec.memory.queue import MemoryQueue
from agentexec.memory.results import MemoryResults


def _check(url: str) -> str:
    if not url.startswith("thirdparty://"):
        raise ValueError(f"ThirdParty backends take a thirdparty:// URL, got {url!r}")
    return url


class ThirdPartyQueue(MemoryQueue):
    def __init__(self, url: str = "thirdparty://") -> None:
        super().__init__(_check(url))


class ThirdPartyResults(MemoryResults):
    def __init__(self, url: str = "thirdparty://") -> None:
        super().__init__(_check(url))
