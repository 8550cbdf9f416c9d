"""The SQL behind the activity store, shared by the store and the model classmethods.

"Latest" means the last entry in the order of ``Activity.logs``: by ``created_at``, then ``id``.
Every per-activity lookup below is a correlated subquery that the
``(activity_id, created_at, id)`` index answers with one short backward range scan, so a page
of ``list()`` costs the same whether the table holds a hundred activities or a million.
"""

from __future__ import annotations

import json
from typing import Any

from agentexec.activity.status import Status
from sqlalchemy import ColumnElement, Select, and_, func, literal, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import ScalarSelect

from agentexec_sqlalchemy.models import Activity, ActivityLog

Log = ActivityLog
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


def latest_status(activity_id: Any) -> ScalarSelect[Status]:
    return (
        select(Log.status)
        .where(Log.activity_id == activity_id)
        .order_by(*_LATEST_FIRST)
        .limit(1)
        .scalar_subquery()
    )


def latest_percentage(activity_id: Any) -> ScalarSelect[int | None]:
    return (
        select(Log.percentage)
        .where(Log.activity_id == activity_id, Log.percentage.is_not(None))
        .order_by(*_LATEST_FIRST)
        .limit(1)
        .scalar_subquery()
    )


def is_pending(activity_id: Any) -> ColumnElement[bool]:
    return latest_status(activity_id).in_(Status.pending())


def metadata_matches(metadata: dict[str, Any], dialect: Dialect) -> ColumnElement[bool]:
    """Every key of ``metadata`` equals the activity's value for it (JSON equality)."""
    column = Activity.metadata_
    if dialect.name == "postgresql":
        as_jsonb = type_coerce(column, JSONB)
        # @> uses the GIN index; the per-key equality makes nested values match exactly
        return and_(
            as_jsonb.contains(metadata),
            *(as_jsonb[key] == type_coerce(value, JSONB) for key, value in metadata.items()),
        )
    # SQLite: json_extract turns both sides into SQL values (true -> 1, objects -> minified text)
    return and_(
        *(
            func.json_extract(column, _json_path(key))
            == func.json_extract(literal(json.dumps(value)), "$")
            for key, value in metadata.items()
        )
    )


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filters(
    status: Status | None, metadata: dict[str, Any] | None, dialect: Dialect
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        conditions.append(latest_status(Activity.id) == Status(status))
    if metadata:
        conditions.append(metadata_matches(metadata, dialect))
    return conditions


def count_activities(*conditions: ColumnElement[bool]) -> Select[Any]:
    return select(func.count()).select_from(Activity).where(*conditions)


def list_page(
    page: int, page_size: int, *conditions: ColumnElement[bool]
) -> Select[Any]:
    """One statement: the page's activities with their latest status, message and percentage,
    and the ``total`` of matching activities (an uncorrelated subquery, computed once).

    The page is cut first (an index scan in ``created_at`` order), so the per-activity
    subqueries run for ``page_size`` rows only, never for the rows ``OFFSET`` skips.
    """
    page_ids = (
        select(Activity.id, Activity.created_at)
        .where(*conditions)
        .order_by(*NEWEST_FIRST)
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
            latest.c.status,
            latest.c.message.label("latest_log"),
            latest_percentage(Activity.id).label("latest_percentage"),
            count_activities(*conditions).correlate(None).scalar_subquery().label("total"),
        )
        .select_from(page_ids)
        .join(Activity, Activity.id == page_ids.c.id)
        .outerjoin(latest, latest.c.id == latest_log_id(Activity.id))
        .order_by(page_ids.c.created_at.desc(), page_ids.c.id.desc())
    )


def pending_activity_ids() -> Select[Any]:
    return select(Activity.id).where(is_pending(Activity.id))
