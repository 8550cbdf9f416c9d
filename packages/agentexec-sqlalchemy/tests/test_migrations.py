"""agentexec's Alembic migrations, on SQLite and on a fresh PostgreSQL database per test.

- upgrading an empty database gives exactly the schema ``ax.Base.metadata.create_all`` gives
  (reflected tables, columns, indexes and constraints, and Alembic's autogenerate compare);
- the baseline, filled, upgrades to head and back down one step with its data intact;
- ``agentexec db check`` fails on an old schema and passes after ``agentexec db upgrade``;
- the original agentexec's tables (0.1.x and 0.3 forms) with 1,000 activities are adopted
  with every activity's status, logs and metadata.
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import Enum as PyEnum
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from agentexec.activity.status import Status
from agentexec.cli import main as cli
from agentexec.config import CONF
from agentexec_sqlalchemy import migrations
from agentexec_sqlalchemy.activity.metadata_pairs import PAIR_TABLE as PAIRS
from agentexec_sqlalchemy.activity.models import ACTIVITY_LOG_TABLE as L
from agentexec_sqlalchemy.activity.models import ACTIVITY_TABLE as A
from agentexec_sqlalchemy.activity.models import Base
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from agentexec_sqlalchemy.engine import create_engine, dispose_all
from agentexec_sqlalchemy.errors import SchemaOutdatedError
from agentexec_sqlalchemy.transport import compression
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

KINDS = ("sqlite", "postgresql")


@pytest.fixture
def new_url(postgres_server_url: str, tmp_path: Path) -> Iterator[Any]:
    """``new_url(kind)``: the URL of a new empty database (PostgreSQL: a schema of its own, the
    URL's search_path, dropped after the test: concurrent tests never see each other's tables)."""
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(kind: str) -> str:
        name = f"ax_mig_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        return f"{postgres_server_url}?options=-csearch_path%3D{name}"

    yield make
    dispose_all()  # the store's engines (one per URL) hold connections to the schemas
    with admin.connect() as conn:
        for name in made:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _engine(url: str, engines: list[Engine]) -> Engine:
    engine = create_engine(url)
    engines.append(engine)
    return engine


def schema(engine: Engine) -> dict[str, Any]:
    """Everything reflection sees of agentexec's tables (the version table too)."""
    inspector = sa.inspect(engine)
    found: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        found[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], str(fk.get("options")))
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(str(c) for c in ix["column_names"]), ix["unique"],
                 sorted((k, str(v)) for k, v in ix.get("dialect_options", {}).items()))
                for ix in inspector.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "options": _storage_options(engine, table),
            "compression": _compression(engine, table),
            "checks": sorted(
                (str(c["name"]), " ".join(c["sqltext"].split())) for c in inspector.get_check_constraints(table)
            ),
        }
    return found


def _storage_options(engine: Engine, table: str) -> list[str] | None:
    """PostgreSQL's storage parameters of ``table`` (fillfactor ...), which reflection omits."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT reloptions FROM pg_class WHERE oid = to_regclass(:t)"), {"t": f'"{table}"'}
        ).scalar()


def _compression(engine: Engine, table: str) -> dict[str, str] | None:
    """PostgreSQL: the columns of ``table`` with a compression method of their own ('l': lz4),
    which reflection omits."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attnum > 0 AND NOT attisdropped AND attcompression <> ''"), {"t": f'"{table}"'}
        ).all()
    return {str(r[0]): str(r[1]) for r in rows}


def _lz4_columns(engine: Engine) -> set[tuple[str, str]]:
    return {(t, c) for t, found in schema(engine).items() for c, m in (found["compression"] or {}).items() if m == "l"}


def autogenerate_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True,
                        "version_table": migrations.VERSION_TABLE},
        )
        return [repr(d) for d in compare_metadata(context, Base.metadata)]


