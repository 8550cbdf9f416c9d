"""``ResultsSuite``: the executable contract of :class:`agentexec.backends.ResultBackend`."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import pytest

from agentexec.testing._helpers import unique
from agentexec.testing._suite import Suite

#: how soon a waiter must see a value after it is set (generous for networked stores)
PROMPT = 0.5


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

    @pytest.fixture
    def results(self) -> Any:
        pytest.fail("ResultsSuite needs a `results` fixture that yields your result backend")

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
        self.require("staged_results")
        if not callable(getattr(results, "stage_many", None)):
            pytest.fail(
                "Capabilities.staged_results is on but the results backend has no stage_many(items, "
                "ttl) / staged(agent_id). Add them, or declare "
                "`capabilities = Capabilities(staged_results=False)`."
            )
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
        with anyio.fail_after(PROMPT):
            assert await results.wait(agent_id, 5.0) == b"early"

    async def test_wait_wakes_when_the_value_is_set(self, results: Any) -> None:
        """A waiter blocked in ``wait`` returns promptly once the value is set.

        Troubleshooting: wake waiters from ``set`` (pub/sub, LISTEN/NOTIFY, a condition); polling
        at an interval above a few tens of milliseconds is too slow.
        """
        agent_id = uuid.uuid4()
        got: list[bytes] = []

        async def waiter() -> None:
            got.append(await results.wait(agent_id, 5.0))

        with anyio.fail_after(6):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.1)
                set_at = time.monotonic()
                await results.set(agent_id, b"late", 60)
        assert got == [b"late"]
        assert time.monotonic() - set_at < PROMPT, "wait woke up late after the set"

    async def test_every_waiter_is_woken(self, results: Any) -> None:
        """Several waiters on one id all get the value.

        Troubleshooting: broadcast the wake-up (publish, NOTIFY, notify_all), do not hand it to one.
        """
        agent_id = uuid.uuid4()
        got: list[bytes] = []

        async def waiter() -> None:
            got.append(await results.wait(agent_id, 5.0))

        with anyio.fail_after(PROMPT + 0.5):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(waiter)
                await anyio.sleep(0.1)
                await results.set(agent_id, b"all", 60)
        assert got == [b"all"] * 3

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
        """``wait`` raises ``TimeoutError`` (the builtin) once ``timeout`` seconds pass.

        Troubleshooting: bound the whole wait by the deadline, including reconnects, and raise
        ``TimeoutError``, not a client-library exception or ``None``.
        """
        start = time.monotonic()
        with anyio.fail_after(3), pytest.raises(TimeoutError):
            await results.wait(uuid.uuid4(), 0.2)
        assert time.monotonic() - start >= 0.15, "wait gave up before its timeout"

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
        """A value is gone once its ``ttl`` (seconds) has passed.

        Troubleshooting: set the expiry with the value (SET EX / an ``expires_at`` column that
        ``get`` and ``wait`` check).
        """
        agent_id = uuid.uuid4()
        await results.set(agent_id, b"short-lived", 1)
        assert await results.get(agent_id) == b"short-lived"
        await anyio.sleep(1.3)
        assert await results.get(agent_id) is None

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

    async def test_claim_expires_after_ttl(self, results: Any) -> None:
        """A claimed key can be claimed again once its ``ttl`` has passed.

        Troubleshooting: store the claim with an expiry and treat expired claims as absent.
        """
        key = unique("axkit-claim-")
        assert await results.claim(key, 1) is True
        assert await results.claim(key, 1) is False
        await anyio.sleep(1.3)
        assert await results.claim(key, 1) is True
