"""Poison data and infrastructure faults: what a worker can clean, and what it must wait out.

Two kinds of failure reach a worker's finish path (its activity lines, outcomes and acks):

- **Transient**: the backend cannot be reached or cannot write right now (connection refused
  or lost, a timeout, a database restarting, a full disk). The same write succeeds once the
  fault clears, so the worker keeps it, stops taking new tasks and tries again
  (:class:`Health`): backpressure, not a task failure. A backend says which of its errors are
  transient with an ``is_transient(exc)`` method (:class:`agentexec.backends.TransientErrors`);
  without one, only ``OSError`` (``ConnectionError``, ``TimeoutError`` …) counts.
- **Permanent**: the backend refuses *this* data (a NUL byte PostgreSQL cannot store, a lone
  surrogate no encoder accepts, a value too long for its column). Writing it again changes
  nothing: the worker cleans what it can (:func:`clean_text`), isolates the bad row from its
  batch, and ends the task ERROR with a readable reason (:func:`unstorable_result`).

Everything a worker writes about a failure goes through :func:`clean_text` and
:func:`error_message`, so the failure itself can always be recorded.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("agentexec.worker")

#: characters of a failure's reason kept in its ERROR line and failed outcome (the rest is
#: replaced by a marker saying how much was cut)
MAX_REASON = 10_000
#: the ERROR line's template when ``CONF.activity_message_error`` cannot be used
DEFAULT_ERROR_TEMPLATE = "Task failed with error: {error}"

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: object, limit: int | None = MAX_REASON) -> str:
    """``text`` as something every backend stores: each lone surrogate (half of a character,
    such as ``json.loads('"\\ud83d"')``) replaced by U+FFFD, NUL bytes removed (PostgreSQL
    refuses them), and at most ``limit`` characters, with a marker saying how many were cut."""
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception as exc:  # a __str__ that raises
            text = f"<unprintable {type(text).__name__}: {type(exc).__name__}>"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _SURROGATE.sub("\ufffd", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… [{len(text) - limit} more characters cut]"
    return text


def error_message(error: str, template: str | None = None) -> str:
    """The ERROR line for ``error``: ``CONF.activity_message_error`` (or ``template``) with
    ``{error}`` filled in, cleaned. A template that cannot be filled in (validation keeps them
    out of ``CONF``, but a backend or a test may assign around it) falls back to
    :data:`DEFAULT_ERROR_TEMPLATE` rather than losing the failure."""
    if template is None:
        from agentexec.config import CONF

        template = CONF.activity_message_error
    error = clean_text(error)
    try:
        message = template.format(error=error)
    except Exception:
        message = DEFAULT_ERROR_TEMPLATE.format(error=error)
    return clean_text(message, None)


def unstorable_result(exc: BaseException, value: Any = None) -> str:
    """The reason a task fails with when its handler's return value cannot be stored."""
    text = str(exc)
    if "surrogates not allowed" in text:
        where = _surrogate_path(value, "the result")
        return (
            f"its result cannot be stored: {where or 'it'} holds text that is not valid Unicode "
            f"(a lone surrogate, half of a character such as an emoji, often from cut LLM output); "
            f"return whole characters, e.g. text.encode('utf-8', 'replace').decode()"
        )
    return f"its result cannot be stored: {type(exc).__name__}: {clean_text(text)}"


def _surrogate_path(value: Any, path: str, depth: int = 0) -> str | None:
    """Where in ``value`` the first string with a lone surrogate is (``the result['text'][2]``)."""
    if depth > 40:
        return None
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return f"{path} (character {found.start()})" if found else None
    if hasattr(value, "model_dump"):
        try:
            value = value.model_dump()
        except Exception:
            return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            label = ascii(key) if isinstance(key, str) else repr(key)
            hit = _surrogate_path(key, f"{path}'s key {label}", depth + 1) or _surrogate_path(
                item, f"{path}[{label}]", depth + 1
            )
            if hit:
                return hit
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            hit = _surrogate_path(item, f"{path}[{i}]", depth + 1)
            if hit:
                return hit
    return None


def is_transient(exc: BaseException, backend: object = None) -> bool:
    """Whether ``exc`` from ``backend`` means "not now" rather than "never": the backend's own
    ``is_transient`` decides when it has one; otherwise any ``OSError`` (connection refused or
    reset, timeouts) is transient and everything else permanent."""
    check = getattr(backend, "is_transient", None)
    if callable(check):
        try:
            return bool(check(exc))
        except Exception:
            pass
    return isinstance(exc, OSError)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an error on one line, cleaned and short: the driver's own error
    when a library wraps it (SQLAlchemy's ``orig``), without the wrapper's SQL and links."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        exc = orig
    lines = [
        line.strip() for line in clean_text(exc, 2000).splitlines()
        if line.strip() and not line.lstrip().startswith(("(Background on this error", "[SQL:", "[parameters:"))
    ]
    return clean_text(f"{type(exc).__name__}: {' '.join(lines)}".rstrip(": "), 300)


class Outage:
    """One thing a worker depends on (the activity store, the results backend, the queue):
    says once when it goes down and once when it is back, however many calls fail between."""

    def __init__(self, what: str, doing: str) -> None:
        self.what = what
        self.doing = doing
        self.since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> bool:
        """Record a failure; True when it starts an outage (and was logged)."""
        self.failures += 1
        if self.since is not None:
            return False
        self.since = time.monotonic()
        log.warning("%s is unreachable (%s): %s", self.what, describe(exc), self.doing)
        return True

    def ok(self) -> bool:
        """Record a success; True when it ends an outage (and was logged)."""
        if self.since is None:
            return False
        took = time.monotonic() - self.since
        log.warning(
            "%s is reachable again after %.1f s (%d failed attempt(s)); back to normal",
            self.what, took, self.failures,
        )
        self.since, self.failures = None, 0
        return True
