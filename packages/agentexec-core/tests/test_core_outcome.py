"""Outcome: how results are stored. Models come back only from classes the reader already has."""

from __future__ import annotations

import sys

import pytest
from pydantic import BaseModel

from agentexec.results import Outcome, TaskFailedError


class Report(BaseModel):
    title: str
    score: float


class Outer:
    class Nested(BaseModel):
        x: int


@pytest.mark.parametrize("value", [None, 1, 2.5, "text", [1, "a"], {"k": [1, 2]}, True])
def test_json_values_round_trip(value: object) -> None:
    data = Outcome.ok("t", value).encode()
    assert isinstance(data, bytes)
    assert Outcome.decode(data).unwrap("id") == value


def test_a_model_comes_back_as_that_model() -> None:
    outcome = Outcome.decode(Outcome.ok("t", Report(title="a", score=1.5)).encode())
    assert outcome.model == f"{__name__}:Report"
    assert outcome.unwrap("id") == Report(title="a", score=1.5)
    nested = Outcome.decode(Outcome.ok("t", Outer.Nested(x=3)).encode())
    assert nested.unwrap("id") == Outer.Nested(x=3)


def test_a_model_whose_module_is_not_loaded_is_not_imported() -> None:
    # stored data must never choose code to run: the module named here is never imported
    forged = Outcome(status="ok", value={"x": 1}, model="json.tool:Whatever")
    sys.modules.pop("json.tool", None)
    assert Outcome.decode(forged.encode()).unwrap("id") == {"x": 1}
    assert "json.tool" not in sys.modules


@pytest.mark.parametrize("path", ["os:path", "builtins:dict", f"{__name__}:Missing", f"{__name__}:Outer"])
def test_a_path_that_is_not_a_loaded_model_gives_the_plain_value(path: str) -> None:
    outcome = Outcome(status="ok", value={"x": 1}, model=path)
    assert outcome.unwrap("id") == {"x": 1}


def test_result_type_overrides_the_stored_model() -> None:
    outcome = Outcome.decode(Outcome.ok("t", {"title": "b", "score": 2}).encode())
    assert outcome.unwrap("id", result_type=Report) == Report(title="b", score=2.0)


def test_a_failure_raises_task_failed_error() -> None:
    outcome = Outcome.decode(Outcome.failed("research", "ValueError: bad input", attempts=3).encode())
    with pytest.raises(TaskFailedError) as info:
        outcome.unwrap("1234")
    err = info.value
    assert (err.task_name, err.agent_id, err.error, err.attempts) == ("research", "1234", "ValueError: bad input", 3)
    assert str(err) == "task 'research' (1234) failed after 3 attempt(s): ValueError: bad input"


def test_a_forged_model_path_imports_nothing() -> None:
    """``agentexec:OpenAIRunner`` is a lazy name of the ``agentexec`` module: reading it with
    ``getattr`` would import the OpenAI adapter and its SDK. The lookup reads the module's own
    namespace only, so a forged result imports nothing and comes back as its plain value."""
    import subprocess

    code = (
        "import sys, agentexec\n"
        "from agentexec.results import Outcome\n"
        "before = set(sys.modules)\n"
        "for path in ('agentexec:OpenAIRunner', 'agentexec:Base', 'agentexec.core:redis_client',"
        " 'agentexec:OpenAIRunner.x', 'agentexec_openai:OpenAIRunner'):\n"
        "    forged = Outcome(status='ok', value={'x': 1}, model=path)\n"
        "    assert Outcome.decode(forged.encode()).unwrap('id') == {'x': 1}, path\n"
        "new = sorted(set(sys.modules) - before)\n"
        "assert not new, new\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
