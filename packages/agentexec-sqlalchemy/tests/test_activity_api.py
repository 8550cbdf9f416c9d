"""``ax.activity`` on the SQL store: every function of spec/activity-api.md, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import agentexec as ax
import pytest
import sqlalchemy as sa
from agentexec.activity import (
    ActivityDetailSchema,
    ActivityListItemSchema,
    ActivityListSchema,
    ActivityLogSchema,
)
from agentexec.activity.models import Status
from agentexec.backends import UnknownActivityError
from agentexec.core.db import get_global_session, remove_global_session, set_global_session
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

pytestmark = pytest.mark.usefixtures("ax_store")


def statuses(agent_id: uuid.UUID) -> list[Status]:
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    return [log.status for log in detail.logs]


# -- create ----------------------------------------------------------------------------------
def test_create_with_a_session_as_in_the_spec(db_engine: Engine) -> None:
    engine = db_engine
    with Session(engine) as session:
        agent_id = ax.activity.create(
            task_name="my_task",
            message="Task created",
            session=session
        )
    assert isinstance(agent_id, uuid.UUID)
    # committed: another session (and the store's own) sees it
    with Session(engine) as other:
        detail = ax.activity.detail(other, agent_id)
    assert detail is not None
    assert (detail.agent_type, detail.status, detail.latest_percentage) == ("my_task", Status.QUEUED, 0)
    assert [(log.message, log.status) for log in detail.logs] == [("Task created", Status.QUEUED)]


def test_create_keeps_a_given_agent_id_and_rejects_a_duplicate() -> None:
    given = uuid.uuid4()
    assert ax.activity.create("t", "m", agent_id=given) == given
    with pytest.raises(ValueError, match=str(given)):
        ax.activity.create("t", "again", agent_id=given)
    assert statuses(given) == [Status.QUEUED]


def test_create_without_a_session_uses_the_store() -> None:
    agent_id = ax.activity.create("t", "m")
    assert ax.activity.detail(agent_id) is not None


# -- update / complete / error -----------------------------------------------------------------
def test_update_examples_from_the_spec() -> None:
    agent_id = ax.activity.create("t", "queued")
    # Update with message only
    ax.activity.update(agent_id, "Processing data...")
    # Update with progress
    ax.activity.update(agent_id, "50% complete", percentage=50)
    # Update with status change
    from agentexec.activity.models import Status

    ax.activity.update(agent_id, "Starting", status=Status.RUNNING)
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    assert [(log.message, log.status, log.percentage) for log in detail.logs] == [
        ("queued", Status.QUEUED, 0),
        ("Processing data...", Status.QUEUED, None),
        ("50% complete", Status.QUEUED, 50),
        ("Starting", Status.RUNNING, None),
    ]
    assert (detail.status, detail.latest_percentage) == (Status.RUNNING, 50)


def test_update_accepts_the_string_form_of_the_id() -> None:
    agent_id = ax.activity.create("t", "queued")
    ax.activity.update(str(agent_id), "by string", percentage=5)
    detail = ax.activity.detail(str(agent_id))
    assert detail is not None and detail.latest_percentage == 5


def test_complete_examples_from_the_spec() -> None:
    agent_id = ax.activity.create("t", "queued")
    ax.activity.complete(agent_id, "Task finished successfully")
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    assert (detail.status, detail.latest_percentage) == (Status.COMPLETE, 100)
    # With custom percentage
    other = ax.activity.create("t", "queued")
    ax.activity.complete(other, "Partial completion", percentage=75)
    detail = ax.activity.detail(other)
    assert detail is not None
    assert (detail.status, detail.latest_percentage) == (Status.COMPLETE, 75)


def test_error_example_from_the_spec() -> None:
    agent_id = ax.activity.create("t", "queued")
    try:
        raise RuntimeError("upstream timed out")
    except Exception as e:
        ax.activity.error(agent_id, f"Failed: {e}")
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    assert detail.status is Status.ERROR
    assert detail.logs[-1].message == "Failed: upstream timed out"
    assert detail.logs[-1].percentage is None


def test_unknown_agent_id_raises_naming_it() -> None:
    missing = uuid.uuid4()
    for call in (
        lambda: ax.activity.update(missing, "x"),
        lambda: ax.activity.complete(missing, "x"),
        lambda: ax.activity.error(missing, "x"),
    ):
        with pytest.raises(UnknownActivityError, match=str(missing)):
            call()


@pytest.mark.parametrize("bad", [-1, 101])
def test_percentage_outside_0_100_is_rejected_and_nothing_written(bad: int) -> None:
    agent_id = ax.activity.create("t", "queued")
    with pytest.raises(ValueError, match="between 0 and 100"):
        ax.activity.update(agent_id, "bad", percentage=bad)
    with pytest.raises(ValueError):
        ax.activity.complete(agent_id, "bad", percentage=bad)
    assert statuses(agent_id) == [Status.QUEUED]


def test_a_failed_write_leaves_a_callers_session_usable(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        with pytest.raises(UnknownActivityError):
            ax.activity.update(uuid.uuid4(), "x", session=session)
        agent_id = ax.activity.create("t", "after the error", session=session)
        assert ax.activity.detail(session, agent_id) is not None


# -- cancel_pending --------------------------------------------------------------------------
def test_cancel_pending_as_in_the_spec(db_engine: Engine) -> None:
    engine = db_engine
    queued = ax.activity.create("t", "queued")
    running = ax.activity.create("t", "queued")
    ax.activity.update(running, "Starting", status=Status.RUNNING, percentage=30)
    done = ax.activity.create("t", "queued")
    ax.activity.complete(done, "ok")
    failed = ax.activity.create("t", "queued")
    ax.activity.error(failed, "boom")
    canceled_before = ax.activity.create("t", "queued")
    ax.activity.update(canceled_before, "stop", status=Status.CANCELED)

    with Session(engine) as session:
        canceled = ax.activity.cancel_pending(session)
        print(f"Canceled {canceled} activities")
    assert canceled == 2
    assert statuses(queued)[-1] is Status.CANCELED
    assert statuses(running)[-1] is Status.CANCELED
    assert statuses(done) == [Status.QUEUED, Status.COMPLETE]
    assert statuses(failed) == [Status.QUEUED, Status.ERROR]
    assert statuses(canceled_before) == [Status.QUEUED, Status.CANCELED]
    running_detail = ax.activity.detail(running)
    assert running_detail is not None and running_detail.latest_percentage == 30
    assert running_detail.updated_at == running_detail.logs[-1].created_at
    assert ax.activity.cancel_pending() == 0


# -- list ------------------------------------------------------------------------------------
def test_list_as_in_the_spec(db_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    engine = db_engine
    ids = [ax.activity.create("t", f"m{i}") for i in range(25)]
    ax.activity.update(ids[-1], "Starting", status=Status.RUNNING, percentage=40)
    with Session(engine) as session:
        result = ax.activity.list(session, page=1, page_size=20)

        print(f"Total: {result.total}")
        print(f"Page {result.page} of {result.pages}")

        for item in result.items:
            print(f"{item.agent_id}: {item.status}")
    assert isinstance(result, ActivityListSchema)
    assert (result.total, result.page, result.page_size, result.pages) == (25, 1, 20, 2)
    assert [item.agent_id for item in result.items] == ids[::-1][:20]
    newest = result.items[0]
    assert isinstance(newest, ActivityListItemSchema)
    assert (newest.agent_type, newest.status, newest.latest_log, newest.latest_percentage) == (
        "t", Status.RUNNING, "Starting", 40,
    )
    assert "Total: 25" in capsys.readouterr().out
    second = ax.activity.list(page=2, page_size=20)
    assert [item.agent_id for item in second.items] == ids[::-1][20:]


def test_list_defaults_and_bad_pages() -> None:
    result = ax.activity.list()
    assert (result.items, result.total, result.page, result.page_size, result.pages) == ([], 0, 1, 50, 0)
    with pytest.raises(ValueError, match="page"):
        ax.activity.list(page=0)
    with pytest.raises(ValueError, match="page_size"):
        ax.activity.list(page_size=0)


def test_list_filters_by_status_and_metadata() -> None:
    acme = ax.activity.create("t", "m", metadata={"tenant": "acme", "tier": 2, "beta": True})
    other = ax.activity.create("t", "m", metadata={"tenant": "other", "tier": 2})
    plain = ax.activity.create("t", "m")
    ax.activity.update(acme, "go", status=Status.RUNNING)
    assert [i.agent_id for i in ax.activity.list(metadata={"tenant": "acme"}).items] == [acme]
    assert {i.agent_id for i in ax.activity.list(metadata={"tier": 2}).items} == {acme, other}
    assert [i.agent_id for i in ax.activity.list(metadata={"tier": 2, "beta": True}).items] == [acme]
    assert ax.activity.list(metadata={"tier": "2"}).total == 0  # JSON equality: 2 is not "2"
    assert ax.activity.list(metadata={"tenant": "nobody"}).total == 0
    assert [i.agent_id for i in ax.activity.list(status=Status.RUNNING).items] == [acme]
    queued = ax.activity.list(status=Status.QUEUED)
    assert {i.agent_id for i in queued.items} == {other, plain} and queued.total == 2
    both = ax.activity.list(status=Status.QUEUED, metadata={"tier": 2})
    assert [i.agent_id for i in both.items] == [other]


# -- detail ----------------------------------------------------------------------------------
def test_detail_as_in_the_spec(db_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    engine = db_engine
    agent_id = ax.activity.create("research", "queued")
    ax.activity.update(agent_id, "Starting", status=Status.RUNNING, percentage=10)
    ax.activity.update(agent_id, "Halfway", percentage=50)
    ax.activity.update(agent_id, "Thinking")
    with Session(engine) as session:
        activity = ax.activity.detail(session, agent_id)

        if activity:
            print(f"Status: {activity.status}")
            print(f"Progress: {activity.latest_percentage}%")
            for log in activity.logs:
                print(f"  [{log.created_at}] {log.message}")
    assert isinstance(activity, ActivityDetailSchema)
    assert (activity.agent_id, activity.agent_type) == (agent_id, "research")
    assert (activity.status, activity.latest_percentage) == (Status.RUNNING, 50)
    assert [log.message for log in activity.logs] == ["queued", "Starting", "Halfway", "Thinking"]
    assert all(isinstance(log, ActivityLogSchema) for log in activity.logs)
    assert [log.id for log in activity.logs] == sorted(log.id for log in activity.logs)
    times = [log.created_at for log in activity.logs]
    assert times == sorted(times)
    assert activity.created_at == times[0] and activity.updated_at == times[-1]
    assert all(t.tzinfo is not None and t.utcoffset().total_seconds() == 0 for t in times)  # type: ignore[union-attr]
    assert "Progress: 50%" in capsys.readouterr().out
    with Session(engine) as session:
        assert ax.activity.detail(session, uuid.uuid4()) is None


def test_schemas_expose_exactly_the_spec_fields() -> None:
    agent_id = ax.activity.create("t", "m", metadata={"secret": "tenant"})
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    assert set(detail.model_dump()) == {
        "agent_id", "agent_type", "created_at", "updated_at", "status", "latest_percentage", "logs",
    }
    assert set(detail.logs[0].model_dump()) == {"id", "message", "status", "percentage", "created_at"}
    listing = ax.activity.list()
    assert set(listing.model_dump()) == {"items", "total", "page", "page_size", "pages"}
    assert set(listing.items[0].model_dump()) == {
        "agent_id", "agent_type", "created_at", "updated_at", "status", "latest_log", "latest_percentage",
    }
    assert "tenant" not in detail.model_dump_json() + listing.model_dump_json()


# -- sessions ------------------------------------------------------------------------------
def test_without_a_session_the_global_session_is_used(tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('g')}/global.db")
    ax.Base.metadata.create_all(elsewhere)
    set_global_session(elsewhere)
    try:
        agent_id = ax.activity.create("t", "via the global session")
        ax.activity.update(agent_id, "more", percentage=20)
        assert get_global_session().get_bind() is elsewhere
        with Session(elsewhere) as session:
            detail = ax.activity.detail(session, agent_id)
            assert detail is not None and detail.latest_percentage == 20
        assert ax.activity.list().total == 1
    finally:
        remove_global_session()
    elsewhere.dispose()


@pytest.mark.anyio
async def test_async_twins_share_the_data_and_run_off_the_event_loop(db_engine: Engine) -> None:
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def record(*_: object) -> None:
        threads.add(threading.get_ident())

    sa.event.listen(db_engine, "before_cursor_execute", record)
    try:
        agent_id = await ax.activity.acreate("t", "queued", metadata={"k": "v"})
        await ax.activity.aupdate(agent_id, "Starting", percentage=10, status=Status.RUNNING)
        detail = await ax.activity.adetail(agent_id)
        assert detail is not None and (detail.status, detail.latest_percentage) == (Status.RUNNING, 10)
        listing = await ax.activity.alist(page=1, page_size=5, status=Status.RUNNING)
        assert [i.agent_id for i in listing.items] == [agent_id]
        await ax.activity.acomplete(agent_id, "done", percentage=90)
        assert statuses(agent_id)[-1] is Status.COMPLETE
        failing = await ax.activity.acreate("t", "queued")
        await ax.activity.aerror(failing, "boom")
        pending = await ax.activity.acreate("t", "queued")
        assert await ax.activity.acancel_pending() == 1
        assert statuses(pending)[-1] is Status.CANCELED
        assert statuses(failing)[-1] is Status.ERROR
        with pytest.raises(UnknownActivityError):
            await ax.activity.aupdate(uuid.uuid4(), "x")
    finally:
        sa.event.remove(db_engine, "before_cursor_execute", record)
    async_threads = threads - {loop_thread}
    assert async_threads, "the async twins ran SQL on the event loop's thread"


def test_timestamps_are_utc_now() -> None:
    before = datetime.now(UTC)
    agent_id = ax.activity.create("t", "m")
    detail = ax.activity.detail(agent_id)
    assert detail is not None
    assert before <= detail.created_at <= datetime.now(UTC)
