"""The metadata pair table (PostgreSQL): which pairs it keeps, who keeps it, and that a filter
read from it selects exactly what the filter's rules select (on SQLite too, through json_each)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from agentexec.activity.metadata import metadata_matches
from agentexec_sqlalchemy.activity import queries
from agentexec_sqlalchemy.activity.metadata_pairs import KEPT_SQL, PAIR_TABLE, kept
from agentexec_sqlalchemy.activity.models import Activity
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

LONG = 10**18
#: values on both sides of every limit of the rule
EDGES: list[tuple[str, Any]] = [
    ("k", "x" * 256), ("k", "x" * 257), ("k", "é" * 256), ("k", "é" * 257), ("k", "😀" * 256),
    ("k", "😀" * 257), ("k", ""), ("k" * 128, 1), ("k" * 129, 1), ("é" * 128, 1), ("é" * 129, 1),
    ("k", LONG - 1), ("k", LONG), ("k", -(LONG - 1)), ("k", -LONG), ("k", 2**63), ("k", 0),
    ("k", 0.1), ("k", 1e-18), ("k", 1.5e-18), ("k", 1e-19), ("k", 5e-324), ("k", 1e17),
    ("k", 9.999999999999999e17), ("k", 1e18), ("k", -1e18), ("k", 1.7976931348623157e308),
    ("k", 123456789.12345679), ("k", 0.1 + 0.2), ("k", -0.0), ("k", 1.0), ("k", True),
    ("k", False), ("k", None), ("k", [1]), ("k", {"a": 1}), ("k", []), ("k", {}),
]


def _sql_keeps(conn: sa.Connection, key: str, value: Any) -> bool:
    """The trigger's rule on the JSON the driver sends for ``{key: value}``."""
    return bool(conn.scalar(
        sa.text(f"SELECT {KEPT_SQL} FROM jsonb_each(CAST(:doc AS jsonb)) AS pair"),
        {"doc": json.dumps({key: value})},
    ))


def test_the_rule_is_the_same_in_python_and_in_the_trigger(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        disagree = [(k[:5], v) for k, v in EDGES if kept(k, v) != _sql_keeps(conn, k, v)]
    assert disagree == []
    # and the edges are edges: each limit has a kept and a refused side
    assert [kept(k, v) for k, v in EDGES[:11]] == [True, False] * 3 + [True, True, False, True, False]
    assert [kept("k", v) for v in (LONG - 1, LONG, 1e-18, 1.5e-18, [1], {"a": 1})] == [
        True, False, True, False, False, False]


def _pairs(conn: sa.Connection, activity_id: uuid.UUID) -> dict[str, Any]:
    rows = conn.execute(sa.text(
        f'SELECT key, value, created_at FROM "{PAIR_TABLE}" WHERE activity_id = :id'), {"id": activity_id}
    ).all()
    return {row.key: row.value for row in rows}


@pytest.mark.anyio
async def test_every_writer_keeps_the_pairs(pg_engine: Engine) -> None:
    """The store, its psycopg batch path, the ORM and plain SQL; an UPDATE of ``metadata``
    replaces the pairs, a DELETE removes them."""
    store = SQLActivityStore(pg_engine)
    tag = uuid.uuid4().hex
    meta = {"tenant": tag, "n": 7, "flag": True, "none": None, "tags": ["a"], "long": "x" * 300}
    expected = {k: v for k, v in meta.items() if kept(k, v)}
    assert set(expected) == {"tenant", "n", "flag", "none"}

    by_store = store.create("t", "m", metadata=meta)
    batched = uuid.uuid4()
    await store.acreate_many([(batched, "t", "m", meta)])  # type: ignore[list-item]
    await store.aclose()
    with Session(pg_engine) as session:
        orm = Activity(agent_id=uuid.uuid4(), agent_type="t", metadata_=meta)
        session.add(orm)
        session.commit()
        orm_id, orm_agent = orm.id, orm.agent_id
    plain = uuid.uuid4()
    with pg_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO agentexec_activity (id, agent_id, agent_type, created_at, updated_at, metadata) "
            "VALUES (:id, :agent, 't', now(), now(), CAST(:meta AS jsonb))"),
            {"id": plain, "agent": uuid.uuid4(), "meta": json.dumps(meta)},
        )
    with pg_engine.connect() as conn:
        ids = {
            row.agent_id: row.id for row in conn.execute(
                sa.select(Activity.agent_id, Activity.id).where(Activity.agent_id.in_([by_store, batched])))
        }
        for activity_id in (ids[by_store], ids[batched], orm_id, plain):
            assert _pairs(conn, activity_id) == expected
    assert store.list(metadata={"tenant": tag}).total == 4
    assert store.list(metadata={"n": 7.0, "tenant": tag}).total == 4

    at = datetime(2020, 1, 1, tzinfo=UTC)
    with pg_engine.begin() as conn:
        conn.execute(sa.update(Activity).where(Activity.id == plain).values(metadata_={"tenant": "moved"}))
        conn.execute(sa.update(Activity).where(Activity.id == orm_id).values(created_at=at))
        conn.execute(sa.delete(Activity).where(Activity.id == ids[by_store]))
    with pg_engine.connect() as conn:
        assert _pairs(conn, plain) == {"tenant": "moved"}
        assert _pairs(conn, ids[by_store]) == {}
        stamped = conn.execute(sa.text(
            f'SELECT DISTINCT created_at FROM "{PAIR_TABLE}" WHERE activity_id = :id'), {"id": orm_id}
        ).scalars().all()
        assert stamped == [at]
    page = store.list(metadata={"tenant": tag})
    assert page.total == 2 and [i.agent_id for i in page.items] == [batched, orm_agent]
    # the pair table's created_at is the activity's: the moved one is the oldest
    assert page.items[-1].created_at == at


