"""Change notices of the runtime schedules, so a pool reads the schedule store only when it
changed instead of once a tick.

Whoever writes a queue's schedule records (``ax.schedules.create/update/delete``, the HTTP API,
a pool upserting its code's schedules at start) publishes a notice on the event backend, channel
``control:schedules:<queue>``. Every pool's scheduler subscribes to it before its first read
(:class:`ScheduleWatch`): a notice marks the records stale and wakes the scheduler at once, so a
change takes effect in every running pool within one tick, as before, while an idle pool whose
schedules do not change reads the store once at start and then once every ``RESYNC`` seconds
(a safety net for a notice lost with a writer that died between its write and its notice).

Should the subscription fail (an event backend that is down), the scheduler reads the store
every tick until it is subscribed again.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from agentexec.backends import EventBackend
from agentexec.backoff import Backoff
from agentexec.faults import describe

log = logging.getLogger("agentexec.schedule")

CHANNEL_PREFIX = "control:schedules:"
#: seconds between two reads of an unchanged schedule store (the safety net)
RESYNC = 60.0
#: wait before subscribing again after the subscription failed
RETRY = 1.0


def channel(queue_name: str) -> str:
    return CHANNEL_PREFIX + queue_name


async def announce(events: EventBackend, queue_name: str, name: str) -> None:
    """Tell every pool on ``queue_name`` that its schedule ``name`` changed. Never raises: the
    write is done; pools that miss the notice see it at their next resync."""
    try:
        await events.publish(channel(queue_name), name)
    except Exception as exc:
        log.warning("schedules: the change of %r was written but its notice failed (%s); pools "
                    "pick it up within %g s", name, describe(exc), RESYNC)


class ScheduleWatch:
    """Whether a scheduler must read its queue's schedule records now (:meth:`take`), and a
    wait that a change notice ends early (:meth:`wait`)."""

    def __init__(self, events: EventBackend, queue_name: str) -> None:
        self.events = events
        self.queue_name = queue_name
        self.subscribed = False
        self._stale = True  # the first look always reads
        self._last_read = float("-inf")
        #: pauses before reading again after failed reads (the store down, its file gone):
        #: without them a scheduler re-read, failed and logged in a loop, one core busy
        self._retries = Backoff(0.1, 5.0)
        self._retry_in = 0.0
        self._woken = anyio.Event()
        #: notices received (tests)
        self.notices = 0

    def take(self) -> bool:
        """True when the records must be read now; the caller reads them at once (a notice
        arriving during that read makes the next call True again)."""
        now = anyio.current_time()
        if not self._stale:
            self._retries.reset()  # the last read worked
        if self._stale or not self.subscribed or now - self._last_read >= RESYNC:
            self._stale = False
            self._last_read = now
            return True
        return False

    def stale(self) -> None:
        """The read failed: read again at the next look, after a pause that grows while the
        reads keep failing."""
        self._stale = True
        self._retry_in = self._retries.next()

    async def wait(self, seconds: float, stop: anyio.Event) -> None:
        """Sleep ``seconds``, or less when a notice comes or ``stop`` is set (or the pause
        after a failed read is over)."""
        if self._stale:
            seconds = min(seconds, self._retry_in)
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:

                async def stopped() -> None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(stopped)
                await self._woken.wait()
                tg.cancel_scope.cancel()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen for notices (started with ``tg.start``: returns once subscribed, or once the
        first try failed, so the scheduler's first read never misses a change)."""
        started = False
        while True:
            try:
                async with self.events.subscribe([channel(self.queue_name)]) as notices:
                    self.subscribed = True
                    self._notice()  # anything written before the subscription counts
                    if not started:
                        started = True
                        task_status.started()
                    async for _ in notices:
                        self.notices += 1
                        self._notice()
            except Exception as exc:
                log.warning("schedules: cannot listen for schedule changes (%s); reading them "
                            "every tick meanwhile", describe(exc))
            finally:
                self.subscribed = False
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(RETRY)

    def _notice(self) -> None:
        self._stale = True
        self._retry_in = 0.0  # a change to read now, not a failed read
        self._woken.set()
        self._woken = anyio.Event()
