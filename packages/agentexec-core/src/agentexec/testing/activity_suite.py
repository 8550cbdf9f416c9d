"""``ActivityStoreSuite``: the executable contract of :class:`agentexec.backends.ActivityStore`
and of its optional capabilities (``activity_metadata``, ``find_prefix``, ``changes``).

Every test works on activities it creates itself (new ids, unique metadata values), so the
store need not be empty: a database shared with other tests is fine. Two kinds of check look
at the whole store and assume nobody *else* writes to it while the test runs: list ordering
(the test's activities are the newest) and ``cancel_pending`` (which cancels every pending
activity of the store — give the suite a store whose pending activities may be canceled).
"""

from __future__ import annotations

import math
import uuid
from typing import Any
from uuid import UUID

import anyio
import pytest

from agentexec.activity.status import Status
from agentexec.backends import LogEntry, UnknownActivityError
from agentexec.testing._helpers import unique
from agentexec.testing._suite import Suite


@pytest.mark.anyio
class ActivityStoreSuite(Suite):
    """Subclass and provide an ``activity_store`` fixture that yields a store (it need not be
    empty, see the module doc)::

        class TestAcmeStore(ActivityStoreSuite):
            @pytest.fixture
            async def activity_store(self, tmp_path):
                store = AcmeStore(f"acme:///{tmp_path}/db")
                yield store
                await store.aclose()
    """

    @pytest.fixture
    def activity_store(self) -> Any:
        pytest.fail("ActivityStoreSuite needs an `activity_store` fixture that yields your store")

    async def _created(self, store: Any, count: int, task_name: str = "kit_task") -> list[UUID]:
        """``count`` activities, created in order with distinct timestamps."""
        ids = []
        for i in range(count):
            ids.append(store.create(task_name, f"created {i}"))
            await anyio.sleep(0.002)  # distinct created_at even at millisecond resolution
        return ids

    @staticmethod
    def _pending(store: Any) -> int:
        return int(store.list(status=Status.QUEUED).total + store.list(status=Status.RUNNING).total)

    # -- create / append / detail ----------------------------------------------------------
    async def test_create_is_queued_with_its_message(self, activity_store: Any) -> None:
        """``create`` stores a QUEUED activity with one log holding the message, at 0 %; creating
        an ``agent_id`` that exists raises ``ValueError``.

        Troubleshooting: write the activity and its first log (status QUEUED, percentage 0) in one
        transaction; ``agent_type`` is the task name; return the given ``agent_id`` or a new UUID;
        turn the unique-key violation into ``ValueError``.
        """
        given = uuid.uuid4()
        assert activity_store.create("research", "Waiting to start.", agent_id=given) == given
        detail = activity_store.detail(given)
        assert detail is not None
        assert (detail.agent_id, detail.agent_type, detail.status) == (given, "research", Status.QUEUED)
        assert [log.message for log in detail.logs] == ["Waiting to start."]
        assert (detail.logs[0].status, detail.logs[0].percentage, detail.latest_percentage) == (
            Status.QUEUED, 0, 0,
        )
        with pytest.raises(ValueError):
            activity_store.create("research", "again", agent_id=given)
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
        item = activity_store.list(page_size=5).items[0]
        assert item.agent_id == agent_id, "the newest activity must come first in list()"
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

    async def test_writes_after_a_final_status_keep_it(self, activity_store: Any) -> None:
        """A log line written after COMPLETE, ERROR or CANCELED (a handler's late note, a
        forwarded log) without a status keeps that final status and the latest percentage, so
        the activity is never reopened and ``cancel_pending`` leaves it alone.

        Troubleshooting: ``status=None`` means "the current status", whatever it is: never
        default it to RUNNING or QUEUED.
        """
        finals = {}
        for final in (Status.COMPLETE, Status.ERROR, Status.CANCELED):
            agent_id = activity_store.create("t", "queued")
            activity_store.append(agent_id, "run", status=Status.RUNNING, percentage=40)
            activity_store.append(agent_id, "end", status=final, percentage=100)
            activity_store.append(agent_id, "a late note")
            await activity_store.aappend(agent_id, "a late async note")
            finals[agent_id] = final
        for agent_id, final in finals.items():
            detail = activity_store.detail(agent_id)
            assert detail is not None
            assert (detail.status, detail.latest_percentage) == (final, 100), (
                f"a note after {final.value} changed the activity to {detail.status.value}"
            )
            assert [log.status for log in detail.logs[-2:]] == [final, final]
        activity_store.cancel_pending()
        assert {aid: activity_store.detail(aid).status for aid in finals} == finals

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
        item = activity_store.list(page_size=5).items[0]
        assert item.agent_id == agent_id and item.latest_percentage == 50

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

    async def test_percentage_bounds_0_and_100_are_accepted(self, activity_store: Any) -> None:
        """0 and 100 themselves are valid percentages, in ``append``, ``aappend`` and
        ``aappend_many``.

        Troubleshooting: the range is inclusive (``0 <= p <= 100``); use
        ``agentexec.backends.validate_percentage``.
        """
        agent_id = activity_store.create("t", "queued")
        activity_store.append(agent_id, "zero", status=Status.RUNNING, percentage=0)
        await activity_store.aappend(agent_id, "full", percentage=100)
        await activity_store.aappend_many([LogEntry(agent_id, "again", None, 0), LogEntry(agent_id, "end", None, 100)])
        detail = activity_store.detail(agent_id)
        assert detail is not None and detail.latest_percentage == 100
        assert [log.percentage for log in detail.logs[1:]] == [0, 100, 0, 100]

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

    # -- list --------------------------------------------------------------------------------
    async def test_list_pages_newest_first(self, activity_store: Any) -> None:
        """``list`` pages newest first with ``total``, ``page``, ``page_size`` and ``pages``;
        the defaults are page 1 of 50 (``alist`` too), and a page or page size below 1 is a
        ``ValueError``.

        Troubleshooting: ORDER BY created_at DESC, LIMIT/OFFSET by page; ``pages`` is
        ``ceil(total / page_size)`` (0 when empty).
        """
        ids = await self._created(activity_store, 5)
        default = activity_store.list()
        assert (default.page, default.page_size) == (1, 50)
        default_async = await activity_store.alist()
        assert (default_async.page, default_async.page_size) == (1, 50)
        for bad in ({"page": 0}, {"page_size": 0}):
            with pytest.raises(ValueError):
                activity_store.list(**bad)
        first = activity_store.list(page=1, page_size=2)
        assert first.total >= 5 and (first.page, first.page_size) == (1, 2)
        assert first.pages == math.ceil(first.total / 2)
        assert [i.agent_id for i in first.items] == [ids[4], ids[3]]
        second = activity_store.list(page=2, page_size=2)
        assert [i.agent_id for i in second.items] == [ids[2], ids[1]]
        third = activity_store.list(page=3, page_size=2)
        assert third.items[0].agent_id == ids[0]
        assert activity_store.list(page=first.pages + 1, page_size=2).items == []
        everything = activity_store.list(page_size=5)
        assert [i.agent_id for i in everything.items] == ids[::-1]

    async def test_list_filters_by_status(self, activity_store: Any) -> None:
        """``list(status=...)`` returns only activities whose current status matches.

        Troubleshooting: filter on the latest log's status (not on any log having it);
        ``total`` counts the filtered set.
        """
        a, b, c = await self._created(activity_store, 3)
        activity_store.append(a, "run", status=Status.RUNNING)
        activity_store.append(a, "done", status=Status.COMPLETE)
        activity_store.append(b, "run", status=Status.RUNNING)
        ours = {a, b, c}
        for status, expected in ((Status.COMPLETE, [a]), (Status.RUNNING, [b]), (Status.QUEUED, [c])):
            listing = activity_store.list(status=status, page_size=50)
            assert all(i.status is status for i in listing.items), f"list(status={status.value}) mixed statuses"
            assert [i.agent_id for i in listing.items if i.agent_id in ours] == expected
            assert listing.items[0].agent_id == expected[0]
            assert listing.total >= 1 and listing.pages == math.ceil(listing.total / 50)

    async def test_cancel_pending_cancels_exactly_queued_and_running(self, activity_store: Any) -> None:
        """``cancel_pending`` marks every QUEUED or RUNNING activity CANCELED and returns how many.

        Troubleshooting: select pending ids by their latest status, append a CANCELED log to
        each in one transaction, and leave finished activities alone.
        """
        queued, running, done, failed = await self._created(activity_store, 4)
        activity_store.append(running, "run", status=Status.RUNNING)
        activity_store.append(done, "ok", status=Status.COMPLETE)
        activity_store.append(failed, "boom", status=Status.ERROR)
        pending = self._pending(activity_store)
        assert pending >= 2
        assert activity_store.cancel_pending() == pending
        status = {aid: activity_store.detail(aid).status for aid in (queued, running, done, failed)}
        assert status == {
            queued: Status.CANCELED, running: Status.CANCELED,
            done: Status.COMPLETE, failed: Status.ERROR,
        }
        assert activity_store.cancel_pending() == 0

    # -- async twins ------------------------------------------------------------------------
    async def test_async_twins(self, activity_store: Any) -> None:
        """The async methods behave like their sync counterparts.

        Troubleshooting: run the sync implementation in a worker thread, or use an async driver;
        either way they must share the same data.
        """
        given = uuid.uuid4()
        agent_id = await activity_store.acreate("t", "queued", agent_id=given)
        assert agent_id == given
        await activity_store.aappend(agent_id, "run", status=Status.RUNNING, percentage=5)
        await activity_store.aappend(agent_id, "still running")
        detail = await activity_store.adetail(agent_id)
        assert detail is not None and detail.status is Status.RUNNING and detail.latest_percentage == 5
        assert activity_store.detail(agent_id) == detail
        assert [log.message for log in detail.logs] == ["queued", "run", "still running"]
        many = [(uuid.uuid4(), "bulk", f"queued {i}") for i in range(3)]
        await activity_store.acreate_many(many)
        for aid, task_name, message in many:
            found = activity_store.detail(aid)
            assert found is not None and (found.agent_type, found.status) == (task_name, Status.QUEUED)
            assert [log.message for log in found.logs] == [message]
        generated = await activity_store.acreate("t", "m")
        assert isinstance(generated, UUID) and generated != given
        assert await activity_store.adetail(uuid.uuid4()) is None

    async def test_alist_pages_and_filters_like_list(self, activity_store: Any) -> None:
        """``alist`` pages newest first and filters by status exactly as ``list`` does.

        Troubleshooting: pass ``page``, ``page_size`` and ``status`` through to the same query
        ``list`` runs.
        """
        ids = await self._created(activity_store, 4)
        activity_store.append(ids[1], "run", status=Status.RUNNING)
        activity_store.append(ids[3], "run", status=Status.RUNNING)
        first = await activity_store.alist(page=1, page_size=2)
        assert [i.agent_id for i in first.items] == [ids[3], ids[2]]
        second = await activity_store.alist(page=2, page_size=2)
        assert [i.agent_id for i in second.items] == [ids[1], ids[0]]
        assert first.total == activity_store.list().total and first.pages == math.ceil(first.total / 2)
        running = await activity_store.alist(page=1, page_size=50, status=Status.RUNNING)
        assert all(i.status is Status.RUNNING for i in running.items)
        assert [i.agent_id for i in running.items if i.agent_id in ids] == [ids[3], ids[1]]
        assert running.total == activity_store.list(status=Status.RUNNING).total

    async def test_acancel_pending_like_cancel_pending(self, activity_store: Any) -> None:
        """``acancel_pending`` cancels exactly the QUEUED and RUNNING activities and returns how
        many, like ``cancel_pending``.

        Troubleshooting: share the implementation with ``cancel_pending``.
        """
        queued, running, done = await self._created(activity_store, 3)
        activity_store.append(running, "run", status=Status.RUNNING)
        activity_store.append(done, "ok", status=Status.COMPLETE)
        pending = self._pending(activity_store)
        assert await activity_store.acancel_pending() == pending
        status = {aid: activity_store.detail(aid).status for aid in (queued, running, done)}
        assert status == {queued: Status.CANCELED, running: Status.CANCELED, done: Status.COMPLETE}
        assert await activity_store.acancel_pending() == 0

    async def test_aappend_many_is_all_or_nothing(self, activity_store: Any) -> None:
        """``aappend_many`` writes every entry in order, or none when one is invalid.

        Troubleshooting: validate every entry (known ids, percentages) before writing, and write
        them in one transaction; raise ``UnknownActivityError(the unknown agent_id)``.
        """
        a, b = await self._created(activity_store, 2)
        await activity_store.aappend_many([
            LogEntry(a, "a1", Status.RUNNING, 10), LogEntry(b, "b1"), LogEntry(a, "a2", None, 20),
        ])
        detail_a = activity_store.detail(a)
        assert [log.message for log in detail_a.logs] == ["created 0", "a1", "a2"]
        assert (detail_a.status, detail_a.latest_percentage) == (Status.RUNNING, 20)
        assert activity_store.detail(b).status is Status.QUEUED
        missing = uuid.uuid4()
        with pytest.raises(UnknownActivityError) as unknown:
            await activity_store.aappend_many([LogEntry(a, "a3"), LogEntry(missing, "x")])
        assert unknown.value.agent_id == missing, "the error must name the unknown agent_id"
        with pytest.raises(ValueError):
            await activity_store.aappend_many([LogEntry(b, "b2"), LogEntry(b, "b3", percentage=500)])
        assert [log.message for log in activity_store.detail(a).logs] == ["created 0", "a1", "a2"]
        assert [log.message for log in activity_store.detail(b).logs] == ["created 1", "b1"]

    async def test_aclose_then_use_again(self, activity_store: Any) -> None:
        """After ``aclose`` the store still works, sync and async: the next call reconnects.

        Troubleshooting: let ``aclose`` release this event loop's connections and open new ones
        lazily on the next call.
        """
        agent_id = await activity_store.acreate("t", "before")
        await activity_store.aclose()
        await activity_store.aappend(agent_id, "after", status=Status.RUNNING)
        detail = await activity_store.adetail(agent_id)
        assert detail is not None and [log.message for log in detail.logs] == ["before", "after"]
        assert activity_store.detail(agent_id) == detail

    # -- optional --------------------------------------------------------------------------
    async def test_metadata_is_stored_and_filterable(self, activity_store: Any) -> None:
        """``create(metadata=...)`` and ``acreate(metadata=...)`` store metadata, and
        ``list(metadata=...)`` returns the activities matching *every* given pair.

        Needs ``Capabilities.activity_metadata``. Troubleshooting: store metadata as JSON and
        AND one condition per key/value pair (``metadata->>'org' = :org AND ...``); ``total``
        counts the filtered set.
        """
        self.require("activity_metadata", activity_store)
        org, other_org = unique("org-"), unique("org-")
        mine = activity_store.create("t", "m", metadata={"org": org, "user": "u1", "tier": 1})
        await anyio.sleep(0.002)
        colleague = activity_store.create("t", "m", metadata={"org": org, "user": "u2", "tier": 1})
        await anyio.sleep(0.002)
        activity_store.create("t", "m", metadata={"org": other_org, "user": "u1", "tier": 1})
        activity_store.create("t", "m")
        await anyio.sleep(0.002)
        from_async = await activity_store.acreate("t", "m", metadata={"org": org, "user": "u3"})
        listing = activity_store.list(metadata={"org": org, "user": "u1"})
        assert [i.agent_id for i in listing.items] == [mine] and listing.total == 1, (
            "list(metadata=...) must match every pair given, not only one"
        )
        whole_org = activity_store.list(metadata={"org": org})
        assert [i.agent_id for i in whole_org.items] == [from_async, colleague, mine]
        assert whole_org.total == 3
        paged = activity_store.list(metadata={"org": org, "tier": 1}, page=2, page_size=1)
        assert [i.agent_id for i in paged.items] == [mine] and paged.pages == 2
        assert [i.agent_id for i in activity_store.list(metadata={"org": org, "user": "u3"}).items] == [from_async]
        assert activity_store.list(metadata={"org": org, "user": "nobody"}).total == 0

    async def test_find_prefix_finds_ids_by_their_start(self, activity_store: Any) -> None:
        """``afind_prefix(prefix, limit)`` returns up to ``limit`` agent ids that start with
        ``prefix`` as printed (lower-case, dashes included).

        Needs ``Capabilities.find_prefix``. Troubleshooting: compare against the id's text form
        (``CAST(id AS TEXT) LIKE :prefix || '%'``), case-insensitively, and honour ``limit``.
        """
        self.require("find_prefix", activity_store)
        agent_id = activity_store.create("t", "m")
        text = str(agent_id)
        assert await activity_store.afind_prefix(text[:13], 2) == [agent_id]
        assert await activity_store.afind_prefix(text[:13].upper(), 2) == [agent_id]
        assert await activity_store.afind_prefix(text, 2) == [agent_id]
        assert await activity_store.afind_prefix(str(uuid.uuid4())[:13], 2) == []
        twins = [uuid.UUID(text[:9] + f"{n:04x}" + text[13:]) for n in range(4)]
        for twin in twins:
            if twin != agent_id:
                activity_store.create("t", "m", agent_id=twin)
        assert len(await activity_store.afind_prefix(text[:9], 2)) == 2
        assert len(await activity_store.afind_prefix(text[:9], 3)) == 3
        assert len(await activity_store.afind_prefix(text[:9])) == 2, "limit defaults to 2"

    async def test_changes_hand_out_new_lines_in_id_order(self, activity_store: Any) -> None:
        """``achanges(None)`` reads no line and returns the highest line id stored;
        ``achanges(after)`` returns the lines written since, oldest first, with ids above
        ``after``, each with its activity's agent_id, task name and metadata; the returned
        highest id is at least each line's, and asking from it returns none of them again.

        Needs ``Capabilities.changes``. Troubleshooting: give log lines an increasing id (an
        autoincrement key), select ``id > after`` ordered by id, join the activity for its task
        name and metadata.
        """
        self.require("changes", activity_store)
        start, none = await activity_store.achanges(None)
        assert none == [] and isinstance(start, int)
        meta = {"kit": unique("changes-")}
        agent_id = activity_store.create("kit_changes", "created", metadata=meta) if self.capabilities.activity_metadata \
            else activity_store.create("kit_changes", "created")
        activity_store.append(agent_id, "working", Status.RUNNING, 40)
        await activity_store.aappend(agent_id, "done", Status.COMPLETE, 100)
        top, lines = await activity_store.achanges(start)
        mine = [line for line in lines if line.agent_id == agent_id]
        assert [line.message for line in mine] == ["created", "working", "done"]
        assert [line.status for line in mine] == [Status.QUEUED, Status.RUNNING, Status.COMPLETE]
        assert [line.percentage for line in mine][1:] == [40, 100]
        ids = [line.id for line in lines]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "lines must come oldest first, once"
        assert all(i > start for i in ids) and top >= max(ids)
        assert {line.task_name for line in mine} == {"kit_changes"}
        if self.capabilities.activity_metadata:
            assert all(line.metadata == meta for line in mine)
        again, later = await activity_store.achanges(top)
        assert again >= top and not [line for line in later if line.agent_id == agent_id]

    async def test_changes_honour_limit_and_also(self, activity_store: Any) -> None:
        """``achanges(after, limit)`` returns at most ``limit`` lines, the oldest: reading on
        from the last one returned gets the rest in order; ``also`` returns the lines of those
        ids even below ``after`` (a feed asking again for an id it saw missing).

        Needs ``Capabilities.changes``. Troubleshooting: ``ORDER BY id LIMIT :limit``, and
        ``WHERE id > :after OR id IN (:also)``.
        """
        self.require("changes", activity_store)
        start, _ = await activity_store.achanges(None)
        agent_id = activity_store.create("kit_changes", "line 0")
        for n in range(1, 5):
            activity_store.append(agent_id, f"line {n}")
        seen: list[Any] = []
        after = start
        for _ in range(50):  # pages of two; other writers may add lines meanwhile
            _, page = await activity_store.achanges(after, limit=2)
            assert len(page) <= 2, f"limit=2 returned {len(page)} lines"
            if not page:
                break
            seen += page
            after = page[-1].id
        mine = [line for line in seen if line.agent_id == agent_id]
        assert [line.message for line in mine] == [f"line {n}" for n in range(5)]
        top, _ = await activity_store.achanges(None)
        _, asked = await activity_store.achanges(top, also=[mine[1].id, mine[3].id])
        assert [line.message for line in asked if line.agent_id == agent_id] == ["line 1", "line 3"]

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
