"""Whether a worker may take another task: every backend it writes to answers, and not too many
finished tasks wait for their outcome and acknowledgement.

Nothing runs that cannot be recorded (:mod:`agentexec.faults`): a write that fails because its
backend is unreachable is kept and tried again by whoever made it (the line writer, the outbox,
a redelivery check), and meanwhile :meth:`Health.ready` holds the worker back. Each outage is
logged once, and once more when it ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from agentexec.backends import ActivityStore, QueueBackend, ResultBackend
from agentexec.backoff import Backoff
from agentexec.faults import Outage, is_transient

#: what a worker says it does while a backend it writes to is unreachable
WAITING = (
    "this worker takes no new task until it can write again (its finished tasks wait, their "
    "slots taken); retrying"
)
#: waits between tries of a write while its backend is unreachable
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0


def write_backoff() -> Backoff:
    """The waits of one write while its backend is unreachable."""
    return Backoff(FIRST_BACKOFF, MAX_BACKOFF)


class Health:
    """The outages of the three backends a worker writes to, and the count of leases it holds
    that are finished but not yet acknowledged."""

    def __init__(self, activity: ActivityStore, results: ResultBackend, queue: QueueBackend) -> None:
        self.activity_down = Outage(f"the activity store ({type(activity).__name__})", WAITING)
        self.results_down = Outage(f"the results backend ({type(results).__name__})", WAITING)
        self.queue_down = Outage(f"the queue ({type(queue).__name__})", WAITING)
        self._activity = activity
        self._results = results
        #: leases submitted (to be acknowledged or given back) and not yet ended
        self.unfinished = 0
        #: how many may wait before ``ready`` holds the worker back (None: no bound)
        self.max_unfinished: int | None = None
        self._progress = anyio.Event()

    @property
    def down(self) -> list[str]:
        """What this worker cannot write to right now."""
        return [o.what for o in (self.activity_down, self.results_down, self.queue_down) if o.down]

    @property
    def accepting(self) -> bool:
        """Whether the worker may take another task."""
        if self.activity_down.down or self.results_down.down or self.queue_down.down:
            return False
        return self.max_unfinished is None or self.unfinished < self.max_unfinished

    async def ready(self) -> None:
        """Returns once the worker may take another task (:attr:`accepting`)."""
        while not self.accepting:
            await self._progress.wait()

    def changed(self) -> None:
        """Something :attr:`accepting` depends on changed: wake whoever waits in :meth:`ready`."""
        self._progress.set()
        self._progress = anyio.Event()

    async def outage(self, outage: Outage, exc: BaseException, wait: Backoff) -> None:
        """A write failed because ``outage``'s backend cannot write now: say so once, stop
        taking tasks, and wait before the next try."""
        if outage.failed(exc):
            self.changed()
        await wait.sleep()

    def recovered(self, outage: Outage) -> None:
        if outage.down and outage.ok():
            self.changed()

    async def write(self, call: Callable[[], Awaitable[object]], backend: object, outage: Outage) -> Exception | None:
        """``await call()`` until it succeeds (``None``), waiting out ``outage`` while
        ``backend`` is unreachable; an error of another kind (the backend refusing the data) is
        returned for the caller to handle."""
        wait = write_backoff()
        while True:
            try:
                await call()
            except Exception as exc:
                if is_transient(exc, backend):
                    await self.outage(outage, exc, wait)
                    continue
                return exc
            self.recovered(outage)
            return None

    def read_failed(self, exc: BaseException, results: bool = False) -> bool:
        """A read of the activity store (or of the results backend) failed, outside the
        writers: when the backend is unreachable, the worker holds back as for a failed write
        (said once) and True is returned; :meth:`read_ok` once a read succeeds again."""
        backend, outage = (self._results, self.results_down) if results else (self._activity, self.activity_down)
        if not is_transient(exc, backend):
            return False
        if outage.failed(exc):
            self.changed()
        return True

    def read_ok(self, results: bool = False) -> None:
        self.recovered(self.results_down if results else self.activity_down)
