"""Fixtures of the control-plane tests: one running pool and API server per backend stack,
shared by the session's tests (see cp_support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cp_support import ControlPlane, start_control_plane


@pytest.fixture(scope="session", params=["sqlite", "redis+postgresql"])
def control_plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    yield from start_control_plane(request.param, request, tmp_path_factory.mktemp("cp"))
