"""Issue #16: an example of the original agentexec's README runs unchanged here.

The README (0.1.6, "Activity Metadata (Multi-Tenancy)") is copied below as it is published,
set up as its "Quick Start" sets up ``db.py`` (``ax.CONF.redis_url = ...``, ``create_engine``,
``ax.Base.metadata.create_all``, ``ax.Pool(engine=engine)``, ``Session(engine)`` as ``db``).
The snippet's statements run one by one with top-level ``await``; the names it takes from its
surroundings (``context``, ``db``, and ``agent_id``: the enqueued task's) are bound around it.
On SQLite and on PostgreSQL, with the Redis queue the original requires.
"""

from __future__ import annotations

import ast
import inspect
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import pytest
import sqlalchemy as sa
from agentexec.runtime import set_backends
from pydantic import BaseModel
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

pytestmark = pytest.mark.anyio

#: the original's README, verbatim (agentexec 0.1.6 on PyPI, "Activity Metadata (Multi-Tenancy)")
README_MULTI_TENANCY = '''
task = await ax.enqueue(
    "process_document",
    context,
    metadata={"organization_id": "org-123", "user_id": "user-456"}
)

# Filter activities by metadata
activities = ax.activity.list(db, metadata_filter={"organization_id": "org-123"})
detail = ax.activity.detail(db, agent_id, metadata_filter={"organization_id": "org-123"})

# Access metadata programmatically (excluded from API serialization by default)
org_id = detail.metadata["organization_id"]
'''


class DocumentContext(BaseModel):
    document: str


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the example's own (it filters on the README's fixed "org-123")."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'agents.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    name = f"readme_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
            "AND pid <> pg_backend_pid()"
        ), {"n": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


async def run_statements(source: str, namespace: dict[str, Any], after_first: dict[str, str]) -> None:
    """Each top-level statement of ``source`` in ``namespace`` (``await`` allowed); after the
    first, bind ``after_first`` (name -> expression)."""
    for n, node in enumerate(ast.parse(source).body):
        code = compile(ast.Module([node], []), "<README>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result
        if n == 0:
            for name, expression in after_first.items():
                namespace[name] = eval(expression, namespace)


async def test_the_multi_tenancy_example_runs_unchanged(
    database_url: str, redis_server_url: str | None, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if redis_server_url is None:
        pytest.skip("the original's README needs Redis")
    set_backends(None)
    monkeypatch.setattr(ax.CONF, "queue_name", unique_name)
    # db.py of the README's Quick Start
    ax.CONF.redis_url = redis_server_url
    engine = create_engine(database_url)
    ax.Base.metadata.create_all(engine)
    pool = ax.Pool(engine=engine)

    @pool.task("process_document")
    async def process_document(agent_id: UUID, context: DocumentContext) -> None: ...

    try:
        with Session(engine) as db:
            namespace: dict[str, Any] = {"ax": ax, "db": db, "context": DocumentContext(document="a.pdf")}
            # another tenant's activity, which the filter must keep out
            await ax.enqueue("process_document", DocumentContext(document="b.pdf"),
                             metadata={"organization_id": "org-999"})
            await run_statements(README_MULTI_TENANCY, namespace, {"agent_id": "task.agent_id"})
        assert namespace["org_id"] == "org-123"
        activities = namespace["activities"]
        assert [item.agent_id for item in activities.items] == [namespace["task"].agent_id]
        assert namespace["detail"].agent_id == namespace["task"].agent_id
        assert "metadata" not in namespace["detail"].model_dump()
    finally:
        set_backends(None)
        monkeypatch.setattr(ax.CONF, "redis_url", None)
        engine.dispose()
