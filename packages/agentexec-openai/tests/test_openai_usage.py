"""Token and cost metering: a scripted agent run with recovery turns records its summed usage
(cached and reasoning tokens too) and its cost from the price table on the task's activity;
``agentexec activity show`` prints them; ``ax.activity.usage`` totals per task name and per
tenant in one query."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import agentexec as ax
import anyio
import pytest
from agentexec.pricing import Price
from agentexec.runners import TokenUsage
from agentexec.runtime import build_backends, get_backends, has_backends, set_backends
from agentexec_openai.testing import ScriptedModel, answer, scripted_run_config, tool_call
from agents import Agent
from agents.usage import InputTokensDetails, OutputTokensDetails, Usage

pytestmark = pytest.mark.anyio


class CachingModel(ScriptedModel):
    """Each call: 100 input tokens (40 from the cache), 20 output tokens (8 of them reasoning)."""

    def _usage(self) -> Usage:
        return Usage(
            requests=1, input_tokens=100, output_tokens=20, total_tokens=120,
            input_tokens_details=InputTokensDetails.model_validate({"cached_tokens": 40, "cache_write_tokens": 0}),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=8),
        )


@pytest.fixture
def sqlite_activity(tmp_path: Path) -> Iterator[str]:
    """This process's activity in a SQLite file the CLI can read too."""
    url = f"sqlite:///{tmp_path / 'activity.db'}"
    memory = f"memory://usage-{uuid.uuid4().hex[:8]}"
    previous = get_backends() if has_backends() else None
    backends = build_backends({"queue": memory, "results": memory, "events": memory, "activity": url})
    ax.Base.metadata.create_all(backends.activity.engine)  # type: ignore[attr-defined]
    set_backends(backends)
    yield url
    set_backends(previous)


async def run_agent(agent_id: UUID, model: ScriptedModel, agent_model: str, recovery: bool) -> str:
    runner = ax.OpenAIRunner(agent_id, max_turns_recovery=recovery, run_config=scripted_run_config(model))
    agent = Agent(name="Analyst", instructions="Brief.", tools=[runner.tools.report_status], model=agent_model)
    result = await runner.run(agent, "Brief me", max_turns=2)
    return str(result.final_output)


def report(n: int) -> list[Any]:
    return [tool_call("report_activity", message=f"step {n}", percentage=10 * n)]


async def test_recovery_run_records_summed_usage_and_cost_and_totals(sqlite_activity: str) -> None:
    acme, globex = {"organization_id": "acme"}, {"organization_id": "globex"}
    # two turns run out of max_turns=2; recovery's forced answer is the third model call
    first = uuid.uuid4()
    await ax.activity.acreate("research", "queued", first, acme)
    model = CachingModel([report(1), report(2), [answer("Acme: solid.")]])
    assert await run_agent(first, model, "gpt-4.1", recovery=True) == "Acme: solid."

    detail = await ax.activity.adetail(first)
    assert detail is not None and detail.usage is not None
    assert detail.usage == TokenUsage(300, 60, 360, 3, 120, 24)
    assert detail.usage.model == "gpt-4.1"
    # gpt-4.1: $2 per 1M input, $0.50 per 1M cached input, $8 per 1M output
    expected = (180 * 2.00 + 120 * 0.50 + 60 * 8.00) / 1e6
    assert detail.cost == pytest.approx(expected)
    assert sum(1 for log in detail.logs if log.message.startswith("Token usage:")) == 1

    # a second task of the same name and tenant: a model priced by an override; a third task
    # of another tenant; a fourth of another name
    ax.pricing.set_prices({"acme-finetune": Price(input=10.0, output=20.0)})
    try:
        second = uuid.uuid4()
        await ax.activity.acreate("research", "queued", second, acme)
        await run_agent(second, CachingModel([[answer("ok")]]), "acme-finetune", recovery=False)
        third = uuid.uuid4()
        await ax.activity.acreate("research", "queued", third, globex)
        await run_agent(third, CachingModel([[answer("ok")]]), "gpt-4.1-mini-2025-04-14", recovery=False)
        fourth = uuid.uuid4()
        await ax.activity.acreate("summary", "queued", fourth, acme)
        await run_agent(fourth, CachingModel([[answer("ok")]]), "no-such-model", recovery=False)
    finally:
        ax.pricing.reset_prices()

    second_cost = (100 * 10.0 + 20 * 20.0) / 1e6  # no cached price: cached input billed as input
    third_cost = (60 * 0.40 + 40 * 0.10 + 20 * 1.60) / 1e6  # the dated name takes gpt-4.1-mini's
    research = await ax.activity.ausage("research")
    assert research is not None
    assert (research.input_tokens, research.output_tokens, research.requests) == (500, 100, 5)
    assert research.model == "mixed"
    assert research.cost == pytest.approx(expected + second_cost + third_cost)
    tenant = await ax.activity.ausage(metadata_filter=acme)
    assert tenant is not None
    assert (tenant.input_tokens, tenant.requests) == (500, 5)  # first, second and fourth
    assert tenant.cost == pytest.approx(expected + second_cost)  # the fourth's model has no price
    both = await ax.activity.ausage("research", metadata_filter=globex)
    assert both is not None and both.cost == pytest.approx(third_cost)
    assert await ax.activity.ausage("nothing-ran") is None

    # the operator sees the same on the command line
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env |= {"AGENTEXEC_DATABASE_URL": sqlite_activity, "COLUMNS": "200"}
    agentexec = str(Path(sys.executable).parent / "agentexec")
    with anyio.fail_after(60):
        shown = await anyio.run_process([agentexec, "activity", "show", str(first)], env=env, check=False)
        as_json = await anyio.run_process(
            [agentexec, "activity", "show", str(fourth), "--json"], env=env, check=False
        )
    assert shown.returncode == 0, shown.stderr.decode()
    text = shown.stdout.decode()
    assert "usage input 300 (cached 120)  output 60 (reasoning 24)  requests 3  model gpt-4.1" in text
    assert f"cost ${expected:.6f}" in text
    data = json.loads(as_json.stdout)
    assert data["usage"]["input_tokens"] == 100 and data["usage"]["model"] == "no-such-model"
    assert data["cost"] is None