def test_the_release_constants_name_the_scripts() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrations.config())
    chain = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert tuple(chain) == migrations.REVISIONS
    assert migrations.head() == migrations.HEAD and chain[0] == migrations.BASELINE


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_from_empty_is_create_all(kind: str, new_url: Any, engines: list[Engine]) -> None:
    migrated = _engine(new_url(kind), engines)
    created = _engine(new_url(kind), engines)
    migrations.upgrade(migrated)
    Base.metadata.create_all(created)
    # create_all stamped the newest revision: `agentexec db check` passes on it
    assert migrations.recorded(created) == migrations.recorded(migrated) == migrations.HEAD
    assert schema(migrated) == schema(created)
    assert autogenerate_diff(migrated) == autogenerate_diff(created)
    if kind == "postgresql":
        assert autogenerate_diff(migrated) == []
        with migrated.connect() as conn:
            index = conn.execute(sa.text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = :n AND schemaname = current_schema()"),
                {"n": f"ix_{A}_metadata"},
            ).scalar_one()
        assert "gin" in index and "jsonb_path_ops" in index
        assert schema(migrated)[A]["options"] == ["fillfactor=80"]
        # the metadata pair table's trigger and function (ax0007), which reflection omits
        assert _triggers(migrated) == _triggers(created) and len(_triggers(created)) == 3
        # ax0008: the transport's large columns compress with lz4 where the server has it
        with migrated.connect() as conn:
            lz4 = compression.lz4_available(conn)
        expected = {(f"{CONF.table_prefix}{t}", c) for t, c in compression.COLUMNS} if lz4 else set()
        assert _lz4_columns(migrated) == _lz4_columns(created) == expected
        if os.environ.get("CI") == "true":  # Debian's PostgreSQL 15 has lz4: the path is taken
            assert lz4
    else:
        # SQLite: only the PostgreSQL-only GIN index, which neither database has
        assert [d for d in autogenerate_diff(migrated) if "metadata" not in d] == []


def _triggers(engine: Engine) -> list[str]:
    """The definitions of the triggers on the activity table and of their function (without
    the schema's name, which differs between tests)."""
    with engine.connect() as conn:
        own = f"{conn.scalar(sa.text('SELECT current_schema()'))}."
        triggers = conn.execute(sa.text(
            "SELECT pg_get_triggerdef(t.oid), pg_get_functiondef(t.tgfoid) FROM pg_trigger t "
            "WHERE t.tgrelid = to_regclass(:t) AND NOT t.tgisinternal ORDER BY t.tgname"),
            {"t": f'"{A}"'},
        ).all()
    return sorted({text.replace(own, "") for row in triggers for text in row})


def _pairs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(f'SELECT count(*) FROM "{PAIRS}"')) or 0)


