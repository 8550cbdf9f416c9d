"""Hot statements run straight on the driver's cursor, for SQLite.

On SQLite, SQLAlchemy's execution costs more in Python than SQLite takes to run a short
statement: an execution context, a cache-key lookup, a parameter dict and every bind processor
per row, a result object. A worker runs a handful of such statements per task (take, ack, its
activity lines, the watcher's polls), so this module runs the hottest ones on the driver:

- each statement is compiled once per dialect (the same SQL SQLAlchemy would send), and bound
  positionally through the same bind processors (the column types' own ``bind_processor``);
- an ``IN`` list of an expanding parameter gets one ``?`` per value;
- a driver error is raised as SQLAlchemy would raise it (``sqlalchemy.exc.DBAPIError.instance``:
  ``OperationalError``, ``IntegrityError`` …), so callers tell missing tables, transient and
  refused writes apart as before;
- rows come back as named tuples of the driver's values, without result processors: only for
  statements whose returned columns need none on SQLite (integers, floats, text, bytes).

It runs inside whatever transaction the connection is in (the same driver connection).
Listeners of ``before_cursor_execute`` do not see these statements. Callers use :func:`fetch`
and :func:`run_many`, which take this route on SQLite and SQLAlchemy's everywhere else.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect

_Processor = Callable[[Any], Any] | None
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


class _Compiled:
    __slots__ = ("defaults", "expanding", "names", "processors", "sql")

    def __init__(self, stmt: Any, dialect: Dialect, column_keys: Sequence[str] | None) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        self.sql: str = compiled.string
        self.names: list[str] = list(compiled.positiontup or ())
        self.processors: list[_Processor] = [
            # the dialect's implementation of the type, as SQLAlchemy binds it (a generic
            # DateTime's bind_processor is None; SQLite's DATETIME formats it)
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        self.expanding: frozenset[str] = frozenset(
            name for name in self.names if compiled.binds[name].expanding
        )
        #: the values of the statement's own literals (``.limit(1)``, ``coalesce(x, 0)`` …)
        self.defaults: dict[str, Any] = {
            name: compiled.binds[name].effective_value
            for name in self.names
            if not compiled.binds[name].required
        }

    def bind(self, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL and positional parameters of one execution."""
        values: list[Any] = []
        sql = self.sql
        for name, fn in zip(self.names, self.processors, strict=True):
            value = row[name] if name in row else self.defaults[name]
            if name in self.expanding:
                items = list(value)
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join("?" * len(items)) or "NULL", 1)
                values += [item if fn is None or item is None else fn(item) for item in items]
            else:
                values.append(value if fn is None or value is None else fn(value))
        return sql, tuple(values)

    def bind_many(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        if self.defaults:
            rows = [{**self.defaults, **row} for row in rows]
        pairs = list(zip(self.names, self.processors, strict=True))
        return [
            tuple(row[name] if fn is None or row[name] is None else fn(row[name]) for name, fn in pairs)
            for row in rows
        ]


_compiled: dict[tuple[int, str, tuple[str, ...] | None], tuple[Any, _Compiled]] = {}
_row_types: dict[tuple[str, ...], type] = {}


def _prepare(stmt: Any, dialect: Dialect, column_keys: Sequence[str] | None = None) -> _Compiled:
    key = (id(stmt), dialect.name, tuple(column_keys) if column_keys is not None else None)
    found = _compiled.get(key)
    if found is None or found[0] is not stmt:  # the statement is kept: its id stays its own
        found = _compiled[key] = (stmt, _Compiled(stmt, dialect, column_keys))
    return found[1]


def _raise(conn: Connection, sql: str, params: Any, error: BaseException) -> Any:
    dbapi = conn.dialect.loaded_dbapi
    raise exc.DBAPIError.instance(sql, params, error, dbapi.Error, dialect=conn.dialect) from error


def raw(conn: Connection) -> Any:
    """The driver's own connection under ``conn`` (in ``conn``'s transaction)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


_result_processors: dict[tuple[str, tuple[Any, ...]], list[_Processor]] = {}


def _row_type(cursor: Any) -> Any:
    names = tuple(d[0] for d in cursor.description)
    row_type = _row_types.get(names)
    if row_type is None:
        row_type = _row_types[names] = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    return row_type


#: the row type of a raw PostgreSQL statement (its text, the width of its rows)
_statement_rows: dict[tuple[str, int], Any] = {}


def pg_rows(cursor: Any, statement: str, rows: list[Any]) -> list[Any]:
    """psycopg's ``rows`` of ``statement`` as named tuples (of the column names), their type
    kept per statement: psycopg builds ``cursor.description`` anew at each access, an object
    per column."""
    if not rows:
        return []
    key = (statement, len(rows[0]))
    row_type = _statement_rows.get(key)
    if row_type is None:
        row_type = _statement_rows[key] = _row_type(cursor)
    make = row_type._make
    return [make(row) for row in rows]


def has_rows(cursor: Any) -> bool:
    """Whether psycopg's last statement returned a result set (``description`` is not None),
    without building ``description``."""
    result = cursor.pgresult
    return result is not None and result.nfields > 0


def execute(
    conn: Connection, stmt: Any, params: dict[str, Any] | None = None, result_types: Sequence[Any] = ()
) -> list[Any]:
    """Run ``stmt`` once; its rows (named tuples), ``[]`` when it returns none. The values are
    the driver's, or, for the columns whose SQLAlchemy types ``result_types`` gives (in order;
    ``None`` for a column left as it is), what those types' result processors make of them."""
    sql, values = _prepare(stmt, conn.dialect).bind(params or {})
    try:
        cursor = raw(conn).execute(sql, values)
        rows = cursor.fetchall()
    except conn.dialect.loaded_dbapi.Error as error:
        return _raise(conn, sql, values, error)  # type: ignore[no-any-return]
    if not rows:
        return []
    row_type = _row_type(cursor)
    if result_types:
        key = (conn.dialect.name, tuple(result_types))
        processors = _result_processors.get(key)
        if processors is None:
            processors = _result_processors[key] = [
                None if t is None else t.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
                for t in result_types
            ]
        rows = [
            tuple(v if fn is None or v is None else fn(v) for v, fn in zip(row, processors, strict=False))
            for row in rows
        ]
    return [row_type._make(row) for row in rows]  # type: ignore[attr-defined]


