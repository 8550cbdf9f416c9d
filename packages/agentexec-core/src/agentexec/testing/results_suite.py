"""``ResultsSuite``: the executable contract of :class:`agentexec.backends.ResultBackend` and of
its optional capabilities (``set_many``, ``stage_many``/``staged``, the runtime schedule
records).

Timing thresholds are class attributes (seconds) a backend may tighten freely; raising one
above the kit's default needs a ``timing_reason`` (see :class:`agentexec.testing.Suite`):

- ``wake_within_s`` (0.1): a blocked ``wait`` returns within this of the ``set`` (the median of
  three trials; the docs promise about a millisecond on Redis, a few on SQL). Wake-ups
  measured once (``set_many``, a waiter outliving another) may take twice as long.
- ``timeout_overrun_s`` (0.3): how late ``wait(timeout=t)`` may raise after ``t``
- ``expiry_slack_s`` (0.3): how long past its ``ttl`` a value or claim may linger; each is
  also checked to be still there at 60 % of its ``ttl``
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, ClassVar

import anyio
import pytest

from agentexec.backends import StagedResults
from agentexec.testing._helpers import unique
from agentexec.testing._suite import Suite


@pytest.mark.anyio
class ResultsSuite(Suite):
    """Subclass and provide a ``results`` fixture that yields a fresh backend::

        class TestAcmeResults(ResultsSuite):
            @pytest.fixture
            async def results(self):
                r = AcmeResults("acme://localhost")
                yield r
                await r.close()
    """

    wake_within_s: ClassVar[float] = 0.1
    timeout_overrun_s: ClassVar[float] = 0.3
    expiry_slack_s: ClassVar[float] = 0.3
    _timings = ("wake_within_s", "timeout_overrun_s", "expiry_slack_s")

    @pytest.fixture
    def results(self) -> Any:
        pytest.fail("ResultsSuite needs a `results` fixture that yields your result backend")

    async def _wake_latency(self, results: Any, store: Any) -> float:
        """Median delay of three trials from ``store(agent_id)`` to a blocked ``wait`` returning."""
        delays: list[float] = []
        for _ in range(3):
            agent_id = uuid.uuid4()
            returned: list[tuple[bytes, float]] = []

            async def waiter(agent_id: uuid.UUID = agent_id, returned: list[tuple[bytes, float]] = returned) -> None:
                value = await results.wait(agent_id, 5.0)
                returned.append((value, time.monotonic()))

            with anyio.fail_after(6):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    await anyio.sleep(0.05)
                    set_at = time.monotonic()
                    await store(agent_id)
            assert [value for value, _ in returned] == [str(agent_id).encode()]
            delays.append(returned[0][1] - set_at)
        return statistics.median(delays)

    async def test_set_then_get(self, results: Any) -> None:
        """``get`` returns exactly the bytes ``set`` stored, and ``None`` for an unknown id.

        Troubleshooting: store bytes untouched (binary-safe column / no decode_responses).
        """
        agent_id = uuid.uuid4()
        data = b'{"status":"ok"}' + bytes(range(256))
        assert await results.get(agent_id) is None
        await results.set(agent_id, data, 60)
        assert await results.get(agent_id) == data
        assert await results.get(uuid.uuid4()) is None

    async def test_a_staged_outcome_is_kept_apart_from_results(self, results: Any) -> None:
        """``stage_many`` keeps each value where ``staged`` finds it and no waiter sees it:
        ``get`` still returns ``None`` and ``wait`` does not wake until ``set``.

        Needs ``Capabilities.staged_results``. Troubleshooting: store staged values under keys of
        their own (e.g. ``staged:<agent_id>``), never under the result's own key, and send no
        wake-up for them.
        """
        self.require("staged_results", results)
        one, two = uuid.uuid4(), uuid.uuid4()
        await results.stage_many([(one, b"first"), (two, b"second")], 60)
        assert await results.staged(one) == b"first"
        assert await results.staged(two) == b"second"
        assert await results.staged(uuid.uuid4()) is None
        assert await results.get(one) is None, "a staged value must not be a result yet"
        with pytest.raises(TimeoutError):
            await results.wait(one, 0.2)
        await results.set(one, b"final", 60)
        assert await results.get(one) == b"final"

    async def test_set_overwrites(self, results: Any) -> None:
        """A second ``set`` for the same id replaces the first.

        Troubleshooting: upsert (SET / INSERT ... ON CONFLICT DO UPDATE), do not insert twice.
        """
        agent_id = uuid.uuid4()
        await results.set(agent_id, b"first", 60)
        await results.set(agent_id, b"second", 60)
        assert await results.get(agent_id) == b"second"

    async def test_wait_returns_a_value_set_before_the_wait(self, results: Any) -> None:
        """``wait`` returns at once when the value is already stored.

        Troubleshooting: read the stored value after subscribing to wake-ups and before blocking;
        a waiter that only listens for the next notification misses values set earlier.
        """
        agent_id = uuid.uuid4()
        await results.set(agent_id, b"early", 60)
        start = time.monotonic()
        with anyio.fail_after(5):
            assert await results.wait(agent_id, 5.0) == b"early"
        assert time.monotonic() - start <= self.wake_within_s, "wait did not return a stored value at once"

    async def test_wait_wakes_when_the_value_is_set(self, results: Any) -> None:
        """A waiter blocked in ``wait`` returns within ``wake_within_s`` of the ``set`` (median of
        three trials).

        Troubleshooting: wake waiters from ``set`` (pub/sub, LISTEN/NOTIFY, a condition); polling
        at an interval above a few tens of milliseconds is too slow.
        """

        async def store(agent_id: uuid.UUID) -> None:
            await results.set(agent_id, str(agent_id).encode(), 60)

        delay = await self._wake_latency(results, store)
        assert delay <= self.wake_within_s, (
            f"wait woke {delay * 1000:.0f} ms after the set (median of 3; allowed "
            f"{self.wake_within_s * 1000:.0f} ms, wake_within_s)"
        )

    async def test_every_waiter_is_woken(self, results: Any) -> None:
        """Several waiters on one id all get the value.

        Troubleshooting: broadcast the wake-up (publish, NOTIFY, notify_all), do not hand it to one.
        """
        agent_id = uuid.uuid4()
        got: list[bytes] = []

        async def waiter() -> None:
            got.append(await results.wait(agent_id, 5.0))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(waiter)
                await anyio.sleep(0.1)
                await results.set(agent_id, b"all", 60)
        assert got == [b"all"] * 3

    async def test_a_waiter_that_times_out_leaves_the_others_waiting(self, results: Any) -> None:
        """When one of several waiters on an id times out, the others are still woken by the
        ``set``.

        Troubleshooting: on timeout, unregister only that waiter (compare by identity), and keep
        the shared subscription while other waiters need it.
        """
        agent_id = uuid.uuid4()
        got: list[bytes] = []

        async def patient() -> None:
            got.append(await results.wait(agent_id, 5.0))

        with anyio.fail_after(6):
            async with anyio.create_task_group() as tg:
                tg.start_soon(patient)
                await anyio.sleep(0.02)
                with pytest.raises(TimeoutError):
                    await results.wait(agent_id, 0.1)
                start = time.monotonic()
                await results.set(agent_id, b"for the patient one", 60)
        assert got == [b"for the patient one"]
        assert time.monotonic() - start <= 2 * self.wake_within_s

    async def test_wait_ignores_other_ids(self, results: Any) -> None:
        """A value set for one id does not end the wait for another.

        Troubleshooting: key notifications by agent id, and re-check the stored value on wake-up.
        """
        mine, other = uuid.uuid4(), uuid.uuid4()
        got: list[bytes] = []

        async def waiter() -> None:
            got.append(await results.wait(mine, 5.0))

        with anyio.fail_after(6):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.05)
                await results.set(other, b"other", 60)
                await anyio.sleep(0.2)
                assert got == [], "wait returned for another id's value"
                await results.set(mine, b"mine", 60)
        assert got == [b"mine"]

    async def test_wait_times_out_with_timeout_error(self, results: Any) -> None:
        """``wait`` raises ``TimeoutError`` (the builtin) once ``timeout`` seconds pass: no
        sooner, and no more than ``timeout_overrun_s`` later.

        Troubleshooting: bound the whole wait by the deadline, including reconnects, and raise
        ``TimeoutError``, not a client-library exception or ``None``; keep fractional timeouts
        (``XREAD BLOCK`` takes milliseconds).
        """
        start = time.monotonic()
        with anyio.fail_after(3), pytest.raises(TimeoutError):
            await results.wait(uuid.uuid4(), 0.2)
        elapsed = time.monotonic() - start
        assert elapsed >= 0.15, "wait gave up before its timeout"
        assert elapsed <= 0.2 + self.timeout_overrun_s, (
            f"wait(timeout=0.2) raised after {elapsed:.3f} s "
            f"(allowed: {0.2 + self.timeout_overrun_s:.2f} s, timeout_overrun_s)"
        )

    async def test_delete_forgets_the_value(self, results: Any) -> None:
        """After ``delete``, ``get`` returns ``None``; deleting an unknown id is fine.

        Troubleshooting: ``delete`` must not raise when nothing is stored.
        """
        agent_id = uuid.uuid4()
        await results.set(agent_id, b"x", 60)
        await results.delete(agent_id)
        assert await results.get(agent_id) is None
        await results.delete(uuid.uuid4())

    async def test_value_expires_after_ttl(self, results: Any) -> None:
        """A value is still there at 60 % of its ``ttl`` (seconds), and gone once it has passed.

        Troubleshooting: set the expiry with the value in seconds (SET EX, not PX / an
        ``expires_at`` column that ``get`` and ``wait`` check).
        """
        agent_id = uuid.uuid4()
        await results.set(agent_id, b"short-lived", 1)
        assert await results.get(agent_id) == b"short-lived"
        await anyio.sleep(0.6)
        assert await results.get(agent_id) == b"short-lived", "the value was gone before its ttl"
        with anyio.fail_after(5):
            assert await results.wait(agent_id, 1.0) == b"short-lived"
        await anyio.sleep(0.4 + self.expiry_slack_s)
        assert await results.get(agent_id) is None, "the value outlived its ttl"

    async def test_claim_is_exactly_once_under_concurrency(self, results: Any) -> None:
        """Of twenty concurrent ``claim`` calls on one key, exactly one returns True.

        Troubleshooting: make claim an atomic set-if-absent (SET NX EX / INSERT ... ON CONFLICT
        DO NOTHING), never get-then-set.
        """
        key = unique("axkit-claim-")
        outcomes: list[bool] = []

        async def claim() -> None:
            outcomes.append(await results.claim(key, 30))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(claim)
        assert outcomes.count(True) == 1, f"{outcomes.count(True)} callers won the claim"
        assert await results.claim(unique("axkit-claim-"), 30) is True, "keys must be independent"

    async def test_schedule_records_are_kept_per_queue(self, results: Any) -> None:
        """``put_schedule_record`` inserts or replaces one schedule's text, ``schedule_records``
        returns a queue's records (name -> text) and no other queue's, ``delete_schedule_record``
        removes one and says whether it was there.

        Needs ``Capabilities.schedule_records``. Troubleshooting: key the records by queue AND
        name (a hash per queue, a two-column primary key); store the text untouched.
        """
        self.require("schedule_records", results)
        queue, other = unique("axkit-sched-"), unique("axkit-sched-")
        assert await results.schedule_records(queue) == {}
        await results.put_schedule_record(queue, "a", '{"every": 60}')
        await results.put_schedule_record(queue, "b", '{"cron": "0 9 * * *", "é": "ü"}')
        await results.put_schedule_record(other, "a", '{"other": true}')
        await results.put_schedule_record(queue, "a", '{"every": 120}')  # replaces
        assert await results.schedule_records(queue) == {"a": '{"every": 120}', "b": '{"cron": "0 9 * * *", "é": "ü"}'}
        assert await results.schedule_records(other) == {"a": '{"other": true}'}
        assert await results.delete_schedule_record(queue, "a") is True
        assert await results.delete_schedule_record(queue, "a") is False
        assert await results.schedule_records(queue) == {"b": '{"cron": "0 9 * * *", "é": "ü"}'}
        assert await results.schedule_records(other) == {"a": '{"other": true}'}
        await results.delete_schedule_record(queue, "b")
        await results.delete_schedule_record(other, "a")

    async def test_add_schedule_record_is_set_if_absent_under_concurrency(self, results: Any) -> None:
        """Of twenty concurrent ``add_schedule_record`` calls on one name exactly one returns
        True and its text is kept; twenty concurrent ``put_schedule_record`` calls on a new name
        all succeed (one text is kept). Two pools or API servers creating one schedule at once
        must get one winner and a clean refusal, never a duplicate-key error.

        Needs ``Capabilities.schedule_records``. Troubleshooting: add is an atomic set-if-absent
        (HSETNX, INSERT ... ON CONFLICT DO NOTHING), never read-then-write; put is one upsert
        (HSET, INSERT ... ON CONFLICT DO UPDATE), never update-then-insert.
        """
        self.require("schedule_records", results)
        queue = unique("axkit-sched-")
        won: list[str] = []

        async def add(n: int) -> None:
            if await results.add_schedule_record(queue, "race", f'{{"n": {n}}}'):
                won.append(f'{{"n": {n}}}')

        async def put(n: int) -> None:
            await results.put_schedule_record(queue, "upsert", f'{{"n": {n}}}')

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(add, n)
                    tg.start_soon(put, n)
        assert len(won) == 1, f"{len(won)} concurrent adds of one name won"
        records = await results.schedule_records(queue)
        assert records["race"] == won[0]
        assert records["upsert"] in {f'{{"n": {n}}}' for n in range(20)}
        assert await results.add_schedule_record(queue, "race", "{}") is False
        await results.delete_schedule_record(queue, "race")
        await results.delete_schedule_record(queue, "upsert")

    async def test_claim_expires_after_ttl(self, results: Any) -> None:
        """A claim holds for its whole ``ttl`` (still refused at 60 % of it) and can be claimed
        again once it has passed.

        Troubleshooting: store the claim with an expiry in seconds (SET NX EX, not PX) and treat
        expired claims as absent.
        """
        key = unique("axkit-claim-")
        assert await results.claim(key, 1) is True
        assert await results.claim(key, 1) is False
        await anyio.sleep(0.6)
        assert await results.claim(key, 1) is False, "a claim lapsed before its ttl"
        await anyio.sleep(0.4 + self.expiry_slack_s)
        assert await results.claim(key, 1) is True

    async def test_set_many_stores_each_and_wakes_each_waiter(self, results: Any) -> None:
        """``set_many`` has the effect of ``set`` on every item: each value stored, each one's
        waiters woken within ``wake_within_s``.

        Needs ``Capabilities.set_many``. Troubleshooting: send the wake-up of every item in the
        batch (one per id, or one the waiters of every id listen to), not only the values.
        """
        self.require("set_many", results)
        ids = [uuid.uuid4() for _ in range(3)]
        got: dict[uuid.UUID, bytes] = {}

        async def waiter(agent_id: uuid.UUID) -> None:
            got[agent_id] = await results.wait(agent_id, 5.0)

        with anyio.fail_after(6):
            async with anyio.create_task_group() as tg:
                for agent_id in ids[:2]:
                    tg.start_soon(waiter, agent_id)
                await anyio.sleep(0.05)
                set_at = time.monotonic()
                await results.set_many([(agent_id, agent_id.bytes) for agent_id in ids], 60)
        assert got == {agent_id: agent_id.bytes for agent_id in ids[:2]}
        delay = time.monotonic() - set_at
        assert delay <= 2 * self.wake_within_s, f"set_many woke its waiters after {delay * 1000:.0f} ms"
        for agent_id in ids:
            assert await results.get(agent_id) == agent_id.bytes
        await results.set_many([], 60)

    async def test_set_many_keeps_the_last_value_of_an_id_given_twice(self, results: Any) -> None:
        """An id given twice in one ``set_many`` (or ``stage_many``) ends with its later value,
        as two ``set`` calls would leave it, and a value already stored is replaced.

        Needs ``Capabilities.set_many``. Troubleshooting: a single upsert of the whole batch may
        not touch a row twice (PostgreSQL refuses it): keep each id's last value first.
        """
        self.require("set_many", results)
        one, two = uuid.uuid4(), uuid.uuid4()
        await results.set(two, b"before", 60)
        await results.set_many([(one, b"first"), (two, b"second"), (one, b"again")], 60)
        assert await results.get(one) == b"again"
        assert await results.get(two) == b"second"
        if isinstance(results, StagedResults):
            await results.stage_many([(one, b"first"), (one, b"again")], 60)
            assert await results.staged(one) == b"again"

    async def test_a_staged_outcome_expires_after_its_ttl(self, results: Any) -> None:
        """A staged outcome is still there at 60 % of its ``ttl`` and gone once it has passed.

        Needs ``Capabilities.staged_results``. Troubleshooting: give staged keys their own
        expiry in seconds (``SET ... EX ttl``), as results have.
        """
        self.require("staged_results", results)
        agent_id = uuid.uuid4()
        await results.stage_many([(agent_id, b"staged")], 1)
        await anyio.sleep(0.6)
        assert await results.staged(agent_id) == b"staged", "the staged outcome was gone before its ttl"
        await anyio.sleep(0.4 + self.expiry_slack_s)
        assert await results.staged(agent_id) is None, "the staged outcome outlived its ttl"

    async def test_close_then_use_again(self, results: Any) -> None:
        """After ``close`` the backend still works: the next call reconnects.

        Troubleshooting: let ``close`` release connections and create them again lazily.
        """
        agent_id = uuid.uuid4()
        await results.set(agent_id, b"before", 60)
        await results.close()
        assert await results.get(agent_id) == b"before"
        await results.set(agent_id, b"after", 60)
        with anyio.fail_after(5):
            assert await results.wait(agent_id, 1.0) == b"after"
