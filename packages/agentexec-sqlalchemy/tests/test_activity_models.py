"""The ORM models of spec/activity-api.md: ``ax.Base``, ``Activity``, ``ActivityLog`` and their methods."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import agentexec as ax
import pytest
import sqlalchemy as sa
from agentexec.core.db import set_global_session
from agentexec_sqlalchemy.activity.store import SQLActivityStore
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session


def test_the_documented_import_paths() -> None:
    from agentexec.activity.models import Activity, ActivityLog, Base, Status
    from agentexec_sqlalchemy.activity import models

    assert ax.Base is Base is models.Base and issubclass(Base, DeclarativeBase)
    assert (Activity, ActivityLog) == (models.Activity, models.ActivityLog)
    assert Status is ax.Status
    assert set(Base.metadata.tables) >= {"agentexec_activity", "agentexec_activity_log"}


def test_create_all_as_in_the_spec(tmp_path: object) -> None:
    import agentexec as ax
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path}/agents.db")

    # Create all agentexec tables
    ax.Base.metadata.create_all(engine)

    names = set(sa.inspect(engine).get_table_names())
    assert {"agentexec_activity", "agentexec_activity_log"} <= names
    with Session(engine) as session:
        agent_id = ax.activity.create("t", "m", session=session)
        assert ax.activity.detail(session, agent_id) is not None
    engine.dispose()


def test_direct_model_usage_from_the_spec(store: SQLActivityStore, db_engine: Engine) -> None:
    from agentexec.activity.models import Activity, ActivityLog, Status

    engine = db_engine
    running_id = store.create("t", "queued")
    store.append(running_id, "go", Status.RUNNING)
    store.append(running_id, "done", Status.COMPLETE)
    queued_id = store.create("t", "queued")

    # Query running activities
    with Session(engine) as session:
        running = session.query(Activity).filter(
            Activity.logs.any(status=Status.RUNNING)
        ).all()
        assert [a.agent_id for a in running] == [running_id]

        # Query recent activities
        cutoff = datetime.utcnow() - timedelta(hours=1)  # naive UTC, as the spec writes it

        recent = session.query(Activity).filter(
            Activity.created_at >= cutoff
        ).order_by(Activity.created_at.desc()).all()
        assert [a.agent_id for a in recent] == [queued_id, running_id]
        future = datetime.utcnow() + timedelta(hours=1)
        assert session.query(Activity).filter(Activity.created_at >= future).all() == []

        # Count by status
        from sqlalchemy import func

        counts = session.query(
            ActivityLog.status,
            func.count(ActivityLog.id)
        ).group_by(ActivityLog.status).all()
        assert dict(counts) == {Status.QUEUED: 2, Status.RUNNING: 1, Status.COMPLETE: 1}


def test_models_load_with_aware_utc_times_and_ordered_logs(
    store: SQLActivityStore, db_engine: Engine
) -> None:
    from agentexec.activity.models import Activity, Status

    agent_id = store.create("research", "queued", metadata={"tenant": "acme"})
    for i in range(3):
        store.append(agent_id, f"step {i}", Status.RUNNING, i * 10)
    with Session(db_engine) as session:
        activity = Activity.get_by_agent_id(agent_id, session)
        assert activity is not None
        assert (activity.agent_type, activity.metadata_) == ("research", {"tenant": "acme"})
        assert isinstance(activity.id, uuid.UUID) and activity.id != agent_id
        assert activity.created_at.tzinfo is not None
        assert activity.created_at.utcoffset() == timedelta(0)
        assert [log.message for log in activity.logs] == ["queued", "step 0", "step 1", "step 2"]
        assert (activity.status, activity.latest_percentage, activity.latest_log) == (
            Status.RUNNING, 20, "step 2",
        )
        assert activity.logs[0].activity is activity
        # the schemas read the model directly, too
        detail = ax.activity.ActivityDetailSchema.model_validate(activity)
        assert detail == store.detail(agent_id)


def test_get_by_agent_id(store: SQLActivityStore, db_engine: Engine) -> None:
    from agentexec.activity.models import Activity

    agent_id = store.create("t", "m")
    with Session(db_engine) as session:
        assert Activity.get_by_agent_id(agent_id, session).agent_id == agent_id  # type: ignore[union-attr]
        assert Activity.get_by_agent_id(str(agent_id), session) is not None
        assert Activity.get_by_agent_id(uuid.uuid4(), session) is None
    # without a session: the global one
    with pytest.raises(RuntimeError, match="set_global_session"):
        Activity.get_by_agent_id(agent_id)
    set_global_session(db_engine)
    found = Activity.get_by_agent_id(agent_id)
    assert found is not None and found.agent_id == agent_id


def test_get_list(store: SQLActivityStore, db_engine: Engine) -> None:
    from agentexec.activity.models import Activity

    ids = [store.create("t", f"m{i}") for i in range(7)]
    with Session(db_engine) as session:
        items, total = Activity.get_list(session)
        assert total == 7 and [a.agent_id for a in items] == ids[::-1]
        items, total = Activity.get_list(session, page=2, page_size=3)
        assert total == 7 and [a.agent_id for a in items] == ids[::-1][3:6]
        items, total = Activity.get_list(session, page=4, page_size=3)
        assert (items, total) == ([], 7)
        with pytest.raises(ValueError):
            Activity.get_list(session, page=0)


def test_get_pending_ids(store: SQLActivityStore, db_engine: Engine) -> None:
    from agentexec.activity.models import Activity, Status

    queued = store.create("t", "m")
    running = store.create("t", "m")
    store.append(running, "go", Status.RUNNING)
    done = store.create("t", "m")
    store.append(done, "go", Status.RUNNING)
    store.append(done, "ok", Status.COMPLETE)
    failed = store.create("t", "m")
    store.append(failed, "boom", Status.ERROR)
    with Session(db_engine) as session:
        pending = Activity.get_pending_ids(session)
    assert sorted(pending) == sorted([queued, running])
    assert all(isinstance(agent_id, uuid.UUID) for agent_id in pending)


def test_append_log(store: SQLActivityStore, db_engine: Engine) -> None:
    from agentexec.activity.models import Activity, Status

    agent_id = store.create("t", "queued")
    with Session(db_engine) as session:
        activity = Activity.get_by_agent_id(agent_id, session)
        assert activity is not None
        activity.append_log("Starting", status=Status.RUNNING, percentage=10)
        activity.append_log("still going")  # keeps the current status
        with pytest.raises(ValueError):
            activity.append_log("bad", percentage=101)
    # committed: the store sees it from its own session
    detail = store.detail(agent_id)
    assert detail is not None
    assert [(log.message, log.status, log.percentage) for log in detail.logs] == [
        ("queued", Status.QUEUED, 0),
        ("Starting", Status.RUNNING, 10),
        ("still going", Status.RUNNING, None),
    ]
    assert detail.updated_at == detail.logs[-1].created_at


def test_orm_created_activity_works_with_the_store(db_engine: Engine) -> None:
    from agentexec.activity.models import Activity, ActivityLog, Status

    store = SQLActivityStore(db_engine)
    agent_id = uuid.uuid4()
    with Session(db_engine) as session:
        activity = Activity(agent_id=agent_id, agent_type="manual")
        activity.logs.append(ActivityLog(message="by hand", status=Status.QUEUED))
        session.add(activity)
        session.commit()
        assert activity.created_at.tzinfo is not None
        bare = Activity(agent_id=uuid.uuid4(), agent_type="no logs")
        session.add(bare)
        session.commit()
        bare_id = bare.agent_id
    store.append(agent_id, "via store", percentage=30)
    detail = store.detail(agent_id)
    assert detail is not None and detail.status is Status.QUEUED and detail.latest_percentage == 30
    # an activity without any log reads as QUEUED and accepts updates
    assert store.detail(bare_id).status is Status.QUEUED  # type: ignore[union-attr]
    store.append(bare_id, "first log")
    assert store.detail(bare_id).logs[0].status is Status.QUEUED  # type: ignore[union-attr]


def test_database_rejects_out_of_range_percentages(db_engine: Engine) -> None:
    from agentexec.activity.models import Activity, ActivityLog, Status

    with Session(db_engine) as session:
        activity = Activity(agent_id=uuid.uuid4(), agent_type="t", created_at=datetime.now(UTC))
        activity.logs.append(ActivityLog(message="m", status=Status.QUEUED, percentage=150))
        session.add(activity)
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
