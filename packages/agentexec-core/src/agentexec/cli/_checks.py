"""What the commands check before they touch a backend, without the table renderer: the
``run`` command uses these too, and must start fast."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentexec._redact import mask_url

__all__ = ["CONNECT_TIMEOUT", "CommandError", "check_reachable", "mask_url", "require_existing_databases", "sqlite_file"]


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 1 (2 for usage errors)."""

    def __init__(self, message: str, status: int = 1) -> None:
        self.status = status
        super().__init__(message)


#: how long a command waits for a backend's server to answer before saying it is down
CONNECT_TIMEOUT = 1.0
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432, "mysql": 3306}
_SOURCE = "AGENTEXEC_REDIS_URL / AGENTEXEC_DATABASE_URL (or AGENTEXEC_<KIND>_BACKEND)"




def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite://`` URL (``None`` for other URLs and in-memory databases)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("://", 1)[1] if "://" in url else ""
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db, sqlite:////abs.db
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return None
    return Path(path)


def require_existing_databases(urls: Mapping[Any, str]) -> None:
    """Read-only commands never create a database: a SQLite file that does not exist is an
    error that says where agentexec looked."""
    for url in dict.fromkeys(urls.values()):
        path = sqlite_file(url)
        if path is not None and not path.exists():
            raise CommandError(
                f"no agentexec database at {path.resolve()} ({mask_url(url)}): run this command "
                f"where your pool runs, or point {_SOURCE} at its database"
            )


def check_reachable(urls: Mapping[Any, str], timeout: float = CONNECT_TIMEOUT) -> None:
    """Every server the backends live on accepts a connection within ``timeout`` seconds, or a
    :class:`CommandError` names the URL (password masked) — instead of a client library's
    retries and its raw exception."""
    for kind, url in urls.items():
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme == "unix":
            if not Path(parts.path).exists():
                raise CommandError(f"cannot reach the {kind} backend at {mask_url(url)}: no such socket")
            continue
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            continue
        port = parts.port or _DEFAULT_PORTS[scheme]
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                pass
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise CommandError(
                f"cannot reach the {kind} backend at {mask_url(url)}: {reason} (is the server "
                f"running? set {_SOURCE})"
            ) from None


