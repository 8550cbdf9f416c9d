"""Issue #16: the original agentexec's configuration names still work. ``REDIS_URL`` (and
``REDIS_POOL_SIZE`` / ``REDIS_POOL_TIMEOUT``) without our prefix, ``AGENTEXEC_SCHEDULER_TIMEZONE``
and ``CONF.scheduler_timezone``, ``AGENTEXEC_QUEUE_PREFIX`` / ``CONF.queue_prefix`` (0.3); our
``AGENTEXEC_*`` name wins when both are set; the original's settings with no counterpart here
are reported once, saying why (its README's "Configuration" section)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agentexec.config import ALIASES, Config, ConfigWarning, describe_errors, warn_unknown_variables


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("AGENTEXEC_") or key.upper() in ALIASES:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env file
    return monkeypatch


def test_redis_url_without_the_prefix(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_URL", "redis://cache:6379/3")
    env.setenv("REDIS_POOL_SIZE", "25")
    conf = Config()
    assert conf.redis_url == "redis://cache:6379/3" and conf.redis_pool_size == 25
    env.setenv("AGENTEXEC_REDIS_URL", "redis://ours:6379/0")  # ours wins
    assert Config().redis_url == "redis://ours:6379/0"


def test_redis_url_in_a_dotenv_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/0\n")
    assert Config().redis_url == "redis://from-dotenv:6379/0"


def test_scheduler_timezone(env: pytest.MonkeyPatch) -> None:
    env.setenv("AGENTEXEC_SCHEDULER_TIMEZONE", "America/New_York")
    conf = Config()
    assert conf.timezone == conf.scheduler_timezone == "America/New_York"
    assert conf.scheduler_tz == ZoneInfo("America/New_York")
    conf.scheduler_timezone = "Europe/Paris"  # assignable, validated like timezone
    assert conf.timezone == "Europe/Paris"
    with pytest.raises(ValueError, match="not an IANA timezone name"):
        conf.scheduler_timezone = "Mars/Olympus"
    env.setenv("AGENTEXEC_TIMEZONE", "Asia/Tokyo")  # ours wins
    assert Config().scheduler_timezone == "Asia/Tokyo"


def test_queue_prefix(env: pytest.MonkeyPatch) -> None:
    env.setenv("AGENTEXEC_QUEUE_PREFIX", "jobs")
    conf = Config()
    assert conf.queue_name == conf.queue_prefix == "jobs"


def test_an_invalid_alias_names_the_variable_the_user_set(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_POOL_SIZE", "lots")
    with pytest.raises(Exception) as info:
        Config()
    message = describe_errors(info.value)  # type: ignore[arg-type]
    assert message.startswith("REDIS_POOL_SIZE='lots' is invalid"), message


def test_the_originals_other_settings_are_reported_not_misspelled(env: pytest.MonkeyPatch) -> None:
    env.setenv("AGENTEXEC_KEY_PREFIX", "myapp")
    env.setenv("AGENTEXEC_SCHEDULER_TIMEZONE", "UTC")
    env.setenv("AGENTEXEC_QUEUE_PREFIX", "jobs")
    env.setenv("REDIS_URL", "redis://x:6379/0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unknown_variables()
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]
    assert messages == [
        "AGENTEXEC_KEY_PREFIX is a setting of the original agentexec that this one does not use "
        "(Redis keys are named after the queue (AGENTEXEC_QUEUE_NAME)); see "
        "docs/migrating-from-agentexec.md"
    ]
