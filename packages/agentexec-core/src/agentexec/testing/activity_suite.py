"""``ActivityStoreSuite``: the executable contract of :class:`agentexec.backends.ActivityStore`."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import anyio
import pytest

from agentexec.activity.status import Status
from agentexec.backends import LogEntry, UnknownActivityError
from agentexec.testing._suite import Suite


@pytest.mark.anyio
class ActivityStoreSuite(Suite):
    """Subclass and provide an ``activity_store`` fixture that yields a fresh, EMPTY store
    (``list`` and ``cancel_pending`` see every activity, so share nothing between tests)::

        class TestAcmeStore(ActivityStoreSuite):
            @pytest.fixture
            async def activity_store(self, tmp_path):
                store = AcmeStore(f"acme:///{tmp_path}/db")
                yield store
                await store.aclose()
    """

    @pytest.fixture
    def activity_store(self) -> Any:
        pytest.fail("ActivityStoreSuite needs an `activity_store` fixture that yields an empty store")

    async def _created(self, store: Any, count: int, task_name: str = "kit_task") -> list[UUID]:
        """``count`` activities, created in order with distinct timestamps."""
        ids = []
        for i in range(count):
            ids.append(store.create(task_name, f"created {i}"))
            await anyio.sleep(0.002)  # distinct created_at even at millisecond resolution
        return ids

    async def test_create_is_queued_with_its_message(self, activity_store: Any) -> None:
        """``create`` stores a QUEUED activity with one log holding the message.

        Troubleshooting: write the activity and its first log (status QUEUED) in one transaction;
        ``agent_type`` is the task name; return the given ``agent_id`` or a new UUID.
        """
        given = uuid.uuid4()
        assert activity_store.create("research", "Waiting to start.", agent_id=given) == given
        detail = activity_store.detail(given)
        assert detail is not None
        assert (detail.agent_id, detail.agent_type, detail.status) == (given, "research", Status.QUEUED)
        assert [log.message for log in detail.logs] == ["Waiting to start."]
        assert detail.logs[0].status is Status.QUEUED
        generated = activity_store.create("research", "m")
        assert isinstance(generated, UUID) and generated != given

    async def test_detail_of_unknown_id_is_none(self, activity_store: Any) -> None:
        """``detail`` of an id nobody created returns ``None`` (no exception).

        Troubleshooting: return ``None`` from an empty query result.
        """
        assert activity_store.detail(uuid.uuid4()) is None

    async def test_status_comes_from_the_latest_log(self, activity_store: Any) -> None:
        """The activity's status is the status of its most recent log entry, in detail and list.

        Troubleshooting: order logs by id/created_at descending (or keep a denormalized
        ``status`` column updated in the same transaction as the append), never take the first.
        """
        agent_id = activity_store.create("t", "queued")
        activity_store.append(agent_id, "started", status=Status.RUNNING)
        activity_store.append(agent_id, "done", status=Status.COMPLETE, percentage=100)
        detail = activity_store.detail(agent_id)
        assert detail is not None and detail.status is Status.COMPLETE
        (item,) = activity_store.list().items
        assert item.status is Status.COMPLETE
        assert item.latest_log == "done"

    async def test_append_without_status_keeps_the_current_status(self, activity_store: Any) -> None:
        """``append(status=None)`` records a log whose status is the activity's current one.

        Troubleshooting: when ``status`` is ``None``, copy the latest log's status into the new log.
        """
        agent_id = activity_store.create("t", "queued")
        activity_store.append(agent_id, "started", status=Status.RUNNING)
        activity_store.append(agent_id, "still going")
        detail = activity_store.detail(agent_id)
        assert detail is not None and detail.status is Status.RUNNING
        assert detail.logs[-1].status is Status.RUNNING

    async def test_latest_percentage_is_the_latest_non_null(self, activity_store: Any) -> None:
        """``latest_percentage`` is the percentage of the latest log that has one.

        Troubleshooting: skip logs whose percentage is NULL when computing it.
        """
        agent_id = activity_store.create("t", "queued")
        activity_store.append(agent_id, "a", status=Status.RUNNING, percentage=10)
        activity_store.append(agent_id, "b", percentage=50)
        activity_store.append(agent_id, "c")
        detail = activity_store.detail(agent_id)
        assert detail is not None and detail.latest_percentage == 50
        assert activity_store.list().items[0].latest_percentage == 50

    async def test_append_to_unknown_id_names_it(self, activity_store: Any) -> None:
        """``append`` (and ``aappend``) on an unknown ``agent_id`` raise ``UnknownActivityError``
        whose message contains that id.

        Troubleshooting: raise ``agentexec.backends.UnknownActivityError(agent_id)``, not a
        database integrity error or a silent no-op.
        """
        missing = uuid.uuid4()
        with pytest.raises(UnknownActivityError, match=str(missing)):
            activity_store.append(missing, "x", status=Status.RUNNING)
        with pytest.raises(UnknownActivityError, match=str(missing)):
            await activity_store.aappend(missing, "x")

    @pytest.mark.parametrize("bad", [-1, 101, 1000])
    async def test_percentage_out_of_range_is_rejected_and_not_written(
        self, activity_store: Any, bad: int
    ) -> None:
        """A percentage outside 0-100 raises ``ValueError`` and writes nothing.

        Troubleshooting: call ``agentexec.backends.validate_percentage`` before writing.
        """
        agent_id = activity_store.create("t", "queued")
        with pytest.raises(ValueError):
            activity_store.append(agent_id, "bad", percentage=bad)
        with pytest.raises(ValueError):
            await activity_store.aappend(agent_id, "bad", percentage=bad)
        detail = activity_store.detail(agent_id)
        assert detail is not None and [log.message for log in detail.logs] == ["queued"]

    async def test_detail_logs_are_in_order(self, activity_store: Any) -> None:
        """``detail().logs`` lists every log oldest first, with increasing ids.

        Troubleshooting: ORDER BY the log id (or created_at, id) ascending.
        """
        agent_id = activity_store.create("t", "m0")
        for i in range(1, 6):
            activity_store.append(agent_id, f"m{i}", percentage=i * 10)
        detail = activity_store.detail(agent_id)
        assert detail is not None
        assert [log.message for log in detail.logs] == [f"m{i}" for i in range(6)]
        ids = [log.id for log in detail.logs]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert detail.updated_at >= detail.created_at

    async def test_list_pages_newest_first(self, activity_store: Any) -> None:
        """``list`` pages newest first with ``total``, ``page``, ``page_size`` and ``pages``.

        Troubleshooting: ORDER BY created_at DESC, LIMIT/OFFSET by page; ``pages`` is
        ``ceil(total / page_size)`` (0 when empty).
        """
        empty = activity_store.list()
        assert (empty.items, empty.total, empty.pages) == ([], 0, 0)
        ids = await self._created(activity_store, 5)
        first = activity_store.list(page=1, page_size=2)
        assert (first.total, first.page, first.page_size, first.pages) == (5, 1, 2, 3)
        assert [i.agent_id for i in first.items] == [ids[4], ids[3]]
        last = activity_store.list(page=3, page_size=2)
        assert [i.agent_id for i in last.items] == [ids[0]]
        assert activity_store.list(page=4, page_size=2).items == []
        everything = activity_store.list()
        assert [i.agent_id for i in everything.items] == ids[::-1]

    async def test_list_filters_by_status(self, activity_store: Any) -> None:
        """``list(status=...)`` returns only activities whose current status matches.

        Troubleshooting: filter on the latest log's status (not on any log having it);
        ``total`` counts the filtered set.
        """
        a, b, _c = await self._created(activity_store, 3)
        activity_store.append(a, "run", status=Status.RUNNING)
        activity_store.append(a, "done", status=Status.COMPLETE)
        activity_store.append(b, "run", status=Status.RUNNING)
        complete = activity_store.list(status=Status.COMPLETE)
        assert [i.agent_id for i in complete.items] == [a] and complete.total == 1
        running = activity_store.list(status=Status.RUNNING)
        assert [i.agent_id for i in running.items] == [b]
        assert activity_store.list(status=Status.QUEUED).total == 1

    async def test_cancel_pending_cancels_exactly_queued_and_running(self, activity_store: Any) -> None:
        """``cancel_pending`` marks every QUEUED or RUNNING activity CANCELED and returns how many.

        Troubleshooting: select pending ids by their latest status, append a CANCELED log to
        each in one transaction, and leave finished activities alone.
        """
        queued, running, done, failed = await self._created(activity_store, 4)
        activity_store.append(running, "run", status=Status.RUNNING)
        activity_store.append(done, "ok", status=Status.COMPLETE)
        activity_store.append(failed, "boom", status=Status.ERROR)
        assert activity_store.cancel_pending() == 2
        status = {aid: activity_store.detail(aid).status for aid in (queued, running, done, failed)}
        assert status == {
            queued: Status.CANCELED, running: Status.CANCELED,
            done: Status.COMPLETE, failed: Status.ERROR,
        }
        assert activity_store.cancel_pending() == 0

    async def test_async_twins(self, activity_store: Any) -> None:
        """The async methods behave like their sync counterparts.

        Troubleshooting: run the sync implementation in a worker thread, or use an async driver;
        either way they must share the same data.
        """
        agent_id = await activity_store.acreate("t", "queued")
        await activity_store.aappend(agent_id, "run", status=Status.RUNNING, percentage=5)
        detail = await activity_store.adetail(agent_id)
        assert detail is not None and detail.status is Status.RUNNING
        assert activity_store.detail(agent_id) == detail
        listing = await activity_store.alist(page=1, page_size=10, status=Status.RUNNING)
        assert [i.agent_id for i in listing.items] == [agent_id]
        many = [(uuid.uuid4(), "bulk", "queued") for _ in range(3)]
        await activity_store.acreate_many(many)
        assert all(activity_store.detail(aid).status is Status.QUEUED for aid, _, _ in many)
        assert await activity_store.acancel_pending() == 4
        assert await activity_store.adetail(uuid.uuid4()) is None

    async def test_aappend_many_is_all_or_nothing(self, activity_store: Any) -> None:
        """``aappend_many`` writes every entry in order, or none when one is invalid.

        Troubleshooting: validate every entry (known ids, percentages) before writing, and write
        them in one transaction.
        """
        a, b = await self._created(activity_store, 2)
        await activity_store.aappend_many([
            LogEntry(a, "a1", Status.RUNNING, 10), LogEntry(b, "b1"), LogEntry(a, "a2", None, 20),
        ])
        detail_a = activity_store.detail(a)
        assert [log.message for log in detail_a.logs] == ["created 0", "a1", "a2"]
        assert (detail_a.status, detail_a.latest_percentage) == (Status.RUNNING, 20)
        missing = uuid.uuid4()
        with pytest.raises(UnknownActivityError):
            await activity_store.aappend_many([LogEntry(a, "a3"), LogEntry(missing, "x")])
        with pytest.raises(ValueError):
            await activity_store.aappend_many([LogEntry(b, "b2"), LogEntry(b, "b3", percentage=500)])
        assert [log.message for log in activity_store.detail(a).logs] == ["created 0", "a1", "a2"]
        assert [log.message for log in activity_store.detail(b).logs] == ["created 1", "b1"]

    async def test_metadata_is_stored_and_filterable(self, activity_store: Any) -> None:
        """``create(metadata=...)`` is stored and ``list(metadata=...)`` filters on it.

        Needs ``Capabilities.activity_metadata``. Troubleshooting: store metadata as JSON and
        match every given key/value pair.
        """
        self.require("activity_metadata")
        mine = activity_store.create("t", "m", metadata={"org": "acme", "tier": 1})
        activity_store.create("t", "m", metadata={"org": "other"})
        activity_store.create("t", "m")
        listing = activity_store.list(metadata={"org": "acme"})
        assert [i.agent_id for i in listing.items] == [mine] and listing.total == 1

    async def test_metadata_filters_are_typed_exact_and_carried(self, activity_store: Any) -> None:
        """The metadata filter of ``list``/``detail``/``alist``/``adetail`` follows
        :mod:`agentexec.activity.metadata`: every pair must match, JSON-typed (``1`` is neither
        ``True`` nor ``"1"``; ``None`` matches a null value, not a missing key; lists and
        objects match whole); a NUL character and an empty filter ``{}`` raise ``ValueError``;
        list items and details carry the activity's ``.metadata``; ``acreate_many`` takes an
        optional fourth item, the metadata.

        Needs ``Capabilities.activity_metadata``. Troubleshooting: compare the JSON types, not
        text (``str(value)``, SQLite's ``json_extract`` alone and ``->>`` all make ``1`` equal
        ``true`` or ``"1"``); check arguments with ``validate_metadata`` /
        ``validate_metadata_filter``; pass ``metadata`` to the schemas
        (``Schema(...).with_metadata(m)``).
        """
        self.require("activity_metadata")
        ids = {
            "int": activity_store.create("t", "m", metadata={"k": 1, "org": "a"}),
            "bool": activity_store.create("t", "m", metadata={"k": True, "org": "a"}),
            "text": activity_store.create("t", "m", metadata={"k": "1", "org": "b"}),
            "null": activity_store.create("t", "m", metadata={"k": None}),
            "obj": activity_store.create("t", "m", metadata={"k": {"y": [1, 2], "x": "v"}}),
            "none": activity_store.create("t", "m"),
        }
        many = uuid.uuid4()
        await activity_store.acreate_many([(many, "t", "m", {"k": ["a", 2]})])

        def found(flt: dict[str, Any]) -> set[str]:
            listed = {i.agent_id for i in activity_store.list(page_size=50, metadata=flt).items}
            return {name for name, agent_id in ids.items() if agent_id in listed}

        assert found({"k": 1}) == {"int"}
        assert found({"k": 1.0}) == {"int"}
        assert found({"k": True}) == {"bool"}
        assert found({"k": "1"}) == {"text"}
        assert found({"k": None}) == {"null"}
        assert found({"k": {"x": "v", "y": [1, 2]}}) == {"obj"}
        assert found({"k": {"x": "v"}}) == set()
        assert found({"k": 1, "org": "a"}) == {"int"}
        assert found({"org": "a"}) == {"int", "bool"}
        assert [i.agent_id for i in activity_store.list(metadata={"k": ["a", 2]}).items] == [many]

        item = activity_store.list(metadata={"k": "1"}).items[0]
        assert item.metadata == {"k": "1", "org": "b"}
        assert "metadata" not in item.model_dump()
        detail = activity_store.detail(ids["text"], metadata={"org": "b"})
        assert detail is not None and detail.metadata == {"k": "1", "org": "b"}
        assert activity_store.detail(ids["text"], metadata={"org": "a"}) is None
        assert activity_store.detail(ids["none"]) is not None
        assert (await activity_store.adetail(ids["int"], metadata={"org": "b"})) is None
        assert [i.agent_id for i in (await activity_store.alist(metadata={"k": True})).items] == [ids["bool"]]

        for bad in ({}, {"org": "a\x00b"}):
            with pytest.raises(ValueError):
                activity_store.list(metadata=bad)
        with pytest.raises(ValueError):
            activity_store.create("t", "m", metadata={"org": "a\x00b"})
