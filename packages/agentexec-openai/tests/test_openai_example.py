"""examples/openai_agent.py: explains itself without a key, and with one runs the whole path —
the SDK's real OpenAI model over HTTP — here against a local fake Responses API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openai_agent.py"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    env.update(extra)
    return env


@pytest.mark.slow
def test_without_a_key_it_explains_itself_and_exits_0() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "OPENAI_API_KEY" in proc.stdout
    assert "nothing was run" in proc.stdout


def _function_call(n: int, message: str, percentage: int) -> dict[str, Any]:
    return {
        "type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": "report_activity",
        "arguments": json.dumps({"message": message, "percentage": percentage}), "status": "completed",
    }


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


SCRIPT = [
    [_function_call(1, "Recalling the basics", 30)],
    [_function_call(2, "Writing the briefing", 80)],
    [_message("- Acme makes anvils.\n- Founded 1949.\n- Sells to coyotes.")],
]


class FakeResponsesAPI(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/responses" or body.get("stream"):
            self.send_error(404, f"unexpected request {self.path}")
            return
        self.requests.append(body)
        output = SCRIPT[min(len(self.requests), len(SCRIPT)) - 1]
        payload = json.dumps({
            "id": f"resp_{len(self.requests)}", "object": "response", "created_at": 0,
            "model": body.get("model", "gpt-4.1-mini"), "status": "completed", "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {
                "input_tokens": 100, "output_tokens": 20, "total_tokens": 120,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    handler = type("Handler", (FakeResponsesAPI,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_with_a_key_it_runs_the_agent_as_a_pool_task_and_prints_progress(
    fake_api: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, requests = fake_api
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "Acme"],
        env=_env(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=base_url),
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert " 30% Recalling the basics" in out and " 80% Writing the briefing" in out
    assert "Token usage: input=300 output=60 total=360 requests=3" in out
    assert "Acme makes anvils." in out
    assert len(requests) == 3
    assert "Acme" in json.dumps(requests[0]["input"])
    assert "report_activity" in requests[0]["instructions"]
    assert [t["name"] for t in requests[0]["tools"]] == ["report_activity"]
