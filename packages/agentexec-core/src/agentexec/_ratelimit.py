"""Warnings that repeat are logged at most once per interval, with a count of the rest.

A flood of one warning (a poison message read by every subscriber, a backend down) would bury
the line an operator needs; each *kind* of warning prints once per :data:`INTERVAL` and the next
line says how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time

#: seconds between two lines of the same kind
INTERVAL = 10.0


class RateLimited:
    """``RateLimited(logger).warning(key, msg, *args)``: at most one line per ``key`` per
    ``interval`` seconds; the next one printed ends with how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log unless a line of ``key`` was logged less than ``interval`` ago; True if logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += f" ({suppressed} more like this in the last {self.interval:.0f}s+ not shown)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, msg, *args)
