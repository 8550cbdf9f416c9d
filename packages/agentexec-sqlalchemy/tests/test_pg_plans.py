"""PostgreSQL's plans of the activity writes: each batch reads its own activities by index,
however many others the table holds (a service's table only grows)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from agentexec_sqlalchemy.activity import pg_writes
from agentexec_sqlalchemy.activity.models import Base

#: a scan of the whole activity table (not of agentexec_activity_log)
WHOLE_TABLE = re.compile(r"Seq Scan on agentexec_activity\b(?!_)")


@pytest.mark.parametrize("history", [20_000, 100_000])
def test_a_batch_of_lines_reads_only_its_own_activities(postgres_server_url: str, history: int) -> None:
    """Before: with some thousands to ~50,000 activities in the table, the plan of a batch of
    lines updated its activities through a hash join over the whole table (measured at 20,000:
    two sequential scans, 8.4 ms per batch of 90 lines against 1.5 ms by index)."""
    psycopg = pytest.importorskip("psycopg")
    Base.metadata.create_all(sa.create_engine(postgres_server_url))
    url = sa.make_url(postgres_server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    now = datetime.now(UTC)
    batch = [uuid.uuid4() for _ in range(45)]
    with psycopg.connect(url) as conn:  # one transaction, rolled back: other tests see nothing
        conn.execute(
            "INSERT INTO agentexec_activity (id, agent_id, agent_type, created_at, updated_at, status,"
            " percentage) SELECT gen_random_uuid(), gen_random_uuid(), 'history', now(), now(),"
            " 'COMPLETE', 100 FROM generate_series(1, %s)",
            (history,),
        )
        conn.execute(
            "INSERT INTO agentexec_activity (id, agent_id, agent_type, created_at, updated_at, status,"
            " percentage) SELECT gen_random_uuid(), a, 'batch', now(), now(), 'QUEUED', 0"
            " FROM unnest(%s::uuid[]) AS a",
            (batch,),
        )
        conn.execute("ANALYZE agentexec_activity")
        params = {
            "agent_ids": batch + batch, "messages": ["Started"] * 45 + ["Done"] * 45,
            "statuses": ["RUNNING"] * 45 + ["COMPLETE"] * 45, "percentages": [None] * 45 + [100] * 45,
            "now": now,
        }
        # the joint finish's outcomes and acks (none here: its plan of the lines is the point)
        joint = {"keys": [], "datas": [], "exp": 0.0, "channel": "c", "ids": [], "cids": [], "atts": []}
        for name in ("APPEND_WITH_STATUS", "LOCK", "APPEND", "FINISH"):
            explained = "EXPLAIN " + getattr(pg_writes, name)
            plan = "\n".join(row[0] for row in conn.execute(explained, {**params, **joint} if name == "FINISH" else params))
            assert not WHOLE_TABLE.search(plan), f"{name} scans the whole activity table:\n{plan}"
        inserted = conn.execute(pg_writes.APPEND_WITH_STATUS, params).rowcount
        assert inserted == 90
        statuses = conn.execute(
            "SELECT status, count(*) FROM agentexec_activity WHERE agent_id = ANY(%s) GROUP BY status", (batch,)
        ).fetchall()
        assert statuses == [("COMPLETE", 45)]
        conn.rollback()
