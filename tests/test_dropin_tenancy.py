"""Issue #16, tenancy: the original agentexec's activity metadata (README "Activity Metadata
(Multi-Tenancy)", 0.1.6+), and the edge cases a tenant filter must hold.

From the original's documentation: ``ax.enqueue(..., metadata={...})``,
``ax.activity.list(metadata_filter=...)``, ``ax.activity.detail(agent_id,
metadata_filter=...)`` (``None`` when it does not match), ``detail.metadata[...]`` readable but
"excluded from API serialization". Ours adds: metadata on every enqueue route (``enqueue_many``,
``Pipeline.enqueue``, schedules, a worker creating a missing activity from its task), ``alist`` /
``adetail`` / ``count_active`` with the same filter, and the filter's typed rules
(:mod:`agentexec.activity.metadata`).

Every test runs on each stack: ``sqlite`` (the embedded SQL transport on a SQLite file),
``postgresql`` (the SQL transport and the activity store on PostgreSQL) and ``redis+postgresql``
(Redis queue, the PostgreSQL activity store's psycopg fast path).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
import sqlalchemy as sa
from agentexec.activity.creates import CREATES
from agentexec.runtime import Backends, build_backends, set_backends
from agentexec.task import Task
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

WAIT = 30


class Doc(BaseModel):
    name: str = "doc"


@pytest.fixture(scope="module")
def pg_db(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database of this module's own (count_active sees every activity)."""
    name = f"dropin_tenancy_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + "/" + name
    engine = sa.create_engine(url)
    ax.Base.metadata.create_all(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
            "AND pid <> pg_backend_pid()"
        ), {"n": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "redis+postgresql"])
