"""pytest plugin of the agentexec conformance kit (loaded through the ``pytest11`` entry point).

It stays tiny because pytest loads it in every project that has agentexec-core installed: it
imports nothing from the kit, and only provides the ``anyio_backend`` the suites run on. The
no-override guard lives on the suite base class (``agentexec.testing._suite``) so it applies even
when this plugin is disabled.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The suites are written for asyncio (backends use asyncio client libraries).

    A project's own ``anyio_backend`` fixture in its conftest takes precedence.
    """
    return "asyncio"
