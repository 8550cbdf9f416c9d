"""A stop asked for while ``agentexec run`` is still starting (importing the app, checking its
backends): the pool does not start, and the command exits 0, as a stop once it runs would.

Without it, a SIGTERM in the first second or so (a deploy that is rolled back at once, a test
that stops what it just started) met Python's default action and ended the command with -15.
:func:`catch` is installed first thing by ``agentexec run``; :meth:`Pool.run
<agentexec.worker.pool.Pool.run>` installs its own handlers, then looks at :data:`REQUESTED`.
A second signal during start-up acts as it would without this (Ctrl+C twice interrupts an
import that hangs).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

#: a SIGTERM or SIGINT came before the pool's own handlers were installed
REQUESTED = threading.Event()


def _caught(signum: int, frame: Any) -> None:
    if REQUESTED.is_set():  # the second: what it would have done without us
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
        os.kill(os.getpid(), signum)
        return
    REQUESTED.set()


def catch() -> None:
    """Note SIGTERM and SIGINT from now on, until the pool installs its own handlers."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _caught)
