"""``QueueSuite``: the executable contract of :class:`agentexec.backends.QueueBackend`."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from agentexec.backends import Lease, ReapReport
from agentexec.task import Envelope, Priority
from agentexec.testing._helpers import envelope, numbers, push_raw, unique
from agentexec.testing._suite import Suite

#: lease timeout the suite sets on the queue under test for expiry tests (seconds)
SHORT_LEASE = 0.3
#: how long a consumer stays silent so its lease has certainly expired
EXPIRE_WAIT = SHORT_LEASE + 0.25


@pytest.mark.anyio
class QueueSuite(Suite):
    """Subclass and provide a ``queue`` fixture that yields a fresh backend::

        class TestAcmeQueue(QueueSuite):
            @pytest.fixture
            async def queue(self):
                q = AcmeQueue("acme://localhost")
                yield q
                await q.close()

    The suite uses a new queue name in every test and sets ``queue.lease_timeout`` and
    ``queue.max_attempts`` itself, so those attributes must be read at each operation.
    """

    @pytest.fixture
    def queue(self) -> Any:
        pytest.fail("QueueSuite needs a `queue` fixture that yields your queue backend")

    @pytest.fixture
    def queue_name(self) -> str:
        return unique("axkit-q-")

    # -- helpers ---------------------------------------------------------------------------
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

    # -- basics ----------------------------------------------------------------------------
    async def test_push_then_reserve_returns_the_envelope(self, queue: Any, queue_name: str) -> None:
        """A pushed envelope comes back from ``reserve`` unchanged, in a lease for that consumer.

        Troubleshooting: serialize the whole envelope (``envelope.model_dump_json()``) and parse it
        back with ``Envelope.model_validate_json``; put ``consumer_id`` and ``queue_name`` on the Lease.
        """
        sent = envelope(queue_name, 7)
        await queue.push(sent, Priority.LOW)
        with anyio.fail_after(5):
            lease = await queue.reserve(queue_name, "c1", 1.0)
        assert lease is not None
        assert lease.envelope == sent
        assert lease.consumer_id == "c1"
        assert lease.queue_name == queue_name

    async def test_reserve_on_empty_queue_returns_none_after_timeout(self, queue: Any, queue_name: str) -> None:
        """``reserve`` waits up to ``timeout`` seconds, then returns ``None``.

        Troubleshooting: a blocking pop with a timeout (BLMOVE, LISTEN/NOTIFY, a condition) must
        return ``None`` rather than raise when nothing came; fractional timeouts must be honoured.
        """
        start = time.monotonic()
        with anyio.fail_after(5):
            assert await queue.reserve(queue_name, "c1", 0.2) is None
        assert time.monotonic() - start >= 0.15, "reserve returned before its timeout"

    async def test_reserve_wakes_when_a_task_is_pushed(self, queue: Any, queue_name: str) -> None:
        """A consumer blocked in ``reserve`` gets a task pushed while it waits, promptly.

        Troubleshooting: waiting consumers must be woken by the push (blocking pop, notification),
        not by polling at an interval longer than a few tens of milliseconds.
        """
        got: list[Lease | None] = []
        pushed_at = 0.0

        async def consume() -> None:
            got.append(await queue.reserve(queue_name, "c1", 5.0))

        with anyio.fail_after(6):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.1)
                pushed_at = time.monotonic()
                await queue.push(envelope(queue_name, 1), Priority.LOW)
        assert got and got[0] is not None
        assert numbers([got[0].envelope]) == [1]
        assert time.monotonic() - pushed_at < 0.5, "reserve woke up late after the push"

    # -- ordering --------------------------------------------------------------------------
    async def test_high_priority_is_taken_before_low(self, queue: Any, queue_name: str) -> None:
        """Every HIGH task is reserved before any LOW task, whatever the push order.

        Troubleshooting: HIGH goes to the front of the queue (the end consumers take from, e.g.
        RPUSH when consumers pop from the right), LOW to the back; check that ``push`` honours its
        ``priority`` argument rather than a default.
        """
        for n, prio in [(1, Priority.LOW), (2, Priority.LOW), (3, Priority.HIGH),
                        (4, Priority.LOW), (5, Priority.HIGH)]:
            await queue.push(envelope(queue_name, n, prio), prio)
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
        queue.lease_timeout = SHORT_LEASE
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        await queue.ack(lease)
        assert (await queue.stats(queue_name)).in_flight == 0
        await anyio.sleep(EXPIRE_WAIT)
        report = await queue.reap(queue_name)
        assert report.requeued == () and report.dead == ()
        assert await queue.length(queue_name) == 0

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
        queue.lease_timeout = SHORT_LEASE
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await self._take(queue, queue_name, 1)
        for _ in range(8):  # well past two lease timeouts, heartbeating three times per timeout
            await anyio.sleep(SHORT_LEASE / 3)
            await queue.heartbeat(queue_name, "c1")
            report = await queue.reap(queue_name)
            assert report.requeued == () and report.dead == (), "a heartbeating consumer lost its lease"
        assert await queue.length(queue_name) == 0
        assert (await queue.stats(queue_name)).in_flight == 1

    async def test_expired_lease_is_redelivered_to_the_front(self, queue: Any, queue_name: str) -> None:
        """A task whose consumer stopped heartbeating comes back first, with ``attempts`` + 1.

        Troubleshooting: ``reap`` must find consumers whose last heartbeat (or reserve) is older
        than ``lease_timeout``, move their in-flight tasks to the front of the queue with
        ``envelope.next_attempt()``, and report them in ``ReapReport.requeued``.
        """
        queue.lease_timeout = SHORT_LEASE
        queue.max_attempts = 3
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1, consumer="dies")
        await anyio.sleep(EXPIRE_WAIT)
        report = await queue.reap(queue_name)
        assert [e.agent_id for e in report.requeued] == [lease.envelope.agent_id], (
            "reap did not hand back the expired lease"
        )
        assert report.requeued[0].attempts == 1
        got = await self._drain(queue, queue_name, consumer="c2")
        assert numbers(got) == [1, 2], "the redelivered task must go to the front"
        assert got[0].attempts == 1

    async def test_reap_leaves_live_consumers_alone(self, queue: Any, queue_name: str) -> None:
        """``reap`` takes back only the tasks of silent consumers, never of heartbeating ones.

        Troubleshooting: track liveness per consumer id (and per queue), not per queue.
        """
        queue.lease_timeout = SHORT_LEASE
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        await queue.push(envelope(queue_name, 2), Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="dies")
        await self._take(queue, queue_name, 1, consumer="lives")
        for _ in range(6):  # past one lease timeout
            await anyio.sleep(SHORT_LEASE / 3)
            await queue.heartbeat(queue_name, "lives")
        report = await queue.reap(queue_name)
        assert numbers(list(report.requeued)) == [1]
        assert (await queue.stats(queue_name)).in_flight == 1

    async def test_reap_consumer_hands_back_one_consumers_tasks_at_once(
        self, queue: Any, queue_name: str
    ) -> None:
        """``reap_consumer`` returns one consumer's tasks to the front now, whatever its heartbeat.

        Needs ``Capabilities.reap_consumer``. Troubleshooting: apply ``reap``'s rules (attempts + 1
        to the front, dead-letter past ``max_attempts``) to that consumer's in-flight record only,
        without checking its heartbeat age; leave other consumers alone.
        """
        self.require("reap_consumer")
        if not callable(getattr(queue, "reap_consumer", None)):
            pytest.fail(
                "Capabilities.reap_consumer is on but the queue has no reap_consumer(queue_name, "
                "consumer_id). Add it, or declare `capabilities = Capabilities(reap_consumer=False)`."
            )
        queue.lease_timeout = 30.0
        queue.max_attempts = 3
        for n in (1, 2, 3):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="killed")
        await self._take(queue, queue_name, 1, consumer="alive")
        report = await queue.reap_consumer(queue_name, "killed")
        assert numbers(list(report.requeued)) == [1] and report.dead == ()
        assert report.requeued[0].attempts == 1
        assert (await queue.stats(queue_name)).in_flight == 1, "the live consumer keeps its task"
        got = await self._drain(queue, queue_name, consumer="c2")
        assert numbers(got) == [1, 3] and got[0].attempts == 1
        assert (await queue.reap_consumer(queue_name, "nobody")) == ReapReport()

    async def test_in_flight_lists_one_consumers_tasks_oldest_first(
        self, queue: Any, queue_name: str
    ) -> None:
        """``in_flight`` returns what one consumer holds now, oldest first, with the attempts it
        was handed out with; acknowledged tasks and other consumers' tasks are not in it.

        Needs ``Capabilities.in_flight``. Troubleshooting: read the consumer's in-flight record
        without changing it; a redelivered task must show its incremented ``attempts``.
        """
        self.require("in_flight")
        if not callable(getattr(queue, "in_flight", None)):
            pytest.fail(
                "Capabilities.in_flight is on but the queue has no in_flight(queue_name, "
                "consumer_id). Add it, or declare `capabilities = Capabilities(in_flight=False)`."
            )
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
        if callable(getattr(queue, "reap_consumer", None)):
            await queue.reap_consumer(queue_name, "one")
            assert await queue.in_flight(queue_name, "one") == []
            again = await self._take(queue, queue_name, 1, consumer="three")
            held = await queue.in_flight(queue_name, "three")
            assert numbers(held) == numbers([lease.envelope for lease in again]) == [2]
            assert held[0].attempts == 1

    async def test_dead_letter_after_max_attempts(self, queue: Any, queue_name: str) -> None:
        """When a delivery would exceed ``max_attempts``, the task is dead-lettered with a reason.

        With ``max_attempts=2``: first expiry requeues it (attempts 1), second dead-letters it.
        Troubleshooting: compare ``envelope.attempts + 1 >= max_attempts`` (read the attribute at
        reap time), store a ``DeadLetter`` with a human reason and the envelope, and report it in
        ``ReapReport.dead``.
        """
        queue.lease_timeout = SHORT_LEASE
        queue.max_attempts = 2
        sent = envelope(queue_name, 1)
        await queue.push(sent, Priority.LOW)
        await self._take(queue, queue_name, 1, consumer="dies-1")
        await anyio.sleep(EXPIRE_WAIT)
        first = await queue.reap(queue_name)
        assert numbers(list(first.requeued)) == [1] and first.dead == ()
        await self._take(queue, queue_name, 1, consumer="dies-2")
        await anyio.sleep(EXPIRE_WAIT)
        second = await queue.reap(queue_name)
        assert second.requeued == ()
        assert len(second.dead) == 1
        dead = second.dead[0]
        assert dead.reason, "a dead letter must say why"
        assert dead.envelope is not None and dead.envelope.agent_id == sent.agent_id
        assert await queue.length(queue_name) == 0
        stored = await queue.dead_letters(queue_name)
        assert [d.id for d in stored] == [dead.id]
        assert (await queue.stats(queue_name)).dead == 1

    async def test_requeue_dead_and_purge_dead(self, queue: Any, queue_name: str) -> None:
        """``requeue_dead`` pushes dead letters back with attempts 0; ``purge_dead`` deletes them.

        Troubleshooting: both return how many they handled; ``requeue_dead(ids=[...])`` touches
        only the given ids; ``dead_letters`` lists the rest oldest first.
        """
        queue.lease_timeout = SHORT_LEASE
        queue.max_attempts = 1
        for n in (1, 2, 3):
            await queue.push(envelope(queue_name, n), Priority.LOW)
        await self._take(queue, queue_name, 3, consumer="dies")
        await anyio.sleep(EXPIRE_WAIT)
        report = await queue.reap(queue_name)
        assert len(report.dead) == 3 and report.requeued == ()
        dead = await queue.dead_letters(queue_name)
        assert sorted(numbers([d.envelope for d in dead if d.envelope])) == [1, 2, 3]
        assert len(await queue.dead_letters(queue_name, limit=2)) == 2
        chosen = [d for d in dead if d.envelope and d.envelope.context["n"] == 2]
        assert await queue.requeue_dead(queue_name, [chosen[0].id]) == 1
        got = await self._drain(queue, queue_name)
        assert numbers(got) == [2] and got[0].attempts == 0
        assert len(await queue.dead_letters(queue_name)) == 2
        assert await queue.purge_dead(queue_name) == 2
        assert await queue.dead_letters(queue_name) == []
        assert await queue.requeue_dead(queue_name) == 0

    async def test_malformed_payload_is_dead_lettered(self, queue: Any, queue_name: str) -> None:
        """``reserve`` dead-letters a payload that is not an envelope and returns the next task.

        Needs ``Capabilities.raw_payloads``. Troubleshooting: catch the validation error of
        ``Envelope.model_validate_json`` inside ``reserve``, store a ``DeadLetter`` with the raw
        payload, ``envelope=None`` and the reason, and keep looking.
        """
        self.require("raw_payloads")
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
        self.require("raw_payloads")
        for attempts in (-1_000_000, 2**40):
            forged = envelope(queue_name, 0).model_dump_json().replace('"attempts":0', f'"attempts":{attempts}')
            await push_raw(queue, queue_name, forged, Priority.LOW)
        await queue.push(envelope(queue_name, 1), Priority.LOW)
        (lease,) = await self._take(queue, queue_name, 1)
        assert numbers([lease.envelope]) == [1]
        dead = await queue.dead_letters(queue_name)
        assert len(dead) == 2
        assert all(d.envelope is None and "attempts" in d.reason for d in dead), [d.reason for d in dead]

    async def test_stats_reports_depth_in_flight_and_consumers(self, queue: Any, queue_name: str) -> None:
        """``stats`` gives waiting HIGH/LOW counts, in-flight count, dead count and consumers.

        Troubleshooting: ``consumers`` maps each consumer id that reserved or heartbeated on the
        queue to the age of its last heartbeat in seconds.
        """
        for n, prio in [(1, Priority.HIGH), (2, Priority.HIGH), (3, Priority.LOW),
                        (4, Priority.LOW), (5, Priority.LOW)]:
            await queue.push(envelope(queue_name, n, prio), prio)
        await self._take(queue, queue_name, 1, consumer="c1")
        await queue.heartbeat(queue_name, "c1")
        stats = await queue.stats(queue_name)
        assert stats.queue_name == queue_name
        assert (stats.high, stats.low, stats.in_flight, stats.dead) == (1, 3, 1, 0)
        assert "c1" in stats.consumers
        assert 0 <= stats.consumers["c1"] < 5

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
