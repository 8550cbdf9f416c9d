"""Runtime schedules through the API against a running pool: created, it fires; disabled, it
stops within a tick; enabled, it fires again; deleted, it is gone. Errors of the schedule API
come back as 422 naming the field."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cp_support import WAIT, ControlPlane, start_control_plane

pytestmark = pytest.mark.slow
API = "/api/agentexec"


def test_create_disable_enable_delete_a_schedule_in_a_running_pool(control_plane: ControlPlane) -> None:
    name = f"tick-{control_plane.stack.split('+')[0]}"
    with control_plane.client() as client:
        def fired() -> int:
            page = client.get(f"{API}/activities", params={"metadata": f'{{"schedule": "{name}"}}', "page_size": 1})
            return int(page.json()["total"])

        def wait_fired(at_least: int) -> None:
            deadline = time.monotonic() + WAIT
            while fired() < at_least:
                assert time.monotonic() < deadline, f"{name} fired {fired()} times, not {at_least}"
                time.sleep(0.1)

        created = client.post(f"{API}/schedules", json={
            "task_name": "steps", "name": name, "every": "1 second",
            "context": {"steps": 1, "delay": 0}, "description": "the API test's tick",
        })
        assert created.status_code == 201, created.text
        assert created.json()["every"] == 1.0 and created.json()["enabled"] is True
        assert name in [s["name"] for s in client.get(f"{API}/schedules").json()]
        wait_fired(2)

        assert client.post(f"{API}/schedules/{name}/disable").json()["enabled"] is False
        time.sleep(2.5)  # a tick to notice, and one more tick a firing may have claimed before
        stopped = fired()
        time.sleep(2.5)
        assert fired() == stopped, "a disabled schedule fired"

        assert client.post(f"{API}/schedules/{name}/enable").json()["enabled"] is True
        wait_fired(stopped + 1)

        changed = client.patch(f"{API}/schedules/{name}", json={"cron": "0 3 * * *", "timezone": "Europe/Paris"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["cron"] == "0 3 * * *" and changed.json()["every"] is None
        assert client.delete(f"{API}/schedules/{name}").status_code == 204
        assert client.get(f"{API}/schedules/{name}").status_code == 404


def test_schedule_errors_name_the_field(control_plane: ControlPlane) -> None:
    with control_plane.client() as client:
        def error(body: dict, status: int = 422) -> dict:  # type: ignore[type-arg]
            got = client.post(f"{API}/schedules", json={"task_name": "steps", **body})
            assert got.status_code == status, got.text
            return got.json()["detail"]  # type: ignore[no-any-return]

        [bad_cron] = error({"name": "bad", "cron": "every morning"})
        assert bad_cron["loc"] == ["body", "cron"] and "invalid cron expression" in bad_cron["msg"]
        [bad_context] = error({"name": "bad", "every": "1 hour", "context": {"steps": "many"}})
        assert bad_context["loc"] == ["body", "context"] and "steps" in bad_context["msg"]
        [unknown] = error({"task_name": "nope", "every": "1 hour"})
        assert unknown["loc"] == ["body", "task_name"]
        [zone] = error({"name": "bad", "every": "1 hour", "timezone": "Mars/Olympus"})
        assert zone["loc"] == ["body", "timezone"]
        assert client.post(f"{API}/schedules", json={"task_name": "steps", "name": "twice", "every": 3600}).status_code == 201
        assert "already exists" in error({"name": "twice", "every": 60}, 409)
        assert client.delete(f"{API}/schedules/twice").status_code == 204


@pytest.fixture(scope="module")
def postgresql_plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    yield from start_control_plane("postgresql", request, tmp_path_factory.mktemp("cp-pg"))


def test_concurrent_creates_of_one_name_give_one_201_and_409s(control_plane: ControlPlane) -> None:
    """Of concurrent creates of one name exactly one wins (the store's set-if-absent); the
    others get the duplicate-name 409, never a 500."""
    race(control_plane)


def test_concurrent_creates_on_postgresql_only(postgresql_plane: ControlPlane) -> None:
    """The same with the schedule table on PostgreSQL, which used to answer 500: two requests
    inserting a new name together failed on its primary key."""
    race(postgresql_plane)


def race(control_plane: ControlPlane) -> None:
    name = f"race-{control_plane.stack.split('+')[0]}"
    body = {"task_name": "steps", "name": name, "every": 3600, "context": {"steps": 1, "delay": 0}}
    with control_plane.client() as client:
        try:
            with ThreadPoolExecutor(8) as threads:
                barrier = threading.Barrier(8)

                def create(_: int) -> int:
                    barrier.wait(WAIT)
                    return int(client.post(f"{API}/schedules", json=body).status_code)

                codes = sorted(threads.map(create, range(8)))
            assert codes == [201] + [409] * 7, codes
            assert [s["name"] for s in client.get(f"{API}/schedules").json()].count(name) == 1
        finally:
            client.delete(f"{API}/schedules/{name}")
