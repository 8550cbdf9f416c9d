"""``SQLActivityStore`` beyond the API: SQL statement counts, transactions, concurrency, errors."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from agentexec.activity.status import Status
from agentexec.backends import ActivityStore, LogEntry, UnknownActivityError
from agentexec_sqlalchemy.activity.models import Activity, ActivityLog
from agentexec_sqlalchemy.activity.store import CANCELED_MESSAGE, SQLActivityStore
from agentexec_sqlalchemy.errors import MissingTablesError
from sqlalchemy.engine import Engine


def _seed(store: SQLActivityStore, count: int) -> list[uuid.UUID]:
    ids = []
    for i in range(count):
        agent_id = store.create("seed", f"m{i}", metadata={"tenant": "acme" if i % 2 else "other"})
        store.append(agent_id, "go", Status.RUNNING if i % 3 else Status.COMPLETE, i % 101)
        store.append(agent_id, "note")
        ids.append(agent_id)
    return ids


def test_is_an_activity_store(store: SQLActivityStore) -> None:
    assert isinstance(store, ActivityStore)


def test_list_runs_a_constant_number_of_statements(
    store: SQLActivityStore, statement_counter: Any
) -> None:
    _seed(store, 30)
    counts = {}
    for page_size in (1, 10, 30):
        for status, metadata in ((None, None), (Status.RUNNING, None), (None, {"tenant": "acme"})):
            with statement_counter(store.engine) as counter:
                result = store.list(page_size=page_size, status=status, metadata=metadata)
            assert len(result.items) == min(page_size, result.total)
            counts[(page_size, status, str(metadata))] = counter.count
    # one statement: the page with its latest logs, and the total
    assert set(counts.values()) == {1}, counts
    # past the last page, one more for the total
    with statement_counter(store.engine) as counter:
        beyond = store.list(page=99, page_size=10)
    assert (beyond.items, beyond.total, counter.count) == ([], 30, 2)
    assert store.list(page=1, status=Status.CANCELED).total == 0


def test_list_items_match_detail(store: SQLActivityStore) -> None:
    ids = _seed(store, 12)
    listing = store.list(page_size=100)
    assert [item.agent_id for item in listing.items] == ids[::-1]
    for item in listing.items:
        detail = store.detail(item.agent_id)
        assert detail is not None
        assert item.status == detail.status
        assert item.latest_percentage == detail.latest_percentage
        assert item.latest_log == detail.logs[-1].message == "note"
        assert (item.created_at, item.updated_at) == (detail.created_at, detail.updated_at)


def test_detail_is_one_statement_whatever_the_log_length(
    store: SQLActivityStore, statement_counter: Any
) -> None:
    agent_id = store.create("t", "m")
    for i in range(40):
        store.append(agent_id, f"log {i}")
    with statement_counter(store.engine) as counter:
        detail = store.detail(agent_id)
    assert detail is not None and len(detail.logs) == 41
    assert counter.count == 1


@pytest.mark.anyio
async def test_batches_are_one_transaction_each(
    store: SQLActivityStore, statement_counter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [(uuid.uuid4(), "bulk", f"queued {i}") for i in range(200)]
    entries = [LogEntry(agent_id, f"run {agent_id}", Status.RUNNING, 5) for agent_id, _, _ in items]
    if store._pg is not None:
        # PostgreSQL writes through psycopg's async connections (pg_writes): count at the driver
        import psycopg

        sent: list[str] = []
        execute = psycopg.AsyncConnection.execute

        async def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return await execute(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncConnection, "execute", counting)
        await store.acreate_many(items)
        assert len(sent) == 1, sent  # activities and their QUEUED lines: one statement
        sent.clear()
        await store.aappend_many(entries)
        assert len(sent) == 1, sent  # every line carries a status: one statement
        assert store.list(status=Status.RUNNING).total == 200
        return
    commits: list[object] = []

    def on_commit(conn: object) -> None:
        commits.append(conn)

    sa.event.listen(store.engine, "commit", on_commit)
    try:
        with statement_counter(store.engine) as created:
            await store.acreate_many(items)
        assert len(commits) == 1
        with statement_counter(store.engine) as appended:
            await store.aappend_many(entries)
        assert len(commits) == 2
    finally:
        sa.event.remove(store.engine, "commit", on_commit)
    # statement counts do not grow with the batch: no per-row round trips
    assert created.work <= 3, created.statements  # existing ids, activities, logs
    assert appended.work <= 4, appended.statements
    assert store.list(status=Status.RUNNING).total == 200


@pytest.mark.anyio
async def test_acreate_many_with_a_taken_id_creates_none(store: SQLActivityStore) -> None:
    taken = store.create("t", "first")
    fresh = uuid.uuid4()
    with pytest.raises(ValueError, match=str(taken)):
        await store.acreate_many([(fresh, "t", "m"), (taken, "t", "m")])
    assert store.detail(fresh) is None
    with pytest.raises(ValueError, match=str(fresh)):
        await store.acreate_many([(fresh, "t", "m"), (fresh, "t", "m")])
    assert store.list().total == 1


@pytest.mark.anyio
async def test_aappend_many_keeps_order_within_one_activity(store: SQLActivityStore) -> None:
    agent_id = store.create("t", "queued")
    await store.aappend_many(
        [LogEntry(agent_id, f"step {i}", Status.RUNNING if i == 0 else None, i) for i in range(50)]
    )
    detail = store.detail(agent_id)
    assert detail is not None
    assert [log.message for log in detail.logs] == ["queued"] + [f"step {i}" for i in range(50)]
    assert all(log.status is Status.RUNNING for log in detail.logs[1:])
    times = [log.created_at for log in detail.logs]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_append_with_an_invalid_status_writes_nothing(store: SQLActivityStore) -> None:
    agent_id = store.create("t", "queued")
    with pytest.raises(ValueError):
        store.append(agent_id, "x", status="NOT_A_STATUS")  # type: ignore[arg-type]
    detail = store.detail(agent_id)
    assert detail is not None and len(detail.logs) == 1


def test_cancel_pending_writes_one_canceled_log_each(store: SQLActivityStore) -> None:
    ids = _seed(store, 9)  # i % 3 == 0 COMPLETE, others RUNNING
    pending = [agent_id for i, agent_id in enumerate(ids) if i % 3]
    assert store.cancel_pending() == len(pending)
    for agent_id in pending:
        detail = store.detail(agent_id)
        assert detail is not None
        assert [(log.message, log.status) for log in detail.logs[-2:]] == [
            ("note", Status.RUNNING), (CANCELED_MESSAGE, Status.CANCELED),
        ]


def test_concurrent_writers_on_one_activity_keep_every_log_in_order(
    store: SQLActivityStore, db_engine: Engine
) -> None:
    """20 threads x 50 updates on PostgreSQL (fewer on SQLite, whose writers queue anyway)."""
    threads, updates = (20, 50) if db_engine.dialect.name == "postgresql" else (4, 25)
    agent_id = store.create("t", "queued")
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(updates):
                store.append(agent_id, f"{n}:{i}", Status.RUNNING, i * 100 // updates)
        except BaseException as error:  # surfaced below
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors[:3]
    detail = store.detail(agent_id)
    assert detail is not None
    logs = detail.logs[1:]
    assert len(logs) == threads * updates
    # every writer's updates appear, in the order it made them
    for n in range(threads):
        assert [log.message for log in logs if log.message.startswith(f"{n}:")] == [
            f"{n}:{i}" for i in range(updates)
        ]
    # one order: by time, then id, and ids agree with it (writers were serialised by the lock)
    ids = [log.id for log in detail.logs]
    assert ids == sorted(ids)
    assert [log.created_at for log in detail.logs] == sorted(log.created_at for log in detail.logs)
    assert detail.updated_at == detail.logs[-1].created_at


@pytest.mark.anyio
async def test_concurrent_async_calls_on_memory_sqlite(tmp_path: Any) -> None:
    from agentexec_sqlalchemy.activity.models import Base
    from agentexec_sqlalchemy.engine import create_engine

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    store = SQLActivityStore(engine)
    assert store.cross_process is False
    ids = [uuid.uuid4() for _ in range(10)]
    await store.acreate_many([(agent_id, "t", "queued") for agent_id in ids])

    async def work(agent_id: uuid.UUID) -> None:
        for i in range(5):
            await store.aappend(agent_id, f"step {i}", Status.RUNNING, i * 10)
        await store.adetail(agent_id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for agent_id in ids:
                tg.start_soon(work, agent_id)
    listing = await store.alist(page_size=20, status=Status.RUNNING)
    assert listing.total == 10 and {i.latest_percentage for i in listing.items} == {40}
    engine.dispose()


def test_missing_tables_say_how_to_create_them(tmp_path: Any) -> None:
    bare = SQLActivityStore(f"sqlite:///{tmp_path}/bare.db")
    with pytest.raises(MissingTablesError, match=r"ax\.Base\.metadata\.create_all\(engine\)"):
        bare.create("t", "m")
    with pytest.raises(MissingTablesError):
        bare.list()
    with pytest.raises(MissingTablesError):
        bare.append(uuid.uuid4(), "m")


def test_missing_tables_on_postgresql(postgres_server_url: str) -> None:
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    schema = f"bare_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(postgres_server_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        with pytest.raises(MissingTablesError, match="create_all"):
            SQLActivityStore(engine).detail(uuid.uuid4())
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_url_source_and_repr_hide_the_password(postgres_server_url: str) -> None:
    url = postgres_server_url.replace("postgres@", "postgres:s3cret@")
    store = SQLActivityStore(url)
    assert "s3cret" not in repr(store) and "s3cret" not in store.url
    assert store.engine.dialect.driver == "psycopg"
    assert store.cross_process is True


def test_postgres_scheme_uses_psycopg_3() -> None:
    store = SQLActivityStore("postgresql://user@127.0.0.1:1/db")  # builds, never connects
    assert store.engine.dialect.driver == "psycopg"


def test_tables_and_indexes(db_engine: Engine) -> None:
    inspector = sa.inspect(db_engine)
    activity, log = Activity.__tablename__, ActivityLog.__tablename__
    assert (activity, log) == ("agentexec_activity", "agentexec_activity_log")
    assert {c["name"] for c in inspector.get_columns(activity)} == {
        "id", "agent_id", "agent_type", "created_at", "updated_at", "metadata", "status",
        "percentage",
    }
    assert {c["name"] for c in inspector.get_columns(log)} == {
        "id", "activity_id", "message", "status", "percentage", "created_at",
    }
    unique = [i for i in inspector.get_indexes(activity) if i["column_names"] == ["agent_id"]]
    assert unique and unique[0]["unique"]
    assert any(
        i["column_names"] == ["activity_id", "created_at", "id"] for i in inspector.get_indexes(log)
    )
    assert any(i["column_names"] == ["created_at", "id"] for i in inspector.get_indexes(activity))
    assert any(
        i["column_names"] == ["status", "created_at", "id"] for i in inspector.get_indexes(activity)
    )
    (fk,) = inspector.get_foreign_keys(log)
    assert (fk["referred_table"], fk["referred_columns"]) == (activity, ["id"])


def test_overlapping_batches_and_cancel_pending_do_not_deadlock(
    store: SQLActivityStore, db_engine: Engine
) -> None:
    """Batches lock their activities in agent_id order, so overlapping ones queue up instead of
    failing with a deadlock (PostgreSQL) while cancel_pending runs beside them."""
    import random

    ids = [uuid.uuid4() for _ in range(120)]
    anyio.run(store.acreate_many, [(agent_id, "t", "queued") for agent_id in ids])
    errors: list[BaseException] = []

    def batches(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(8):
                sample = rng.sample(ids, 60)
                anyio.run(store.aappend_many, [LogEntry(a, "step", Status.RUNNING, 1) for a in sample])
        except BaseException as error:
            errors.append(error)

    def cancels() -> None:
        try:
            for _ in range(8):
                store.cancel_pending()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=batches, args=(n,)) for n in range(3)]
    workers.append(threading.Thread(target=cancels))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors[:2]
    store.cancel_pending()
    assert store.list(status=Status.CANCELED, page_size=1).total == len(ids)


@pytest.mark.anyio
async def test_pg_writes_survive_their_idle_connection_being_cut(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server restart (here: its backends terminated) while the async connections sat idle:
    the next write checks the connection first and opens a new one, instead of failing."""
    from agentexec_sqlalchemy import pg_async

    store = SQLActivityStore(pg_engine)
    await store.acreate("t", "first")
    with pg_engine.connect() as admin:
        cut = admin.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = ''"
        )).scalar()
    assert cut
    monkeypatch.setattr(pg_async, "PING_AFTER", 0.0)
    agent_id = await store.acreate("t", "after the cut")
    await store.aappend_many([LogEntry(agent_id, "running", Status.RUNNING)])
    detail = store.detail(agent_id)
    assert detail is not None and detail.status is Status.RUNNING
    await store.aclose()


