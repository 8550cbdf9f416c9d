"""The outbox's safety copy: a finished task's outcome, staged the moment its handler returns.

The outbox writes a finished task's final line, then its outcome, then its ack; until the line
commits, the outcome cannot be published (``ax.get_result`` must not return before the activity
says COMPLETE). A worker killed in that window used to cost a second run of the handler. So the
outcome is also *staged* at once (:class:`agentexec.backends.StagedResults`, where the results
backend offers it), in one round trip per turn of the event loop, beside the line's commit: the
worker that gets the task again finishes it from the staged copy instead of running it again.

Where the store finishes jointly (the final line, the outcome and the ack commit together: the
embedded SQLite and PostgreSQL-only stacks), only a handler that ran ``STAGE_AFTER`` seconds or
more is staged: there the window is one commit, and a shorter handler costs less to run again,
in the rare crash inside it, than a write of every outcome costs (for many short tasks, about
a tenth of the worker's and of the database's time per task). Elsewhere every outcome is
staged: the outcome's own write comes after the line's, so the window is wider.

Staging is best effort: a failure is logged and the task's finish goes on as before.
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

import anyio

from agentexec.backends import ResultBackend, StagedResults
from agentexec.config import CONF
from agentexec.faults import Outage, describe
from agentexec.worker.writer import GATHER_LINGER, GATHER_MIN, GATHER_WINDOW

log = logging.getLogger("agentexec.worker")

#: a handler that ran at least this many seconds has its outcome staged
STAGE_AFTER = 0.05


class Stager:
    def __init__(self, results: ResultBackend, every: bool = True) -> None:
        #: stage every outcome (False: only those of handlers that ran ``STAGE_AFTER`` or more)
        self.every = every
        self._stage_many = results.stage_many if isinstance(results, StagedResults) else None
        self._down = Outage(
            f"the results backend ({type(results).__name__}), for staging outcomes",
            "finished tasks are not staged meanwhile (a worker killed before their outcome is "
            "stored costs a run again)",
        )
        self._pending: list[tuple[UUID, bytes]] = []
        self._wake = anyio.Event()

    def add(self, agent_id: UUID, data: bytes, began: float | None = None) -> None:
        """Stage the outcome of a handler that started at ``began`` (monotonic seconds; None:
        no handler ran), if the policy above wants it."""
        if not self.every and (began is None or time.monotonic() - began < STAGE_AFTER):
            return
        if self._stage_many is not None:
            self._pending.append((agent_id, data))
            self._wake.set()

    async def run(self) -> None:
        """Stage what was added, one call per batch, until cancelled."""
        if self._stage_many is None:
            return
        last = 0.0
        while True:
            await self._wake.wait()
            if len(self._pending) < GATHER_MIN and time.monotonic() - last < GATHER_WINDOW:
                await anyio.sleep(GATHER_LINGER)  # as the writer does: see writer.GATHER_MIN
            last = time.monotonic()
            self._wake = anyio.Event()
            batch, self._pending = self._pending, []
            try:
                await self._stage_many(batch, CONF.result_ttl)
            except Exception as exc:
                if not self._down.failed(exc):
                    log.debug("staging %d outcome(s) failed (%s)", len(batch), describe(exc))
            else:
                self._down.ok()
