"""Issue #16: the original agentexec's schema names beside the spec's. ``total_pages``,
``latest_log_message`` and ``percentage`` read (and, building a schema, are accepted) as the
spec's ``pages``, ``latest_log`` and ``latest_percentage``; what serializes is the spec's shape
alone. On the SQL store, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import agentexec as ax
import pytest
import sqlalchemy as sa
from agentexec.activity.schemas import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
)
from agentexec_sqlalchemy.activity.store import SQLActivityStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLActivityStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'schemas.db'}"
    else:
        url = request.getfixturevalue("postgres_server_url")
    engine = sa.create_engine(url)
    ax.Base.metadata.create_all(engine)
    yield SQLActivityStore(engine)
    engine.dispose()


def test_the_originals_names_read_as_the_specs(store: SQLActivityStore) -> None:
    tag = {"schemas": uuid4().hex}
    agent_id = store.create("research", "Waiting to start.", metadata=tag)
    store.append(agent_id, "Halfway", ax.Status.RUNNING, 50)
    store.append(agent_id, "Still going")
    listing = store.list(page_size=1, metadata=tag)
    item = listing.items[0]
    assert listing.total_pages == listing.pages == 1
    assert item.latest_log_message == item.latest_log == "Still going"
    assert item.percentage == item.latest_percentage == 50
    detail = store.detail(agent_id)
    assert detail is not None and detail.percentage == detail.latest_percentage == 50
    assert set(item.model_dump()) == {
        "agent_id", "agent_type", "created_at", "updated_at", "status", "latest_log", "latest_percentage",
    }
    assert set(listing.model_dump()) == {"items", "total", "page", "page_size", "pages"}


def test_schemas_accept_the_originals_names() -> None:
    now = datetime.now(UTC)
    item = ActivityListItemSchema(
        agent_id=uuid4(), agent_type="t", created_at=now, updated_at=now, status=ax.Status.QUEUED,
        latest_log_message="queued", percentage=0, metadata={"org": "a"},  # type: ignore[call-arg]
    )
    assert (item.latest_log, item.latest_percentage, item.metadata) == ("queued", 0, {"org": "a"})
    listing = ActivityListSchema(items=[item], total=1, page=1, page_size=10, total_pages=1)  # type: ignore[call-arg]
    assert listing.pages == 1 and listing.items[0].metadata == {"org": "a"}
    detail = ActivityDetailSchema.model_validate({
        "agent_id": uuid4(), "agent_type": "t", "created_at": now, "updated_at": now,
        "status": "QUEUED", "percentage": 5, "logs": [], "metadata_": {"org": "b"},
    })
    assert detail.latest_percentage == 5 and detail.metadata == {"org": "b"}
    assert "metadata" not in detail.model_dump_json()
