"""A scope dependency that pins a metadata filter: tenant A never sees tenant B's activities,
through any endpoint, the stream included (``cp_web``'s ``/tenant`` router, X-Tenant header)."""

from __future__ import annotations

import pytest
from cp_sse import Stream
from cp_support import WAIT, ControlPlane

pytestmark = pytest.mark.slow
T = "/tenant"


def test_a_tenant_sees_only_its_own(control_plane: ControlPlane) -> None:
    url = f"{control_plane.url}{T}/activities/stream"
    with control_plane.client(**{"X-Tenant": "alpha"}) as alpha, control_plane.client(**{"X-Tenant": "beta"}) as beta, \
            Stream(url, {"X-Tenant": "alpha"}) as alpha_stream, \
            Stream(url + '?metadata={"tenant":"beta"}', {"X-Tenant": "alpha"}) as sneaky_stream:
        # beta even claims to be alpha in its metadata: the scope's pair wins
        theirs = beta.post(f"{T}/tasks/steps", json={"context": {"steps": 2, "delay": 0.01},
                                                      "metadata": {"tenant": "alpha"}}).json()["agent_id"]
        mine = alpha.post(f"{T}/tasks/steps", json={"context": {"steps": 2, "delay": 0.01}}).json()["agent_id"]
        for client, agent_id in ((beta, theirs), (alpha, mine)):
            done = client.get(f"{T}/results/{agent_id}", params={"wait": WAIT})
            assert done.json()["status"] == "complete", done.text
        alpha_stream.wait_for(lambda: any(e.data["status"] == "COMPLETE" for e in alpha_stream.of(mine)))
        sneaky_stream.wait_for(lambda: any(e.data["status"] == "COMPLETE" for e in sneaky_stream.of(mine)))

        # the tenant-wide API sees both (it has no scope) ...
        with control_plane.client() as admin:
            everyone = {i["agent_id"] for i in admin.get("/api/agentexec/activities", params={"page_size": 500}).json()["items"]}
        assert {mine, theirs} <= everyone
        # ... alpha only its own, whatever it asks for
        for params in ({}, {"metadata": '{"tenant": "beta"}'}, {"status": "COMPLETE"}):
            listed = {i["agent_id"] for i in alpha.get(f"{T}/activities", params={"page_size": 500, **params}).json()["items"]}
            assert mine in listed and theirs not in listed, params
        assert alpha.get(f"{T}/activities/{theirs}").status_code == 404
        assert alpha.get(f"{T}/results/{theirs}").status_code == 404
        assert alpha.get(f"{T}/activities/{mine}").status_code == 200
        assert beta.get(f"{T}/activities/{mine}").status_code == 404
        assert {e.data["agent_id"] for e in alpha_stream.events + sneaky_stream.events} == {mine}
        assert alpha.delete(f"{T}/queues/{control_plane.env['CP_QUEUE']}/dead-letters").status_code == 403
        # no tenant, no access
        with control_plane.client() as anonymous:
            assert anonymous.get(f"{T}/activities").status_code == 422
        with control_plane.client(**{"X-Tenant": "../beta"}) as forged:
            assert forged.get(f"{T}/activities").status_code == 401
