"""``CONF.worker_event_loop``: which loop a worker process runs on (the processes themselves are
in tests/e2e/test_pool_processes.py)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from agentexec.config import ConfigError, load
from agentexec.worker.event_loop import worker_loop_options


def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def find(name: str, *args: Any) -> Any:
        return None if name == "uvloop" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find)


def test_auto_and_uvloop_use_uvloop_when_it_is_installed() -> None:
    assert worker_loop_options("auto") == {"use_uvloop": True}
    assert worker_loop_options("uvloop") == {"use_uvloop": True}


def test_asyncio_is_the_standard_loop() -> None:
    assert worker_loop_options("asyncio") == {}


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    without_uvloop(monkeypatch)
    assert worker_loop_options("auto") == {}


def test_uvloop_without_uvloop_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    without_uvloop(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        worker_loop_options("uvloop")
    assert str(caught.value) == (
        "AGENTEXEC_WORKER_EVENT_LOOP is 'uvloop' but uvloop is not installed: "
        "pip install uvloop, or set AGENTEXEC_WORKER_EVENT_LOOP=auto (or asyncio)"
    )


def test_the_setting_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTEXEC_WORKER_EVENT_LOOP", "asyncio")
    assert load().worker_event_loop == "asyncio"
    monkeypatch.setenv("AGENTEXEC_WORKER_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError) as caught:
        load()
    assert "AGENTEXEC_WORKER_EVENT_LOOP='trio'" in str(caught.value)
    assert "auto, uvloop or asyncio" in str(caught.value)
