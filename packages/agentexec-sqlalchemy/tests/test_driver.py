"""``agentexec_sqlalchemy.driver``: hot statements on SQLite's driver cursor give what
SQLAlchemy's execution gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from agentexec_sqlalchemy import driver
from agentexec_sqlalchemy.engine import create_engine

META = sa.MetaData()
T = sa.Table(
    "t", META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20), nullable=False, unique=True),
    sa.Column("data", sa.LargeBinary, nullable=True),
    sa.Column("score", sa.Float, nullable=True),
)
INSERT = T.insert().values(name=sa.bindparam("name"), data=sa.bindparam("data"), score=sa.bindparam("score"))
BY_NAMES = sa.select(T.c.id, T.c.name, T.c.data).where(T.c.name.in_(sa.bindparam("names", expanding=True))).order_by(T.c.id)
TOP = sa.select(sa.func.coalesce(sa.func.max(T.c.score), 0)).where(T.c.id > sa.bindparam("after"))
FIRST = sa.select(T.c.name).order_by(T.c.id).limit(1)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sa.Connection]:
    engine = create_engine(f"sqlite:///{tmp_path}/d.db")
    META.create_all(engine)
    with engine.connect() as c:
        yield c


def test_the_same_rows_as_sqlalchemy(conn: sa.Connection) -> None:
    driver.executemany(conn, INSERT, [
        {"name": "a", "data": b"\x00\x01", "score": 1.5},
        {"name": "b", "data": None, "score": None},
        {"name": "c", "data": b"", "score": 3.0},
    ])
    conn.commit()
    for names in (["a", "c"], ["b"], []):
        rows = driver.execute(conn, BY_NAMES, {"names": names})
        assert [tuple(r) for r in rows] == [tuple(r) for r in conn.execute(BY_NAMES, {"names": names}).all()]
        assert [r.name for r in rows] == sorted(names)
    # literals of the statement itself (coalesce's 0, limit's 1) need no parameter
    assert driver.execute(conn, TOP, {"after": 0})[0][0] == conn.execute(TOP, {"after": 0}).scalar_one() == 3.0
    assert driver.execute(conn, TOP, {"after": 3})[0][0] == 0
    assert [tuple(r) for r in driver.execute(conn, FIRST)] == [("a",)]


def test_a_driver_error_is_sqlalchemys(conn: sa.Connection) -> None:
    with pytest.raises(sa.exc.IntegrityError):  # UNIQUE(name)
        driver.executemany(conn, INSERT, [{"name": "a", "data": None, "score": None}] * 2)
    conn.rollback()
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        driver.execute(conn, sa.select(sa.table("missing", sa.column("x"))))
