"""``QueueSuite``: the executable contract of :class:`agentexec.backends.QueueBackend` and of
its optional capabilities (``push_raw``, ``reap_consumer``, ``in_flight``, ``remove``,
``push_at``, ``reserve_many``, ``ack_many``, ``acquire``, ``claim_key``).

Timing thresholds are class attributes (seconds) a backend may tighten freely; raising one
above the kit's default needs a ``timing_reason`` (see :class:`agentexec.testing.Suite`):

- ``lease_timeout_s`` (0.3): the lease the suite sets for expiry tests; a task must stay with a
  silent consumer before it and be reapable after ``lease_timeout_s + expiry_slack_s``
- ``expiry_slack_s`` (0.25): how late after the lease a reap may still miss it
- ``wake_within_s`` (0.1): a consumer blocked in ``reserve`` gets a pushed task within this
  (the median of three trials; the docs promise milliseconds). Wake-ups measured once (by
  ``release``, ``reap``, ``requeue_dead``) may take twice as long.
- ``timeout_overrun_s`` (0.3): how late ``reserve(timeout=t)`` may return ``None`` after ``t``
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, ClassVar

import anyio
import pytest

from agentexec.backends import Lease, ReapReport
from agentexec.task import Envelope, Priority
from agentexec.testing._helpers import envelope, numbers, push_raw, unique
from agentexec.testing._suite import Suite


@pytest.mark.anyio
class QueueSuite(Suite):
    """Subclass and provide a ``queue`` fixture that yields a fresh backend::

        class TestAcmeQueue(QueueSuite):
            @pytest.fixture
            async def queue(self):
                q = AcmeQueue("acme://localhost")
                yield q
                await q.close()

    The suite uses new queue names in every test, so a shared server is fine, and sets
    ``queue.lease_timeout`` and ``queue.max_attempts`` itself, so those attributes must be read
    at each operation.
    """

    lease_timeout_s: ClassVar[float] = 0.3
    expiry_slack_s: ClassVar[float] = 0.25
    wake_within_s: ClassVar[float] = 0.1
    timeout_overrun_s: ClassVar[float] = 0.3
    _timings = ("lease_timeout_s", "expiry_slack_s", "wake_within_s", "timeout_overrun_s")

    @pytest.fixture
    def queue(self) -> Any:
        pytest.fail("QueueSuite needs a `queue` fixture that yields your queue backend")

    @pytest.fixture
    def queue_name(self) -> str:
        return unique("axkit-q-")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def expire_wait(self) -> float:
        """How long a consumer stays silent so its lease has certainly expired."""
        return self.lease_timeout_s + self.expiry_slack_s

    async def _take(self, queue: Any, queue_name: str, count: int, consumer: str = "c1") -> list[Lease]:
        leases: list[Lease] = []
        with anyio.fail_after(5):
            for _ in range(count):
                lease = await queue.reserve(queue_name, consumer, 1.0)
                assert lease is not None, f"reserve returned None with {count - len(leases)} tasks still queued"
                leases.append(lease)
        return leases

    async def _drain(self, queue: Any, queue_name: str, consumer: str = "c1") -> list[Envelope]:
        out: list[Envelope] = []
        with anyio.fail_after(10):
            while (lease := await queue.reserve(queue_name, consumer, 0.05)) is not None:
                out.append(lease.envelope)
                await queue.ack(lease)
        return out

    async def _lose(self, queue: Any, queue_name: str, consumer: str) -> ReapReport:
        """``consumer`` dies: its tasks are reaped (at once with ``reap_consumer``, else by
        ``reap`` once its lease has expired)."""
        if callable(getattr(queue, "reap_consumer", None)):
            report: ReapReport = await queue.reap_consumer(queue_name, consumer)
            return report
        await anyio.sleep(self.expire_wait)
        report = await queue.reap(queue_name)
        return report

    async def _wake_latency(self, take: Any, push: Any) -> float:
        """Median delay of three trials from ``push()`` to a blocked ``take()`` returning."""
        delays: list[float] = []

        async def consume(returned: list[float]) -> None:
            await take()
            returned.append(time.monotonic())

        for _ in range(3):
            returned: list[float] = []
            with anyio.fail_after(6):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume, returned)
                    await anyio.sleep(0.05)
                    pushed_at = time.monotonic()
                    await push()
            delays.append(returned[0] - pushed_at)
        return statistics.median(delays)

    # -- basics ----------------------------------------------------------------------------
    async def test_push_then_reserve_returns_the_envelope(self, queue: Any, queue_name: str) -> None:
        """A pushed envelope comes back from ``reserve`` unchanged, in a lease for that consumer.

        Troubleshooting: serialize the whole envelope (``envelope.model_dump_json()``) and parse it
        back with ``Envelope.model_validate_json``; put ``consumer_id`` and ``queue_name`` on the Lease;
        a new backend starts with a positive ``lease_timeout`` and ``max_attempts`` (CONF's).
        """
        assert isinstance(queue.lease_timeout, int | float) and queue.lease_timeout > 0
        assert isinstance(queue.max_attempts, int) and queue.max_attempts >= 1
        sent = envelope(queue_name, 7)
        await queue.push(sent, Priority.LOW)
        with anyio.fail_after(5):
            lease = await queue.reserve(queue_name, "c1", 1.0)
        assert lease is not None
        assert lease.envelope == sent
        assert lease.consumer_id == "c1"
        assert lease.queue_name == queue_name

    async def test_reserve_on_empty_queue_returns_none_after_timeout(self, queue: Any, queue_name: str) -> None:
        """``reserve`` waits ``timeout`` seconds, no less and not much more, then returns ``None``.

        Troubleshooting: a blocking pop with a timeout (BLMOVE, LISTEN/NOTIFY, a condition) must
        return ``None`` rather than raise when nothing came; fractional timeouts must be honoured
        (do not round them up to whole seconds: workers poll with them and answer shutdowns late).
        """
        start = time.monotonic()
        with anyio.fail_after(5):
            assert await queue.reserve(queue_name, "c1", 0.2) is None
        elapsed = time.monotonic() - start
        assert elapsed >= 0.15, f"reserve returned after {elapsed:.3f} s, before its 0.2 s timeout"
        assert elapsed <= 0.2 + self.timeout_overrun_s, (
            f"reserve(timeout=0.2) returned after {elapsed:.3f} s "
            f"(allowed: {0.2 + self.timeout_overrun_s:.2f} s, timeout_overrun_s)"
        )

    async def test_reserve_wakes_when_a_task_is_pushed(self, queue: Any, queue_name: str) -> None:
        """A consumer blocked in ``reserve`` gets a task pushed while it waits within
        ``wake_within_s`` (median of three trials).

        Troubleshooting: waiting consumers must be woken by the push (blocking pop, notification),
        not by polling at an interval longer than a few tens of milliseconds.
        """
        got: list[Lease | None] = []

        async def take() -> None:
            got.append(await queue.reserve(queue_name, "c1", 5.0))

        async def push() -> None:
            await queue.push(envelope(queue_name, len(got)), Priority.LOW)

        delay = await self._wake_latency(take, push)
        assert [numbers([g.envelope]) for g in got if g is not None] == [[0], [1], [2]]
        assert delay <= self.wake_within_s, (
            f"reserve woke {delay * 1000:.0f} ms after the push (median of 3; allowed "
            f"{self.wake_within_s * 1000:.0f} ms, wake_within_s)"
        )

    # -- ordering --------------------------------------------------------------------------
    async def test_high_priority_is_taken_before_low(self, queue: Any, queue_name: str) -> None:
        """Every HIGH task is reserved before any LOW task, whatever the push order; without a
        ``priority`` argument, ``push`` uses the envelope's.

        Troubleshooting: HIGH goes to the front of the queue (the end consumers take from, e.g.
        RPUSH when consumers pop from the right), LOW to the back; check that ``push`` honours its
        ``priority`` argument, else ``envelope.priority``, rather than a default.
        """
        for n, prio in [(1, Priority.LOW), (2, Priority.LOW), (3, Priority.HIGH), (4, Priority.LOW)]:
            await queue.push(envelope(queue_name, n, prio), prio)
        await queue.push(envelope(queue_name, 5, Priority.HIGH))
        got = numbers(await self._drain(queue, queue_name))
        assert sorted(got[:2]) == [3, 5], f"HIGH tasks 3 and 5 were not taken first: order {got}"
        assert got[2:] == [1, 2, 4]

    async def test_low_priority_is_first_in_first_out(self, queue: Any, queue_name: str) -> None:
        """Within LOW priority, tasks come out in the order they were pushed.

        Troubleshooting: push LOW to one end and take from the other (LPUSH + RPOP/BLMOVE RIGHT).
        """
        for n in range(10):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        assert numbers(await self._drain(queue, queue_name)) == list(range(10))

    async def test_push_many_keeps_each_priority(self, queue: Any, queue_name: str) -> None:
        """``push_many`` queues every envelope with its own ``envelope.priority``.

        Troubleshooting: read the priority from each envelope in a batch; keep LOW order.
        """
        await queue.push_many([
            envelope(queue_name, 1), envelope(queue_name, 2, Priority.HIGH), envelope(queue_name, 3),
        ])
        assert numbers(await self._drain(queue, queue_name)) == [2, 1, 3]

    async def test_queues_are_isolated_by_name(self, queue: Any, queue_name: str) -> None:
        """Tasks pushed to one queue name are never reserved from another.

        Troubleshooting: derive every key/row filter from ``envelope.queue_name`` / the
        ``queue_name`` argument; companion keys (in-flight, dead letters) too.
        """
        other = unique("axkit-q-")
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        with anyio.fail_after(5):
            assert await queue.reserve(other, "c1", 0.05) is None
        assert await queue.length(other) == 0
        assert await queue.length(queue_name) == 1
        assert numbers(await self._drain(queue, queue_name)) == [1]

    # -- leases ----------------------------------------------------------------------------
    async def test_length_counts_waiting_tasks_not_in_flight(self, queue: Any, queue_name: str) -> None:
        """``length`` counts tasks waiting to be reserved; reserved ones are not counted.

        Troubleshooting: keep in-flight tasks out of the main list (a per-consumer processing
        list or a status column), and count only the waiting ones.
        """
        assert await queue.length(queue_name) == 0
        for n in range(3):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        assert await queue.length(queue_name) == 3
        await self._take(queue, queue_name, 1)
        assert await queue.length(queue_name) == 2

    async def test_acked_task_is_never_handed_out_again(self, queue: Any, queue_name: str) -> None:
        """After ``ack``, the task is gone: not in flight, not redelivered by ``reap``.

        Troubleshooting: ``ack`` must delete the task from the consumer's in-flight record using
        ``lease.token`` (the exact stored payload or row id).
        """
        queue.lease_timeout = self.lease_timeout_s
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        await queue.ack(lease)
        assert (await queue.stats(queue_name)).in_flight == 0
        await anyio.sleep(self.expire_wait)
        report = await queue.reap(queue_name)
        assert report.requeued == () and report.dead == ()
        assert await queue.length(queue_name) == 0

    async def test_leases_of_one_consumer_are_acked_in_any_order(self, queue: Any, queue_name: str) -> None:
        """A consumer holding several leases (a worker with several slots) may ack them in any
        order: each ``ack`` forgets exactly its own task, a second ``ack`` of it changes nothing,
        and the unacknowledged one is the one handed out again when the consumer dies.

        Troubleshooting: remove the acknowledged payload/row itself (``LREM key 1 token``,
        ``DELETE ... WHERE id = token``), never the oldest or newest of the consumer's record.
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 3
        for n in (1, 2, 3, 4):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        one, two, three, four = await self._take(queue, queue_name, 4, consumer="slots")
        await queue.ack(three)
        await queue.ack(two)
        await queue.ack(four)
        await queue.ack(three)  # twice: no effect on the others
        assert (await queue.stats(queue_name)).in_flight == 1
        report = await self._lose(queue, queue_name, "slots")
        assert numbers(list(report.requeued)) == [1], (
            f"the consumer's only unacknowledged task was 1; reaping it handed back "
            f"{numbers(list(report.requeued))}"
        )
        assert report.dead == ()
        assert numbers(await self._drain(queue, queue_name)) == [1]
        assert one.envelope.context["n"] == 1

    async def test_release_puts_the_task_back_at_the_front(self, queue: Any, queue_name: str) -> None:
        """``release`` returns the task to the front of its queue with ``attempts`` unchanged.

        Troubleshooting: move the payload from the in-flight record back to the consumers' end
        of the list (RPUSH when they pop from the right), atomically.
        """
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        assert numbers([lease.envelope]) == [1]
        await queue.release(lease)
        assert (await queue.stats(queue_name)).in_flight == 0
        got = await self._drain(queue, queue_name)
        assert numbers(got) == [1, 2]
        assert got[0].attempts == 0

    async def test_heartbeat_keeps_the_lease(self, queue: Any, queue_name: str) -> None:
        """A consumer that heartbeats keeps its task, however long it runs.

        Troubleshooting: ``heartbeat`` must refresh the consumer's liveness for another
        ``lease_timeout`` (read the attribute at each call; it may be fractional, e.g. 0.3 s:
        use millisecond expiries), and ``reap`` must skip live consumers.
        """
        queue.lease_timeout = self.lease_timeout_s
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await self._take(queue, queue_name, 1)
        for _ in range(8):  # well past two lease timeouts, heartbeating three times per timeout
            await anyio.sleep(self.lease_timeout_s / 3)
            await queue.heartbeat(queue_name, "c1")
            report = await queue.reap(queue_name)
            assert report.requeued == () and report.dead == (), "a heartbeating consumer lost its lease"
        assert await queue.length(queue_name) == 0
        assert (await queue.stats(queue_name)).in_flight == 1

    async def test_a_lease_is_not_reaped_before_it_expires(self, queue: Any, queue_name: str) -> None:
        """The lower bound of a lease: a consumer that has not heartbeated keeps its task until
        ``lease_timeout`` has passed since its last heartbeat *or reserve* — also a consumer
        that was idle for longer than the lease before it took the task.

        Troubleshooting: keep the lease in the backend's own time unit without rounding
        (``PEXPIRE``/milliseconds for a 0.3 s lease, not whole seconds), and refresh the
        consumer's liveness on every ``reserve`` that hands it a task (not only on the first, and
        not only in ``heartbeat``).
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 3
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (first,) = await self._take(queue, queue_name, 1, consumer="idle")
        report = await queue.reap(queue_name)
        assert report.requeued == () and report.dead == (), "a task reserved just now was reaped"
        await anyio.sleep(self.lease_timeout_s / 2)
        report = await queue.reap(queue_name)
        assert report.requeued == () and report.dead == (), "a lease was reaped at half its timeout"
        await queue.ack(first)
        await anyio.sleep(self.expire_wait)  # idle, silent, for longer than a lease
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="idle")
        report = await queue.reap(queue_name)
        assert report.requeued == () and report.dead == (), (
            "a task reserved just now by a consumer that had been idle was reaped: reserve must "
            "refresh the consumer's liveness"
        )
        assert (await queue.stats(queue_name)).in_flight == 1

    async def test_expired_lease_is_redelivered_to_the_front(self, queue: Any, queue_name: str) -> None:
        """A task whose consumer stopped heartbeating comes back first, with ``attempts`` + 1.

        Troubleshooting: ``reap`` must find consumers whose last heartbeat (or reserve) is older
        than ``lease_timeout``, move their in-flight tasks to the front of the queue with
        ``envelope.next_attempt()``, report them in ``ReapReport.requeued``, and forget the
        reaped consumer (``stats`` lists live consumers).
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 3
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1, consumer="dies")
        await anyio.sleep(self.expire_wait)
        report = await queue.reap(queue_name)
        assert [e.agent_id for e in report.requeued] == [lease.envelope.agent_id], (
            "reap did not hand back the expired lease"
        )
        assert report.requeued[0].attempts == 1
        assert "dies" not in (await queue.stats(queue_name)).consumers, "stats lists a reaped consumer"
        got = await self._drain(queue, queue_name, consumer="c2")
        assert numbers(got) == [1, 2], "the redelivered task must go to the front"
        assert got[0].attempts == 1

    async def test_reap_leaves_live_consumers_alone(self, queue: Any, queue_name: str) -> None:
        """``reap`` takes back only the tasks of silent consumers, never of heartbeating ones.

        Troubleshooting: track liveness per consumer id (and per queue), not per queue.
        """
        queue.lease_timeout = self.lease_timeout_s
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="dies")
        await self._take(queue, queue_name, 1, consumer="lives")
        for _ in range(6):  # past one lease timeout
            await anyio.sleep(self.lease_timeout_s / 3)
            await queue.heartbeat(queue_name, "lives")
        report = await queue.reap(queue_name)
        assert numbers(list(report.requeued)) == [1]
        assert (await queue.stats(queue_name)).in_flight == 1

    async def test_one_consumer_across_several_queues(self, queue: Any, queue_name: str) -> None:
        """One consumer id reading several queues (a worker with lanes: its default and
        pipeline queues) holds a lease on each; reaping one queue touches only that queue's
        tasks, each goes back to its own queue, and an ``ack`` on one queue leaves the other's.

        Troubleshooting: key in-flight records and heartbeats by queue *and* consumer id
        (``{queue}:inflight:{consumer}``); ``reap(queue_name)`` looks only at that queue's
        consumers and requeues to ``lease.queue_name``/``envelope.queue_name``.
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 3
        lane = unique("axkit-q-")
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        await queue.push(envelope(lane, 11), Priority.LOW)
        await queue.push(envelope(lane, 12), Priority.LOW)
        (on_default, done_default) = await self._take(queue, queue_name, 2, consumer="w")
        (on_lane,) = await self._take(queue, lane, 1, consumer="w")
        await queue.ack(done_default)
        assert (await queue.stats(queue_name)).in_flight == 1
        assert (await queue.stats(lane)).in_flight == 1
        await anyio.sleep(self.expire_wait)
        first = await queue.reap(queue_name)
        assert numbers(list(first.requeued)) == [1], (
            f"reaping {queue_name!r} handed back {numbers(list(first.requeued))}: only its own task 1"
        )
        assert (await queue.stats(lane)).in_flight == 1, "reaping one queue touched another's lease"
        assert await queue.length(queue_name) == 1 and await queue.length(lane) == 1
        second = await queue.reap(lane)
        assert numbers(list(second.requeued)) == [11]
        assert numbers(await self._drain(queue, lane, consumer="c2")) == [11, 12]
        assert numbers(await self._drain(queue, queue_name, consumer="c2")) == [1]
        assert on_default.queue_name == queue_name and on_lane.queue_name == lane

    async def test_reap_consumer_hands_back_one_consumers_tasks_at_once(
        self, queue: Any, queue_name: str
    ) -> None:
        """``reap_consumer`` returns one consumer's tasks to the front now, whatever its heartbeat.

        Needs ``Capabilities.reap_consumer``. Troubleshooting: apply ``reap``'s rules (attempts + 1
        to the front, dead-letter past ``max_attempts``) to that consumer's in-flight record only,
        without checking its heartbeat age; leave other consumers alone; forget the reaped
        consumer's heartbeat (``stats`` lists live consumers).
        """
        self.require("reap_consumer", queue)
        queue.lease_timeout = 30.0
        queue.max_attempts = 3
        for n in (1, 2, 3):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="killed")
        await self._take(queue, queue_name, 1, consumer="alive")
        report = await queue.reap_consumer(queue_name, "killed")
        assert numbers(list(report.requeued)) == [1] and report.dead == ()
        assert report.requeued[0].attempts == 1
        stats = await queue.stats(queue_name)
        assert stats.in_flight == 1, "the live consumer keeps its task"
        assert "killed" not in stats.consumers and "alive" in stats.consumers, (
            f"stats lists a reaped consumer as live: {sorted(stats.consumers)}"
        )
        got = await self._drain(queue, queue_name, consumer="c2")
        assert numbers(got) == [1, 3] and got[0].attempts == 1
        assert (await queue.reap_consumer(queue_name, "nobody")) == ReapReport()

    async def test_reap_consumer_dead_letters_past_max_attempts(self, queue: Any, queue_name: str) -> None:
        """``reap_consumer`` (the pool's path for a killed worker) dead-letters a task whose
        attempts would reach ``max_attempts``, exactly as ``reap`` does: a task that kills its
        worker every time is not run forever.

        Needs ``Capabilities.reap_consumer``. Troubleshooting: share the requeue-or-bury
        decision (``attempts + 1 >= max_attempts``) between ``reap`` and ``reap_consumer``.
        """
        self.require("reap_consumer", queue)
        queue.lease_timeout = 30.0
        queue.max_attempts = 2
        sent = envelope(queue_name, 1)
        await queue.push(sent, Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="oom-1")
        first = await queue.reap_consumer(queue_name, "oom-1")
        assert numbers(list(first.requeued)) == [1] and first.dead == ()
        await self._take(queue, queue_name, 1, consumer="oom-2")
        second = await queue.reap_consumer(queue_name, "oom-2")
        assert second.requeued == (), "a task past max_attempts was requeued by reap_consumer"
        assert [d.envelope.agent_id for d in second.dead if d.envelope] == [sent.agent_id]
        assert second.dead[0].reason
        assert await queue.length(queue_name) == 0
        assert [d.id for d in await queue.dead_letters(queue_name)] == [second.dead[0].id]

    async def test_in_flight_lists_one_consumers_tasks_oldest_first(
        self, queue: Any, queue_name: str
    ) -> None:
        """``in_flight`` returns what one consumer holds now, oldest first, with the attempts it
        was handed out with; acknowledged tasks and other consumers' tasks are not in it.

        Needs ``Capabilities.in_flight``. Troubleshooting: read the consumer's in-flight record
        without changing it; a redelivered task must show its incremented ``attempts``.
        """
        self.require("in_flight", queue)
        queue.lease_timeout = 30.0
        queue.max_attempts = 3
        for n in (1, 2, 3, 4):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        first = await self._take(queue, queue_name, 2, consumer="one")
        await self._take(queue, queue_name, 1, consumer="other")
        assert numbers(await queue.in_flight(queue_name, "one")) == [1, 2]
        await queue.ack(first[0])
        held = await queue.in_flight(queue_name, "one")
        assert numbers(held) == [2] and held[0].attempts == 0
        assert await queue.in_flight(queue_name, "nobody") == []
        assert await queue.in_flight(unique("axkit-q-"), "one") == [], "in_flight crossed queues"
        if callable(getattr(queue, "reap_consumer", None)):
            await queue.reap_consumer(queue_name, "one")
            assert await queue.in_flight(queue_name, "one") == []
            again = await self._take(queue, queue_name, 1, consumer="three")
            held = await queue.in_flight(queue_name, "three")
            assert numbers(held) == numbers([lease.envelope for lease in again]) == [2]
            assert held[0].attempts == 1

    async def test_remove_takes_one_waiting_task_out_by_its_agent_id(
        self, queue: Any, queue_name: str
    ) -> None:
        """``remove`` (``ax.cancel`` of a queued task) takes exactly the task of that agent id
        out of that queue and returns its envelope; it is never handed out. ``None`` for an id
        that is not waiting there.

        Needs ``Capabilities.remove_queued``. Troubleshooting: match the decoded envelope's
        ``agent_id`` (not a substring of the payload), remove one entry, leave the order of the
        others alone."""
        self.require("remove_queued", queue)
        sent = [envelope(queue_name, n) for n in (1, 2, 3)]
        # the first quotes the second's id in its context, as a child task names its parent
        sent[0] = sent[0].model_copy(update={"context": {"n": 1, "parent": str(sent[1].agent_id)}})
        for env in sent:
            await queue.push(env, Priority.LOW)
        other = unique("axkit-q-")
        await queue.push(envelope(other, 9), Priority.LOW)
        removed = await queue.remove(queue_name, sent[1].agent_id)
        assert removed is not None and removed.agent_id == sent[1].agent_id
        assert removed.context == sent[1].context
        assert await queue.length(queue_name) == 2
        assert await queue.remove(queue_name, sent[1].agent_id) is None, "removed twice"
        assert await queue.remove(queue_name, uuid.uuid4()) is None
        assert await queue.remove(other, sent[0].agent_id) is None, "remove crossed queues"
        assert numbers(await self._drain(queue, queue_name)) == [1, 3]
        assert numbers(await self._drain(queue, other)) == [9]

    async def test_remove_never_takes_a_task_in_flight(self, queue: Any, queue_name: str) -> None:
        """A task a consumer holds is its worker's: ``remove`` returns ``None`` and the lease
        stays whole (ack, stats and reap see it as before).

        Needs ``Capabilities.remove_queued``. Troubleshooting: only waiting tasks are
        candidates; make the removal atomic with ``reserve`` (a conditional delete)."""
        self.require("remove_queued", queue)
        queue.lease_timeout = 30.0
        sent = envelope(queue_name, 1)
        await queue.push(sent, Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        assert await queue.remove(queue_name, sent.agent_id) is None, "remove took a task in flight"
        assert (await queue.stats(queue_name)).in_flight == 1
        await queue.ack(lease)
        assert (await queue.stats(queue_name)).in_flight == 0
        assert await queue.length(queue_name) == 0

    async def test_push_at_hands_a_task_out_no_earlier_than_its_due_time(
        self, queue: Any, queue_name: str
    ) -> None:
        """A task pushed with ``push_at(envelope, due)`` is not handed out (nor counted by
        ``length``; ``delayed`` counts it) before ``due``; a consumer already blocked in
        ``reserve`` gets it promptly once due, and it is then gone from ``delayed``.

        Needs ``Capabilities.delayed_push``. Troubleshooting: skip tasks whose due time has not
        come in ``reserve``, and end a blocked ``reserve``'s wait at the next due time."""
        self.require("delayed_push", queue)
        delay = 0.5
        sent = envelope(queue_name, 1)
        pushed = time.monotonic()
        await queue.push_at(sent, time.time() + delay)
        assert await queue.reserve(queue_name, "c1", 0.05) is None, "handed out before its due time"
        assert await queue.length(queue_name) == 0
        assert await queue.delayed(queue_name) == 1
        with anyio.fail_after(5):
            lease = await queue.reserve(queue_name, "c1", 3.0)
        took = time.monotonic() - pushed
        assert lease is not None and lease.envelope.agent_id == sent.agent_id
        assert took >= delay - 0.02, f"handed out {delay - took:.3f} s early"
        # generous (a loaded CI machine): what it catches is a wait to the end of the timeout
        assert took <= delay + 10 * self.wake_within_s, (
            f"a blocked reserve got the task {took - delay:.3f} s after its due time"
        )
        assert await queue.delayed(queue_name) == 0

    async def test_push_at_wakes_a_waiting_consumer_and_keeps_priorities(
        self, queue: Any, queue_name: str
    ) -> None:
        """A consumer blocked before ``push_at`` wakes at the new task's due time; due tasks
        are taken HIGH first, and a due time in the past is a plain push.

        Needs ``Capabilities.delayed_push``. Troubleshooting: a ``push_at`` must wake blocked
        consumers (they re-read how long to wait); promote a task with its own priority."""
        self.require("delayed_push", queue)
        got: list[Lease | None] = []

        async def take() -> None:
            got.append(await queue.reserve(queue_name, "c1", 3.0))

        first = envelope(queue_name, 1)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take)
                await anyio.sleep(0.1)  # the consumer is blocked on an empty queue
                pushed = time.monotonic()
                await queue.push_at(first, time.time() + 0.3)
        took = time.monotonic() - pushed
        assert got and got[0] is not None and got[0].envelope.agent_id == first.agent_id
        assert 0.28 <= took <= 0.3 + 10 * self.wake_within_s, f"woke {took:.3f} s after push_at (due at 0.3 s)"
        await queue.ack(got[0])
        now = time.time()
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        await queue.push_at(envelope(queue_name, 3), now + 0.2)
        await queue.push_at(envelope(queue_name, 4, Priority.HIGH), now + 0.2)
        await queue.push_at(envelope(queue_name, 5), now - 10)  # already due: a push
        assert await queue.length(queue_name) == 2
        await anyio.sleep(0.3)
        assert numbers(await self._drain(queue, queue_name)) == [4, 2, 5, 3]

    async def test_remove_finds_a_delayed_task(self, queue: Any, queue_name: str) -> None:
        """``ax.cancel`` of a delayed task: ``remove`` takes it out of the delayed place too.

        Needs ``Capabilities.remove_queued`` and ``Capabilities.delayed_push``.
        Troubleshooting: look in the delayed place as well as the queue."""
        self.require("remove_queued", queue)
        self.require("delayed_push", queue)
        sent = envelope(queue_name, 1)
        await queue.push_at(sent, time.time() + 0.2)
        removed = await queue.remove(queue_name, sent.agent_id)
        assert removed is not None and removed.agent_id == sent.agent_id
        assert await queue.delayed(queue_name) == 0
        await anyio.sleep(0.3)
        assert await queue.reserve(queue_name, "c1", 0.05) is None, "a removed delayed task was handed out"

    # -- task locks (TaskLocks) and enqueue keys (EnqueueKeys) ------------------------------
    async def _locked(self, queue: Any, queue_name: str, n: int, locks: dict[str, int]) -> Envelope:
        env = envelope(queue_name, n).model_copy(update={"locks": locks})
        await queue.push(env, Priority.LOW)
        return env

    async def test_acquire_parks_a_task_whose_key_is_held_and_others_flow(
        self, queue: Any, queue_name: str
    ) -> None:
        """Two tasks of one lock key never hold it together: the second's ``acquire`` is False
        and parks it (out of flight, not waiting in the queue, counted by ``parked``), while a
        task of another key is taken and acquires meanwhile. The holder's ``ack`` moves the
        parked task back to the queue, where it is taken and acquires.

        Needs ``Capabilities.task_locks``. Troubleshooting: ``acquire`` counts the holders of
        each key and parks atomically; every end of a lease (ack, ack_many, release, reap)
        releases its locks and moves one parked task of each key back to the queue."""
        self.require("task_locks", queue)
        queue.lease_timeout = 30.0
        await self._locked(queue, queue_name, 1, {"key:a": 1})
        await self._locked(queue, queue_name, 2, {"key:a": 1})
        await self._locked(queue, queue_name, 3, {"key:b": 1})
        first, second, third = await self._take(queue, queue_name, 3)
        assert numbers([first.envelope, second.envelope, third.envelope]) == [1, 2, 3]
        assert await queue.acquire(first) is True
        assert await queue.acquire(second) is False, "two holders of one lock key"
        assert await queue.parked(queue_name) == 1
        assert (await queue.stats(queue_name)).in_flight == 2, "a parked task stayed in flight"
        assert await queue.acquire(third) is True, "a task of another key was blocked"
        assert await queue.reserve(queue_name, "c1", 0.05) is None, "a parked task was handed out"
        await queue.ack(first)
        assert await queue.parked(queue_name) == 0, "the holder's ack left its key's task parked"
        with anyio.fail_after(5):
            again = await queue.reserve(queue_name, "c2", 1.0)
        assert again is not None and again.envelope.agent_id == second.envelope.agent_id
        assert await queue.acquire(again) is True
        await queue.ack(again)
        await queue.ack(third)
        assert await queue.length(queue_name) == 0
        assert (await queue.stats(queue_name)).in_flight == 0

    async def test_unlock_frees_the_locks_before_the_ack(self, queue: Any, queue_name: str) -> None:
        """``unlock`` (the handler returned; its finish is still being written) releases the
        lease's locks at once and moves a parked task back; the later ``ack`` releases nothing
        more (the key's new holder keeps it).

        Needs ``Capabilities.task_locks``. Troubleshooting: release by agent id, once: a second
        release (the ack) must find nothing to release."""
        self.require("task_locks", queue)
        queue.lease_timeout = 30.0
        await self._locked(queue, queue_name, 1, {"key:a": 1})
        await self._locked(queue, queue_name, 2, {"key:a": 1})
        await self._locked(queue, queue_name, 3, {"key:a": 1})
        first, second, third = await self._take(queue, queue_name, 3)
        assert [await queue.acquire(x) for x in (first, second, third)] == [True, False, False]
        await queue.unlock(first)
        assert await queue.parked(queue_name) == 1
        (again,) = await self._take(queue, queue_name, 1, consumer="c2")
        assert await queue.acquire(again) is True
        await queue.ack(first)  # nothing left to release: the key stays with `again`
        assert await queue.parked(queue_name) == 1, "an ack after unlock released the lock again"
        assert await queue.length(queue_name) == 0
        await queue.ack(again)
        assert await queue.parked(queue_name) == 0 and await queue.length(queue_name) == 1

    async def test_a_counted_lock_admits_up_to_its_limit(self, queue: Any, queue_name: str) -> None:
        """A lock with limit N (``max_concurrency=N``) is held by up to N tasks at once; the
        next parks until one of them ends (here by ``release``, a stopping worker's give-back,
        which also puts the released task back).

        Needs ``Capabilities.task_locks``. Troubleshooting: compare the holder count with the
        limit the envelope gives; ``release`` ends the lease, so it releases the locks too."""
        self.require("task_locks", queue)
        queue.lease_timeout = 30.0
        for n in (1, 2, 3):
            await self._locked(queue, queue_name, n, {"task:x": 2})
        leases = await self._take(queue, queue_name, 3)
        assert [await queue.acquire(lease) for lease in leases] == [True, True, False]
        await queue.release(leases[0])
        assert await queue.parked(queue_name) == 0
        back = await self._take(queue, queue_name, 2, consumer="c2")
        assert sorted(numbers([b.envelope for b in back])) == [1, 3]
        assert sorted([await queue.acquire(b) for b in back]) == [False, True]
        assert await queue.parked(queue_name) == 1

    async def test_a_dead_holders_locks_are_released_by_the_reap(self, queue: Any, queue_name: str) -> None:
        """A holder whose consumer dies loses its locks when its lease is reaped: the task
        parked on its key goes back to the queue at once (never a lock left behind by a crash).

        Needs ``Capabilities.task_locks``. Troubleshooting: ``reap``/``reap_consumer`` must
        release the locks of every task they take back (find them by agent id: the payload
        need not name them) and move the parked tasks."""
        self.require("task_locks", queue)
        queue.lease_timeout = self.lease_timeout_s
        await self._locked(queue, queue_name, 1, {"key:a": 1})
        await self._locked(queue, queue_name, 2, {"key:a": 1})
        (holder,) = await self._take(queue, queue_name, 1, consumer="dies")
        assert await queue.acquire(holder) is True
        (waiter,) = await self._take(queue, queue_name, 1, consumer="lives")
        assert await queue.acquire(waiter) is False
        await queue.heartbeat(queue_name, "lives")
        report = await self._lose(queue, queue_name, "dies")
        assert [e.agent_id for e in report.requeued] == [holder.envelope.agent_id]
        assert await queue.parked(queue_name) == 0, "the dead holder's key kept its task parked"
        assert await queue.length(queue_name) == 2
        queue.lease_timeout = 30.0
        taken = await self._take(queue, queue_name, 2, consumer="lives")
        assert sorted([await queue.acquire(t) for t in taken]) == [False, True]

    async def test_remove_finds_a_parked_task(self, queue: Any, queue_name: str) -> None:
        """``ax.cancel`` of a task parked on a lock: ``remove`` takes it out of the parked
        place, and the holder's end then moves nothing back.

        Needs ``Capabilities.task_locks`` and ``Capabilities.remove_queued``. Troubleshooting:
        look in the parked place as well, and drop the parked entry so no release moves it."""
        self.require("task_locks", queue)
        self.require("remove_queued", queue)
        queue.lease_timeout = 30.0
        await self._locked(queue, queue_name, 1, {"key:a": 1})
        parked = await self._locked(queue, queue_name, 2, {"key:a": 1})
        first, second = await self._take(queue, queue_name, 2)
        assert await queue.acquire(first) is True
        assert await queue.acquire(second) is False
        removed = await queue.remove(queue_name, parked.agent_id)
        assert removed is not None and removed.agent_id == parked.agent_id
        assert await queue.parked(queue_name) == 0
        await queue.ack(first)
        assert await queue.length(queue_name) == 0, "a removed parked task came back"

    async def test_an_enqueue_key_is_held_until_its_task_is_acknowledged(
        self, queue: Any, queue_name: str
    ) -> None:
        """``claim_key`` gives a key to one task: a second claim gets the holder's agent id,
        until the holder's lease is acknowledged (or the holder is replaced, or released).

        Needs ``Capabilities.enqueue_keys``. Troubleshooting: claim atomically (set if absent);
        ``ack``/``ack_many`` of a lease whose envelope has ``key`` drops the key if its agent
        still holds it."""
        self.require("enqueue_keys", queue)
        queue.lease_timeout = 30.0
        first = envelope(queue_name, 1).model_copy(update={"key": "report:7"})
        assert await queue.claim_key(queue_name, "report:7", first.agent_id) is None
        other = uuid.uuid4()
        assert await queue.claim_key(queue_name, "report:7", other) == first.agent_id
        assert await queue.claim_key(unique("axkit-q-"), "report:7", other) is None, "keys crossed queues"
        await queue.push(first, Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        assert await queue.claim_key(queue_name, "report:7", other) == first.agent_id, "running: still held"
        await queue.ack(lease)
        assert await queue.claim_key(queue_name, "report:7", other) is None, "the key outlived its task"
        third = uuid.uuid4()
        assert await queue.claim_key(queue_name, "report:7", third, replace=uuid.uuid4()) == other
        assert await queue.claim_key(queue_name, "report:7", third, replace=other) is None
        await queue.release_key(queue_name, "report:7", other)  # not the holder: no effect
        assert await queue.claim_key(queue_name, "report:7", other) == third
        await queue.release_key(queue_name, "report:7", third)
        assert await queue.claim_key(queue_name, "report:7", other) is None

    async def test_a_late_ack_or_release_after_a_reap_changes_nothing(
        self, queue: Any, queue_name: str
    ) -> None:
        """A worker that finishes after its lease was reaped (it stalled) acks or releases a lease
        that is no longer its own: nothing changes — the redelivered task stays with its new
        consumer, and is not queued a second time.

        Troubleshooting: ``ack``/``release`` act only on the consumer's own in-flight record
        (``LREM`` on its list returning 0, ``DELETE ... WHERE consumer = ...``); a release that
        found nothing must not push anything back.
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 5
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        stalled_one, stalled_two = await self._take(queue, queue_name, 2, consumer="stalled")
        report = await self._lose(queue, queue_name, "stalled")
        assert sorted(numbers(list(report.requeued))) == [1, 2]
        (again,) = await self._take(queue, queue_name, 1, consumer="next")
        await queue.ack(stalled_one)
        await queue.release(stalled_two)
        await queue.release(stalled_one)
        assert await queue.length(queue_name) == 1, "a late release queued a task a second time"
        assert (await queue.stats(queue_name)).in_flight == 1, "a late ack took the new consumer's lease"
        await queue.ack(again)
        other = 3 - int(again.envelope.context["n"])
        assert numbers(await self._drain(queue, queue_name)) == [other]

    async def test_a_waiting_consumer_is_woken_by_release_reap_and_requeue(
        self, queue: Any, queue_name: str
    ) -> None:
        """Every way a task becomes available wakes a consumer blocked in ``reserve`` within
        ``wake_within_s``: ``release``, a ``reap`` that requeues, and ``requeue_dead``.

        Troubleshooting: send the same wake-up from every write that puts a task back (the
        blocking pop sees list pushes from scripts too; a NOTIFY must be sent by each).
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 2

        async def woken_by(give_back: Any, consumer: str) -> tuple[Lease | None, float]:
            got: list[Lease | None] = []

            async def wait() -> None:
                got.append(await queue.reserve(queue_name, consumer, 5.0))

            with anyio.fail_after(6):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    await anyio.sleep(0.05)
                    start = time.monotonic()
                    await give_back()
            return got[0], time.monotonic() - start

        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (held,) = await self._take(queue, queue_name, 1, consumer="holder")
        lease, delay = await woken_by(lambda: queue.release(held), "waiter-1")
        assert lease is not None and numbers([lease.envelope]) == [1], "release did not wake the waiter"
        assert delay <= 2 * self.wake_within_s, f"release woke the waiter after {delay * 1000:.0f} ms"
        await anyio.sleep(self.expire_wait)  # waiter-1 now holds task 1 and goes silent
        lease, delay = await woken_by(lambda: queue.reap(queue_name), "waiter-2")
        assert lease is not None and lease.envelope.attempts == 1, "a reap that requeued did not wake the waiter"
        assert delay <= 2 * self.wake_within_s, f"reap woke the waiter after {delay * 1000:.0f} ms"
        await anyio.sleep(self.expire_wait)
        assert len((await queue.reap(queue_name)).dead) == 1
        (buried,) = await queue.dead_letters(queue_name)
        lease, delay = await woken_by(lambda: queue.requeue_dead(queue_name, [buried.id]), "waiter-3")
        assert lease is not None and numbers([lease.envelope]) == [1], "requeue_dead did not wake the waiter"
        assert delay <= 2 * self.wake_within_s, f"requeue_dead woke the waiter after {delay * 1000:.0f} ms"

    async def test_a_consumer_that_gives_up_leaves_the_others_waiting(
        self, queue: Any, queue_name: str
    ) -> None:
        """When one of several blocked consumers times out, the others still get the next task
        promptly.

        Troubleshooting: on timeout, remove only that consumer's own waiter (compare by identity),
        never the others'.
        """
        got: list[Lease | None] = []

        async def patient() -> None:
            got.append(await queue.reserve(queue_name, "patient", 5.0))

        with anyio.fail_after(6):
            async with anyio.create_task_group() as tg:
                tg.start_soon(patient)
                await anyio.sleep(0.02)
                assert await queue.reserve(queue_name, "hasty", 0.1) is None
                start = time.monotonic()
                await queue.push(envelope(queue_name, 1), Priority.LOW)
        assert [numbers([g.envelope]) for g in got if g is not None] == [[1]]
        assert time.monotonic() - start <= 2 * self.wake_within_s

    # -- batches ---------------------------------------------------------------------------
    async def test_reserve_many_takes_up_to_max_count_in_priority_order(
        self, queue: Any, queue_name: str
    ) -> None:
        """``reserve_many`` takes at most ``max_count`` tasks, in the order ``reserve`` would,
        each one leased and in flight for the consumer (handed out again if it dies).

        Needs ``Capabilities.reserve_many``. Troubleshooting: take and record each task in flight
        in one atomic step, as ``reserve`` does (one Lua script, one ``UPDATE ... RETURNING``);
        stop at ``max_count``.
        """
        self.require("reserve_many", queue)
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 3
        for n, prio in [(1, Priority.LOW), (2, Priority.LOW), (3, Priority.HIGH), (4, Priority.LOW)]:
            await queue.push(envelope(queue_name, n, prio), prio)
        with anyio.fail_after(5):
            leases = await queue.reserve_many(queue_name, "batch", 3, 1.0)
        assert numbers([lease.envelope for lease in leases]) == [3, 1, 2], (
            f"reserve_many(max_count=3) gave {numbers([lease.envelope for lease in leases])}"
        )
        assert all(lease.consumer_id == "batch" and lease.queue_name == queue_name for lease in leases)
        assert await queue.length(queue_name) == 1
        assert (await queue.stats(queue_name)).in_flight == 3, "every task reserve_many took is in flight"
        report = await self._lose(queue, queue_name, "batch")
        assert sorted(numbers(list(report.requeued))) == [1, 2, 3], "a dead consumer's batch was lost"
        assert sorted(numbers(await self._drain(queue, queue_name))) == [1, 2, 3, 4]

    async def test_reserve_many_waits_and_wakes_like_reserve(self, queue: Any, queue_name: str) -> None:
        """On an empty queue ``reserve_many`` waits ``timeout`` seconds and returns ``[]``; a
        task pushed while it waits is returned at once.

        Needs ``Capabilities.reserve_many``. Troubleshooting: block for the first task as
        ``reserve`` does, then take the rest without waiting.
        """
        self.require("reserve_many", queue)
        start = time.monotonic()
        with anyio.fail_after(5):
            assert await queue.reserve_many(queue_name, "batch", 4, 0.2) == []
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed <= 0.2 + self.timeout_overrun_s, (
            f"reserve_many(timeout=0.2) returned [] after {elapsed:.3f} s"
        )
        got: list[list[Lease]] = []

        async def take() -> None:
            got.append(await queue.reserve_many(queue_name, "batch", 4, 5.0))

        async def push() -> None:
            await queue.push(envelope(queue_name, len(got)), Priority.LOW)

        delay = await self._wake_latency(take, push)
        assert [numbers([lease.envelope for lease in batch]) for batch in got] == [[0], [1], [2]]
        assert delay <= self.wake_within_s, f"reserve_many woke {delay * 1000:.0f} ms after the push"

    async def test_reserve_many_dead_letters_malformed_payloads(self, queue: Any, queue_name: str) -> None:
        """``reserve_many`` dead-letters payloads that are not envelopes and returns the tasks
        around them.

        Needs ``Capabilities.reserve_many`` and ``Capabilities.raw_payloads``. Troubleshooting:
        the batch path must validate each payload as ``reserve`` does.
        """
        self.require("reserve_many", queue)
        self.require("raw_payloads", queue)
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await push_raw(queue, queue_name, "not a task either", Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        with anyio.fail_after(5):
            leases = await queue.reserve_many(queue_name, "batch", 5, 1.0)
        assert numbers([lease.envelope for lease in leases]) == [1, 2]
        dead = await queue.dead_letters(queue_name)
        assert [(d.payload, d.envelope) for d in dead] == [("not a task either", None)]

    async def test_ack_many_acknowledges_every_lease_given(self, queue: Any, queue_name: str) -> None:
        """``ack_many`` has the effect of ``ack`` on each lease given, and on no other.

        Needs ``Capabilities.ack_many``. Troubleshooting: remove every given token (all of
        ``ARGV``/the whole ``IN (...)`` list), each from its own consumer's record.
        """
        self.require("ack_many", queue)
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 3
        for n in (1, 2, 3, 4):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        one, two, three = await self._take(queue, queue_name, 3, consumer="slots")
        (other,) = await self._take(queue, queue_name, 1, consumer="other")
        await queue.ack_many([three, one, other])
        assert (await queue.stats(queue_name)).in_flight == 1
        await queue.ack_many([])
        report = await self._lose(queue, queue_name, "slots")
        assert numbers(list(report.requeued)) == [2]
        assert two.envelope.context["n"] == 2

    async def test_ack_many_ends_locks_and_keys_as_ack_does(self, queue: Any, queue_name: str) -> None:
        """A lease that holds locks or an enqueue key ends in ``ack_many`` as in ``ack``: its
        lock's parked task goes back to the queue, its key is free for the next claim.

        Needs ``Capabilities.ack_many``, ``task_locks`` and ``enqueue_keys``. Troubleshooting:
        the batch statement that removes the tokens is not the whole of an ack; leases whose
        envelope has ``locks`` or ``key`` need the rest of ``ack`` too."""
        for capability in ("ack_many", "task_locks", "enqueue_keys"):
            self.require(capability, queue)
        queue.lease_timeout = 30.0
        holder = envelope(queue_name, 1).model_copy(update={"locks": {"key:a": 1}, "key": "report:9"})
        assert await queue.claim_key(queue_name, "report:9", holder.agent_id) is None
        await queue.push(holder, Priority.LOW)
        await self._locked(queue, queue_name, 2, {"key:a": 1})
        await queue.push(envelope(queue_name, 3), Priority.LOW)
        first, second, plain = await self._take(queue, queue_name, 3)
        assert [await queue.acquire(first), await queue.acquire(second)] == [True, False]
        await queue.ack_many([plain, first])
        assert await queue.parked(queue_name) == 0, "ack_many left the lock's parked task parked"
        assert await queue.length(queue_name) == 1
        assert await queue.claim_key(queue_name, "report:9", uuid.uuid4()) is None, (
            "the key outlived its task's ack_many"
        )
        assert (await queue.stats(queue_name)).in_flight == 0

    # -- dead letters ----------------------------------------------------------------------
    async def test_dead_letter_after_max_attempts(self, queue: Any, queue_name: str) -> None:
        """When a delivery would exceed ``max_attempts``, the task is dead-lettered with a reason;
        in the same ``reap``, a task with attempts left is requeued.

        With ``max_attempts=2``: first expiry requeues it (attempts 1), second dead-letters it.
        Troubleshooting: compare ``envelope.attempts + 1 >= max_attempts`` (read the attribute at
        reap time) for each task, store a ``DeadLetter`` with its queue name, a human reason, the
        stored payload, the envelope and the wall-clock ``failed_at``, and report it in
        ``ReapReport.dead``; ``requeue_dead`` resets ``attempts`` to 0.
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 2
        sent = envelope(queue_name, 1)
        await queue.push(sent, Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="dies-1")
        await anyio.sleep(self.expire_wait)
        first = await queue.reap(queue_name)
        assert numbers(list(first.requeued)) == [1] and first.dead == ()
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        await self._take(queue, queue_name, 2, consumer="dies-2")
        await anyio.sleep(self.expire_wait)
        second = await queue.reap(queue_name)
        assert numbers(list(second.requeued)) == [2], "task 2 had attempts left: it must be requeued"
        assert len(second.dead) == 1
        dead = second.dead[0]
        assert dead.reason, "a dead letter must say why"
        assert dead.envelope is not None and dead.envelope.agent_id == sent.agent_id
        assert dead.envelope.attempts == 1
        assert dead.queue_name == queue_name
        assert abs(dead.failed_at - time.time()) < 60, "failed_at is the wall-clock time it was buried"
        assert Envelope.model_validate_json(dead.payload).agent_id == sent.agent_id
        assert await queue.length(queue_name) == 1
        stored = await queue.dead_letters(queue_name)
        assert [d.id for d in stored] == [dead.id]
        assert (await queue.stats(queue_name)).dead == 1
        assert await queue.requeue_dead(queue_name, [dead.id]) == 1
        again = await self._drain(queue, queue_name)
        assert [(e.agent_id, e.attempts) for e in again if e.agent_id == sent.agent_id] == [(sent.agent_id, 0)], (
            "requeue_dead must reset attempts to 0"
        )

    async def test_dead_letters_are_listed_oldest_first(self, queue: Any, queue_name: str) -> None:
        """``dead_letters`` lists a queue's dead letters oldest first, and ``limit`` keeps the
        oldest.

        Troubleshooting: append dead letters at the end of their list (RPUSH) or order by the
        time/row id they were buried at, ascending.
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 1
        for n in (1, 2, 3):
            await queue.push(envelope(queue_name, n), Priority.LOW)
            await self._take(queue, queue_name, 1, consumer=f"gone-{n}")
            report = await self._lose(queue, queue_name, f"gone-{n}")
            assert numbers([d.envelope for d in report.dead if d.envelope]) == [n]
        listed = await queue.dead_letters(queue_name)
        assert numbers([d.envelope for d in listed if d.envelope]) == [1, 2, 3]
        limited = await queue.dead_letters(queue_name, limit=2)
        assert numbers([d.envelope for d in limited if d.envelope]) == [1, 2]

    async def test_requeue_dead_and_purge_dead(self, queue: Any, queue_name: str) -> None:
        """``requeue_dead`` pushes dead letters back with attempts 0; ``purge_dead`` deletes them.

        Troubleshooting: both return how many they handled; ``requeue_dead(ids=[...])`` touches
        only the given ids; ``dead_letters`` lists the rest oldest first.
        """
        queue.lease_timeout = self.lease_timeout_s
        queue.max_attempts = 1
        for n in (1, 2, 3, 4, 5):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        await self._take(queue, queue_name, 5, consumer="dies")
        await anyio.sleep(self.expire_wait)
        report = await queue.reap(queue_name)
        assert len(report.dead) == 5 and report.requeued == ()
        dead = await queue.dead_letters(queue_name)
        assert sorted(numbers([d.envelope for d in dead if d.envelope])) == [1, 2, 3, 4, 5]
        assert len(await queue.dead_letters(queue_name, limit=2)) == 2
        by_n = {int(d.envelope.context["n"]): d.id for d in dead if d.envelope}
        assert await queue.requeue_dead(queue_name, [by_n[2]]) == 1
        got = await self._drain(queue, queue_name)
        assert numbers(got) == [2] and got[0].attempts == 0
        assert await queue.requeue_dead(queue_name, [by_n[3], by_n[4]]) == 2
        assert sorted(numbers(await self._drain(queue, queue_name))) == [3, 4]
        left = await queue.dead_letters(queue_name)
        assert sorted(d.id for d in left) == sorted([by_n[1], by_n[5]])
        assert await queue.purge_dead(queue_name) == 2
        assert await queue.dead_letters(queue_name) == []
        assert await queue.requeue_dead(queue_name) == 0
        assert (await queue.stats(queue_name)).dead == 0

    async def test_malformed_payload_is_dead_lettered(self, queue: Any, queue_name: str) -> None:
        """``reserve`` dead-letters a payload that is not an envelope and returns the next task.

        Needs ``Capabilities.raw_payloads``. Troubleshooting: catch the validation error of
        ``Envelope.model_validate_json`` inside ``reserve``, store a ``DeadLetter`` with the raw
        payload, ``envelope=None`` and the reason, and keep looking.
        """
        self.require("raw_payloads", queue)
        await push_raw(queue, queue_name, "this is not a task", Priority.LOW)
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        assert numbers([lease.envelope]) == [1]
        dead = await queue.dead_letters(queue_name)
        assert len(dead) == 1
        assert dead[0].payload == "this is not a task"
        assert dead[0].envelope is None
        assert dead[0].reason

    async def test_out_of_range_attempts_are_dead_lettered(self, queue: Any, queue_name: str) -> None:
        """A payload whose ``attempts`` is negative (or past 2**31-1) is not a task: it is
        dead-lettered with the reason, like any malformed payload. Run as it is, a negative
        count would never reach ``max_attempts``, so a task that kills its worker would loop.

        Needs ``Capabilities.raw_payloads``. Troubleshooting: validate with
        ``Envelope.model_validate_json`` (its ``attempts`` field is bounded) and dead-letter
        what fails; never read ``attempts`` out of the raw JSON yourself.
        """
        self.require("raw_payloads", queue)
        for attempts in (-1_000_000, 2**40):
            forged = envelope(queue_name, 0).model_dump_json().replace('"attempts":0', f'"attempts":{attempts}')
            await push_raw(queue, queue_name, forged, Priority.LOW)
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        assert numbers([lease.envelope]) == [1]
        dead = await queue.dead_letters(queue_name)
        assert len(dead) == 2
        assert all(d.envelope is None and "attempts" in d.reason for d in dead), [d.reason for d in dead]

    async def test_dead_letters_lists_100_by_default(self, queue: Any, queue_name: str) -> None:
        """``dead_letters(queue_name)`` without a ``limit`` lists the 100 oldest.

        Needs ``Capabilities.raw_payloads``. Troubleshooting: keep the protocol's default
        ``limit=100`` (``LRANGE key 0 99``, ``LIMIT 100``).
        """
        self.require("raw_payloads", queue)
        for i in range(101):
            await push_raw(queue, queue_name, f"not a task {i}", Priority.LOW)
        with anyio.fail_after(10):
            assert await queue.reserve(queue_name, "c1", 0.05) is None
        listed = await queue.dead_letters(queue_name)
        assert [d.payload for d in listed] == [f"not a task {i}" for i in range(100)]
        assert (await queue.stats(queue_name)).dead == 101

    async def test_stats_reports_depth_in_flight_and_consumers(self, queue: Any, queue_name: str) -> None:
        """``stats`` gives waiting HIGH/LOW counts, in-flight count, dead count and consumers.

        Troubleshooting: ``consumers`` maps each consumer id that reserved or heartbeated on the
        queue to the age of its last heartbeat in seconds.
        """
        for n, prio in [(1, Priority.HIGH), (2, Priority.HIGH), (3, Priority.LOW),
                        (4, Priority.LOW), (5, Priority.LOW), (6, Priority.HIGH)]:
            await queue.push(envelope(queue_name, n, prio), prio)
        await self._take(queue, queue_name, 1, consumer="c1")
        await queue.heartbeat(queue_name, "c1")
        stats = await queue.stats(queue_name)
        assert stats.queue_name == queue_name
        assert (stats.high, stats.low, stats.in_flight, stats.dead) == (2, 3, 1, 0)
        assert "c1" in stats.consumers
        assert 0 <= stats.consumers["c1"] < 5

    async def test_close_then_use_again(self, queue: Any, queue_name: str) -> None:
        """After ``close`` the backend still works: the next call reconnects.

        Troubleshooting: let ``close`` release connections and reset the client to "not
        connected", and create it again lazily on the next call (a pool restarted in the same
        process reuses its backends).
        """
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.close()
        assert await queue.length(queue_name) == 1
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        assert numbers(await self._drain(queue, queue_name)) == [1, 2]

    # -- concurrency -----------------------------------------------------------------------
    async def test_concurrent_consumers_get_each_task_exactly_once(self, queue: Any, queue_name: str) -> None:
        """Four consumers racing over 200 tasks: every task is delivered once, none lost.

        Troubleshooting: taking a task and recording it in flight must be one atomic step (BLMOVE,
        a Lua script, ``SELECT ... FOR UPDATE SKIP LOCKED``); never read-then-remove.
        """
        total = 200
        await queue.push_many([envelope(queue_name, n) for n in range(total)])
        seen: list[int] = []

        async def consume(consumer: str) -> None:
            idle = 0
            while len(seen) < total and idle < 3:  # stop after ~0.3 s with nothing left
                lease = await queue.reserve(queue_name, consumer, 0.1)
                if lease is None:
                    idle += 1
                    continue
                idle = 0
                seen.append(int(lease.envelope.context["n"]))
                await queue.ack(lease)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(consume, f"c{i}")
        duplicates = sorted({n for n in seen if seen.count(n) > 1})
        assert not duplicates, f"tasks delivered more than once: {duplicates[:10]}"
        assert sorted(seen) == list(range(total)), "some tasks were lost"
        assert await queue.length(queue_name) == 0