def backends(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Backends]:
    kinds = ("queue", "results", "events", "activity")
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path / 'agentexec.db'}"
        engine = sa.create_engine(db)
        ax.Base.metadata.create_all(engine)
        engine.dispose()
        urls = dict.fromkeys(kinds, db)
    elif request.param == "postgresql":
        urls = dict.fromkeys(kinds, request.getfixturevalue("pg_db"))
    else:
        redis_url = request.getfixturevalue("redis_server_url")
        if redis_url is None:
            pytest.skip("needs a real Redis")
        urls = dict.fromkeys(kinds, redis_url)
        urls["activity"] = request.getfixturevalue("pg_db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "queue_name", unique_name)
        built = build_backends(urls)  # type: ignore[arg-type]
        set_backends(built)
        try:
            yield built
        finally:
            set_backends(None)


def tenant(unique_name: str, n: int | str) -> dict[str, Any]:
    """Tenant metadata no other test uses."""
    return {"organization_id": f"{unique_name}-org-{n}"}


# -- the original's README, on every enqueue route -------------------------------------------
async def test_enqueue_with_metadata_then_filter_list_and_detail(
    backends: Backends, unique_name: str
) -> None:
    mine, other = tenant(unique_name, 1), tenant(unique_name, 2)
    tasks = [
        await ax.enqueue("process_document", Doc(), metadata={**mine, "user_id": "user-456"})
        for _ in range(3)
    ]
    theirs = await ax.enqueue("process_document", Doc(), metadata=other)
    assert tasks[0].metadata == {**mine, "user_id": "user-456"}
    # after the first enqueue, activities are written behind the push (metadata or not)
    assert CREATES.checked(backends.activity)
    plain = await ax.enqueue("process_document", Doc())
    assert ax.activity.detail(agent_id=plain.agent_id) is not None

    activities = ax.activity.list(metadata_filter=mine)
    assert {i.agent_id for i in activities.items} == {t.agent_id for t in tasks}
    assert activities.total == 3
    assert all(i.metadata == {"organization_id": mine["organization_id"], "user_id": "user-456"}
               for i in activities.items)

    detail = ax.activity.detail(agent_id=tasks[0].agent_id, metadata_filter=mine)
    assert detail is not None and detail.metadata is not None
    assert detail.metadata["organization_id"] == mine["organization_id"]
    # another tenant's activity is "not found" through this tenant's filter
    assert ax.activity.detail(agent_id=theirs.agent_id, metadata_filter=mine) is None
    assert ax.activity.detail(None, theirs.agent_id, other) is not None  # positional, 0.1.x style


async def test_metadata_is_readable_but_never_serialized(backends: Backends, unique_name: str) -> None:
    secret = {"organization_id": f"{unique_name}-secret-org"}
    task = await ax.enqueue("process_document", Doc(), metadata=secret)
    listing = ax.activity.list(metadata_filter=secret)
    detail = ax.activity.detail(agent_id=task.agent_id)
    assert detail is not None and detail.metadata == secret and listing.items[0].metadata == secret
    for schema in (listing, listing.items[0], detail):
        assert "metadata" not in schema.model_dump()
        assert secret["organization_id"] not in schema.model_dump_json()
        assert "metadata" not in json.loads(schema.model_dump_json())


async def test_enqueue_many_pipeline_and_activity_create_carry_metadata(
    backends: Backends, unique_name: str
) -> None:
    shared, own = tenant(unique_name, "bulk"), tenant(unique_name, "own")
    bulk = await ax.enqueue_many(
        [("process_document", Doc()), ("process_document", Doc(), ax.Priority.HIGH),
         ("process_document", Doc(), ax.Priority.LOW, own)],
        metadata=shared,
    )
    assert [t.metadata for t in bulk] == [shared, shared, own]
    assert {i.agent_id for i in ax.activity.list(metadata_filter=shared).items} == {
        bulk[0].agent_id, bulk[1].agent_id}
    assert [i.agent_id for i in ax.activity.list(metadata_filter=own).items] == [bulk[2].agent_id]

    pool = ax.Pool(queue_name=unique_name, backends=backends)
    pipeline = ax.Pipeline(pool)

    class Flow(pipeline.Base):
        @pipeline.step(0)
        async def only(self, ctx: Doc) -> str:
            return ctx.name

    piped = await pipeline.enqueue(Doc(), metadata=tenant(unique_name, "pipe"))
    found = ax.activity.list(metadata_filter=tenant(unique_name, "pipe")).items
    assert [i.agent_id for i in found] == [piped.agent_id]

    made = ax.activity.create("manual", "Waiting to start.", metadata=tenant(unique_name, "manual"))
    again = await ax.activity.acreate("manual", "m", metadata=tenant(unique_name, "manual"))
    assert {i.agent_id for i in ax.activity.list(metadata_filter=tenant(unique_name, "manual")).items} == {
        made, again}


async def test_schedule_firings_carry_the_schedule_metadata(backends: Backends, unique_name: str) -> None:
    pool = ax.Pool(queue_name=unique_name, backends=backends)

    @pool.task("refresh")
    async def refresh(agent_id: UUID, context: Doc) -> None: ...

    org = tenant(unique_name, "sched")
    pool.add_schedule("refresh", "* * * * *", Doc(name="x"), metadata=org)  # the README's form
    start = datetime(2030, 1, 1, 9, 0, 30, tzinfo=UTC)
    await pool.scheduler.tick(backends, start)  # plans the 09:01 tick
    await pool.scheduler.tick(backends, start + timedelta(seconds=31))
    items = ax.activity.list(metadata_filter=org).items
    assert len(items) == 1
    assert items[0].metadata == {**org, "schedule": "refresh",
                                 "scheduled_for": "2030-01-01T09:01:00+00:00"}
    queued = await backends.queue.reserve(unique_name, "c1", 1)
    assert queued is not None and queued.envelope.metadata == items[0].metadata


# -- the filter's rules ------------------------------------------------------------------------
async def test_filters_compare_typed_json_never_strings(backends: Backends, unique_name: str) -> None:
    k = f"{unique_name}-k"  # a key of this test alone
    rows = {
        "one": {k: 1}, "true": {k: True}, "text1": {k: "1"}, "float": {k: 1.5},
        "null": {k: None}, "missing": {"other": 1}, "A": {k: "A"}, "Azzz": {k: "Azzz"},
        "obj": {k: {"b": [1, 2], "a": "x"}}, "list": {k: ["x", 2]},
    }
    ids = {label: ax.activity.create("typed", "m", metadata=meta) for label, meta in rows.items()}

    def matched(value: Any) -> set[str]:
        found = {i.agent_id for i in ax.activity.list(page_size=100, metadata_filter={k: value}).items}
        return {label for label, agent_id in ids.items() if agent_id in found}

    assert matched(1) == {"one"}  # not true, not "1"
    assert matched(1.0) == {"one"}  # numbers compare by value
    assert matched(True) == {"true"}  # not 1
    assert matched("1") == {"text1"}
    assert matched(1.5) == {"float"}
    assert matched(None) == {"null"}  # null, not a missing key
    assert matched("A") == {"A"}  # exact, no prefix matching
    assert matched({"a": "x", "b": [1, 2]}) == {"obj"}  # key order does not matter
    assert matched({"a": "x"}) == set()  # an object matches whole, not contained
    assert matched(["x", 2]) == {"list"}
    assert matched(["x"]) == set()
    assert matched(False) == set()


async def test_nul_and_empty_filters_are_refused(backends: Backends, unique_name: str) -> None:
    a = ax.activity.create("nul", "m", metadata=tenant(unique_name, "A"))
    with pytest.raises(ValueError, match="NUL"):
        ax.activity.list(metadata_filter={"organization_id": f"{unique_name}-org-A\x00zzz"})
    with pytest.raises(ValueError, match="NUL"):
        ax.activity.create("nul", "m", metadata={"organization_id": "A\x00zzz"})
    with pytest.raises(ValueError, match="NUL"):
        await ax.enqueue("nul", Doc(), metadata={"k\x00": "v"})
    with pytest.raises(ValueError, match="NUL"):
        ax.activity.detail(agent_id=a, metadata_filter={"organization_id": "A\x00"})
    # {} would be "every tenant": refused; omitting the filter is the way to list everything
    with pytest.raises(ValueError, match="would match every tenant"):
        ax.activity.list(metadata_filter={})
    with pytest.raises(ValueError, match="would match every tenant"):
        await ax.activity.alist(metadata_filter={})
    with pytest.raises(ValueError, match="would match every tenant"):
        ax.activity.detail(agent_id=a, metadata_filter={})
    with pytest.raises(ValueError, match="would match every tenant"):
        ax.activity.count_active(metadata_filter={})
    with pytest.raises(TypeError, match="metadata_filter must be a dict"):
        ax.activity.list(metadata_filter=[("organization_id", "x")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata must be a dict"):
        await ax.enqueue("nul", Doc(), metadata="org-1")  # type: ignore[arg-type]
    assert ax.activity.list().total >= 1  # omitted: no filter


async def test_every_pair_must_match(backends: Backends, unique_name: str) -> None:
    org = tenant(unique_name, "pairs")["organization_id"]
    both = ax.activity.create("pairs", "m", metadata={"org": org, "user": "u1", 'a "quoted".key': 1})
    ax.activity.create("pairs", "m", metadata={"org": org, "user": "u2"})
    found = ax.activity.list(metadata_filter={"org": org, "user": "u1"}).items
    assert [i.agent_id for i in found] == [both]
    assert ax.activity.list(metadata_filter={"org": org}).total == 2
    assert [i.agent_id for i in ax.activity.list(metadata_filter={'a "quoted".key': 1, "org": org}).items] == [both]
    # the earlier name of the argument is the same filter
    assert ax.activity.list(metadata={"org": org, "user": "u1"}).total == 1
    with pytest.raises(TypeError, match="not both"):
        ax.activity.list(metadata={"org": org}, metadata_filter={"org": org})


async def test_async_twins_and_count_active_filter_alike(backends: Backends, unique_name: str) -> None:
    mine, other = tenant(unique_name, "a1"), tenant(unique_name, "a2")
    running = await ax.enqueue("t", Doc(), metadata=mine)
    done = await ax.enqueue("t", Doc(), metadata=mine)
    await ax.enqueue("t", Doc(), metadata=other)
    await ax.activity.aupdate(running.agent_id, "working", 10, ax.Status.RUNNING)
    await ax.activity.acomplete(done.agent_id, "done")

    page = await ax.activity.alist(metadata_filter=mine)
    assert {i.agent_id for i in page.items} == {running.agent_id, done.agent_id}
    assert {i.agent_id for i in (await ax.activity.alist(status=ax.Status.RUNNING, metadata_filter=mine)).items} == {
        running.agent_id}
    assert (await ax.activity.adetail(done.agent_id, metadata_filter=other)) is None
    adetail = await ax.activity.adetail(done.agent_id, metadata_filter=mine)
    assert adetail is not None and adetail.metadata == mine

    assert ax.activity.count_active(metadata_filter=mine) == 1  # done is COMPLETE
    assert await ax.activity.acount_active(metadata_filter=mine) == 1
    assert ax.activity.active_count(metadata_filter=other) == 1  # the README 0.1.x name
    everyone = ax.activity.count_active()
    assert everyone >= 2 and await ax.activity.acount_active() == everyone


async def test_a_worker_creates_a_missing_activity_with_the_task_metadata(
    backends: Backends, unique_name: str
) -> None:
    """The task in the queue is the source of truth: pushed without its activity (a producer
    that died before writing it), the worker creates it, in the right tenant."""
    pool = ax.Pool(queue_name=unique_name, backends=backends)

    @pool.task("orphan")
    async def orphan(agent_id: UUID, context: Doc) -> str:
        return context.name

    org = tenant(unique_name, "orphan")
    task = Task.queued("orphan", Doc(name="kept"), ax.Priority.LOW, unique_name, org)
    await backends.queue.push(task.to_envelope(unique_name))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ax.CONF, "num_workers", 1)
        mp.setattr(ax.CONF, "graceful_shutdown_timeout", 5)
        pool.start()
        try:
            assert await ax.get_result(task, timeout=WAIT) == "kept"
        finally:
            await anyio.to_thread.run_sync(pool.shutdown)
    found = ax.activity.list(metadata_filter=org).items
    assert [i.agent_id for i in found] == [task.agent_id] and found[0].status == ax.Status.COMPLETE


# -- the figure: 3 tenants x 1,000 activities ------------------------------------------
async def test_three_tenants_of_a_thousand_each_see_only_their_own(
    backends: Backends, unique_name: str
) -> None:
    orgs = [tenant(unique_name, n) for n in range(3)]
    created: list[set[UUID]] = []
    for org in orgs:
        tasks = await ax.enqueue_many([("bulk", Doc(name=str(i))) for i in range(1000)], metadata=org)
        created.append({t.agent_id for t in tasks})
    for org, ids in zip(orgs, created, strict=True):
        seen: set[UUID] = set()
        for page in (1, 2, 3, 4):
            listing = ax.activity.list(page=page, page_size=300, metadata_filter=org)
            assert listing.total == 1000 and listing.pages == 4 == listing.total_pages
            seen |= {i.agent_id for i in listing.items}
            assert all(i.metadata == org for i in listing.items)
        assert seen == ids
        assert (await ax.activity.alist(page_size=1000, metadata_filter=org)).total == 1000
        assert ax.activity.count_active(metadata_filter=org) == 1000
        stranger = next(iter(created[(created.index(ids) + 1) % 3]))
        assert ax.activity.detail(agent_id=stranger, metadata_filter=org) is None


async def test_postgresql_indexes_metadata_for_containment(backends: Backends) -> None:
    engine = getattr(backends.activity, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    with engine.connect() as conn:
        definition = conn.scalar(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_agentexec_activity_metadata'"
        ))
    assert definition is not None and "USING gin" in definition and "jsonb_path_ops" in definition
