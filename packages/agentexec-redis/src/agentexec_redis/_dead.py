"""Dead-letter records: JSON written by the Lua scripts, read back as ``DeadLetter``."""

from __future__ import annotations

import json
from typing import Any

from agentexec.backends import DeadLetter
from agentexec.task import Envelope
from pydantic import ValidationError


def text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")


def parse_envelope(raw: bytes | str) -> Envelope | None:
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError:
        return None


def parse_record(record: bytes | str, queue_name: str) -> DeadLetter:
    """A stored record as a ``DeadLetter`` (never raises: a damaged record says so)."""
    try:
        data: Any = json.loads(text(record))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError):
        return DeadLetter(
            id="", queue_name=queue_name, reason="unreadable dead-letter record", payload=text(record)
        )
    payload = str(data.get("payload", ""))
    return DeadLetter(
        id=str(data.get("id", "")),
        queue_name=str(data.get("queue", queue_name)),
        reason=str(data.get("reason", "")),
        payload=payload,
        envelope=parse_envelope(payload),
        failed_at=float(data.get("failed_at", 0.0)),
    )


def malformed_reason(exc: ValidationError | UnicodeDecodeError) -> str:
    """Why a payload is not a task, in one line (same wording as the memory backend)."""
    if isinstance(exc, UnicodeDecodeError):
        return "malformed payload: not UTF-8 text"
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"malformed payload: {loc}: {err.get('msg', 'invalid')}"
