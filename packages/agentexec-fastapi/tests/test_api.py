"""Every endpoint of the HTTP API against a real pool, on SQLite and on Redis + PostgreSQL."""

from __future__ import annotations

import time

import pytest
from cp_support import WAIT, ControlPlane

pytestmark = pytest.mark.slow
API = "/api/agentexec"


def _finished(client, agent_id: str) -> dict:  # type: ignore[no-untyped-def]
    got = client.get(f"{API}/results/{agent_id}", params={"wait": WAIT})
    assert got.status_code == 200, got.text
    return got.json()  # type: ignore[no-any-return]


def test_tasks_results_and_activities(control_plane: ControlPlane) -> None:
    with control_plane.client() as client:
        assert client.get(f"{API}/tasks").json() == ["fail", "steps"]

        queued = client.post(f"{API}/tasks/steps", json={"context": {"steps": 3, "delay": 0.01},
                                                        "metadata": {"team": "docs"}})
        assert queued.status_code == 202, queued.text
        agent_id = queued.json()["agent_id"]
        assert _finished(client, agent_id) == {
            "agent_id": agent_id, "status": "complete", "task_name": "steps", "result": {"done": 3},
            "error": None, "attempts": 1,
        }
        detail = client.get(f"{API}/activities/{agent_id}").json()
        assert detail["status"] == "COMPLETE"
        assert [line["percentage"] for line in detail["logs"] if line["message"].startswith("step")] == [33, 66, 100]

        failed = client.post(f"{API}/tasks/fail", json={"context": {"message": "no luck"}}).json()
        outcome = _finished(client, failed["agent_id"])
        assert outcome["status"] == "failed" and "no luck" in outcome["error"]

        page = client.get(f"{API}/activities", params={"page_size": 10}).json()
        assert {i["agent_id"] for i in page["items"]} >= {agent_id, failed["agent_id"]}
        errors = client.get(f"{API}/activities", params={"status": "ERROR"}).json()
        # the session's database holds other tests' activities too: this one is among the
        # errors, and the filter let nothing else through
        assert failed["agent_id"] in [i["agent_id"] for i in errors["items"]]
        assert {i["status"] for i in errors["items"]} == {"ERROR"}
        docs = client.get(f"{API}/activities", params={"metadata": '{"team": "docs"}'}).json()
        assert [i["agent_id"] for i in docs["items"]] == [agent_id]
        fails = client.get(f"{API}/activities", params={"task": "fail", "page_size": 500}).json()["items"]
        assert failed["agent_id"] in [i["agent_id"] for i in fails] and {i["agent_type"] for i in fails} == {"fail"}

        # a result not there yet: 202 pending (no wait), then complete
        slow = client.post(f"{API}/tasks/steps", json={"context": {"steps": 2, "delay": 0.3}}).json()
        pending = client.get(f"{API}/results/{slow['agent_id']}")
        assert pending.status_code == 202 and pending.json()["status"] == "pending"
        assert _finished(client, slow["agent_id"])["status"] == "complete"


def test_bad_requests_say_what_is_wrong(control_plane: ControlPlane) -> None:
    with control_plane.client() as client:
        wrong = client.post(f"{API}/tasks/steps", json={"context": {"steps": "many"}})
        assert wrong.status_code == 422
        [error] = wrong.json()["detail"]
        assert error["loc"] == ["steps"] and error["type"] == "int_parsing"
        unknown = client.post(f"{API}/tasks/nope", json={})
        assert unknown.status_code == 404 and "fail, steps" in unknown.json()["detail"]
        assert client.get(f"{API}/activities/{'0' * 32}").status_code == 404
        bad = client.get(f"{API}/activities", params={"metadata": "tenant=a"})
        assert bad.status_code == 422 and "JSON object" in bad.json()["detail"]
        assert client.get(f"{API}/queues/elsewhere/dead-letters").status_code == 404


def test_queues_workers_and_dead_letters(control_plane: ControlPlane) -> None:
    queue = control_plane.env["CP_QUEUE"]
    with control_plane.client() as client:
        deadline = time.monotonic() + WAIT
        while not (queues := client.get(f"{API}/queues").json())[0]["workers"]:
            assert time.monotonic() < deadline, queues
            time.sleep(0.1)
        [stats] = queues
        assert stats["name"] == queue and stats["high"] >= 0 and stats["dead"] >= 0
        workers = client.get(f"{API}/workers").json()
        assert workers and all(w["queue_name"] == queue and w["heartbeat_age"] < 30 for w in workers)
        assert client.get(f"{API}/queues/{queue}/dead-letters").json() == []
        assert client.post(f"{API}/queues/{queue}/dead-letters/requeue", json={}).json() == {"requeued": 0}
        assert client.delete(f"{API}/queues/{queue}/dead-letters").json() == {"purged": 0}


def test_openapi_documents_the_endpoints(control_plane: ControlPlane) -> None:
    with control_plane.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in ("/activities", "/activities/{agent_id}", "/activities/stream", "/tasks/{task_name}",
                 "/results/{agent_id}", "/activities/{agent_id}/cancel", "/queues", "/workers", "/queues/{queue_name}/dead-letters"):
        assert API + path in paths, path


def test_cancel_a_running_execution(control_plane: ControlPlane) -> None:
    with control_plane.client() as client:
        agent_id = client.post(f"{API}/tasks/steps", json={"context": {"steps": 300, "delay": 0.1}}).json()["agent_id"]
        deadline = time.monotonic() + WAIT
        while client.get(f"{API}/activities/{agent_id}").json()["latest_percentage"] in (None, 0):
            assert time.monotonic() < deadline, "the task never made progress"
            time.sleep(0.05)
        cancelled = client.post(f"{API}/activities/{agent_id}/cancel", json={"reason": "user aborted"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "requested"
        outcome = _finished(client, agent_id)
        assert outcome["status"] == "cancelled" and outcome["error"] == "user aborted"
        detail = client.get(f"{API}/activities/{agent_id}").json()
        assert detail["status"] == "CANCELED" and "user aborted" in detail["logs"][-1]["message"]
        again = client.post(f"{API}/activities/{agent_id}/cancel", json={})
        assert again.status_code == 409 and "already ended CANCELED" in again.json()["detail"]
        assert client.post(f"{API}/activities/{'0' * 32}/cancel").status_code == 404
