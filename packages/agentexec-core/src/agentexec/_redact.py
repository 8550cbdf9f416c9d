"""Passwords never reach an error message, a log line, CLI output or a ``repr``.

:func:`mask_url` hides the password of one URL (``redis://:***@host:6379/0``);
:func:`redact` hides it wherever a URL appears in a text (an exception's message), and also the
password of every configured URL wherever it appears verbatim (a client library's message that
quotes a piece of a URL it could not parse: ``Port could not be cast to integer value as
's3cret'``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

#: ``scheme://userinfo@``: userinfo runs to the last ``@`` before the query, so a password
#: holding a raw ``/`` or ``@`` is covered whole
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>?#]*)@")
#: query parameters that carry secrets (``?password=...``, libpq's ``sslpassword``, tokens)
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:[A-Za-z_]*password|passwd|pwd|secret|token|access_token|api_key|apikey)=)"
    r"(?P<value>[^&;\s'\"<>#]*)",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if ":" not in userinfo:
        return match.group(0)  # a user name alone
    user = userinfo.split(":", 1)[0]
    return f"{match.group('scheme')}{user}:{MASK}@"


def mask_url(url: str) -> str:
    """``url`` with its password (and any secret query parameter) replaced by ``***``."""
    text = _USERINFO.sub(_mask_userinfo, str(url))
    return _SECRET_PARAM.sub(lambda m: m.group("key") + MASK, text)


def passwords(url: str) -> list[str]:
    """The secrets in ``url`` (its password, secret query values), and the first piece of a
    password holding ``/`` ``?`` ``#`` ``@``, which is what a URL parser reads in its stead."""
    found: list[str] = []
    for match in _USERINFO.finditer(str(url)):
        userinfo = match.group("userinfo")
        if ":" in userinfo:
            secret = userinfo.split(":", 1)[1]
            found.append(secret)
            piece = re.split(r"[/?#@]", secret, maxsplit=1)[0]
            if piece != secret:
                found.append(piece)
    for match in _SECRET_PARAM.finditer(str(url)):
        found.append(match.group("value"))
    # too short to tell from ordinary text (and unsafe to replace everywhere)
    return [s for s in dict.fromkeys(found) if len(s) >= 4]


def configured_urls() -> list[str]:
    """Every URL agentexec's configuration names (``CONF.redis_url`` and the like)."""
    from agentexec.config import CONF

    fields = ("redis_url", "database_url", "queue_backend", "results_backend", "events_backend", "activity_backend")
    return [value for value in (getattr(CONF, f, None) for f in fields) if isinstance(value, str)]


def redact(text: object, urls: Iterable[str] | None = None) -> str:
    """``text`` with every URL's password masked, and every password of ``urls`` (default: the
    configured ones) masked wherever it appears."""
    out = mask_url(str(text))
    for url in configured_urls() if urls is None else urls:
        for secret in passwords(url):
            out = out.replace(secret, MASK)
    return out
