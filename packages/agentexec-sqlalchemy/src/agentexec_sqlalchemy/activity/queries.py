"""The SQL behind the activity store, shared by the store and the model classmethods.

"Latest" means the last entry in the order of ``Activity.logs``: by ``created_at``, then ``id``.
Status and percentage are read from the activity row (which every write keeps equal to its
latest entry's), so a status filter is a range scan of the ``(status, created_at, id)`` index;
on PostgreSQL a one-pair metadata filter (a tenant) is a range scan of the pair table's index
(:func:`selection`).
The latest message is a correlated subquery that the ``(activity_id, created_at, id)`` index
answers with one short backward range scan, so a page of ``list()`` costs the same whether the
table holds a hundred activities or a million.
"""

from __future__ import annotations

import json
from typing import Any

from agentexec.activity.status import Status
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import ScalarSelect

from agentexec_sqlalchemy.activity import metadata_pairs
from agentexec_sqlalchemy.activity.models import Activity, ActivityLog, ActivityMetadataPair

Log = ActivityLog
Pair = ActivityMetadataPair
NEWEST_FIRST = (Activity.created_at.desc(), Activity.id.desc())
_LATEST_FIRST = (Log.created_at.desc(), Log.id.desc())


def check_page(page: int, page_size: int) -> None:
    if page < 1 or page_size < 1:
        raise ValueError(f"page and page_size must be >= 1, got page={page}, page_size={page_size}")


def latest_log_id(activity_id: Any) -> ScalarSelect[int]:
    return (
        select(Log.id)
        .where(Log.activity_id == activity_id)
        .order_by(*_LATEST_FIRST)
        .limit(1)
        .scalar_subquery()
    )


def is_pending() -> ColumnElement[bool]:
    return Activity.current_status.in_(Status.pending())


def metadata_matches(metadata: dict[str, Any], dialect: Dialect) -> ColumnElement[bool]:
    """The activity's metadata has every pair of the (validated) filter ``metadata``, compared
    as typed JSON (:mod:`agentexec.activity.metadata`)."""
    column = Activity.metadata_
    if dialect.name == "postgresql":
        as_jsonb = type_coerce(column, JSONB)
        # @> is what the GIN index (jsonb_path_ops) answers; for scalars it is exact (jsonb
        # compares typed: 1 = 1.0, but never 1 = true or 1 = "1"). A list or object value is
        # only *contained* by @>, so those keys are compared whole as well.
        return and_(
            as_jsonb.contains(metadata),
            *(
                as_jsonb[key] == type_coerce(value, JSONB)
                for key, value in metadata.items()
                if isinstance(value, dict | list)
            ),
        )
    return and_(*(_sqlite_pair(column, key, value) for key, value in metadata.items()))


def _sqlite_pair(column: Any, key: str, value: Any) -> ColumnElement[bool]:
    """SQLite: a top-level ``key`` whose JSON type and value equal ``value``'s. ``json_each``
    matches the key as text (no JSON path, so any key works); its ``type`` keeps JSON's types
    apart (``atom`` alone reads ``true`` as 1). Lists and objects compare as minified JSON text:
    stores write object keys sorted, and so is the filter."""
    item = func.json_each(column).table_valued("key", "type", "atom", "value").alias("meta")
    if value is None:
        same = item.c.type == "null"
    elif value is True or value is False:
        same = item.c.type == ("true" if value else "false")
    elif isinstance(value, int | float):
        same = and_(item.c.type.in_(("integer", "real")), item.c.atom == literal(value))
    elif isinstance(value, str):
        same = and_(item.c.type == "text", item.c.atom == literal(value, String()))
    else:
        same = and_(
            item.c.type == ("object" if isinstance(value, dict) else "array"),
            item.c.value == func.json(literal(json.dumps(value), String())),
        )
    return select(literal(1)).select_from(item).where(item.c.key == literal(key, String()), same).exists()


def filters(
    status: Status | None, metadata: dict[str, Any] | None, dialect: Dialect,
    task_name: str | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if task_name is not None:
        conditions.append(Activity.agent_type == task_name)
    if status is not None:
        conditions.append(Activity.current_status == Status(status))
    if metadata is not None:
        conditions.append(metadata_matches(metadata, dialect))
    return conditions


def count_activities(*conditions: ColumnElement[bool]) -> Select[Any]:
    return select(func.count()).select_from(Activity).where(*conditions)


def selection(
    metadata: dict[str, Any] | None, dialect: Dialect, *conditions: ColumnElement[bool]
) -> Select[Any, Any]:
    """``(id, created_at)`` of the activities matching ``conditions`` and the filter
    ``metadata``, unordered: what :func:`list_page` pages and :func:`count_selected` counts.

    On PostgreSQL, a filter of one pair that the pair table holds (a tenant), and nothing else,
    is read from that table alone: its rows of the pair, in the btree index of ``(key, value,
    created_at, activity_id)``, are the matching activities in ``list()``'s order, and their
    count is an index-only scan (:mod:`.metadata_pairs`). Everything else goes through the
    activity table: with more pairs the GIN index intersects them before any row is visited,
    and a status narrows a tenant down no faster through the pair table (measured).
    """
    if metadata is not None and not conditions and dialect.name == "postgresql" and len(metadata) == 1:
        ((key, value),) = metadata.items()
        if metadata_pairs.kept(key, value):
            pair = Pair.alias("pair")
            # jsonb = jsonb: typed (1 = 1.0, never 1 = true or 1 = "1"), as the btree answers
            as_json = cast(literal(json.dumps(value), String()), JSONB)
            return select(pair.c.activity_id.label("id"), pair.c.created_at).where(
                pair.c.key == literal(key, String()), pair.c.value == as_json
            )
    if metadata is not None:
        conditions = (*conditions, metadata_matches(metadata, dialect))
    return select(Activity.id, Activity.created_at).where(*conditions)


def count_selected(selected: Select[Any, Any]) -> Select[Any]:
    return select(func.count()).select_from(selected.subquery("matching"))


def list_page(page: int, page_size: int, selected: Select[Any, Any]) -> Select[Any]:
    """One statement: the page of the ``selected`` activities (:func:`selection`) with their
    latest status, message and percentage, and the ``total`` of them (an uncorrelated
    subquery, computed once).

    The page is cut first (an index scan in ``created_at`` order), so the per-activity
    subqueries run for ``page_size`` rows only, never for the rows ``OFFSET`` skips.
    """
    created_at, activity_id = selected.selected_columns.created_at, selected.selected_columns.id
    page_ids = (
        selected.order_by(created_at.desc(), activity_id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
        .subquery("page")
    )
    latest = Log.__table__.alias("latest")
    return (
        select(
            Activity.agent_id,
            Activity.agent_type,
            Activity.created_at,
            Activity.updated_at,
            Activity.metadata_.label("activity_metadata"),
            Activity.current_status.label("status"),
            latest.c.message.label("latest_log"),
            Activity.current_percentage.label("latest_percentage"),
            count_selected(selected).correlate(None).scalar_subquery().label("total"),
        )
        .select_from(page_ids)
        .join(Activity, Activity.id == page_ids.c.id)
        .outerjoin(latest, latest.c.id == latest_log_id(Activity.id))
        .order_by(page_ids.c.created_at.desc(), page_ids.c.id.desc())
    )


def pending_activity_ids() -> Select[Any]:
    return select(Activity.id).where(is_pending())