def executemany(
    conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]], column_keys: Sequence[str] | None = None
) -> None:
    """Run ``stmt`` once per row of ``rows`` (no expanding parameters); ``column_keys``: the
    columns of an ``INSERT`` built without ``values()``, in the rows' keys."""
    if not rows:
        return
    compiled = _prepare(stmt, conn.dialect, column_keys)
    params = compiled.bind_many(rows)
    try:
        raw(conn).executemany(compiled.sql, params)
    except conn.dialect.loaded_dbapi.Error as error:
        _raise(conn, compiled.sql, params[:1], error)


def run_raw(conn: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    """``sql`` in the driver's own parameter style (PostgreSQL: psycopg's ``%(name)b`` for a
    binary parameter), run once on the driver's cursor, in ``conn``'s transaction; its rows
    (named tuples of the driver's values), ``[]`` when it returns none. For the hottest
    PostgreSQL statements: no SQLAlchemy execution context or result object, and arrays that
    psycopg dumps far faster in binary (a ``bytea[]`` in text is escaped byte by byte) than
    SQLAlchemy's ``%(name)s`` lets it."""
    if not conn.in_transaction():
        # SQLAlchemy begins (and so commits) only what it has run a statement in: without
        # this, a batch of raw statements alone would be left open, then rolled back
        conn.begin()
    try:
        cursor = raw(conn).execute(sql, params)
        rows = cursor.fetchall() if has_rows(cursor) else []
    except conn.dialect.loaded_dbapi.Error as error:
        return _raise(conn, sql, params, error)  # type: ignore[no-any-return]
    return pg_rows(cursor, sql, rows)


def fetch(
    conn: Connection, stmt: Any, params: dict[str, Any] | None = None, result_types: Sequence[Any] = ()
) -> Sequence[Any]:
    """The rows of ``stmt``: on SQLite through :func:`execute`, elsewhere through SQLAlchemy
    (whose own result processing makes ``result_types`` unneeded there)."""
    if conn.dialect.name == "sqlite":
        return execute(conn, stmt, params, result_types)
    return conn.execute(stmt, params or {}).all()


def run_many(
    conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]], column_keys: Sequence[str] | None = None
) -> None:
    """``stmt`` once per row: on SQLite through :func:`executemany`, elsewhere SQLAlchemy's
    executemany (psycopg pipelines it: one round trip for the batch)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        executemany(conn, stmt, rows, column_keys)
    else:
        conn.execute(stmt, list(rows))