def test_a_one_pair_filter_reads_the_pair_table_only(pg_engine: Engine) -> None:
    dialect = pg_engine.dialect

    def sql(metadata: dict[str, Any], *conditions: Any) -> str:
        return str(queries.selection(metadata, dialect, *conditions).compile(dialect=dialect))

    assert PAIR_TABLE in sql({"tenant": "a"}) and "@>" not in sql({"tenant": "a"})
    assert "agentexec_activity " not in sql({"tenant": "a"}).split("FROM", 1)[1]
    # more pairs, a pair the table does not keep, or other conditions: the GIN path
    for metadata in ({"tenant": "a", "user": "b"}, {"tags": ["a"]}, {"tenant": "x" * 300}):
        assert PAIR_TABLE not in sql(metadata) and "@>" in sql(metadata)
    assert PAIR_TABLE not in sql({"tenant": "a"}, queries.is_pending())


def test_one_pair_filters_select_what_the_rules_select(store: SQLActivityStore) -> None:
    """Every kind of value, numbers spelled several ways (plain SQL writes ``1.000`` or
    ``1e0``), pairs kept and not kept: list(), its total and its pages against
    ``agentexec.activity.metadata.metadata_matches`` over every activity."""
    values: list[Any] = [1, 1.0, True, False, "1", None, 1.5, "a", "x" * 300, [1], {"a": 1},
                         LONG, LONG - 1, 0, -0.0, 1e-18, 0.1]
    metas: list[dict[str, Any]] = [{"k": v} for v in values]
    metas += [{"k": v, "other": "o"} for v in values[:6]] + [{"other": 1}, {}]
    for meta in metas:
        store.create("rules", "m", metadata=meta)
    spelled = ["1.000", "1e0", "10e-1", "0.0", "-0", "1.50", "100000000000000000e1", "0.10"]
    start = datetime.now(UTC)
    with store.engine.begin() as conn:
        for n, text in enumerate(spelled):
            conn.execute(sa.insert(Activity).values(
                id=uuid.uuid4(), agent_id=uuid.uuid4(), agent_type="rules",
                created_at=start + timedelta(seconds=n), updated_at=start,
                metadata_=sa.cast(sa.literal(f'{{"k": {text}}}', sa.String), JSONB)
                if store.engine.dialect.name == "postgresql"
                else sa.func.json(sa.literal(f'{{"k": {text}}}', sa.String)),
            ))
    everything = store.list(page_size=1000).items
    for value in [*values, 2, "missing"]:
        wanted = {i.agent_id for i in everything if metadata_matches(i.metadata, {"k": value})}
        found = store.list(page_size=1000, metadata={"k": value})
        assert ({i.agent_id for i in found.items}, found.total) == (wanted, len(wanted)), value
        paged = [store.list(page=p, page_size=2, metadata={"k": value}) for p in (1, 2, 3)]
        assert all(p.total == len(wanted) for p in paged)
        newest_first = [i.agent_id for i in found.items]
        assert [i.agent_id for p in paged for i in p.items] == newest_first[:6], value
    assert store.list(metadata={"k": 1}).total == 7  # 1, 1.0, the two with "other", 3 spellings


def test_create_all_on_an_older_database_fills_the_pair_table(pg_engine: Engine) -> None:
    """``create_all`` on a database whose activities predate the pair table (no migration
    run): the table it creates holds their pairs, as migration ax0007 would."""
    tag = uuid.uuid4().hex
    store = SQLActivityStore(pg_engine)
    old = store.create("t", "m", metadata={"tenant": tag})
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE "{PAIR_TABLE}"'))
        conn.execute(sa.text(f'DROP FUNCTION "{PAIR_TABLE}_sync"() CASCADE'))
        assert not sa.inspect(conn).has_table(PAIR_TABLE)
    from agentexec_sqlalchemy.activity.models import Base

    Base.metadata.create_all(pg_engine)
    page = store.list(metadata={"tenant": tag})
    assert [i.agent_id for i in page.items] == [old] and page.total == 1