def test_driver_executemany_raises_what_sqlalchemy_would(tmp_path: Any) -> None:
    """SQLite's batch writes go to the driver's executemany (``agentexec_sqlalchemy.driver``): the values
    stored are the ones SQLAlchemy's executemany stores, and a driver error comes out as
    SQLAlchemy's exception class (what ``is_transient`` and the worker tell apart)."""
    from agentexec_sqlalchemy.activity import writes
    from agentexec_sqlalchemy.errors import is_transient

    stored = []
    for name, raw in (("orm", False), ("driver", True)):
        store = SQLActivityStore(f"sqlite:///{tmp_path}/{name}.db")
        store.ensure_schema()
        agent_id = store.create("t", "queued")
        with store.engine.connect() as conn:
            pk = conn.scalar(sa.select(Activity.id).where(Activity.agent_id == agent_id))
            logs = [{"activity_id": pk, "message": "m\u00e9", "status": Status.RUNNING, "percentage": None,
                     "created_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)},
                    # a whole second: SQLite's DATETIME still stores ".000000" (the driver's own
                    # datetime adapter would not)
                    {"activity_id": pk, "message": "n", "status": Status.COMPLETE, "percentage": 100,
                     "created_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)}]
            current = [{"p_id": pk, "p_updated_at": logs[0]["created_at"], "p_status": Status.RUNNING, "p_percentage": 7}]
            if raw:
                writes.insert_log_rows(conn, logs)
                writes.set_current_rows(conn, current)
            else:
                conn.execute(writes.INSERT_LOG, logs)
                conn.execute(writes.SET_CURRENT, current)
            conn.commit()
            stored.append([  # as SQLite stores them, the activity's id aside (random)
                row[1:] for row in
                conn.exec_driver_sql("SELECT activity_id, message, status, percentage, created_at FROM agentexec_activity_log ORDER BY id").all()[1:]
                + conn.exec_driver_sql("SELECT id, status, percentage, updated_at FROM agentexec_activity").all()
            ] + [pk.hex in {row[0] for row in conn.exec_driver_sql("SELECT activity_id FROM agentexec_activity_log")}])
            with pytest.raises(sa.exc.IntegrityError) as refused:  # CHECK: percentage 0-100
                writes.set_current_rows(conn, [{**current[0], "p_percentage": 101}])
            assert not is_transient(refused.value)
            conn.rollback()
    assert stored[0] == stored[1]


@pytest.mark.anyio
async def test_sqlite_lines_share_the_transport_writer_and_fail_alone(tmp_path: Any) -> None:
    """On a SQLite file the async writes run on the transport's batching writer, each in a
    savepoint: lines naming an unknown activity fail alone (nothing of theirs is left), while
    the writes batched with them commit."""
    from agentexec_sqlalchemy.transport.batching import get_writer

    store = SQLActivityStore(f"sqlite:///{tmp_path}/agentexec.db")
    store.ensure_schema()
    known = store.create("t", "queued")
    before = store.detail(known)
    assert before is not None
    writer = get_writer(store.engine)
    results: dict[str, Any] = {}

    async def bad() -> None:
        try:
            await store.aappend_many([LogEntry(known, "x", Status.RUNNING), LogEntry(uuid.uuid4(), "y")])
        except Exception as exc:
            results["bad"] = exc

    async def good() -> None:
        await store.aappend_many([LogEntry(known, "running", Status.RUNNING)])
        results["good"] = True

    async def other() -> None:
        results["other"] = await writer.submit(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())

    gate = threading.Event()
    blocked = writer.submit(lambda conn: gate.wait(5))  # the next batch then holds all three
    async with anyio.create_task_group() as tg:
        tg.start_soon(bad)
        tg.start_soon(good)
        tg.start_soon(other)
        await anyio.sleep(0.05)
        gate.set()
    assert await blocked
    assert isinstance(results["bad"], UnknownActivityError)
    assert results["good"] is True and results["other"] == 1
    detail = store.detail(known)
    assert detail is not None
    assert [log.message for log in detail.logs] == ["queued", "running"]
    assert detail.status is Status.RUNNING