def _fill_baseline(engine: Engine, count: int = 30) -> dict[uuid.UUID, list[tuple[str, str, int | None]]]:
    """``count`` activities in the baseline schema (no status column), 1-3 logs each, written
    with plain SQL as agentexec 0.4.0 wrote them."""
    assert "status" not in {c["name"] for c in sa.inspect(engine).get_columns(A)}
    meta = sa.MetaData()
    activity = sa.Table(
        A, meta, sa.Column("id", sa.Uuid, primary_key=True), sa.Column("agent_id", sa.Uuid),
        sa.Column("agent_type", sa.String), sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)), sa.Column("metadata", sa.JSON),
    )
    log = sa.Table(
        L, meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("activity_id", sa.Uuid),
        sa.Column("message", sa.Text), sa.Column("status", sa.String),
        sa.Column("percentage", sa.Integer), sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    expected: dict[uuid.UUID, list[tuple[str, str, int | None]]] = {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    with engine.begin() as conn:
        for n in range(count):
            pk, agent_id = uuid.uuid4(), uuid.uuid4()
            at = start + timedelta(seconds=n)
            conn.execute(activity.insert().values(
                id=pk, agent_id=agent_id, agent_type="t", created_at=at, updated_at=at,
                metadata={"n": n},
            ))
            entries = [("queued", "QUEUED", 0)]
            if n % 3:
                entries.append(("running", "RUNNING", rng.choice([None, 40])))
            if n % 3 == 2:
                entries.append(("done", rng.choice(["COMPLETE", "ERROR"]), None))
            for k, (message, status, pct) in enumerate(entries):
                conn.execute(log.insert().values(
                    activity_id=pk, message=message, status=status, percentage=pct,
                    created_at=at + timedelta(microseconds=k),
                ))
            expected[agent_id] = entries
    return expected


def _check_logs(store: SQLActivityStore, expected: dict[uuid.UUID, list[tuple[str, str, int | None]]]) -> None:
    for agent_id, entries in expected.items():
        detail = store.detail(agent_id)
        assert detail is not None
        assert [(e.message, e.status.value, e.percentage) for e in detail.logs] == entries


def _current(entries: list[tuple[str, str, int | None]]) -> tuple[str, int | None]:
    return entries[-1][1], next((p for _, _, p in reversed(entries) if p is not None), None)


@pytest.mark.parametrize("kind", KINDS)
def test_baseline_filled_upgrades_and_back(kind: str, new_url: Any, engines: list[Engine]) -> None:
    engine = _engine(new_url(kind), engines)
    migrations.upgrade(engine, migrations.BASELINE)
    expected = _fill_baseline(engine)
    store = SQLActivityStore(engine)
    with pytest.raises(SchemaOutdatedError, match="agentexec db upgrade"):
        store.list()
    assert "agentexec db upgrade" in (store.schema_problem() or "")

    migrations.upgrade(engine)
    assert store.schema_problem() is None
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT agent_id, status, percentage FROM {A}")).all()
    current = {uuid.UUID(str(r[0])): (r[1], r[2]) for r in rows}
    assert current == {agent_id: _current(entries) for agent_id, entries in expected.items()}
    _check_logs(store, expected)
    # ax0007 filled the metadata pair table (PostgreSQL; SQLite filters with json_each)
    assert _pairs(engine) == (len(expected) if kind == "postgresql" else 0)
    assert [store.list(metadata={"n": n}).total for n in (0, 7, 29, 30)] == [1, 1, 1, 0]
    for status in (Status.QUEUED, Status.RUNNING, Status.COMPLETE, Status.ERROR):
        page = store.list(page_size=100, status=status)
        assert {i.agent_id for i in page.items} == {
            a for a, entries in expected.items() if entries[-1][1] == status.value
        }
        assert all(i.status == status for i in page.items)
    # the upgraded store writes as usual
    new = store.create("t", "fresh")
    store.append(new, "go", Status.RUNNING, 5)
    assert store.list(page_size=1).items[0].status == Status.RUNNING

    if kind == "postgresql":
        with engine.connect() as conn:
            lz4 = compression.lz4_available(conn)
        assert len(_lz4_columns(engine)) == (len(compression.COLUMNS) if lz4 else 0)
    migrations.downgrade(engine, "ax0007")  # ax0008 undone: the server's default compression
    assert migrations.recorded(engine) == "ax0007" and not (kind == "postgresql" and _lz4_columns(engine))
    migrations.downgrade(engine, "ax0006")  # ax0007 undone, the data as it was
    assert migrations.recorded(engine) == "ax0006"
    _check_logs(store, expected)
    assert store.list(page_size=1).items[0].status == Status.RUNNING
    assert not sa.inspect(engine).has_table(PAIRS)
    if kind == "postgresql":
        assert _triggers(engine) == []
        with engine.begin() as conn:  # a write at ax0006 (no trigger), then ax0007 again
            conn.execute(sa.text(f"UPDATE {A} SET metadata = CAST('{{\"n\": 99}}' AS jsonb) "
                                 f"WHERE metadata = CAST('{{\"n\": 0}}' AS jsonb)"))
        migrations.upgrade(engine)
        assert _pairs(engine) == len(expected)
        assert [store.list(metadata={"n": n}).total for n in (0, 99)] == [0, 1]
        migrations.downgrade(engine, "ax0006")
    migrations.downgrade(engine, migrations.BASELINE)  # and to the baseline: the columns go
    assert migrations.recorded(engine) == migrations.BASELINE
    assert "status" not in {c["name"] for c in sa.inspect(engine).get_columns(A)}
    with engine.connect() as conn:
        assert conn.scalar(sa.text(f"SELECT count(*) FROM {A}")) == len(expected) + 1
        logs = conn.scalar(sa.text(f"SELECT count(*) FROM {L}"))
    assert logs == sum(len(e) for e in expected.values()) + 2
    migrations.upgrade(engine)  # and up again
    _check_logs(store, expected)


def test_db_check_fails_on_an_old_schema_and_passes_after_upgrade(
    new_url: Any, engines: list[Engine], capsys: pytest.CaptureFixture[str]
) -> None:
    url = new_url("postgresql")
    engine = _engine(url, engines)
    migrations.upgrade(engine, migrations.BASELINE)
    assert cli(["db", "check", "--url", url]) == 1
    err = capsys.readouterr().err
    assert f"at revision {migrations.BASELINE}" in err and "run `agentexec db upgrade`" in err
    assert cli(["db", "upgrade", "--url", url]) == 0
    assert f"{migrations.BASELINE} -> {migrations.HEAD}" in capsys.readouterr().out
    assert cli(["db", "check", "--url", url]) == 0
    assert "up to date" in capsys.readouterr().out
    assert cli(["db", "current", "--url", url]) == 0
    assert f"{migrations.HEAD} (newest: {migrations.HEAD})" in capsys.readouterr().out


def test_db_check_on_tables_made_before_migrations(tmp_path: Path, engines: list[Engine],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """create_all's tables of 0.4.0 (no version table): check says to upgrade, which adopts
    them; create_all run again on them (as an application does at each start) stamps nothing."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = _engine(url, engines)
    migrations.upgrade(engine, migrations.BASELINE)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
        conn.execute(sa.text(f"DROP TABLE {Base.metadata.tables[A].name.replace('activity', 'queue')}"))
    expected = _fill_baseline(engine, count=5)
    Base.metadata.create_all(engine)  # creates the queue table again, stamps nothing
    assert migrations.recorded(engine) is None
    assert cli(["db", "check", "--url", url]) == 1
    assert "not under migrations yet" in capsys.readouterr().err
    assert cli(["db", "upgrade", "--url", url]) == 0
    assert cli(["db", "check", "--url", url]) == 0
    _check_logs(SQLActivityStore(engine), expected)


def test_db_without_a_database_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["db", "check", "--url", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    assert "no agentexec database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


# -- the original agentexec's tables ---------------------------------------------------------
class OriginalStatus(str, PyEnum):
    """The original's enum: SQLAlchemy stores the *names* (``QUEUED``), not these values."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELED = "canceled"


def original_tables(with_metadata: bool) -> sa.MetaData:
    """The original's ``Activity`` and ``ActivityLog`` tables as its models define them
    (agentexec 0.1.x; ``with_metadata``: 0.3, where ``metadata`` JSON came in)."""
    meta = sa.MetaData()
    columns = [
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("agent_id", sa.Uuid, nullable=False, unique=True, index=True),
        sa.Column("agent_type", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]
    if with_metadata:
        columns.append(sa.Column("metadata", sa.JSON, nullable=True))
    sa.Table(A, meta, *columns)
    sa.Table(
        L, meta,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("activity_id", sa.Uuid, sa.ForeignKey(f"{A}.id"), nullable=False, index=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.Enum(OriginalStatus, name="status"), nullable=False, index=True),
        sa.Column("percentage", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    return meta


@pytest.mark.parametrize(("kind", "version"), [
    ("sqlite", "0.1"), ("sqlite", "0.3"), ("postgresql", "0.1"), ("postgresql", "0.3"),
])
def test_the_original_agentexec_tables_are_adopted(
    kind: str, version: str, new_url: Any, engines: list[Engine]
) -> None:
    engine = _engine(new_url(kind), engines)
    with_metadata = version == "0.3"
    meta = original_tables(with_metadata)
    meta.create_all(engine)
    activity, log = meta.tables[A], meta.tables[L]
    rng = random.Random(20)
    start = datetime(2025, 12, 1, tzinfo=UTC)
    expected: dict[uuid.UUID, dict[str, Any]] = {}
    activities, logs = [], []
    for n in range(1000):
        pk, agent_id = uuid.uuid4(), uuid.uuid4()
        at = start + timedelta(seconds=n)
        row = {"id": pk, "agent_id": agent_id, "agent_type": None if n % 50 == 0 else f"task{n % 4}",
               "created_at": at, "updated_at": at}
        if with_metadata:
            row["metadata"] = None if n % 7 == 0 else {"organization_id": f"org-{n % 5}", "n": n}
        activities.append(row)
        entries = [("Waiting to start.", OriginalStatus.QUEUED, None)]
        for k in range(rng.randint(0, 4)):
            entries.append((f"step {k}", rng.choice(list(OriginalStatus)), rng.choice([None, 10 * k])))
        for k, (message, status, pct) in enumerate(entries):
            logs.append({"id": uuid.uuid4(), "activity_id": pk, "message": message, "status": status,
                         "percentage": pct, "created_at": at + timedelta(milliseconds=k)})
        expected[agent_id] = {
            "agent_type": row["agent_type"] or "",
            "metadata": row.get("metadata"),
            "logs": [(m, s.name, p) for m, s, p in entries],
        }
    with engine.begin() as conn:
        conn.execute(activity.insert(), activities)
        conn.execute(log.insert(), logs)
        stored = conn.execute(sa.text(f"SELECT DISTINCT CAST(status AS VARCHAR(16)) FROM {L}")).scalars()
        assert set(stored) <= {s.name for s in OriginalStatus}  # names, as the original stores them

    assert "not under migrations yet" in (migrations.problem(engine) or "")
    migrations.upgrade(engine)
    assert migrations.problem(engine) is None
    created = _engine(new_url(kind), engines)
    Base.metadata.create_all(created)
    assert schema(engine) == schema(created)

    store = SQLActivityStore(engine)
    assert store.list(page_size=1).total == 1000
    with engine.connect() as conn:  # every log, in each activity's order, in one read
        found: dict[uuid.UUID, list[tuple[str, str, int | None]]] = {}
        rows = conn.execute(sa.text(
            f"SELECT a.agent_id, l.message, l.status, l.percentage FROM {L} l JOIN {A} a "
            f"ON a.id = l.activity_id ORDER BY l.created_at, l.id"
        ))
        for agent_id, message, status, pct in rows:
            found.setdefault(uuid.UUID(str(agent_id)), []).append((message, status, pct))
    assert found == {agent_id: want["logs"] for agent_id, want in expected.items()}
    by_status: dict[str, set[uuid.UUID]] = {}
    for n, (agent_id, want) in enumerate(expected.items()):
        by_status.setdefault(want["logs"][-1][1], set()).add(agent_id)
        if n % 25:
            continue  # the API's view of a sample: type, metadata, status, percentage
        detail = store.detail(agent_id)
        assert detail is not None
        assert (detail.agent_type, detail.metadata) == (want["agent_type"], want["metadata"])
        assert [(e.message, e.status.value, e.percentage) for e in detail.logs] == want["logs"]
        assert detail.status.value == want["logs"][-1][1]
        assert detail.latest_percentage == _current(want["logs"])[1]
    for status, agent_ids in by_status.items():
        page = store.list(page_size=1000, status=Status(status))
        assert {item.agent_id for item in page.items} == agent_ids
    if with_metadata:
        page = store.list(page_size=1000, metadata={"organization_id": "org-3"})
        assert page.total == sum(1 for w in expected.values() if (w["metadata"] or {}).get("organization_id") == "org-3")
    # and it goes on working: a new activity, an update of an adopted one
    some = next(iter(expected))
    store.append(some, "resumed", Status.RUNNING, 50)
    assert store.detail(some).status == Status.RUNNING  # type: ignore[union-attr]



# -- the status column is kept by every write ------------------------------------------------
def _mismatches(engine: Engine) -> list[Any]:
    """Activities whose status/percentage columns differ from their latest log entries'."""
    latest = (
        f"SELECT l.{{col}} FROM {L} l WHERE l.activity_id = a.id {{extra}}"
        f"ORDER BY l.created_at DESC, l.id DESC LIMIT 1"
    )
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            f"SELECT a.agent_id, a.status, a.percentage, ({latest.format(col='status', extra='')}), "
            f"({latest.format(col='percentage', extra='AND l.percentage IS NOT NULL ')}) "
            f"FROM {A} a"
        )).all())


@pytest.mark.anyio
async def test_every_write_keeps_the_status_column(store: SQLActivityStore, db_engine: Engine) -> None:
    from agentexec.backends import LogEntry
    from agentexec_sqlalchemy.activity.models import Activity, ActivityLog
    from sqlalchemy.orm import Session

    one = store.create("t", "queued")
    store.append(one, "started", Status.RUNNING, 10)
    store.append(one, "progress", None, None)  # inherits RUNNING, keeps 10
    two, three, four = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.acreate_many([(two, "t", "q"), (three, "t", "q"), (four, "t", "q")])
    await store.aappend(two, "started", Status.RUNNING)  # one line with a status
    await store.aappend_many([  # all with a status, two lines for one activity
        LogEntry(three, "a", Status.RUNNING, 20), LogEntry(three, "b", Status.ERROR, None),
        LogEntry(four, "c", Status.RUNNING, 30),
    ])
    await store.aappend_many([  # some inherit: the last status given wins, else the activity's
        LogEntry(two, "d", None, 60), LogEntry(four, "e", Status.COMPLETE, None),
        LogEntry(four, "f", None, 99),
    ])
    five = store.create("t", "queued")
    with Session(db_engine) as session:  # the ORM: append_log, and a log added directly
        activity = Activity.get_by_agent_id(five, session=session)
        assert activity is not None
        activity.append_log("orm", Status.RUNNING, 70)
        session.add(ActivityLog(activity_id=activity.id, message="direct", status=Status.ERROR,
                                percentage=None, created_at=datetime.now(UTC) + timedelta(seconds=1)))
        session.commit()
    six = store.create("t", "queued")
    assert await store.acancel_pending() >= 2  # one (RUNNING) and six (QUEUED) among them

    assert [row for row in _mismatches(db_engine) if row[1] != row[3] or row[2] != row[4]] == []
    current = {row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(row[0]): (row[1], row[2])
               for row in _mismatches(db_engine)}
    assert current[one] == ("CANCELED", 10)
    assert current[two] == ("CANCELED", 60)
    assert current[three] == ("ERROR", 20)
    assert current[four] == ("COMPLETE", 99)
    assert current[five] == ("ERROR", 70)
    assert current[six] == ("CANCELED", 0)
    assert {i.agent_id for i in store.list(status=Status.CANCELED).items} == {one, two, six}
    assert store.count_active() == 0


# -- inside an application's own Alembic environment -----------------------------------------
APP_MODELS = '''
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
'''

APP_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "app0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("note", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("text", sa.String(200), nullable=False))


def downgrade():
    op.drop_table("note")
'''


def test_an_applications_alembic_env_runs_agentexecs_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engines: list[Engine]
) -> None:
    """examples/alembic_env/env.py (the env.py docs/migrations.md shows): `alembic upgrade
    head` runs the application's revisions and agentexec's, each history in its own version
    table, and `alembic check` (autogenerate) finds nothing to do: agentexec's tables are not
    the application's to drop."""
    import shutil

    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parents[3]
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "models.py").write_text(APP_MODELS)
    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    shutil.copy(root / "examples" / "alembic_env" / "env.py", scripts / "env.py")
    (scripts / "versions" / "app0001.py").write_text(APP_REVISION)
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    cfg = Config(stdout=sys.stdout)  # its default is the sys.stdout of when alembic was imported (a closed capture)
    cfg.set_main_option("script_location", str(scripts))
    cfg.set_main_option("sqlalchemy.url", url)

    command.upgrade(cfg, "head")
    command.check(cfg)  # raises when autogenerate would change anything
    engine = _engine(url, engines)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "app0001"
    assert migrations.recorded(engine) == migrations.HEAD
    assert {"note", A, L, f"{A.removesuffix('activity')}queue"} <= set(sa.inspect(engine).get_table_names())
    monkeypatch.delitem(__import__("sys").modules, "myapp.models")
    monkeypatch.delitem(__import__("sys").modules, "myapp")


def test_a_pool_on_an_old_schema_says_what_to_run(tmp_path: Path, engines: list[Engine]) -> None:
    """`agentexec run` on tables of the baseline refuses to start, naming `agentexec db
    upgrade`, instead of starting and failing every task on a missing column."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrations.upgrade(_engine(url, engines), migrations.BASELINE)
    (tmp_path / "app.py").write_text(
        "import agentexec as ax\nfrom uuid import UUID\nfrom pydantic import BaseModel\n"
        "pool = ax.Pool()\n"
        "class C(BaseModel):\n    x: int = 1\n"
        "@pool.task('t')\nasync def t(agent_id: UUID, context: C) -> int:\n    return 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "agentexec"), "run", "app:pool"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60, env={**env, "AGENTEXEC_DATABASE_URL": url},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Pool started" not in result.stdout + result.stderr
    assert (f"agentexec's tables are at revision {migrations.BASELINE}, this release needs "
            f"{migrations.HEAD}: run `agentexec db upgrade`") in result.stderr
